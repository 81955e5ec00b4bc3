"""Does the training data pipeline keep up with the training step? Prints the figures.

The pipeline is ``create_train_dataset`` (read wav, random crop, MUSAN/RIR augmentation,
log-mel, batching; worker threads). The step is the one bench_train_step.py times: the
default network (channels 1024), SpeakerLoss + Adam in a TrainStep cell, GRAPH_MODE. Measured:

1. pipeline alone: samples/s delivered by the dataset iterator, augmentation on and off,
   for each ``--workers`` count and each ``--kinds`` of worker (threads, processes:
   ``worker_processes``); the variants alternate window by window (``--repeats`` rounds,
   each variant a fresh pipeline, ``--warmup`` batches, then ``--batches`` timed batches;
   median window), and each variant's rate is given as a multiple of the one-worker rate of
   its kind; ``--speed_perturb 0.9,1.0,1.1`` adds speed perturbation. From the fastest
   process-worker rate per worker follows an estimate of the workers a device consuming
   ``--device_rate`` samples/s needs (an estimate: it assumes a core per worker and linear
   scaling beyond what was measured);
2. CPU milliseconds per sample by stage, one thread (reading the crop, speed
   perturbation, each augmentation kind, the front end), over ``--profile_samples`` draws
   after every file was read once (as in training, where a worker checks each file once);
3. step alone: samples/s of the step on one fixed, pre-loaded batch (median step);
4. both on the same cores, as in training:
   - steps fed by the pipeline against steps on the fixed batch, alternating: the
     median difference is the data stall per step;
   - the pipeline drained while a second thread runs the step loop: both rates from
     the same window.

Ratios are pipeline samples/s / step samples/s (the pipeline keeps up with margin at
>= 2). Every figure is followed by the 1-minute load average at the time it was taken,
since other programs on the machine change the figures; compare ratios within one run.

Without ``--train_list`` a small synthetic speaker corpus is generated in a temporary
folder, and without ``--musan_path`` / ``--rir_path`` synthetic noise, babble and music
chunks and exponentially decaying impulse responses. Usage:

    python benchmarks/bench_pipeline.py [--train_list LIST --train_path DIR]
        [--musan_path DIR] [--rir_path DIR] [--batch 16] [--segment_frames 200]
        [--workers 1 2] [--kinds threads processes] [--speed_perturb 0.9,1.0,1.1]
        [--channels 1024] [--pipeline_only] [--device_rate 1000] [--profile_samples 300]
"""
import os

os.environ.setdefault("GLOG_v", "3")  # MindSpore's own log: errors only, unless GLOG_v is set

import argparse
import math
import statistics
import tempfile
import threading
import time

import numpy as np

from benchmarks.bench_augment import make_material
from benchmarks.bench_train_step import build_step
from src.config import load_config
from src.data.augment import Augmenter
from src.data.dataset import TrainingSamples, create_train_dataset, read_training_list
from src.data.front_ends import front_end_of
from src.data.speed_perturb import SpeedPerturb
from src.demo_corpus import generate_demo_corpus
from src.device import init_context

GOAL_RATIO = 2.0


def load_average():
    """The 1-minute load average, as `uptime` shows it."""
    return os.getloadavg()[0]


def rate_line(label, samples_per_second, load, extra=""):
    """One aligned result line: label, samples/s, load average, optional note."""
    return f"  {label:<44} {samples_per_second:8.1f} samples/s   load {load:4.2f}  {extra}".rstrip()


def prepare_data(args, scratch):
    """(train_list, train_path, musan_path, rir_path); generates whatever was not given."""
    train_list, train_path = args.train_list, args.train_path
    if not train_list:
        corpus = os.path.join(scratch, "corpus")
        generate_demo_corpus(corpus, num_train_speakers=args.speakers, num_eval_speakers=2,
                             utterances_per_speaker=args.utterances, eval_utterances_per_speaker=2)
        train_list, train_path = os.path.join(corpus, "train.txt"), os.path.join(corpus, "train", "wav")
    musan_path, rir_path = args.musan_path, args.rir_path
    if not musan_path or not rir_path:
        made_musan, made_rirs = make_material(os.path.join(scratch, "others"), np.random.default_rng(0))
        musan_path, rir_path = musan_path or made_musan, rir_path or made_rirs
    return train_list, train_path, musan_path, rir_path


