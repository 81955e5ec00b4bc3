"""ECAPA-TDNN on zero-padded batches with a frame mask, for static-shape graphs.

``with_frame_mask(network)`` returns a cell computing ``(features (N, T, C_in), mask (N, T, 1))
-> (N, emb_size)`` for utterances zero-padded at the end to a common length T; ``mask`` is 1 at
real frames and 0 at padding. Every step that mixes frames then sees exactly what it sees in
the unpadded utterance: the input of each kernel-k convolution is zero past the real frames
(as its own zero padding is), the time averages of squeeze-excitation and of the pooling
statistics run over the real frames only, and the attention softmax gives padded frames
weight 0. The embeddings equal those of the unpadded utterances up to float rounding, so
one compiled graph can serve every length up to T (src/evaluation/embeddings.py, the
``buckets`` extraction graphs). This holds in inference mode; in training mode batch norm
would count the padded frames in its batch statistics.

The network's frame-mixing cells are replaced, in place, by the subclasses below, which
hold the same child cells and parameters (src/model/replace.py); the network is then used
through the returned cell.
"""
from mindspore import nn, ops

from src.model.ecapa_tdnn import (ECAPA_TDNN, AttentiveStatsPooling, Res2Conv, SERes2Block, SqueezeExcitation,
                                  mean_and_std)
from src.model.layers import repeat_frames, time_sum
from src.model.replace import replace_cells, share_children

# Attention logit of padded frames: exp(-1e4 - max) is 0 in float16 and float32.
PADDED_LOGIT = -1e4


def channel_mask(mask, channels):
    """A frame mask (N, T, 1) repeated over ``channels``: (N, T, channels), for same-shape products."""
    return ops.tile(mask, (1, 1, channels))


class MaskedRes2Conv(Res2Conv):
    """Res2Conv whose group convolutions see zeros past the real frames."""

    def __init__(self, cell):
        share_children(self, cell)

    def construct(self, x, mask):
        width = x.shape[2] // self.scale
        group_mask = channel_mask(mask, width)
        groups = ops.split(x * channel_mask(mask, x.shape[2]), width, axis=2)
        outputs = [groups[0]]
        for index in range(1, self.scale):
            group = groups[index] if index == 1 else groups[index] + outputs[-1]
            outputs.append(self.blocks[index - 1](group) * group_mask)
        return ops.concat(outputs, axis=2)


class MaskedSqueezeExcitation(SqueezeExcitation):
    """SqueezeExcitation whose time average is over the real frames."""

    def __init__(self, cell):
        share_children(self, cell)

    def construct(self, x, mask):
        real = channel_mask(mask, x.shape[2])
        return x * repeat_frames(self.gates(time_sum(x * real) / time_sum(real)), x.shape[1])


class MaskedSERes2Block(SERes2Block):
    """SERes2Block passing the frame mask to its Res2Conv and squeeze-excitation."""

    def __init__(self, cell):
        share_children(self, cell)

    def construct(self, x, mask):
        return self.se(self.tdnn2(self.res2(self.tdnn1(x), mask)), mask) + x


class MaskedAttentiveStatsPooling(AttentiveStatsPooling):
    """AttentiveStatsPooling whose statistics and softmax cover the real frames only."""

    def __init__(self, cell):
        share_children(self, cell)

    def construct(self, x, mask):
        real = channel_mask(mask, x.shape[2])
        real_x = x * real
        mean, std = mean_and_std(time_sum(real_x), time_sum(real_x * real_x), time_sum(real), self.variance_floor)
        logits = self.logits(self.tanh(self.attention_hidden(x, mean, std)))
        return self.attentive_statistics(x, logits * real + (1 - real) * PADDED_LOGIT)


_MASKED = ((SERes2Block, MaskedSERes2Block), (Res2Conv, MaskedRes2Conv),
           (SqueezeExcitation, MaskedSqueezeExcitation), (AttentiveStatsPooling, MaskedAttentiveStatsPooling))


def _masked_variant(cell):
    for plain, masked in _MASKED:
        if isinstance(cell, plain) and not isinstance(cell, masked):
            return masked(cell)
    return None


class MaskedEcapaTdnn(nn.Cell):
    """``(features, mask) -> embeddings`` of an ECAPA_TDNN whose cells were made masked."""

    def __init__(self, network):
        super().__init__(auto_prefix=False)
        self.network = network

    def construct(self, features, mask):
        net = self.network
        out1 = net.layer1(features * channel_mask(mask, features.shape[2]))
        out2 = net.layer2(out1, mask)
        out3 = net.layer3(out2, mask)
        out4 = net.layer4(out3, mask)
        aggregated = net.mfa.of_concatenation([out2, out3, out4])
        pooled = net.pooling_norm(net.pooling(aggregated, mask))
        return net.embedding_norm(net.fc(pooled))


def supports_frame_mask(network):
    """Whether :func:`with_frame_mask` can serve ``network``: an ECAPA_TDNN padding with zeros
    (a mirrored frame past an utterance's end cannot be taken from the zero-padded batch)."""
    return isinstance(network, ECAPA_TDNN) and network.padding == "zeros"


def with_frame_mask(network):
    """The cell embedding zero-padded batches of ``network`` (an ECAPA_TDNN) given their frame mask.

    ``network``'s frame-mixing cells are replaced in place (module docstring).
    """
    if not supports_frame_mask(network):
        raise ValueError(f"{type(network).__name__} with padding {getattr(network, 'padding', None)!r} "
                         "has no frame-mask variant")
    replace_cells(network, _masked_variant)
    return MaskedEcapaTdnn(network)
