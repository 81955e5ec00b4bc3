"""ECAPA-TDNN speaker embedding network (Desplanques et al., Interspeech 2020).

log-mel (N, T, 80)
  -> TDNN k=5 (conv, ReLU, BN)                                   (N, T, C)
  -> 3 SE-Res2Blocks, k=3, dilation 2 / 3 / 4, each with residual (N, T, C)
  -> concatenation of the three block outputs, TDNN 1x1          (N, T, C_mfa)
  -> attentive statistics pooling with global context            (N, 2 * C_mfa)
  -> BN -> Dense -> BN                                           (N, emb_size)

Activations are time-major (N, T, C); see src/model/layers.py for why.
"""
from mindspore import nn, ops

from src.model.layers import ChannelBatchNorm, TDNNBlock, TimeConv1d

VARIANCE_FLOOR = 1e-4


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

    def construct(self, x):
        groups = ops.split(x, x.shape[2] // self.scale, axis=2)
        outputs = [groups[0]]
        previous = groups[0]
        for index in range(1, self.scale):
            current = groups[index] if index == 1 else groups[index] + previous
            previous = self.blocks[index - 1](current)
            outputs.append(previous)
        return ops.concat(outputs, axis=2)


class SqueezeExcitation(nn.Cell):
    """Channel gates from the time average: (N, T, C) -> (N, T, C) scaled per channel."""

    def __init__(self, channels, bottleneck, impl):
        super().__init__()
        self.squeeze = TimeConv1d(channels, bottleneck, 1, impl=impl)
        self.excite = TimeConv1d(bottleneck, channels, 1, impl=impl)
        self.relu = nn.ReLU()
        self.sigmoid = nn.Sigmoid()

    def construct(self, x):
        summary = x.mean(axis=1, keep_dims=True)
        gates = self.sigmoid(self.excite(self.relu(self.squeeze(summary))))
        return x * gates


class SERes2Block(nn.Cell):
    """TDNN 1x1 -> Res2Conv -> TDNN 1x1 -> squeeze-excitation, plus the input: (N, T, C) -> (N, T, C)."""

    def __init__(self, channels, kernel_size, dilation, scale, se_channels, impl):
        super().__init__()
        self.tdnn1 = TDNNBlock(channels, channels, 1, impl=impl)
        self.res2 = Res2Conv(channels, kernel_size, dilation, scale, impl)
        self.tdnn2 = TDNNBlock(channels, channels, 1, impl=impl)
        self.se = SqueezeExcitation(channels, se_channels, impl)

    def construct(self, x):
        return self.se(self.tdnn2(self.res2(self.tdnn1(x)))) + x


def _mean_and_std(x, weights):
    """Weighted mean and standard deviation over time.

    x: (N, T, C); weights: (N, T, C) or (N, T, 1), summing to 1 over T.
    Returns two (N, 1, C) tensors.
    """
    mean = (x * weights).sum(axis=1, keepdims=True)
    variance = (x * x * weights).sum(axis=1, keepdims=True) - mean * mean
    return mean, ops.sqrt(ops.clamp(variance, min=VARIANCE_FLOOR))


class AttentiveStatsPooling(nn.Cell):
    """Channel- and context-dependent attentive statistics pooling: (N, T, C) -> (N, 2C).

    Each frame's attention logits see the frame together with the utterance's plain mean
    and standard deviation (global context); the softmax is over T per channel.
    """

    def __init__(self, channels, attention_channels, impl):
        super().__init__()
        self.attention = TDNNBlock(3 * channels, attention_channels, 1, impl=impl)
        self.tanh = nn.Tanh()
        self.logits = TimeConv1d(attention_channels, channels, 1, impl=impl)
        self.softmax = nn.Softmax(axis=1)

    def construct(self, x):
        frames = x.shape[1]
        uniform = ops.ones_like(x[:, :, :1]) / frames
        mean, std = _mean_and_std(x, uniform)
        context = ops.concat([x, mean.broadcast_to(x.shape), std.broadcast_to(x.shape)], axis=2)
        weights = self.softmax(self.logits(self.tanh(self.attention(context))))
        mean, std = _mean_and_std(x, weights)
        return ops.concat([mean, std], axis=2).squeeze(1)


class ECAPA_TDNN(nn.Cell):
    """The embedding network: log-mel (N, T, in_channels) -> embeddings (N, emb_size).

    ``impl`` selects the convolution formulation ('shifted' for CPU, 'native' for
    Ascend/GPU); parameters are identical either way.
    """

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

    def construct(self, features):
        out1 = self.layer1(features)
        out2 = self.layer2(out1)
        out3 = self.layer3(out2)
        out4 = self.layer4(out3)
        aggregated = self.mfa(ops.concat([out2, out3, out4], axis=2))
        pooled = self.pooling_norm(self.pooling(aggregated))
        return self.embedding_norm(self.fc(pooled))


def build_embedding_network(config, impl):
    """ECAPA_TDNN sized by the config's network settings, using conv formulation ``impl``."""
    return ECAPA_TDNN(in_channels=config.in_channels, channels=config.channels,
                      mfa_channels=config.mfa_channels, attention_channels=config.attention_channels,
                      se_channels=config.se_channels, scale=config.scale, emb_size=config.emb_size,
                      impl=impl)


def count_parameters(network):
    """Number of trainable scalars in ``network``."""
    total = 0
    for parameter in network.trainable_params():
        size = 1
        for dim in parameter.shape:
            size *= dim
        total += size
    return total
