"""Inference copies of embedding networks with batch norm folded into the linear layers.

In inference mode a batch norm is a per-channel affine map ``y = s * x + b`` with
``s = gamma / sqrt(moving_variance + eps)`` and ``b = beta - moving_mean * s``. A folded copy
computes the same function as the trained network with these maps merged into the
neighbouring convolution or dense layer wherever that is exact, and with every remaining
one stored as constants (so the graph needs no square root of parameters at run time).

What is exact
-------------
* **conv -> ReLU -> BN** (``TDNNBlock``): the BN follows the ReLU, so it cannot move into
  the convolution as it would for conv -> BN. ReLU is positively homogeneous,
  ``|s| * relu(z) = relu(|s| * z)``, so the magnitude ``|s|`` is folded into the convolution's
  output side (weights and bias of each output channel scaled by ``|s|``) and
  ``sign(s) * relu(.) + b`` is what stays: a bias addition, plus a sign flip only for the
  channels whose ``s`` is negative. Folding ``b`` into the *next* layer instead would be
  exact only for a 1x1 convolution or a dense layer that is the output's only consumer: a
  kernel-k convolution pads with zeros, and ``W @ b`` would be wrongly added at the padded
  frames; in ECAPA-TDNN every block output also reaches residual sums, Res2Net groups,
  squeeze-excitation or the pooling, which are not linear in it.
* **BN -> Dense -> BN** (ECAPA-TDNN's embedding layer): both maps merge into the dense
  layer, ``W' = diag(s2) W diag(s1)`` and ``c' = s2 * (W b1 + c) + b2`` (s2 = 1, b2 = 0
  without the last BN).

Rules are registered per model name (:func:`register_folding`); a model without a rule is
not folded (:func:`fold_batch_norm` returns None) and is exported and evaluated as it is.
"""
import numpy as np
from mindspore import Tensor, nn

from src.model import build_embedding_network
from src.model.registry import registering
from src.model.layers import ChannelAffine, ChannelBatchNorm, TDNNBlock

FOLDING_RULES = {}


def register_folding(model_name):
    """Decorator registering ``rule(network)``, which folds a copy of ``model_name`` in place."""
    return registering(FOLDING_RULES, model_name, "folding rule of model")


def norm_affine(norm):
    """``(s, b)`` float64 (C,) of a ChannelBatchNorm in inference mode: ``norm(x) = s * x + b``."""
    mean = norm.moving_mean.asnumpy().astype(np.float64)
    variance = norm.moving_variance.asnumpy().astype(np.float64)
    gamma = norm.gamma.asnumpy().astype(np.float64)
    scale = gamma / np.sqrt(variance + norm.eps)
    return scale, norm.beta.asnumpy().astype(np.float64) - mean * scale


def _set(parameter, values):
    parameter.set_data(Tensor(np.asarray(values, dtype=np.float32)))


def fold_tdnn_block(block):
    """Fold ``block.norm`` into ``block.conv`` and a ChannelAffine (see the module docstring)."""
    scale, shift = norm_affine(block.norm)
    magnitude = np.abs(scale)
    conv = block.conv
    _set(conv.weight, conv.weight.asnumpy() * magnitude.reshape(-1, 1, 1, 1))
    if conv.has_bias:
        _set(conv.bias, conv.bias.asnumpy() * magnitude)
    signs = np.where(scale < 0, -1.0, 1.0)
    block.norm = ChannelAffine(shift, signs if (signs < 0).any() else None)


def fold_tdnn_blocks(network):
    """Fold every TDNNBlock of ``network`` in place; returns how many were folded."""
    blocks = [cell for _, cell in network.cells_and_names() if isinstance(cell, TDNNBlock)]
    for block in blocks:
        fold_tdnn_block(block)
    return len(blocks)


def fold_norm_dense_norm(before, dense, after=None):
    """Merge ``before`` (BN), ``dense`` (nn.Dense with bias) and ``after`` (BN, or None) into ``dense``."""
    scale_in, shift_in = norm_affine(before)
    scale_out, shift_out = norm_affine(after) if after is not None else (np.ones(dense.out_channels), 0.0)
    weight = dense.weight.asnumpy().astype(np.float64)
    bias = dense.bias.asnumpy().astype(np.float64)
    _set(dense.bias, scale_out * (weight @ shift_in + bias) + shift_out)
    _set(dense.weight, scale_out[:, None] * weight * scale_in[None, :])


@register_folding("ecapa_tdnn")
@register_folding("wespeaker_ecapa_tdnn")
def _fold_ecapa_tdnn(network):
    fold_tdnn_blocks(network)
    after = network.embedding_norm if isinstance(network.embedding_norm, ChannelBatchNorm) else None
    fold_norm_dense_norm(network.pooling_norm, network.fc, after)
    network.pooling_norm = nn.Identity()
    network.embedding_norm = nn.Identity()


def has_folding(settings):
    """Whether the configured model has a folding rule."""
    return settings.model in FOLDING_RULES


def fold_batch_norm(network, settings, impl):
    """A folded inference copy of ``network`` (built from ``settings`` with ``impl``), or None.

    ``network`` is left unchanged; the copy is in inference mode and maps the same (N, T,
    in_channels) features to the same (N, emb_size) embeddings up to float rounding. None
    when the configured model has no folding rule. A network containing a batch norm that
    the rule does not remove raises RuntimeError (a rule that does not fit its model).
    """
    if not has_folding(settings):
        return None
    folded = build_embedding_network(settings, impl)
    trained = network.parameters_dict()
    for name, parameter in folded.parameters_dict().items():
        parameter.set_data(Tensor(trained[name].asnumpy()))
    FOLDING_RULES[settings.model](folded)
    for name, parameter in folded.parameters_and_names():
        parameter.name = name  # cells set in by the rule named their parameters without their path
    left = [name for name, cell in folded.cells_and_names() if isinstance(cell, ChannelBatchNorm)]
    if left:
        raise RuntimeError(f"the folding rule of {settings.model!r} left batch norms: {', '.join(left)}")
    folded.model_settings = {**folded.model_settings, "fold_batch_norm": True}
    folded.set_train(False)
    return folded

