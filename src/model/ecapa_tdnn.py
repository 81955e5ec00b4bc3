"""ECAPA-TDNN speaker embedding network (Desplanques et al., Interspeech 2020).

log-mel (N, T, 80)
  -> TDNN k=5 (conv, ReLU, BN)                                   (N, T, C)
  -> 3 SE-Res2Blocks, k=3, dilation 2 / 3 / 4, each with residual (N, T, C)
  -> concatenation of the three block outputs, TDNN 1x1          (N, T, C_mfa)
  -> attentive statistics pooling with global context            (N, 2 * C_mfa)
  -> BN -> Dense -> BN                                           (N, emb_size)

Activations are time-major (N, T, C); see src/model/layers.py for why, and for why sums
over time and repetitions over time are batched products with ones.

Padded batches. ``ECAPA_TDNN(features, mask)`` embeds utterances that were zero-padded at
the end to a common length: ``mask`` (N, T, 1) is 1 at real frames and 0 at padding. Every
step that mixes frames then sees exactly what it sees in the unpadded utterance: the input
of each kernel-k convolution is zero past the real frames (as its own zero padding is), the
time averages of squeeze-excitation and of the pooling statistics run over the real frames
only, and the attention softmax gives padded frames weight 0. The embeddings equal those of
the unpadded utterances up to float rounding, so one compiled static-shape graph can serve
every length up to T. This holds in inference mode; in training mode batch norm would count
the padded frames in its batch statistics.
"""
from mindspore import nn, ops

from src.model.layers import ChannelBatchNorm, TDNNBlock, TimeConv1d
from src.model.registry import register_model

VARIANCE_FLOOR = 1e-4
# Attention logit of padded frames: exp(-1e4 - max) is 0 in float16 and float32.
PADDED_LOGIT = -1e4


def time_sum(x):
    """Sum over frames: (N, T, C) -> (N, 1, C), as a batched product with ones."""
    return ops.bmm(ops.ones((x.shape[0], 1, x.shape[1]), x.dtype), x)


class TimeMax(nn.Cell):
    """The largest value over frames: (N, T, C) -> (N, 1, C)."""

    def construct(self, x):
        return x.max(axis=1, keepdims=True)


def channel_mask(mask, channels):
    """A frame mask (N, T, 1) repeated over ``channels``: (N, T, channels), for same-shape products."""
    return ops.tile(mask, (1, 1, channels))


def repeat_frames(x, frames):
    """(N, 1, C) -> (N, frames, C), as a batched product with ones; its gradient is a time_sum."""
    return ops.bmm(ops.ones((x.shape[0], frames, 1), x.dtype), x)


class Res2Conv(nn.Cell):
    """Res2Net multi-scale convolution: (N, T, C) -> (N, T, C).

    The channels are split into ``scale`` groups x_0..x_{s-1}; y_0 = x_0,
    y_1 = K_1(x_1), y_i = K_i(x_i + y_{i-1}), where K_i is a TDNN block of width C / scale.
    """

    def __init__(self, channels, kernel_size, dilation, scale, impl):
        super().__init__()
        if channels % scale:
            raise ValueError(f"channels {channels} not divisible by scale {scale}")
        self.scale = scale
        width = channels // scale
        self.blocks = nn.CellList([TDNNBlock(width, width, kernel_size, dilation, impl)
                                   for _ in range(scale - 1)])

    def construct(self, x, mask=None):
        """x (N, T, C); mask (N, T, 1) of real frames or None (see the module docstring)."""
        width = x.shape[2] // self.scale
        if mask is None:
            return self._groups(x, width, None)
        return self._groups(x * channel_mask(mask, x.shape[2]), width, channel_mask(mask, width))

    def _groups(self, x, width, group_mask):
        """The multi-scale sums over groups of ``width`` channels; outputs of the group convolutions
        times ``group_mask`` (N, T, width) unless None, so the next convolution sees zeros past the end."""
        groups = ops.split(x, width, axis=2)
        outputs = [groups[0]]
        previous = groups[0]
        for index in range(1, self.scale):
            current = groups[index] if index == 1 else groups[index] + previous
            previous = self.blocks[index - 1](current)
            if group_mask is not None:
                previous = previous * group_mask
            outputs.append(previous)
        return ops.concat(outputs, axis=2)


