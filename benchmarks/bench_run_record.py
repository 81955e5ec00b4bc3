"""The cost of what a training run records (src/train/run_record.py): per logged step and per epoch.

    python benchmarks/bench_run_record.py [--steps 2000] [--epochs 20]

Times RunRecord.step (nine figures to metrics.jsonl and, with TensorBoard on, to the event
file) and RunRecord.epoch (a record, a flush and the redrawn training_curves.png over the
run's records so far), with TensorBoard events on and off, alternating the two, and prints
the mean milliseconds of each. Compare them with a training step (bench_train_step.py): a run
logs every ``log_interval`` steps (20) and ends an epoch every few hundred.
"""
import argparse
import statistics
import tempfile
import time

from benchmarks.machine import describe_machine
from src.train.run_record import RunRecord

FIGURES = {"loss": 3.21, "accuracy": 71.5, "learning_rate": 1e-3, "samples_per_second": 410.0, "skipped": 0,
           "loss_scale": 1.0, "margin": 0.2, "grad_norm": 4.2, "data_wait": 1.5}


def measure(steps, epochs, tensorboard):
    """(ms per logged step, ms per epoch end) of one run of ``steps`` logged steps over ``epochs`` epochs."""
    with tempfile.TemporaryDirectory() as folder:
        record = RunRecord(folder, 0, {"channels": 1024, "max_lrate": 1e-3}, tensorboard)
        step_seconds, epoch_seconds = [], []
        per_epoch = steps // epochs
        for step in range(1, steps + 1):
            start = time.perf_counter()
            record.step(step, 1 + (step - 1) // per_epoch, **{**FIGURES, "loss": FIGURES["loss"] / step})
            step_seconds.append(time.perf_counter() - start)
            if step % per_epoch == 0:
                start = time.perf_counter()
                record.epoch(step, step // per_epoch, loss=1.0 / step, accuracy=50.0, seconds=1.0)
                epoch_seconds.append(time.perf_counter() - start)
        record.close()
    return 1000 * statistics.mean(step_seconds), 1000 * statistics.mean(epoch_seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--steps", type=int, default=2000, help="logged steps of each run")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of each run (curves redrawn at each end)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each kind, alternating")
    args = parser.parse_args()
    print(f"{describe_machine()}; {args.steps} logged steps, {args.epochs} epochs, "
          f"{args.rounds} rounds alternating")
    results = {True: [], False: []}
    for _ in range(args.rounds):
        for tensorboard in (True, False):
            results[tensorboard].append(measure(args.steps, args.epochs, tensorboard))
    for tensorboard, runs in results.items():
        step_ms = statistics.median(run[0] for run in runs)
        epoch_ms = statistics.median(run[1] for run in runs)
        print(f"tensorboard {'on ' if tensorboard else 'off'}: {step_ms:.3f} ms per logged step, "
              f"{epoch_ms:.1f} ms per epoch end (record, flush, curves over {args.steps} steps at the last)")


if __name__ == "__main__":
    main()
