"""Speed of one ECAPA-TDNN training step and its model FLOP utilisation (MFU).

Times the real training cell (src.train.step.TrainStep around SpeakerLoss(ECAPA_TDNN,
AAMSoftmax) and Adam, built as train.py builds them: default weight decay and gradient
clipping, float32 on CPU) on random log-mel batches of (N, --frames, 80) and random labels.
For each batch size it prints the median step time of --runs steps after --warmup steps,
samples/s, the step's FLOPs, the achieved GFLOP/s, and the GFLOP/s of a large float32
matrix product (3200x1024 by 1024x1024) timed right after every step (fastest of a few
calls), so that both see the same machine load. MFU is the median over the steps of
achieved GFLOP/s / matrix-product GFLOP/s.

Step FLOPs are counted from the layer shapes (see ``training_flops``): the matrix products
of the forward pass, of the weight gradients and of the input gradients. Element-wise
work (batch norm, activations, softmax, Adam) is not counted.

Network settings are the config defaults and can be changed like train.py's
(``--channels 512``, ``--class_num 1211``, ``--num_threads 1``, ...); ``class_num`` auto means
VoxCeleb2's 5,994 speakers. Usage:
    python benchmarks/bench_train_step.py [--batches 16 32] [--frames 200] [--runs 10] [--warmup 2]
        [--kernels none float32 bf16]
"""
import os

os.environ.setdefault("GLOG_v", "3")  # MindSpore's own log: errors only, unless GLOG_v is set

import statistics
import time

import numpy as np

from mindspore import Tensor, nn, ops

from src.config import load_config
from src.model import build_embedding_network, build_head
from src.model.ecapa_tdnn import SqueezeExcitation
from src.model.layers import TimeConv1d
from src.model.speaker_loss import SpeakerLoss
from src.device import amp_level, apply_mixed_precision, conv_impl, init_context
from src.kernels.network import apply_cpu_kernels
from src.train.step import TrainStep

REFERENCE_SHAPE = (3200, 1024, 1024)  # rows, inner size, columns of the reference product
REFERENCE_CALLS = 3  # reference products timed after each step; the fastest counts
VOXCELEB2_SPEAKERS = 5994  # classes of the head when class_num is auto


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


def training_flops(network, head, batch, frames):
    """FLOPs of the matrix products of one training step: (forward, backward) in FLOP.

    ``network`` is an ECAPA_TDNN, ``head`` an AAMSoftmax; the batch is (batch, frames, F).
    A product of (m, k) by (k, n) is 2*m*k*n FLOP. The backward pass computes for every
    layer the weight gradient (same FLOPs as the forward product) and the input gradient
    (same again), except for the first layer, whose input (the features) needs none.
    """
    special_rows = _conv_rows(network, batch, frames)
    first_layer = network.layer1.conv
    forward = backward = 0.0
    for _, cell in network.cells_and_names():
        if isinstance(cell, TimeConv1d):
            out_channels, in_channels, _, taps = cell.weight.shape
            frame_rows, utterance_rows = special_rows.get(id(cell), (batch * frames, 0))
            flops = 2.0 * (frame_rows + utterance_rows) * in_channels * taps * out_channels
        elif isinstance(cell, nn.Dense):
            out_channels, in_channels = cell.weight.shape
            flops = 2.0 * batch * in_channels * out_channels
        else:
            continue
        forward += flops
        backward += flops if cell is first_layer else 2 * flops
    classes, emb_size = head.weight.shape
    head_flops = 2.0 * batch * emb_size * classes
    return forward + head_flops, backward + 2 * head_flops


class _ReferenceProduct(nn.Cell):
    """(m, k) x (n, k)^T, the layout of the network's 1x1 convolutions."""

    def __init__(self):
        super().__init__()
        self.matmul = ops.MatMul(transpose_b=True)

    def construct(self, a, b):
        return self.matmul(a, b)


