"""Speed of one ECAPA-TDNN training step and its model FLOP utilisation (MFU).

Times the real training cell (src.train.step.TrainStep around SpeakerLoss(ECAPA_TDNN,
AAMSoftmax) and Adam, built as train.py builds them: default weight decay and gradient
clipping, float32 on CPU) on random log-mel batches of (N, --frames, 80) and random labels.
It first names the CPU and its bfloat16 path (AMX, AVX512-BF16, none). For each batch size
it prints the median step time of --runs steps after --warmup steps, samples/s, the step's
FLOPs, the achieved GFLOP/s, and the GFLOP/s of a large matrix product of the step's
precision (3200x1024 by 1024x1024; bfloat16 on the kernels' oneDNN product for
``cpu_kernels bf16``, float32 otherwise) timed right after every step (fastest of a few
calls), so that both see the same machine load; it ends with both products' rates. MFU is
the median over the steps of achieved GFLOP/s / the matching product's GFLOP/s.

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

from mindspore import Tensor, nn

from benchmarks.machine import ProductRates, describe_machine, forward_flops
from src.config import load_config
from src.model import build_embedding_network, build_head
from src.model.speaker_loss import SpeakerLoss
from src.device import amp_level, apply_mixed_precision, conv_impl, init_context
from src.kernels.network import apply_cpu_kernels, auto_kernels
from src.train.step import TrainStep

VOXCELEB2_SPEAKERS = 5994  # classes of the head when class_num is auto


def training_flops(network, head, batch, frames):
    """FLOPs of the matrix products of one training step: (forward, backward) in FLOP.

    ``network`` is an ECAPA_TDNN, ``head`` an AAMSoftmax; the batch is (batch, frames, F).
    The backward pass computes for every layer the weight gradient (same FLOPs as the forward
    product) and the input gradient (same again), except for the first layer, whose input
    (the features) needs none.
    """
    layers = forward_flops(network, batch, frames)
    first = layers[id(network.layer1.conv)]
    forward = sum(layers.values())
    backward = 2 * forward - first
    classes, emb_size = head.weight.shape
    head_flops = 2.0 * batch * emb_size * classes
    return forward + head_flops, backward + 2 * head_flops


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


def measure(config, device, batch, kernels, runs, warmup, products):
    """Print and return the figures of one batch size and cpu_kernels value; ``products``: ProductRates."""
    step, features, labels, network, head = build_step(config, device, batch, kernels)
    compile_seconds = _seconds(lambda: step(features, labels)[0].asnumpy())
    for _ in range(max(warmup - 1, 0)):
        step(features, labels)[0].asnumpy()
    forward, backward = training_flops(network, head, batch, config.segment_frames)
    step_gflop = (forward + backward) / 1e9
    matching = products.matching(kernels) if "bf16" in products.products else "float32"
    step_times, rates = [], []
    for _ in range(runs):
        step_times.append(_seconds(lambda: step(features, labels)[0].asnumpy()))
        rates.append(products.measure()[matching])
    seconds = statistics.median(step_times)
    utilisation = statistics.median(step_gflop / step_seconds / rate for step_seconds, rate in zip(step_times, rates))
    print(f"batch {batch} x {config.segment_frames} frames, cpu_kernels {kernels}: first step (with compilation) "
          f"{compile_seconds:.1f} s")
    print(f"  step            {seconds:.3f} s median of {runs} (min {min(step_times):.3f}, "
          f"max {max(step_times):.3f})   {batch / seconds:.1f} samples/s")
    print(f"  step FLOPs      {step_gflop:.1f} GFLOP (forward {forward / 1e9:.1f}, backward "
          f"{backward / 1e9:.1f})   achieved {step_gflop / seconds:.0f} GFLOP/s")
    print(f"  {matching + ' matmul':<15} {statistics.median(rates):.0f} GFLOP/s (timed after each step; median)")
    print(f"  MFU             {100 * utilisation:.0f}% of the {matching} product rate (median over the steps)")
    return seconds, step_gflop / seconds, statistics.median(rates)


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
    products = ProductRates()
    print(f"{describe_machine()}; device {device}, conv_impl {conv_impl(config, device)}, "
          f"amp {amp_level(config, device)}, channels {config.channels}, classes {head_classes(config)}, threads "
          f"{config.num_threads or 'all'}; load average {os.getloadavg()[0]:.2f} at start")
    for batch in options.batches:
        for kernels in options.kernels or [auto_kernels(device)[0] if config.cpu_kernels == "auto"
                                           else config.cpu_kernels]:
            measure(config, device, batch, kernels, options.runs, options.warmup, products)
    print(products.describe())
    print(f"load average {os.getloadavg()[0]:.2f} at end (other processes share these cores)")


if __name__ == "__main__":
    main()
