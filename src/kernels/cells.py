"""MindSpore Cells on the custom CPU kernels (runtime.cc, matmul.cc, tdnn.cc, se.cc, reduce.cc), with
gradients.

Each Cell takes a ``bf16`` flag: True rounds the products' inputs to bfloat16 (nearest even)
and sums in float32, about twice as fast as float32 products on a CPU with AVX512-BF16;
False multiplies in float32. Inputs and outputs are float32 either way.

- ``KernelProduct(bf16)(x, w)``: x (R, K) @ w (O, K)^T -> (R, O). Its gradients, dy @ w and
  dy^T @ x, are products of the same precision (as under PyTorch's bf16 autocast).
- ``TdnnInferenceKernel(block, bf16)``: a folded inference TDNNBlock in one call.
- ``TdnnTrainingKernel(block, bf16)``: a training-mode TDNNBlock in one call, and its
  gradient in another.
- ``SqueezeExcitationKernel()``: a squeeze-excitation cell in one call (float32), and its
  gradient in another.
- ``KernelTimeMax()``: the maximum over frames, (N, T, C) -> (N, 1, C), without a gradient.

src/kernels/network.py puts them into a network.

``unavailable_reason()`` says why the kernels cannot run here (not built, no AVX512-BF16),
or None when they can. They run on MindSpore's CPU backend only.

Example (a float32 product through oneDNN; every entry is 4):
    >>> x, w = Tensor(np.ones((6, 4), np.float32)), Tensor(np.ones((3, 4), np.float32))
    >>> KernelProduct(bf16=False)(x, w).shape  # doctest: +SKIP
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
    """Why the kernels cannot run on this machine, or None if they can."""
    if not os.path.isfile(library):
        return f"{library} is not built (run: python scripts/build_kernels.py)"
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


def bfloat16_bits(values):
    """float32 values rounded to bfloat16 (nearest even, as the kernels round), as int16 bits."""
    bits = np.ascontiguousarray(values, np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16).view(np.int16)


def _geometry(conv, bf16, input_gradient=True):
    """The kernels' int32 (4,) description of a TimeConv1d: kernel size, dilation, bfloat16 or
    not, and whether the gradient kernel computes the input's gradient (else zeros)."""
    return Tensor(np.array([conv.kernel_size, conv.dilation, int(bf16), int(input_gradient)], np.int32))


class KernelProduct(nn.Cell):
    """x (R, K) @ w (O, K)^T -> (R, O) on oneDNN, float32 in and out (module docstring)."""

    def __init__(self, bf16=True):
        super().__init__()
        self.flag = Tensor(np.array([int(bf16)], np.int32))
        self.forward = _custom("EcapaMatMulNT")
        self.input_gradient = _custom("EcapaMatMulNN")
        self.weight_gradient = _custom("EcapaMatMulTN")

    def construct(self, x, w):
        return self.forward(x, w, self.flag)

    def bprop(self, x, w, out, dout):
        return self.input_gradient(dout, w, self.flag), self.weight_gradient(dout, x, self.flag)


class KernelTimeMax(nn.Cell):
    """x (N, T, C) -> its maximum over frames (N, 1, C); a stop-gradient quantity (zero gradient)."""

    def __init__(self):
        super().__init__()
        self.kernel = _custom("EcapaTimeMax")

    def construct(self, x):
        return self.kernel(x)

    def bprop(self, x, out, dout):
        return (ops.zeros_like(x),)


class TdnnInferenceKernel(nn.Cell):
    """A folded inference TDNNBlock in one kernel call: (N, T, C_in) -> (N, T, C_out).

    ``relu(conv(x) + bias) * scale + shift`` with the weights, bias and ChannelAffine of
    ``block`` (see src/inference/folding.py) copied when the cell is made; with bfloat16
    products the weight is kept rounded, as int16 bfloat16 bits. The convolution's
    time-shifted copies are built by the kernel while it packs x, and the bias, ReLU and
    affine map are one pass over the product.
    """

    def __init__(self, block, bf16=True):
        super().__init__()
        conv, affine = block.conv, block.norm
        out_channels = conv.out_channels
        bias = conv.bias.asnumpy() if conv.has_bias else np.zeros(out_channels, np.float32)
        scale = affine.scale.asnumpy() if affine.has_scale else np.ones(out_channels, np.float32)
        epilogue = np.stack([bias, scale, affine.shift.asnumpy()]).astype(np.float32)
        weight = conv.weight_matrix().asnumpy()
        self.weight = Parameter(Tensor(bfloat16_bits(weight) if bf16 else weight), name="weight", requires_grad=False)
        self.epilogue = Parameter(Tensor(epilogue), name="epilogue", requires_grad=False)
        self.geometry = _geometry(conv, bf16)
        self.kernel = _custom("EcapaTdnnInference")

    def construct(self, x):
        return self.kernel(x, self.weight, self.epilogue, self.geometry)


class TdnnTrainingKernel(nn.Cell):
    """A training-mode TDNNBlock in one kernel call, and its gradient in another.

    ``(x (N, T, C_in), weight (C_out, k * C_in), bias, gamma, beta (C_out,))`` ->
    ``(out (N, T, C_out), activations (N, T, C_out), mean (C_out,), variance (C_out,))``:
    out = gamma * (r - mean) / sqrt(variance + eps) + beta with r = relu(conv(x) + bias)
    (the activations, kept for the gradient) and the batch mean and biased variance of r.
    The ReLU, batch norm and their gradients are float32 passes of the same calls.
    ``input_gradient`` False gives x a zero gradient, skipping its product: for a block whose
    input is the data.
    """

    def __init__(self, block, bf16=True, input_gradient=True):
        super().__init__()
        self.geometry = _geometry(block.conv, bf16, input_gradient)
        self.eps = Tensor(np.array([block.norm.eps], np.float32))
        self.forward = _custom("EcapaTdnnTraining", outputs=4)
        self.gradient = _custom("EcapaTdnnTrainingGrad", outputs=5)

    def construct(self, x, weight, bias, gamma, beta):
        return self.forward(x, weight, bias, gamma, beta, self.eps, self.geometry)

    def bprop(self, x, weight, bias, gamma, beta, out, dout):
        _, activations, mean, variance = out
        return self.gradient(x, weight, gamma, activations, mean, variance, dout[0], self.eps, self.geometry)


class SqueezeExcitationKernel(nn.Cell):
    """A squeeze-excitation cell in one float32 call, and its gradient in another.

    ``(x (N, T, C), w1 (B, C), b1 (B,), w2 (C, B), b2 (C,))`` -> ``(x * g (N, T, C), the time
    average s (N, C), h = relu(s w1^T + b1) (N, B), the gates g = sigmoid(h w2^T + b2) (N, C))``;
    s, h and g are kept for the gradient. Its products are small (one row per utterance), so
    they stay float32 with either precision.
    """

    def __init__(self):
        super().__init__()
        self.forward = _custom("EcapaSqueezeExcitation", outputs=4)
        self.gradient = _custom("EcapaSqueezeExcitationGrad", outputs=5)

    def construct(self, x, w1, b1, w2, b2):
        return self.forward(x, w1, b1, w2, b2)

    def bprop(self, x, w1, b1, w2, b2, out, dout):
        _, summary, hidden, gates = out
        return self.gradient(x, w1, w2, summary, hidden, gates, dout[0])

