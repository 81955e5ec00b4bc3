"""What the benchmarks measure a network against: the CPU, its bfloat16 path and its matrix-product rates.

- :func:`cpu_model` and :func:`bf16_path` name the processor and how it multiplies bfloat16
  (``AMX`` tiles, ``AVX512-BF16`` instructions, or ``none``), from /proc/cpuinfo.
- :class:`ProductRates` times a large float32 product (MindSpore's MatMul) and, where the
  custom kernels run, a large bfloat16 product (the kernels' oneDNN product, which takes AMX
  where the CPU has it) of the 1x1-convolution layout (3200x1024 by 1024x1024), fastest of a
  few calls, so that a benchmark can time them between its own measurements and divide by the
  rate that matches its precision (MFU).
- :func:`forward_flops` counts the FLOPs of an ECAPA-TDNN's matrix products for a batch.
"""
import os
import platform
import time

import numpy as np
from mindspore import Tensor, nn, ops

from src.kernels.cells import KernelProduct, unavailable_reason
from src.model.ecapa_tdnn import SqueezeExcitation
from src.model.layers import TimeConv1d

REFERENCE_SHAPE = (3200, 1024, 1024)  # rows, inner size, columns of the reference products
REFERENCE_CALLS = 3  # calls per timing; the fastest counts


def _cpuinfo():
    try:
        with open("/proc/cpuinfo") as handle:
            return handle.read()
    except OSError:
        return ""


def cpu_model():
    """The processor's model name (/proc/cpuinfo), or the machine type where there is none."""
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def bf16_path():
    """How this CPU multiplies bfloat16: 'AMX', 'AVX512-BF16' or 'none'."""
    flags = next((line.split(":", 1)[1].split() for line in _cpuinfo().splitlines() if line.startswith("flags")), [])
    if "amx_bf16" in flags:
        return "AMX"
    return "AVX512-BF16" if "avx512_bf16" in flags else "none"


def describe_machine():
    """One line: CPU model, cores and bfloat16 path."""
    return f"CPU {cpu_model()}, {os.cpu_count()} cores, bfloat16 path {bf16_path()}"


class _Float32Product(nn.Cell):
    """(m, k) x (n, k)^T with MindSpore's MatMul, the layout of the network's 1x1 convolutions."""

    def __init__(self):
        super().__init__()
        self.matmul = ops.MatMul(transpose_b=True)

    def construct(self, a, b):
        return self.matmul(a, b)


class ProductRates:
    """GFLOP/s of the reference products: ``measure()`` times both, ``rates`` keeps every timing.

    ``bf16`` is None where the kernels cannot run (not built, or no native bfloat16).
    """

    def __init__(self, seed=0):
        rows, inner, columns = REFERENCE_SHAPE
        rng = np.random.default_rng(seed)
        self.a = Tensor(rng.standard_normal((rows, inner), np.float32))
        self.b = Tensor(rng.standard_normal((columns, inner), np.float32))
        self.products = {"float32": _Float32Product()}
        if unavailable_reason() is None:
            self.products["bf16"] = KernelProduct(bf16=True)
        self.rates = {name: [] for name in self.products}
        self.measure()  # compiles both, untimed
        self.rates = {name: [] for name in self.products}

    def measure(self):
        """Time each product once more (fastest of REFERENCE_CALLS calls); returns {name: GFLOP/s}."""
        rows, inner, columns = REFERENCE_SHAPE
        found = {}
        for name, product in self.products.items():
            fastest = min(_seconds(lambda: product(self.a, self.b).asnumpy()) for _ in range(REFERENCE_CALLS))
            found[name] = 2e-9 * rows * inner * columns / fastest
            self.rates[name].append(found[name])
        return found

    @staticmethod
    def matching(kernels):
        """The reference that matches a cpu_kernels value: bf16 products for 'bf16', float32 otherwise."""
        return "bf16" if kernels == "bf16" else "float32"

    def describe(self):
        """One line of the median rates so far."""
        parts = [f"{name} {np.median(values):.0f} GFLOP/s" for name, values in self.rates.items()]
        if "bf16" not in self.rates:
            parts.append(f"bf16 not measured ({unavailable_reason()})")
        rows, inner, columns = REFERENCE_SHAPE
        return f"matrix product {rows}x{inner} by {inner}x{columns}, median of this run: " + ", ".join(parts)


def _seconds(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def _conv_rows(network, batch, frames):
    """{id(conv): (frame rows, utterance rows)} of the input columns each conv multiplies.

    A TimeConv1d multiplies N*T frame rows, except the squeeze-excitation convolutions,
    which see one time-averaged row per utterance, and the pooling's attention
    convolution, whose input is [frame, mean, std]: its frame third multiplies N*T rows and
    its two statistics thirds one row per utterance (they are the same for every frame).
    """
    rows = {}
    for _, cell in network.cells_and_names():
        if isinstance(cell, SqueezeExcitation):
            for conv in (cell.squeeze, cell.excite):
                rows[id(conv)] = (0, batch)
    attention = network.pooling.attention.conv
    rows[id(attention)] = (batch * frames / 3, batch * 2 / 3)
    return rows


def forward_flops(network, batch, frames):
    """{id(layer): FLOP} of the forward matrix products of an ECAPA_TDNN on (batch, frames, F) inputs.

    A product of (m, k) by (k, n) is 2*m*k*n FLOP; element-wise work is not counted.
    """
    special_rows = _conv_rows(network, batch, frames)
    flops = {}
    for _, cell in network.cells_and_names():
        if isinstance(cell, TimeConv1d):
            out_channels, in_channels, _, taps = cell.weight.shape
            frame_rows, utterance_rows = special_rows.get(id(cell), (batch * frames, 0))
            flops[id(cell)] = 2.0 * (frame_rows + utterance_rows) * in_channels * taps * out_channels
        elif isinstance(cell, nn.Dense):
            out_channels, in_channels = cell.weight.shape
            flops[id(cell)] = 2.0 * batch * in_channels * out_channels
    return flops