class SqueezeExcitation(nn.Cell):
    """Channel gates from the time average: (N, T, C) -> (N, T, C) scaled per channel.

    ``kernel`` (src.kernels.cells.use_kernels sets it; None otherwise) computes the whole
    cell in one call, and its gradient in another, for unpadded input.
    """

    def __init__(self, channels, bottleneck, impl):
        super().__init__()
        self.squeeze = TimeConv1d(channels, bottleneck, 1, impl=impl)
        self.excite = TimeConv1d(bottleneck, channels, 1, impl=impl)
        self.relu = nn.ReLU()
        self.sigmoid = nn.Sigmoid()
        self.kernel = None

    def construct(self, x, mask=None):
        """x (N, T, C); mask (N, T, 1) of real frames or None: the average is over the real frames."""
        if self.kernel is not None and mask is None:
            return self.kernel(x, self.squeeze.weight_matrix(), self.squeeze.bias, self.excite.weight_matrix(),
                               self.excite.bias)[0]
        frames = x.shape[1]
        if mask is None:
            summary = time_sum(x) / frames
        else:
            real = channel_mask(mask, x.shape[2])
            summary = time_sum(x * real) / time_sum(real)
        gates = self.sigmoid(self.excite(self.relu(self.squeeze(summary))))
        return x * repeat_frames(gates, frames)


class SERes2Block(nn.Cell):
    """TDNN 1x1 -> Res2Conv -> TDNN 1x1 -> squeeze-excitation, plus the input: (N, T, C) -> (N, T, C)."""

    def __init__(self, channels, kernel_size, dilation, scale, se_channels, impl):
        super().__init__()
        self.tdnn1 = TDNNBlock(channels, channels, 1, impl=impl)
        self.res2 = Res2Conv(channels, kernel_size, dilation, scale, impl)
        self.tdnn2 = TDNNBlock(channels, channels, 1, impl=impl)
        self.se = SqueezeExcitation(channels, se_channels, impl)

    def construct(self, x, mask=None):
        """x (N, T, C); mask (N, T, 1) of real frames or None."""
        return self.se(self.tdnn2(self.res2(self.tdnn1(x), mask)), mask) + x


def _mean_and_std(weighted_sum, weighted_square_sum, total_weight):
    """Mean and standard deviation over time from the weighted sums of x and x * x.

    The sums are (N, 1, C); total_weight, the sum of the weights, is (N, 1, C) or a number.
    Returns two (N, 1, C) tensors; the variance is floored at VARIANCE_FLOOR (by a maximum,
    which MindSpore's ONNX exporter converts, unlike a one-sided clamp).
    """
    mean = weighted_sum / total_weight
    variance = weighted_square_sum / total_weight - mean * mean
    return mean, ops.sqrt(ops.maximum(variance, VARIANCE_FLOOR))


class AttentiveStatsPooling(nn.Cell):
    """Channel- and context-dependent attentive statistics pooling: (N, T, C) -> (N, 2C).

    Each frame's attention logits see the frame together with the utterance's plain mean
    and standard deviation (global context); the softmax is over T per channel. The
    attention block's 1x1 convolution of [frame, mean, std] is split by input channels
    into a per-frame product and a per-utterance one, so the (N, T, 3C) concatenation is
    never built, and the softmax's normalisation is applied to the (N, 1, C) sums.
    """

    # Its x @ W^T products and its maximum over time may run on the CPU kernels
    # (src/kernels/cells.py use_kernels).
    kernel_products = ("matmul",)
    kernel_time_max = ("time_max",)

    def __init__(self, channels, attention_channels, impl):
        super().__init__()
        self.attention = TDNNBlock(3 * channels, attention_channels, 1, impl=impl)
        self.tanh = nn.Tanh()
        self.logits = TimeConv1d(attention_channels, channels, 1, impl=impl)
        self.matmul = ops.MatMul(transpose_b=True)
        self.time_max = TimeMax()

    def _attention_hidden(self, x, mean, std):
        """The attention TDNN block applied to [x, mean, std] (statistics repeated over T): (N, T, A)."""
        batch, frames, channels = x.shape
        conv = self.attention.conv
        frame_weight, mean_weight, std_weight = ops.split(conv.weight.reshape(conv.out_channels, 3 * channels),
                                                          channels, axis=1)
        frame_part = self.matmul(x.reshape(-1, channels), frame_weight)
        utterance_part = (self.matmul(mean.reshape(batch, channels), mean_weight)
                          + self.matmul(std.reshape(batch, channels), std_weight) + conv.bias)
        hidden = (frame_part.reshape(batch, frames, -1)
                  + repeat_frames(utterance_part.reshape(batch, 1, -1), frames))
        return self.attention.norm(self.attention.relu(hidden))

    def construct(self, x, mask=None):
        """x (N, T, C); mask (N, T, 1) of real frames or None: statistics and softmax over the real frames."""
        if mask is None:
            return self._pool(x, x, x.shape[1], None)
        real = channel_mask(mask, x.shape[2])
        return self._pool(x, x * real, time_sum(real), real)

    def _pool(self, x, real_x, count, real):
        """Pooled (N, 2C) of x (N, T, C); real_x: x with padded frames zeroed, count: real frames
        (a number or (N, 1, C)), real: (N, T, C) mask or None."""
        frames = x.shape[1]
        mean, std = _mean_and_std(time_sum(real_x), time_sum(real_x * real_x), count)
        logits = self.logits(self.tanh(self._attention_hidden(x, mean, std)))
        if real is not None:
            logits = logits * real + (1 - real) * PADDED_LOGIT
        # exp(logit - its maximum over time): the softmax numerators, at most 1.
        peak = ops.stop_gradient(self.time_max(logits))
        numerators = ops.exp(logits - ops.tile(peak, (1, frames, 1)))
        weighted = numerators * x
        mean, std = _mean_and_std(time_sum(weighted), time_sum(weighted * x), time_sum(numerators))
        return ops.concat([mean, std], axis=2).squeeze(1)


