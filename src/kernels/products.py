"""bfloat16 matrix products as a MindSpore Cell, on the kernels of bf16_matmul.cc.

``Bf16Product()(x, w)`` is ``x @ w.T`` for float32 x (R, K) and w (O, K), giving float32
(R, O): the inputs are rounded to bfloat16 and the products accumulate in float32, so
each output has a relative error of about 2**-8 times the size of the terms it sums. The
gradients (dx = dy @ w, dw = dy.T @ x) are bfloat16 products too, as under PyTorch's
bf16 autocast. The kernels run on MindSpore's CPU backend only.

``unavailable_reason()`` says why the kernels cannot run here (not built, no native
bfloat16 instructions, not a CPU run), or None when they can.

Example:
    >>> product = Bf16Product()                      # doctest: +SKIP
    >>> product(Tensor(x), Tensor(w)).shape          # x (6, 4), w (3, 4)  # doctest: +SKIP
    (6, 3)
"""
import ctypes
import functools
import os

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from src.kernels.build import LIBRARY


@functools.lru_cache(maxsize=None)
def _library():
    """The kernel library loaded with ctypes (the same copy MindSpore's Custom ops use)."""
    return ctypes.CDLL(LIBRARY)


def unavailable_reason(library=LIBRARY):
    """Why the bfloat16 kernels cannot run on this machine, or None if they can."""
    if not os.path.isfile(library):
        return f"{library} is not built (run: python -m src.kernels.build)"
    try:
        native = ctypes.CDLL(library).EcapaKernelsNativeBf16()
    except OSError as error:
        return f"{library} does not load: {error}"
    if not native:
        return "this CPU has no native bfloat16 instructions (AVX512-BF16 or AMX)"
    return None


def set_kernel_threads(threads):
    """Threads the kernels' parallel loops use (the run's num_threads, or all cores for 0)."""
    _library().EcapaKernelsSetThreads(int(threads) if threads > 0 else os.cpu_count() or 1)


def _custom(function, outputs=1):
    """The Custom op of kernel ``function`` with ``outputs`` outputs; their shapes and types come
    from the library's <function>InferShape / InferType, which MindSpore can call again for
    dynamic shapes."""
    op = ops.Custom(f"{LIBRARY}:{function}", out_shape=None, out_dtype=None, func_type="aot")
    op.add_prim_attr("reg_op_name", function)
    if outputs > 1:
        op.add_prim_attr("multi_output", True)
    return op


def _geometry(conv, bf16=True):
    """The kernels' int32 (3,) description of a TimeConv1d: kernel size, dilation, bfloat16 or not."""
    return Tensor(np.array([conv.kernel_size, conv.dilation, int(bf16)], np.int32))


class Bf16Product(nn.Cell):
    """x (R, K) @ w (O, K)^T -> (R, O) in bfloat16 with float32 accumulation, float32 in and out."""

    def __init__(self):
        super().__init__()
        self.forward = _custom("EcapaMatMulNT")
        self.input_gradient = _custom("EcapaMatMulNN")
        self.weight_gradient = _custom("EcapaMatMulTN")

    def construct(self, x, w):
        return self.forward(x, w)

    def bprop(self, x, w, out, dout):
        return self.input_gradient(dout, w), self.weight_gradient(dout, x)


class Bf16TdnnInference(nn.Cell):
    """A folded inference TDNNBlock in one kernel call: (N, T, C_in) -> (N, T, C_out).

    ``relu(conv(x) + bias) * scale + shift`` with the weights, bias and ChannelAffine of
    ``block`` (see src/inference/folding.py) copied when the cell is made. The convolution's
    time-shifted copies are built by the kernel while it rounds x to bfloat16, and the bias,
    ReLU and affine map are one pass over the product.
    """

    def __init__(self, block):
        super().__init__()
        conv, affine = block.conv, block.norm
        weight = conv.weight.asnumpy()  # (C_out, C_in, 1, k)
        out_channels = weight.shape[0]
        matrix = weight[:, :, 0, :].transpose(0, 2, 1).reshape(out_channels, -1)
        bias = conv.bias.asnumpy() if conv.has_bias else np.zeros(out_channels, np.float32)
        scale = affine.scale.asnumpy() if affine.has_scale else np.ones(out_channels, np.float32)
        epilogue = np.stack([bias, scale, affine.shift.asnumpy()]).astype(np.float32)
        self.weight = Parameter(Tensor(np.ascontiguousarray(matrix, np.float32)), name="weight", requires_grad=False)
        self.epilogue = Parameter(Tensor(epilogue), name="epilogue", requires_grad=False)
        self.geometry = _geometry(conv)
        self.kernel = _custom("EcapaTdnnInference")

    def construct(self, x):
        return self.kernel(x, self.weight, self.epilogue, self.geometry)


class Bf16TdnnTraining(nn.Cell):
    """A training-mode TDNNBlock in one kernel call, and its gradient in another.

    ``(x (N, T, C_in), weight (C_out, k * C_in), bias, gamma, beta (C_out,))`` ->
    ``(out (N, T, C_out), activations (N, T, C_out), mean (C_out,), variance (C_out,))``:
    out = gamma * (r - mean) / sqrt(variance + eps) + beta with r = relu(conv(x) + bias)
    (the activations, kept for the gradient) and the batch mean and biased variance of r.
    The convolution's products are bfloat16 with float32 sums, forward and backward; the
    ReLU, batch norm and their gradients are float32 passes of the same calls.
    """

    def __init__(self, block):
        super().__init__()
        self.geometry = _geometry(block.conv)
        self.eps = Tensor(np.array([block.norm.eps], np.float32))
        self.forward = _custom("EcapaTdnnTraining", outputs=4)
        self.gradient = _custom("EcapaTdnnTrainingGrad", outputs=5)

    def construct(self, x, weight, bias, gamma, beta):
        return self.forward(x, weight, bias, gamma, beta, self.eps, self.geometry)

    def bprop(self, x, weight, bias, gamma, beta, out, dout):
        _, activations, mean, variance = out
        return self.gradient(x, weight, gamma, activations, mean, variance, dout[0], self.eps, self.geometry)


def use_bf16_kernels(network):
    """Swap ``network``'s products for bfloat16 ones, in place; returns how many cells changed.

    Every product named by a cell's ``bf16_products`` becomes a Bf16Product. Each TDNNBlock
    with the shifted formulation gets a whole-block kernel: Bf16TdnnInference in a folded
    inference copy (src/inference/folding.py), else Bf16TdnnTraining for training mode.
    """
    from src.inference.folding import ChannelAffine
    from src.model.layers import TDNNBlock

    changed = 0
    for _, cell in network.cells_and_names():
        for attribute in getattr(cell, "bf16_products", ()):
            setattr(cell, attribute, Bf16Product())
            changed += 1
    for _, cell in list(network.cells_and_names()):
        if not (isinstance(cell, TDNNBlock) and cell.conv.shifted):
            continue
        if isinstance(cell.norm, ChannelAffine):
            cell.inference_kernel = Bf16TdnnInference(cell)
        else:
            cell.training_kernel = Bf16TdnnTraining(cell)
        changed += 1
    return changed