def make_config(data, args, augment, workers, processes=False):
    """Project settings for this benchmark, checked by load_config."""
    train_list, train_path, musan_path, rir_path = data
    overrides = {"train_list": train_list, "train_path": train_path, "musan_path": musan_path,
                 "rir_path": rir_path, "class_num": "auto", "speed_perturb": args.speed_perturb,
                 "minibatch_size": args.batch, "segment_frames": args.segment_frames,
                 "augment": augment, "num_workers": workers, "worker_processes": processes, "num_epochs": 100000,
                 "channels": args.channels, "device_target": args.device_target}
    config, _ = load_config([f"--{key}={value}" for key, value in overrides.items()])
    return config


def pipeline_rate(config, warmup, batches):
    """Samples/s of a fresh dataset iterator over ``batches`` batches after ``warmup`` ones."""
    dataset, _ = create_train_dataset(config)
    iterator = dataset.create_tuple_iterator(num_epochs=1, output_numpy=True)
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    rate = batches * config.minibatch_size / (time.perf_counter() - start)
    iterator.stop()
    return rate


def stage_costs(config, count):
    """Mean CPU cost of one sample by stage: {stage: (ms, samples)} over ``count`` draws.

    Reproduces TrainingSamples.sample step by step with a timer between the stages; every
    file is read once first, so the reads are the crop reads of a running training.
    """
    speed = SpeedPerturb.from_config(config)
    utterances, labels, speakers = read_training_list(config, speed.num_speeds if speed else 1)
    augmenter = Augmenter.from_config(config) if config.augment else None
    samples = TrainingSamples(utterances, labels, config.train_path, config.segment_frames, config.seed,
                              augmenter, config.max_bad_audio, speed, speakers, front_end_of(config))
    for draw in range(len(utterances)):
        samples.sample(draw)
    totals, counts = {}, {}

    def add(stage, seconds):
        totals[stage] = totals.get(stage, 0.0) + seconds
        counts[stage] = counts.get(stage, 0) + 1

    for draw in range(len(utterances), len(utterances) + count):
        rng = np.random.default_rng([config.seed, draw])
        speed_index = speed.draw(rng) if speed else 0
        needed = speed.source_samples(samples.segment_samples, speed_index) if speed else samples.segment_samples
        start = time.perf_counter()
        path = os.path.join(config.train_path, utterances[draw % len(utterances)])
        segment = samples.read_crop(path, needed, rng)
        add("read the crop", time.perf_counter() - start)
        if speed_index:
            start = time.perf_counter()
            segment = speed.stretch(segment, samples.segment_samples, speed_index)
            add("speed perturbation (perturbed samples)", time.perf_counter() - start)
        if augmenter is not None:
            kind = augmenter.choose(rng)
            start = time.perf_counter()
            segment = augmenter.apply(segment, kind, rng)
            add(f"augmentation: {kind}", time.perf_counter() - start)
        start = time.perf_counter()
        samples.front_end(segment)
        add(f"front end ({config.features})", time.perf_counter() - start)
    return {stage: (1000 * totals[stage] / counts[stage], counts[stage]) for stage in totals}


def report_stage_costs(data, args):
    """Print the per-stage CPU cost of a sample (augmentation and speed perturbation on)."""
    config = make_config(data, args, True, 1)
    costs = stage_costs(config, args.profile_samples)
    print(f"CPU per sample by stage, one thread, {args.profile_samples} samples (mean ms over the samples "
          f"that went through the stage; load {load_average():.2f}):")
    per_sample = 0.0
    for stage, (milliseconds, count) in costs.items():
        per_sample += milliseconds * count / args.profile_samples
        print(f"  {stage:<44} {milliseconds:7.3f} ms   ({count} samples)")
    print(f"  {'total per sample':<44} {per_sample:7.3f} ms   (= {1000 / per_sample:.0f} samples/s on one core, "
          "before batching and hand-over)")


def training_step(config):
    """(step cell, fixed batch (features, labels), device) of the step bench_train_step.py times.

    The batch is (minibatch_size, segment_frames, 80) random features and random labels,
    pre-loaded as tensors.
    """
    device = init_context(config)
    step_cell, features, labels, _, _ = build_step(config, device, config.minibatch_size)
    return step_cell, (features, labels), device


def run_step(step_cell, features, labels):
    """One step, waited for (the loss is read back, as the training loop does)."""
    loss, *_ = step_cell(features, labels)
    loss.asnumpy()


def timed_fixed_step(step_cell, batch):
    """Wall seconds of one step on the pre-loaded batch."""
    start = time.perf_counter()
    run_step(step_cell, *batch)
    return time.perf_counter() - start


def timed_fed_step(step_cell, iterator):
    """Wall seconds of one loop iteration (fetch a batch, step on it) and of its fetch."""
    start = time.perf_counter()
    features, labels = next(iterator)
    fetched = time.perf_counter()
    run_step(step_cell, features, labels)
    return time.perf_counter() - start, fetched - start


