"""Speed of MindSpore's CPU matrix product in the shapes one ECAPA-TDNN training step uses.

For a 1x1 convolution of N*T = 3200 frame rows, y = x W^T is an (m, k) x (n, k)^T product;
the backward pass computes the input gradient dy W (no transpose) and the weight gradient
dy^T x (first operand transposed). Times each layout for the SE-Res2Block convolutions
(1024 -> 1024), the aggregation layer (3072 -> 1536, and its input gradient split per
block as TimeConv1d.of_concatenation does) and a Res2Net branch (k=3: 384 -> 128), in
float32 and float16, and reports whether bfloat16 products run on this CPU at all.

Every case runs once per round and the rounds repeat, so all cases see the same mix of
machine load; prints the median and best GFLOP/s per case and the load average.
Usage: python benchmarks/bench_matmul.py [--rounds 7] [--rows 3200]
"""
import os

os.environ.setdefault("GLOG_v", "3")  # MindSpore's own log: errors only, unless GLOG_v is set

import argparse
import statistics
import time

import numpy as np

import mindspore as ms
from mindspore import Tensor, nn, ops


class _Product(nn.Cell):
    """One MatMul with the given transposes; ``pieces`` > 1 splits the output columns."""

    def __init__(self, transpose_a, transpose_b, pieces=1):
        super().__init__()
        self.matmul = ops.MatMul(transpose_a, transpose_b)
        self.pieces = pieces

    def construct(self, a, b):
        if self.pieces == 1:
            return self.matmul(a, b)
        blocks = ops.split(b, b.shape[1] // self.pieces, axis=1)
        return ops.concat([self.matmul(a, block) for block in blocks], axis=1)


def cases(rows):
    """(label, transpose_a, transpose_b, pieces, shape of a, shape of b, FLOPs)."""
    table = []
    for name, k, n in (("SE-Res2Block 1x1, 1024->1024", 1024, 1024), ("aggregation, 3072->1536", 3072, 1536),
                       ("Res2Net branch, 384->128", 384, 128)):
        flops = 2.0 * rows * k * n
        table.append((f"{name}: forward x W^T", False, True, 1, (rows, k), (n, k), flops))
        table.append((f"{name}: input grad dy W", False, False, 1, (rows, n), (n, k), flops))
        table.append((f"{name}: weight grad dy^T x", True, False, 1, (rows, n), (rows, k), flops))
    table.append(("aggregation: input grad, 3 column blocks", False, False, 3, (rows, 1536), (1536, 3072),
                  2.0 * rows * 1536 * 3072))
    return table


def _time(cell, a, b):
    start = time.perf_counter()
    cell(a, b).asnumpy()
    return time.perf_counter() - start


def bfloat16_supported():
    """Whether a bfloat16 MatMul compiles and runs on this device (False with the reason)."""
    a = Tensor(np.ones((4, 4), np.float32)).astype(ms.bfloat16)
    try:
        _Product(False, False)(a, a).astype(ms.float32).asnumpy()
        return True, ""
    except (RuntimeError, TypeError, ValueError) as error:
        reason = next((line.strip() for line in str(error).splitlines() if "upport" in line), "failed")
        return False, reason


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (median and best)")
    parser.add_argument("--rows", type=int, default=3200, help="frame rows N*T (16 x 200 frames)")
    options = parser.parse_args()
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    rng = np.random.default_rng(0)
    runs = []
    for dtype in (np.float32, np.float16):
        for label, transpose_a, transpose_b, pieces, shape_a, shape_b, flops in cases(options.rows):
            a = Tensor(rng.standard_normal(shape_a).astype(dtype))
            b = Tensor(rng.standard_normal(shape_b).astype(dtype))
            cell = _Product(transpose_a, transpose_b, pieces)
            _time(cell, a, b)
            runs.append((f"{np.dtype(dtype).name:8s} {label}", cell, a, b, flops, []))
    print(f"load average {os.getloadavg()[0]:.2f} at start; {options.rows} rows; GFLOP/s median / best "
          f"of {options.rounds} rounds")
    for _ in range(options.rounds):
        for _, cell, a, b, _, times in runs:
            times.append(_time(cell, a, b))
    for label, _, _, _, flops, times in runs:
        print(f"  {label:58s} {flops / statistics.median(times) / 1e9:6.0f} / {flops / min(times) / 1e9:4.0f}")
    supported, reason = bfloat16_supported()
    print(f"bfloat16 MatMul on CPU: {'runs' if supported else 'not available (' + reason + ')'}")
    print(f"load average {os.getloadavg()[0]:.2f} at end (other processes share these cores)")


if __name__ == "__main__":
    main()
