"""ECAPA-TDNN speaker embedding network (Desplanques et al., Interspeech 2020).

log-mel (N, T, 80)
  -> TDNN k=5 (conv, ReLU, BN)                                   (N, T, C)
  -> 3 SE-Res2Blocks, k=3, dilation 2 / 3 / 4, each with residual (N, T, C)
  -> concatenation of the three block outputs, TDNN 1x1          (N, T, C_mfa)
  -> attentive statistics pooling with global context            (N, 2 * C_mfa)
  -> BN -> Dense -> BN (optional)                                (N, emb_size)

Activations are time-major (N, T, C); src/model/layers.py says why, and why sums over time
and repetitions over time are batched products with ones. Zero-padded batches with a frame
mask run through the variants of src/model/masked.py; the CPU kernels (src/kernels) replace
some cells of a built network. Neither changes the classes here or their parameters.

>>> network = ECAPA_TDNN(channels=16, mfa_channels=24, attention_channels=8, se_channels=4,
...                      scale=4, emb_size=8)                                  # doctest: +SKIP
>>> network(Tensor(np.zeros((2, 100, 80), np.float32))).shape                  # doctest: +SKIP
(2, 8)
"""
from mindspore import nn, ops

from src.model.layers import ChannelBatchNorm, TDNNBlock, TimeConv1d, repeat_frames, time_sum
from src.model.registry import register_model