def _seconds(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def head_classes(config):
    """Classes of the timed head: class_num, or VoxCeleb2's speakers when it is auto."""
    return VOXCELEB2_SPEAKERS if config.class_num == "auto" else config.class_num


def build_step(config, device, batch, kernels):
    """(TrainStep cell, features, labels, network, head) for one batch size and cpu_kernels value."""
    network = apply_mixed_precision(build_embedding_network(config, conv_impl(config, device)),
                                    amp_level(config, device))
    apply_cpu_kernels(network, kernels, device, config.num_threads, amp_level(config, device),
                      input_gradient=False)
    class_num = head_classes(config)
    head = build_head(config, class_num)
    loss_net = SpeakerLoss(network, head)
    optimizer = nn.Adam(loss_net.trainable_params(), learning_rate=config.max_lrate,
                        weight_decay=config.weight_decay)
    amp = amp_level(config, device)
    step = TrainStep(loss_net, optimizer, config.grad_clip,
                     config.loss_scale if amp != "O0" and device != "CPU" else 1.0)
    step.set_train(True)
    rng = np.random.default_rng(config.seed)
    features = Tensor(rng.standard_normal((batch, config.segment_frames, config.in_channels), np.float32))
    labels = Tensor(rng.integers(0, class_num, batch).astype(np.int32))
    return step, features, labels, network, head


def measure(config, device, batch, kernels, runs, warmup, reference):
    """Print and return the figures of one batch size and cpu_kernels value; reference = (cell, a, b)."""
    step, features, labels, network, head = build_step(config, device, batch, kernels)
    compile_seconds = _seconds(lambda: step(features, labels)[0].asnumpy())
    for _ in range(max(warmup - 1, 0)):
        step(features, labels)[0].asnumpy()
    product, a, b = reference
    rows, inner, columns = REFERENCE_SHAPE
    forward, backward = training_flops(network, head, batch, config.segment_frames)
    step_gflop = (forward + backward) / 1e9
    step_times, product_rates = [], []
    for _ in range(runs):
        step_times.append(_seconds(lambda: step(features, labels)[0].asnumpy()))
        fastest = min(_seconds(lambda: product(a, b).asnumpy()) for _ in range(REFERENCE_CALLS))
        product_rates.append(2e-9 * rows * inner * columns / fastest)
    seconds = statistics.median(step_times)
    achieved = step_gflop / seconds
    product_gflops = statistics.median(product_rates)
    utilisation = statistics.median(step_gflop / step_seconds / rate
                                    for step_seconds, rate in zip(step_times, product_rates))
    print(f"batch {batch} x {config.segment_frames} frames, cpu_kernels {kernels}: first step "
          f"(with compilation) "
          f"{compile_seconds:.1f} s")
    print(f"  step            {seconds:.3f} s median of {runs} (min {min(step_times):.3f}, "
          f"max {max(step_times):.3f})   {batch / seconds:.1f} samples/s")
    print(f"  step FLOPs      {step_gflop:.1f} GFLOP (forward {forward / 1e9:.1f}, backward "
          f"{backward / 1e9:.1f})   achieved {achieved:.0f} GFLOP/s")
    print(f"  float32 matmul  {product_gflops:.0f} GFLOP/s ({rows}x{inner} by {inner}x{columns}, "
          f"timed after each step; median)")
    print(f"  MFU             {100 * utilisation:.0f}% (median over the steps)")
    return seconds, achieved, product_gflops


def main():
    def add_arguments(parser):
        parser.add_argument("--batches", type=int, nargs="+", default=[16, 32], help="batch sizes to time")
        parser.add_argument("--runs", type=int, default=10, help="timed steps per batch size (median)")
        parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation)")
        parser.add_argument("--kernels", nargs="+", default=None, choices=("none", "float32", "bf16"),
                            help="cpu_kernels values to time, one after the other (default: the "
                                 "cpu_kernels setting)")

    config, options = load_config(None, __doc__.splitlines()[0], add_arguments)
    device = init_context(config)
    rows, inner, columns = REFERENCE_SHAPE
    rng = np.random.default_rng(0)
    reference = (_ReferenceProduct(), Tensor(rng.standard_normal((rows, inner), np.float32)),
                 Tensor(rng.standard_normal((columns, inner), np.float32)))
    reference[0](*reference[1:]).asnumpy()
    print(f"device {device}, conv_impl {conv_impl(config, device)}, amp {amp_level(config, device)}, "
          f"channels {config.channels}, classes {head_classes(config)}, threads "
          f"{config.num_threads or 'all'} of {os.cpu_count()}; load average "
          f"{os.getloadavg()[0]:.2f} at start")
    for batch in options.batches:
        for kernels in options.kernels or [config.cpu_kernels]:
            measure(config, device, batch, kernels, options.runs, options.warmup, reference)
    print(f"load average {os.getloadavg()[0]:.2f} at end (other processes share these cores)")


if __name__ == "__main__":
    main()
