"""Additive angular margin softmax (ArcFace / AAM-softmax) head, registered as ``aam``.

For embedding x and class centre w_j the head computes cos(theta_j) between the
L2-normalised vectors. The target class's logit becomes s * cos(theta_y + m) and the
others s * cos(theta_j). Where theta_y + m would pass pi, the monotonic fallback
s * (cos(theta_y) - m * sin(m)) replaces it. sin(theta) is computed from a clamped
1 - cos^2 so neither the value nor the gradient is NaN at cos = +-1.

The margin is a non-trainable Parameter (``margin``, saved in checkpoints) read inside the
graph, so a margin schedule changes it between steps with :meth:`AAMSoftmax.set_margin`
without recompiling.
"""
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import XavierUniform, initializer

from src.model.registry import register_head

NORM_EPS = 1e-12
SIN_SQUARED_FLOOR = 1e-7


def l2_normalize(x):
    """Rows of x (R, E) divided by their L2 norms; the norm is floored so zero rows stay finite.

    The row sums and the repetition of each row's factor over E are products with ones (see
    src/model/layers.py): a broadcasting multiply's gradient is a slow reduction on CPU.
    """
    ones = ops.ones((x.shape[1], 1), x.dtype)
    inverse_norms = ops.rsqrt(ops.matmul(x * x, ones) + NORM_EPS)
    return x * ops.matmul(inverse_norms, ones.T)


class AAMSoftmax(nn.Cell):
    """Embeddings (N, E) and integer labels (N,) -> (margin logits (N, K), cosines (N, K))."""

    def __init__(self, emb_size, class_num, margin=0.2, scale=30.0):
        super().__init__()
        self.weight = Parameter(initializer(XavierUniform(), (class_num, emb_size), ms.float32),
                                name="weight")
        self.margin = Parameter(Tensor(margin, ms.float32), name="margin", requires_grad=False)
        self.class_num = class_num
        self.scale = scale
        self.matmul = ops.MatMul(transpose_b=True)

    def set_margin(self, margin):
        """Use margin ``margin`` (radians) from the next call on."""
        self.margin.set_data(Tensor(margin, ms.float32))

    def construct(self, embeddings, labels):
        cosine = self.matmul(l2_normalize(embeddings), l2_normalize(self.weight))
        cosine = ops.clamp(cosine, -1.0, 1.0)
        sine = ops.sqrt(ops.clamp(1.0 - cosine * cosine, min=SIN_SQUARED_FLOOR))
        cos_m, sin_m = ops.cos(self.margin), ops.sin(self.margin)
        with_margin = cosine * cos_m - sine * sin_m
        # theta + m > pi exactly where cos(theta) < cos(pi - m) = -cos(m); sin(pi - m) = sin(m).
        with_margin = ops.where(cosine > -cos_m, with_margin, cosine - sin_m * self.margin)
        one_hot = ops.one_hot(labels, self.class_num, ops.ones((), cosine.dtype), ops.zeros((), cosine.dtype))
        logits = self.scale * (one_hot * with_margin + (1.0 - one_hot) * cosine)
        return logits, cosine


@register_head("aam")
def build(settings, class_num):
    """AAMSoftmax for the embedding size, margin and scale of ``settings``."""
    return AAMSoftmax(settings.emb_size, class_num, settings.aam_margin, settings.aam_scale)