class ECAPA_TDNN(nn.Cell):
    """The embedding network: log-mel (N, T, in_channels) -> embeddings (N, emb_size).

    ``impl`` selects the convolution formulation ('shifted' for CPU, 'native' for
    Ascend/GPU); parameters are identical either way. ``accepts_frame_mask``: it embeds
    zero-padded batches exactly given their frame mask (module docstring). ``input_block``:
    the child cell that receives the features.
    """

    accepts_frame_mask = True
    input_block = "layer1"  # the child that receives the features (src/kernels/cells.py use_kernels)

    def __init__(self, in_channels=80, channels=1024, mfa_channels=1536, attention_channels=128,
                 se_channels=128, scale=8, emb_size=192, impl="shifted"):
        super().__init__()
        self.layer1 = TDNNBlock(in_channels, channels, 5, 1, impl)
        self.layer2 = SERes2Block(channels, 3, 2, scale, se_channels, impl)
        self.layer3 = SERes2Block(channels, 3, 3, scale, se_channels, impl)
        self.layer4 = SERes2Block(channels, 3, 4, scale, se_channels, impl)
        self.mfa = TDNNBlock(3 * channels, mfa_channels, 1, impl=impl)
        self.pooling = AttentiveStatsPooling(mfa_channels, attention_channels, impl)
        self.pooling_norm = ChannelBatchNorm(2 * mfa_channels)
        self.fc = nn.Dense(2 * mfa_channels, emb_size)
        self.embedding_norm = ChannelBatchNorm(emb_size)

    def construct(self, features, mask=None):
        """features (N, T, in_channels) -> (N, emb_size); mask (N, T, 1) of real frames (1) and
        end padding (0), or None for unpadded input (see the module docstring)."""
        if mask is not None:
            features = features * channel_mask(mask, features.shape[2])
        out1 = self.layer1(features)
        out2 = self.layer2(out1, mask)
        out3 = self.layer3(out2, mask)
        out4 = self.layer4(out3, mask)
        aggregated = self.mfa.of_concatenation([out2, out3, out4])
        pooled = self.pooling_norm(self.pooling(aggregated, mask))
        return self.embedding_norm(self.fc(pooled))


def check_settings(settings):
    """Why ``settings`` cannot build an ECAPA_TDNN (an error message), or None."""
    if settings.channels % settings.scale:
        return f"channels: {settings.channels} is not divisible by scale {settings.scale}"
    return None


@register_model("ecapa_tdnn", checkpoint_prefix="ecapa", check=check_settings)
def build(settings, impl):
    """ECAPA_TDNN sized by the network settings, using convolution formulation ``impl``."""
    return ECAPA_TDNN(in_channels=settings.in_channels, channels=settings.channels,
                      mfa_channels=settings.mfa_channels, attention_channels=settings.attention_channels,
                      se_channels=settings.se_channels, scale=settings.scale, emb_size=settings.emb_size,
                      impl=impl)
