"""Time each augmentation kind, and speed perturbation, on training segments: median cost per segment.

Without ``--musan_path`` / ``--rir_path`` it generates a small synthetic stand-in
(5 s MUSAN chunks of random noise, 1 s exponentially decaying RIRs) in a temporary folder.

    python benchmarks/bench_augment.py [--musan_path DIR] [--rir_path DIR] [--seconds 2] [--repeats 50]
"""
import argparse
import os
import tempfile
import time

import numpy as np

from src.data.audio import SAMPLE_RATE, write_audio
from src.data.audio import crop_or_pad
from src.data.augment import KINDS, Augmenter
from src.data.speed_perturb import SpeedPerturb


def make_material(root, rng):
    """Write 4 chunks per MUSAN category and 4 RIRs under ``root``; return (musan, rirs)."""
    musan, rirs = os.path.join(root, "musan_split"), os.path.join(root, "rirs")
    for category in ("noise", "speech", "music"):
        for index in range(4):
            chunk = 0.3 * rng.standard_normal(5 * SAMPLE_RATE)
            write_audio(os.path.join(musan, category, f"src{index}", "000.wav"), chunk)
    decay = np.exp(-np.arange(SAMPLE_RATE) / (0.1 * SAMPLE_RATE))
    for index in range(4):
        rir = 0.5 * rng.standard_normal(SAMPLE_RATE) * decay
        rir[0] = 1.0
        write_audio(os.path.join(rirs, f"room{index}", "rir.wav"), rir)
    return musan, rirs


def median_ms(augmenter, kind, wave, repeats, rng):
    """Median wall time (ms) of ``augmenter.apply`` for ``kind`` (the warm-up call fills the RIR cache)."""
    return median_ms_of(lambda: augmenter.apply(wave, kind, rng), repeats)


def median_ms_of(call, repeats):
    """Median wall time (ms) of ``call()`` over ``repeats`` calls, after one warm-up call."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def print_speed_costs(seconds, repeats, rng):
    """Cost of cropping a segment from a 10 s file at each speed (crop + resampling)."""
    speed = SpeedPerturb((1.0, 0.9, 1.1), 1.0)
    source = (0.1 * rng.standard_normal(10 * SAMPLE_RATE)).astype(np.float32)
    samples = int(seconds * SAMPLE_RATE)
    print(f"speed perturbation: a {seconds} s crop of a 10 s file, median of {repeats} calls")
    for index, factor in enumerate(speed.factors):
        if index == 0:
            cost = median_ms_of(lambda: crop_or_pad(source, samples, rng), repeats)
        else:
            cost = median_ms_of(lambda: speed.crop(source, samples, index, rng), repeats)
        print(f"  speed {factor:.1f} {cost:7.3f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--musan_path", default="")
    parser.add_argument("--rir_path", default="")
    parser.add_argument("--seconds", type=float, default=2.0, help="segment length")
    parser.add_argument("--repeats", type=int, default=50)
    arguments = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as scratch:
        musan, rirs = arguments.musan_path, arguments.rir_path
        if not musan and not rirs:
            musan, rirs = make_material(scratch, rng)
        augmenter = Augmenter(musan, rirs)
        wave = (0.1 * rng.standard_normal(int(arguments.seconds * SAMPLE_RATE))).astype(np.float32)
        print(f"segment {arguments.seconds} s, median of {arguments.repeats} calls")
        for kind in KINDS:
            if kind in augmenter.probabilities:
                print(f"  {kind:7s} {median_ms(augmenter, kind, wave, arguments.repeats, rng):7.2f} ms")
            else:
                print(f"  {kind:7s} (no material)")
    print_speed_costs(arguments.seconds, arguments.repeats, rng)


if __name__ == "__main__":
    main()
