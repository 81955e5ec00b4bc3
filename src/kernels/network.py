"""Putting the custom CPU kernels into a built network (the ``cpu_kernels`` setting).

:func:`apply_cpu_kernels` replaces whole cells of the network by the subclasses below, which
hold the same child cells and parameters (src/model/replace.py), so checkpoints and
parameter names do not change:

- each shifted-formulation TDNNBlock padding with zeros (or of kernel size 1) by a
  :class:`KernelTDNNBlock`: a folded inference copy's
  block (src/inference/folding.py) in one kernel call, or in training mode the block in one
  call and its gradient in another; in inference mode without folding it runs as before;
- each shifted-formulation SqueezeExcitation by a :class:`KernelSqueezeExcitation` (one call
  and one for its gradient);
- each TimeConv1d by a :class:`KernelTimeConv1d` and the AttentiveStatsPooling by a
  :class:`KernelAttentiveStatsPooling`, whose products (and the pooling's maximum over time)
  run on oneDNN.

The whole-block kernels pad with zeros, so a block padding by reflection keeps MindSpore's
shifted copies and runs only its product on the kernels (one warning says so).
"""
import logging

from mindspore import ops

from src.config import ConfigError
from src.kernels.cells import (KernelProduct, KernelTimeMax, SqueezeExcitationKernel, TdnnInferenceKernel,
                               TdnnTrainingKernel, set_kernel_threads, unavailable_reason)
from src.model.ecapa_tdnn import AttentiveStatsPooling, SqueezeExcitation
from src.model.layers import ChannelAffine, TDNNBlock, TimeConv1d
from src.model.replace import replace_cells, share_children

LOGGER = logging.getLogger(__name__)


class KernelTimeConv1d(TimeConv1d):
    """TimeConv1d whose products x @ w^T run on oneDNN (float32 or bfloat16 inputs)."""

    def __init__(self, conv, bf16):
        share_children(self, conv)
        self.matmul = KernelProduct(bf16)


class KernelTDNNBlock(TDNNBlock):
    """TDNNBlock run by whole-block kernels.

    A folded block (ChannelAffine norm) is one TdnnInferenceKernel call; an unfolded one in
    training mode is one TdnnTrainingKernel call (output, the activations its gradient needs,
    the batch mean and variance for the moving averages) and one for its gradient. An unfolded
    block in inference mode (validation during training) runs its cells as before.
    ``input_gradient`` False: the block's input is data, so its gradient is not computed (zeros).
    """

    def __init__(self, block, bf16, input_gradient=True):
        share_children(self, block)
        self.folded = isinstance(block.norm, ChannelAffine)
        self.kernel = (TdnnInferenceKernel(block, bf16) if self.folded
                       else TdnnTrainingKernel(block, bf16, input_gradient=input_gradient))

    def construct(self, x):
        if self.folded:
            return self.kernel(x)
        if not self.training:
            return self.norm(self.relu(self.conv(x)))
        out, _, mean, variance = self.kernel(x, self.conv.weight_matrix(), self.conv.bias, self.norm.gamma,
                                             self.norm.beta)
        self.norm.update_moving_statistics(mean, variance, x.shape[0] * x.shape[1])
        return out

    def of_concatenation(self, parts):
        if self.folded or self.training:
            return self.construct(ops.concat(parts, axis=2))
        return self.norm(self.relu(self.conv.of_concatenation(parts)))


class KernelSqueezeExcitation(SqueezeExcitation):
    """SqueezeExcitation in one float32 kernel call, and its gradient in another."""

    def __init__(self, cell):
        share_children(self, cell)
        self.kernel = SqueezeExcitationKernel()

    def construct(self, x):
        return self.kernel(x, self.squeeze.weight_matrix(), self.squeeze.bias, self.excite.weight_matrix(),
                           self.excite.bias)[0]


class KernelAttentiveStatsPooling(AttentiveStatsPooling):
    """AttentiveStatsPooling whose products and maximum over time run on the kernels."""

    def __init__(self, cell, bf16):
        share_children(self, cell)
        self.matmul = KernelProduct(bf16)
        self.time_max = KernelTimeMax()


