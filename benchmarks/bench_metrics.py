"""Time the evaluation back end on VoxCeleb1-H-sized synthetic data.

- EER + minDCF(p=0.01) + minDCF(p=0.05) on 580,000 random trials, both from one shared
  ROC (``evaluate``) and as three independent calls.
- Cosine and AS-norm scoring of 580,000 trials over 4,708 utterances with a 5,994-row
  cohort of 192-dim embeddings (mean subtraction included).

Prints the median wall time of a few runs. Usage: python benchmarks/bench_metrics.py [--runs N]
"""
import argparse
import statistics
import time

import numpy as np

from src.data.lists import Trial
from src.evaluation.metrics import compute_eer, compute_min_dcf, evaluate
from src.evaluation.scoring import mean_embedding, score_trials

NUM_TRIALS = 580_000
NUM_UTTERANCES = 4_708
COHORT_SIZE = 5_994
DIM = 192
TOP_N = 300


def median_seconds(function, runs):
    """Median wall time in seconds of ``runs`` calls of ``function()``."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def separate_metrics(scores, labels):
    compute_eer(scores, labels)
    compute_min_dcf(scores, labels, 0.01)
    compute_min_dcf(scores, labels, 0.05)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs per figure (median)")
    runs = parser.parse_args().runs
    rng = np.random.default_rng(0)

    labels = rng.random(NUM_TRIALS) < 0.5
    scores = rng.normal(size=NUM_TRIALS) + 3.0 * labels
    print(f"metrics on {NUM_TRIALS:,} trials:")
    shared = median_seconds(lambda: evaluate(scores, labels), runs)
    print(f"  EER + 2 minDCF, shared ROC:  {shared:.3f} s")
    separate = median_seconds(lambda: separate_metrics(scores, labels), runs)
    print(f"  EER + 2 minDCF, 3 ROCs:      {separate:.3f} s")

    names = [f"id{k // 10:05d}/video/{k % 10:05d}.wav" for k in range(NUM_UTTERANCES)]
    embeddings = dict(zip(names, rng.normal(size=(NUM_UTTERANCES, DIM)).astype(np.float32)))
    pairs = rng.integers(0, NUM_UTTERANCES, size=(NUM_TRIALS, 2))
    trials = [Trial(bool(k % 2), names[a], names[b]) for k, (a, b) in enumerate(pairs.tolist())]
    cohort = rng.normal(size=(COHORT_SIZE, DIM)).astype(np.float32)
    mean = mean_embedding(cohort)
    print(f"scoring {NUM_TRIALS:,} trials over {NUM_UTTERANCES:,} utterances, {DIM}-dim:")
    cosine = median_seconds(lambda: score_trials(embeddings, trials, mean=mean), runs)
    print(f"  cosine:                      {cosine:.3f} s")
    as_norm = median_seconds(
        lambda: score_trials(embeddings, trials, mean=mean, cohort=cohort, top_n=TOP_N), runs)
    print(f"  AS-norm (cohort {COHORT_SIZE:,}, top {TOP_N}): {as_norm:.3f} s")


if __name__ == "__main__":
    main()