class Res2Conv(nn.Cell):
    """Res2Net multi-scale convolution: (N, T, C) -> (N, T, C).

    The channels are split into ``scale`` groups x_0..x_{s-1}; y_0 = x_0,
    y_1 = K_1(x_1), y_i = K_i(x_i + y_{i-1}), where K_i is a TDNN block of width C / scale.
    """

    def __init__(self, channels, kernel_size, dilation, scale, impl, padding="zeros"):
        super().__init__()
        if channels % scale:
            raise ValueError(f"channels {channels} not divisible by scale {scale}")
        self.scale = scale
        width = channels // scale
        self.blocks = nn.CellList([TDNNBlock(width, width, kernel_size, dilation, impl, padding)
                                   for _ in range(scale - 1)])

    def construct(self, x):
        groups = ops.split(x, x.shape[2] // self.scale, axis=2)
        outputs = [groups[0]]
        for index in range(1, self.scale):
            group = groups[index] if index == 1 else groups[index] + outputs[-1]
            outputs.append(self.blocks[index - 1](group))
        return ops.concat(outputs, axis=2)


class SqueezeExcitation(nn.Cell):
    """Channel gates from the time average: (N, T, C) -> (N, T, C) scaled per channel."""

    def __init__(self, channels, bottleneck, impl):
        super().__init__()
        self.squeeze = TimeConv1d(channels, bottleneck, 1, impl=impl)
        self.excite = TimeConv1d(bottleneck, channels, 1, impl=impl)
        self.relu = nn.ReLU()
        self.sigmoid = nn.Sigmoid()

    def gates(self, average):
        """Gates (N, 1, C) in (0, 1) of the time average (N, 1, C)."""
        return self.sigmoid(self.excite(self.relu(self.squeeze(average))))

    def construct(self, x):
        frames = x.shape[1]
        return x * repeat_frames(self.gates(time_sum(x) / frames), frames)


class SERes2Block(nn.Cell):
    """TDNN 1x1 -> Res2Conv -> TDNN 1x1 -> squeeze-excitation, plus the input: (N, T, C) -> (N, T, C).

    ``res2`` is the class of the multi-scale convolution (a variant's own, src/model/wespeaker_ecapa.py)."""

    def __init__(self, channels, kernel_size, dilation, scale, se_channels, impl, padding="zeros", res2=Res2Conv):
        super().__init__()
        self.tdnn1 = TDNNBlock(channels, channels, 1, impl=impl)
        self.res2 = res2(channels, kernel_size, dilation, scale, impl, padding)
        self.tdnn2 = TDNNBlock(channels, channels, 1, impl=impl)
        self.se = SqueezeExcitation(channels, se_channels, impl)

    def construct(self, x):
        return self.se(self.tdnn2(self.res2(self.tdnn1(x)))) + x


def mean_and_std(weighted_sum, weighted_square_sum, total_weight, variance_floor):
    """Mean and standard deviation (N, 1, C) over time from the weighted sums of x and x * x
    (N, 1, C) and the sum of the weights (N, 1, C, or a number of frames). The variance is
    floored at ``variance_floor`` by a maximum, which MindSpore's ONNX exporter converts."""
    mean = weighted_sum / total_weight
    variance = weighted_square_sum / total_weight - mean * mean
    return mean, ops.sqrt(ops.maximum(variance, variance_floor))


def context_product(conv, x, mean, std, matmul):
    """The 1x1 TimeConv1d ``conv`` over 3C channels applied to [x, mean, std], the statistics (N, 1, C)
    repeated over the frames of x (N, T, C): (N, T, C_out). ``matmul`` multiplies by a transposed
    matrix. The weight is split by input channels into a per-frame product and a per-utterance
    one, so the (N, T, 3C) concatenation is never built."""
    batch, frames, channels = x.shape
    weight = conv.weight.reshape(conv.out_channels, 3 * channels).astype(x.dtype)
    frame_weight, mean_weight, std_weight = ops.split(weight, channels, axis=1)
    frame_part = matmul(x.reshape(-1, channels), frame_weight)
    utterance_part = (matmul(mean.reshape(batch, channels), mean_weight)
                      + matmul(std.reshape(batch, channels), std_weight) + conv.bias.astype(x.dtype))
    return frame_part.reshape(batch, frames, -1) + repeat_frames(utterance_part.reshape(batch, 1, -1), frames)


def softmax_statistics(x, logits, peak, variance_floor):
    """Mean and standard deviation of x (N, T, C) under the softmax over time of ``logits`` (N, T, C),
    concatenated: (N, 2C). ``peak`` (N, 1, C) is the largest logit per channel, without gradient; the
    softmax's normalisation is applied to the (N, 1, C) sums."""
    numerators = ops.exp(logits - ops.tile(peak, (1, x.shape[1], 1)))
    weighted = numerators * x
    mean, std = mean_and_std(time_sum(weighted), time_sum(weighted * x), time_sum(numerators), variance_floor)
    return ops.concat([mean, std], axis=2).squeeze(1)


class AttentiveStatsPooling(nn.Cell):
    """Channel- and context-dependent attentive statistics pooling: (N, T, C) -> (N, 2C).

    Each frame's attention logits see the frame together with the utterance's plain mean
    and standard deviation (global context); the softmax is over T per channel, and the
    output is the attention-weighted mean and standard deviation. Variances are floored at
    ``variance_floor``.
    """

    def __init__(self, channels, attention_channels, impl, variance_floor=1e-4):
        super().__init__()
        self.variance_floor = variance_floor
        self.attention = TDNNBlock(3 * channels, attention_channels, 1, impl=impl)
        self.tanh = nn.Tanh()
        self.logits = TimeConv1d(attention_channels, channels, 1, impl=impl)
        self.matmul = ops.MatMul(transpose_b=True)
        self.time_max = TimeMax()

    def attention_hidden(self, x, mean, std):
        """The attention TDNN block of [x, mean, std] with the statistics (N, 1, C) repeated over
        time: (N, T, A) (see :func:`context_product`)."""
        return self.attention.norm(self.attention.relu(context_product(self.attention.conv, x, mean, std,
                                                                       self.matmul)))

    def attentive_statistics(self, x, logits):
        """Mean and standard deviation of x (N, T, C) under the softmax over time of ``logits``: (N, 2C)."""
        return softmax_statistics(x, logits, ops.stop_gradient(self.time_max(logits)), self.variance_floor)

    def construct(self, x):
        mean, std = mean_and_std(time_sum(x), time_sum(x * x), x.shape[1], self.variance_floor)
        logits = self.logits(self.tanh(self.attention_hidden(x, mean, std)))
        return self.attentive_statistics(x, logits)


class TimeMax(nn.Cell):
    """The largest value over frames: (N, T, C) -> (N, 1, C)."""

    def construct(self, x):
        return x.max(axis=1, keepdims=True)


class ECAPA_TDNN(nn.Cell):
    """The embedding network: log-mel (N, T, in_channels) -> embeddings (N, emb_size).

    ``impl`` selects the convolution formulation ('shifted' for CPU, 'native' for
    Ascend/GPU); parameters are identical either way. ``padding`` ('zeros' or 'reflect') fills
    the frames past the ends of the kernel-k convolutions, ``variance_floor`` bounds the
    pooling's variances from below, and ``embedding_norm`` False leaves out the last batch
    norm; the defaults are the paper's network, SpeechBrain's is ('reflect', 1e-12, False).
    """

    def __init__(self, in_channels=80, channels=1024, mfa_channels=1536, attention_channels=128,
                 se_channels=128, scale=8, emb_size=192, impl="shifted", padding="zeros", variance_floor=1e-4,
                 embedding_norm=True):
        super().__init__()
        self.padding = padding
        self.layer1 = TDNNBlock(in_channels, channels, 5, 1, impl, padding)
        self.layer2 = SERes2Block(channels, 3, 2, scale, se_channels, impl, padding)
        self.layer3 = SERes2Block(channels, 3, 3, scale, se_channels, impl, padding)
        self.layer4 = SERes2Block(channels, 3, 4, scale, se_channels, impl, padding)
        self.mfa = TDNNBlock(3 * channels, mfa_channels, 1, impl=impl)
        self.pooling = AttentiveStatsPooling(mfa_channels, attention_channels, impl, variance_floor)
        self.pooling_norm = ChannelBatchNorm(2 * mfa_channels)
        self.fc = nn.Dense(2 * mfa_channels, emb_size)
        self.embedding_norm = ChannelBatchNorm(emb_size) if embedding_norm else nn.Identity()

    def construct(self, features):
        out1 = self.layer1(features)
        out2 = self.layer2(out1)
        out3 = self.layer3(out2)
        out4 = self.layer4(out3)
        aggregated = self.mfa.of_concatenation([out2, out3, out4])
        pooled = self.pooling_norm(self.pooling(aggregated))
        return self.embedding_norm(self.fc(pooled))


def check_settings(settings):
    """Why the network sizes of ``settings`` cannot build the blocks (an error message), or None."""
    if settings.channels % settings.scale:
        return f"channels: {settings.channels} is not divisible by scale {settings.scale}"
    return None


def check_ecapa_settings(settings):
    """Why ``settings`` cannot build an ECAPA_TDNN (an error message), or None."""
    if not settings.global_context:
        return "global_context: the ecapa_tdnn model's pooling always uses it"
    return check_settings(settings)


def network_sizes(settings):
    """The size arguments of ECAPA_TDNN (and of its variants) from the network settings."""
    return dict(in_channels=settings.in_channels, channels=settings.channels, mfa_channels=settings.mfa_channels,
                attention_channels=settings.attention_channels, se_channels=settings.se_channels,
                scale=settings.scale, emb_size=settings.emb_size)


@register_model("ecapa_tdnn", checkpoint_prefix="ecapa", check=check_ecapa_settings)
def build(settings, impl):
    """ECAPA_TDNN sized by the network settings, using convolution formulation ``impl``."""
    return ECAPA_TDNN(**network_sizes(settings), impl=impl, padding=settings.padding,
                      variance_floor=settings.variance_floor, embedding_norm=settings.embedding_norm)