def data_stall(step_cell, config, batch, warmup, pairs):
    """Step seconds fed by the pipeline against the fixed batch, in alternating pairs.

    The ``warmup`` fed steps are not timed: meanwhile the pipeline fills its queues, after
    which it makes one batch for each one taken, on the cores the step uses. Pairing a
    fed with a fixed step cancels slow changes of the machine's load.
    Returns medians (fed seconds, fixed seconds, fed - fixed seconds, fetch wait seconds),
    the (lowest, highest) fed - fixed difference and the load average.
    """
    dataset, _ = create_train_dataset(config)
    iterator = dataset.create_tuple_iterator(num_epochs=1)
    for _ in range(warmup):
        timed_fed_step(step_cell, iterator)
    fed, fixed, waits = [], [], []
    for _ in range(pairs):
        fixed.append(timed_fixed_step(step_cell, batch))
        seconds, wait = timed_fed_step(step_cell, iterator)
        fed.append(seconds)
        waits.append(wait)
    iterator.stop()
    differences = [a - b for a, b in zip(fed, fixed)]
    return ([statistics.median(values) for values in (fed, fixed, differences, waits)],
            (min(differences), max(differences)), load_average())


def pipeline_under_training(step_cell, config, batch, seconds, warmup):
    """Drain the pipeline while another thread runs steps on the fixed batch.

    Returns (pipeline samples/s, step samples/s, load average) over the same window of at
    least ``seconds``; the step rate counts steps that ended inside the window.
    """
    stop = threading.Event()
    step_ends = []

    def step_loop():
        while not stop.is_set():
            run_step(step_cell, *batch)
            step_ends.append(time.perf_counter())

    worker = threading.Thread(target=step_loop, daemon=True)
    worker.start()
    dataset, _ = create_train_dataset(config)
    iterator = dataset.create_tuple_iterator(num_epochs=1, output_numpy=True)
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    delivered = 0
    while time.perf_counter() - start < seconds or sum(start < end for end in step_ends) < 2:
        if not worker.is_alive():
            raise RuntimeError("the training step loop stopped (see the error above)")
        next(iterator)
        delivered += config.minibatch_size
    end = time.perf_counter()
    load = load_average()
    stop.set()
    worker.join()
    iterator.stop()
    inside = [moment for moment in step_ends if start < moment <= end]
    step_rate = (len(inside) - 1) * config.minibatch_size / (inside[-1] - inside[0])
    return delivered / (end - start), step_rate, load


def verdict(ratio):
    """How a pipeline / step ratio compares with the goal."""
    return "keeps up" if ratio >= GOAL_RATIO else f"BELOW the goal of {GOAL_RATIO:g}"


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train_list", default="", help="train.txt; default: a generated corpus")
    parser.add_argument("--train_path", default="", help="folder the train_list paths are relative to")
    parser.add_argument("--musan_path", default="", help="MUSAN chunks; default: generated")
    parser.add_argument("--rir_path", default="", help="impulse responses; default: generated")
    parser.add_argument("--speakers", type=int, default=20, help="speakers of the generated corpus")
    parser.add_argument("--utterances", type=int, default=12, help="utterances per generated speaker")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--segment_frames", type=int, default=200)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="num_workers to try")
    parser.add_argument("--kinds", nargs="+", default=["threads"], choices=("threads", "processes"),
                        help="worker kinds to try (worker_processes false / true)")
    parser.add_argument("--speed_perturb", default="", help="speed_perturb setting, e.g. 0.9,1.0,1.1")
    parser.add_argument("--warmup", type=int, default=3, help="batches before timing")
    parser.add_argument("--batches", type=int, default=60, help="batches per timed window")
    parser.add_argument("--repeats", type=int, default=3, help="timed windows per setting")
    parser.add_argument("--channels", type=int, default=1024, help="network channels of the step")
    parser.add_argument("--device_target", default="auto")
    parser.add_argument("--steps", type=int, default=3, help="timed steps alone; untimed fed warm-up steps")
    parser.add_argument("--pairs", type=int, default=6, help="alternating fixed/fed step pairs")
    parser.add_argument("--contention_seconds", type=float, default=20.0,
                        help="length of the pipeline-while-training window")
    parser.add_argument("--pipeline_only", action="store_true", help="skip every step measurement")
    parser.add_argument("--device_rate", type=float, default=1000.0,
                        help="samples/s of the device in the workers estimate")
    parser.add_argument("--profile_samples", type=int, default=300, help="draws timed by stage")
    args = parser.parse_args(argv)
    if bool(args.train_list) != bool(args.train_path):
        parser.error("--train_list and --train_path go together")
    return args