def reflects(conv):
    """Whether the TimeConv1d ``conv`` pads by reflection (which the whole-block kernels do not)."""
    return conv.padding == "reflect" and conv.kernel_size > 1


def use_kernels(network, bf16=True, input_gradient=True):
    """Replace ``network``'s cells by their kernel subclasses (module docstring), in place; returns
    how many were replaced. Weights are read at this call for the inference kernels, so load
    them first. ``input_gradient`` False: the network's input needs no gradient (training on
    data), so its first cell, when a TDNNBlock, skips it."""
    first = next(iter(network.name_cells().values()), None)

    def kernel_variant(cell):
        if isinstance(cell, (KernelTDNNBlock, KernelSqueezeExcitation, KernelTimeConv1d,
                             KernelAttentiveStatsPooling)):
            return None
        if isinstance(cell, TDNNBlock) and cell.conv.shifted and not reflects(cell.conv):
            return KernelTDNNBlock(cell, bf16, input_gradient=input_gradient or cell is not first)
        if isinstance(cell, SqueezeExcitation) and cell.squeeze.shifted:
            return KernelSqueezeExcitation(cell)
        if isinstance(cell, AttentiveStatsPooling):
            return KernelAttentiveStatsPooling(cell, bf16)
        if isinstance(cell, TimeConv1d):
            return KernelTimeConv1d(cell, bf16)
        return None

    return replace_cells(network, kernel_variant)


def auto_kernels(device, amp="O0"):
    """What ``cpu_kernels: auto`` runs here, and why: ('float32', None) on a CPU run in float32 where the
    kernels can run (built, native bfloat16 instructions), else ('none', the reason)."""
    if device != "CPU":
        return "none", f"the kernels run on CPU, not {device}"
    if amp != "O0":
        return "none", f"the kernels take float32, amp_level is {amp}"
    reason = unavailable_reason()
    return ("none", reason) if reason else ("float32", None)


def apply_cpu_kernels(network, kernels, device, threads=0, amp="O0", input_gradient=True):
    """Run ``network`` on the custom CPU kernels as ``kernels`` says; returns it.

    'auto' (the default) is 'float32' where the kernels can run and 'none' elsewhere
    (:func:`auto_kernels`), said in one log line. 'none' leaves the network as it is.
    'float32' and 'bf16' put in the kernel cells
    (:func:`use_kernels`), whose products take float32 or bfloat16 inputs (float32 sums and
    outputs), forward and backward; ReLU, batch norm and the rest stay float32. Where the
    kernels cannot run (not a CPU run, not built, no AVX512-BF16) it logs a warning and leaves
    the network as it is. ``threads``: the kernels' threads, 0 for all cores. ``amp``: the
    network's mixed-precision level; the kernels take float32 only, so another level on CPU is
    a ConfigError. ``input_gradient`` False (training, where the input is data) lets the first
    block skip the gradient of its input.
    """
    if kernels == "auto":
        kernels, reason = auto_kernels(device, amp)
        LOGGER.info("cpu_kernels auto: %s", "the float32 kernels (src/kernels)" if reason is None
                    else f"MindSpore's own ops ({reason})")
    if kernels == "none":
        return network
    if device == "CPU" and amp != "O0":
        raise ConfigError(f"cpu_kernels: {kernels} needs a float32 network, but amp_level is {amp} "
                          "(set amp_level O0, or cpu_kernels none)")
    reason = unavailable_reason() if device == "CPU" else f"they run on CPU, not {device}"
    if reason is not None:
        LOGGER.warning("cpu_kernels %s unavailable, running MindSpore's own ops: %s", kernels, reason)
        return network
    set_kernel_threads(threads)
    use_kernels(network, bf16=kernels == "bf16", input_gradient=input_gradient)
    mirrored = sum(isinstance(cell, TDNNBlock) and reflects(cell.conv) for _, cell in network.cells_and_names())
    if mirrored:
        LOGGER.warning("cpu_kernels %s: %d blocks pad by reflection, which the block kernels do not; "
                       "they build their shifted copies with MindSpore's ops", kernels, mirrored)
    return network
