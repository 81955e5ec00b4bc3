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


def _custom(function):
    """The Custom op of kernel ``function``; its output shape and type come from the library's
    <function>InferShape / InferType, which MindSpore can call again for dynamic shapes."""
    op = ops.Custom(f"{LIBRARY}:{function}", out_shape=None, out_dtype=None, func_type="aot")
    op.add_prim_attr("reg_op_name", function)
    return op


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
        self.geometry = Tensor(np.array([conv.kernel_size, conv.dilation], np.int32))
        self.kernel = _custom("EcapaTdnnInference")

    def construct(self, x):
        return self.kernel(x, self.weight, self.epilogue, self.geometry)


def use_bf16_kernels(network):
    """Swap ``network``'s products for bfloat16 ones, in place; returns how many cells changed.

    Every product named by a cell's ``bf16_products`` becomes a Bf16Product. In a folded
    inference copy (src/inference/folding.py), each TDNNBlock with the shifted formulation
    runs as one Bf16TdnnInference call instead.
    """
    from src.inference.folding import ChannelAffine
    from src.model.layers import TDNNBlock

    changed = 0
    for _, cell in network.cells_and_names():
        for attribute in getattr(cell, "bf16_products", ()):
            setattr(cell, attribute, Bf16Product())
            changed += 1
    for _, cell in list(network.cells_and_names()):
        if isinstance(cell, TDNNBlock) and isinstance(cell.norm, ChannelAffine) and cell.conv.shifted:
            cell.kernel = Bf16TdnnInference(cell)
            changed += 1
    return changed