def report_pipeline_alone(data, args):
    """Print and return {(augment, num_workers): median samples/s} of the pipeline alone (first kind)."""
    variants = [(augment, kind, workers) for augment in (False, True) for kind in args.kinds
                for workers in args.workers]
    rates = {variant: [] for variant in variants}
    loads = []
    for _ in range(args.repeats):
        for augment, kind, workers in variants:
            config = make_config(data, args, augment, workers, kind == "processes")
            rates[augment, kind, workers].append(pipeline_rate(config, args.warmup, args.batches))
        loads.append(load_average())
    print(f"pipeline alone (median of {args.repeats} alternating windows of {args.batches} batches; "
          f"load {min(loads):.2f}-{max(loads):.2f}):")
    alone = {}
    for augment, kind, workers in variants:
        median = statistics.median(rates[augment, kind, workers])
        one = statistics.median(rates[augment, kind, min(args.workers)])
        if kind == args.kinds[0]:
            alone[augment, workers] = median
        window = rates[augment, kind, workers]
        print(rate_line(f"augment {'on ' if augment else 'off'}, {workers} worker {kind}", median, loads[-1],
                        f"x{median / one:.2f} of {min(args.workers)}  (windows {min(window):.1f}-{max(window):.1f})"))
    kind = "processes" if "processes" in args.kinds else args.kinds[-1]
    per_worker = max(statistics.median(rates[True, kind, workers]) / workers for workers in args.workers)
    print(f"estimate: a device consuming {args.device_rate:g} samples/s (augmentation on) needs about "
          f"{math.ceil(args.device_rate / per_worker)} {kind[:-2] if kind == 'processes' else kind[:-1]} "
          "workers with a core each "
          f"({per_worker:.0f} samples/s per worker measured here; assumes linear scaling)")
    return alone


def report_with_step(data, args, alone):
    """Time the step alone and with the pipeline (augment on, most workers); print the ratios."""
    workers = max(args.workers)
    config = make_config(data, args, True, workers)
    step_cell, batch, device = training_step(config)
    compile_seconds = timed_fixed_step(step_cell, batch)
    print(f"training step on {device}, channels {config.channels}: first step (graph compilation) "
          f"{compile_seconds:.1f} s")
    step_seconds = statistics.median(timed_fixed_step(step_cell, batch) for _ in range(args.steps))
    step_rate = config.minibatch_size / step_seconds
    print(rate_line("step alone, fixed batch", step_rate, load_average(),
                    f"({1000 * step_seconds:.0f} ms/step)"))

    (fed, fixed, stall, wait), (lowest, highest), load = data_stall(step_cell, config, batch, args.steps,
                                                                     args.pairs)
    print(f"step loop, augment on, num_workers {workers} (medians of {args.pairs} alternating pairs):")
    print(f"  fed by the pipeline {1000 * fed:7.0f} ms/step   fixed batch {1000 * fixed:7.0f} ms/step   "
          f"load {load:4.2f}")
    print(f"  data stall {1000 * stall:+.0f} ms/step ({100 * stall / fixed:+.1f}%), pairs "
          f"{1000 * lowest:+.0f} to {1000 * highest:+.0f} ms; median wait for a batch {1000 * wait:.1f} ms")

    shared_pipeline, shared_step, load = pipeline_under_training(step_cell, config, batch,
                                                                 args.contention_seconds, args.warmup)
    print(f"pipeline drained while a step loop runs ({args.contention_seconds:g} s window):")
    print(rate_line(f"pipeline, augment on, num_workers {workers}", shared_pipeline, load))
    print(rate_line("step, fixed batch", shared_step, load))

    print(f"ratios pipeline / step (goal >= {GOAL_RATIO:g}):")
    for (augment, count), rate in alone.items():
        ratio = rate / step_rate
        print(f"  alone, augment {'on ' if augment else 'off'}, num_workers {count}: "
              f"{ratio:6.1f}  {verdict(ratio)}")
    ratio = shared_pipeline / shared_step
    print(f"  sharing the cores, augment on, num_workers {workers}: {ratio:6.1f}  {verdict(ratio)}")


def main(argv=None):
    args = parse_arguments(argv)
    with tempfile.TemporaryDirectory() as scratch:
        data = prepare_data(args, scratch)
        print(f"train list {data[0]}\nmusan {data[2]}\nrirs {data[3]}")
        print(f"batch {args.batch} x {args.segment_frames} frames; {os.cpu_count()} CPUs; "
              f"load {load_average():.2f} at start")
        alone = report_pipeline_alone(data, args)
        report_stage_costs(data, args)
        if not args.pipeline_only:
            report_with_step(data, args, alone)


if __name__ == "__main__":
    main()
