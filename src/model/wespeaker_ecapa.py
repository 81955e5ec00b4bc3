"""WeSpeaker's variant of ECAPA-TDNN (wenet-e2e/wespeaker, wespeaker/models/ecapa_tdnn.py),
registered as ``wespeaker_ecapa_tdnn`` so that its published weights can be imported.

It is built from the layers of src/model/ecapa_tdnn.py and differs from that network in:

- Res2Net order: groups 0 .. s-2 go through the group convolutions (group 0 alone, group i
  after adding the previous output) and the last group passes unchanged, placed last;
- aggregation: a 1x1 convolution followed by ReLU, without batch norm;
- pooling: the attention is 1x1 conv -> tanh -> 1x1 conv (no ReLU or batch norm); with global
  context (WeSpeaker's ``_GLOB`` models) it sees the mean and the unbiased standard deviation
  sqrt(var + 1e-7) of the utterance; the pooled variance is floored at ``variance_floor``
  (WeSpeaker: 1e-7);
- no batch norm after the embedding layer unless ``embedding_norm`` (WeSpeaker's ``emb_bn``).

Squeeze-excitation is WeSpeaker's pair of dense layers on the time average, which is what
the 1x1 convolutions of SqueezeExcitation compute. Convolutions pad with zeros.

>>> network = WeSpeakerEcapaTdnn(channels=16, mfa_channels=24, attention_channels=8,
...                              se_channels=4, scale=4, emb_size=8)              # doctest: +SKIP
>>> network(Tensor(np.zeros((2, 100, 80), np.float32))).shape                     # doctest: +SKIP
(2, 8)
"""
from mindspore import nn, ops

from src.model.ecapa_tdnn import (SERes2Block, TimeMax, check_settings, context_product, network_sizes,
                                  softmax_statistics)
from src.model.layers import ChannelBatchNorm, TDNNBlock, TimeConv1d, time_sum
from src.model.registry import register_model

# Added to the context variance before its square root (WeSpeaker's pooling_layers.ASTP).
CONTEXT_EPSILON = 1e-7


class LastGroupRes2Conv(nn.Cell):
    """Res2Net convolution passing its last group unchanged: (N, T, C) -> (N, T, C).

    With groups x_0..x_{s-1}: y_0 = K_0(x_0), y_i = K_i(x_i + y_{i-1}) for 0 < i < s-1, and
    y_{s-1} = x_{s-1}; K_i is a TDNN block of width C / scale.
    """

    def __init__(self, channels, kernel_size, dilation, scale, impl, padding="zeros"):
        super().__init__()
        if channels % scale or scale < 2:
            raise ValueError(f"channels {channels} not divisible by scale {scale} (>= 2)")
        self.scale = scale
        width = channels // scale
        self.blocks = nn.CellList([TDNNBlock(width, width, kernel_size, dilation, impl, padding)
                                   for _ in range(scale - 1)])

    def construct(self, x):
        groups = ops.split(x, x.shape[2] // self.scale, axis=2)
        outputs = []
        for index in range(self.scale - 1):
            group = groups[0] if index == 0 else groups[index] + outputs[-1]
            outputs.append(self.blocks[index](group))
        outputs.append(groups[self.scale - 1])
        return ops.concat(outputs, axis=2)


class TanhAttentivePooling(nn.Cell):
    """Attentive statistics pooling with a tanh attention: (N, T, C) -> (N, 2C).

    Logits are logits(tanh(attention(z))) with z = x, or with ``global_context`` z = [x, mean,
    std] where mean and std = sqrt(unbiased variance + CONTEXT_EPSILON) are the utterance's plain
    statistics repeated over time. The softmax is over T per channel; the output is the
    attention-weighted mean and standard deviation, variances floored at ``variance_floor``.
    """

    def __init__(self, channels, attention_channels, impl, global_context=True, variance_floor=1e-7):
        super().__init__()
        self.global_context = global_context
        self.variance_floor = variance_floor
        self.attention = TimeConv1d((3 if global_context else 1) * channels, attention_channels, 1, impl=impl)
        self.tanh = nn.Tanh()
        self.logits = TimeConv1d(attention_channels, channels, 1, impl=impl)
        self.matmul = ops.MatMul(transpose_b=True)
        self.time_max = TimeMax()

    def construct(self, x):
        if self.global_context:
            frames = x.shape[1]
            mean = time_sum(x) / frames
            variance = (time_sum(x * x) / frames - mean * mean) * (frames / (frames - 1))
            hidden = context_product(self.attention, x, mean, ops.sqrt(variance + CONTEXT_EPSILON), self.matmul)
        else:
            hidden = self.attention(x)
        logits = self.logits(self.tanh(hidden))
        return softmax_statistics(x, logits, ops.stop_gradient(self.time_max(logits)), self.variance_floor)


class WeSpeakerEcapaTdnn(nn.Cell):
    """WeSpeaker's ECAPA-TDNN: log-mel (N, T, in_channels) -> embeddings (N, emb_size).

    Sizes as ECAPA_TDNN's (WeSpeaker fixes mfa_channels 1536, attention_channels and
    se_channels 128, scale 8); ``impl`` the convolution formulation.
    """

    def __init__(self, in_channels=80, channels=512, mfa_channels=1536, attention_channels=128,
                 se_channels=128, scale=8, emb_size=192, impl="shifted", global_context=True, variance_floor=1e-7,
                 embedding_norm=False):
        super().__init__()
        self.layer1 = TDNNBlock(in_channels, channels, 5, 1, impl)
        self.layer2 = SERes2Block(channels, 3, 2, scale, se_channels, impl, res2=LastGroupRes2Conv)
        self.layer3 = SERes2Block(channels, 3, 3, scale, se_channels, impl, res2=LastGroupRes2Conv)
        self.layer4 = SERes2Block(channels, 3, 4, scale, se_channels, impl, res2=LastGroupRes2Conv)
        self.mfa = TimeConv1d(3 * channels, mfa_channels, 1, impl=impl)
        self.relu = nn.ReLU()
        self.pooling = TanhAttentivePooling(mfa_channels, attention_channels, impl, global_context, variance_floor)
        self.pooling_norm = ChannelBatchNorm(2 * mfa_channels)
        self.fc = nn.Dense(2 * mfa_channels, emb_size)
        self.embedding_norm = ChannelBatchNorm(emb_size) if embedding_norm else nn.Identity()

    def construct(self, features):
        out1 = self.layer1(features)
        out2 = self.layer2(out1)
        out3 = self.layer3(out2)
        out4 = self.layer4(out3)
        aggregated = self.relu(self.mfa.of_concatenation([out2, out3, out4]))
        return self.embedding_norm(self.fc(self.pooling_norm(self.pooling(aggregated))))


def check_wespeaker_settings(settings):
    """Why ``settings`` cannot build a WeSpeakerEcapaTdnn (an error message), or None."""
    if settings.scale < 2:
        return f"scale: {settings.scale}; the wespeaker_ecapa_tdnn model needs at least 2 groups"
    if settings.padding != "zeros":
        return "padding: the wespeaker_ecapa_tdnn model pads with zeros"
    return check_settings(settings)


@register_model("wespeaker_ecapa_tdnn", checkpoint_prefix="wespeaker_ecapa", check=check_wespeaker_settings)
def build(settings, impl):
    """WeSpeakerEcapaTdnn sized by the network settings, using convolution formulation ``impl``."""
    return WeSpeakerEcapaTdnn(**network_sizes(settings), impl=impl, global_context=settings.global_context,
                              variance_floor=settings.variance_floor, embedding_norm=settings.embedding_norm)
