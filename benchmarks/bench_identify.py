"""Latency of identifying one recording among many enrolled speakers (embedding already computed).

    python benchmarks/bench_identify.py [--speakers 100000] [--dim 192] [--cohort 600] [--queries 50]

Builds a speaker store of random embeddings, then times, per scoring (cosine; AS-norm with a
cohort of ``--cohort`` embeddings and top_n 300), what speakers.py identify does after the
network: the one-off preparation when the store is loaded (the models' unit vectors and,
for AS-norm, each model's cohort statistics) and then, per query, the scores against every
speaker, a qmf calibration's LLRs for all of them and the top 5. Prints the median and the
95th percentile over the queries.
"""
import argparse
import statistics
import time

import numpy as np

from benchmarks.machine import describe_machine
from src.evaluation.calibration import Calibration
from src.speakers.claims import identify, llrs_of
from src.speakers.models import ProbeScorer
from src.speakers.store import SpeakerStore

QMF = Calibration("qmf", ("score", "min_log_duration", "max_log_duration", "mean_embedding_norm"),
                  (8.0, 0.3, 0.1, 0.01), -4.0, 0.5, "cosine against enrolled speaker models", "", {})


def random_store(speakers, dim, rng):
    """A store of ``speakers`` speakers, each enrolled from three random recordings."""
    units = rng.standard_normal((speakers, 3, dim))
    units /= np.linalg.norm(units, axis=2, keepdims=True)
    return SpeakerStore.from_arrays("benchmark", [f"spk{index:06d}" for index in range(speakers)],
                                    [[] for _ in range(speakers)], unit_sums=units.sum(axis=1),
                                    norm_sums=np.full(speakers, 3 * 20.0), counts=np.full(speakers, 3),
                                    seconds=np.full(speakers, 24.0))


def measure(store, cohort, queries, rng):
    """(seconds of the preparation, [seconds per query]) for one scoring."""
    start = time.perf_counter()
    models = store.embeddings()
    scorer = ProbeScorer.build(models, cohort=cohort, top_n=300)
    norms = np.linalg.norm(models, axis=1)
    prepare = time.perf_counter() - start
    times = []
    for _ in range(queries):
        probe = rng.standard_normal(models.shape[1]).astype(np.float32)
        start = time.perf_counter()
        scores = scorer.scores(probe)
        llrs = llrs_of(QMF, scores, store.seconds, norms, 6.0, float(np.linalg.norm(probe)))
        identify(store.speakers, scores, llrs, 0.0, 5)
        times.append(time.perf_counter() - start)
    return prepare, times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--speakers", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=192)
    parser.add_argument("--cohort", type=int, default=600)
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    print(describe_machine())
    rng = np.random.default_rng(0)
    store = random_store(args.speakers, args.dim, rng)
    cohort = rng.standard_normal((args.cohort, args.dim)).astype(np.float32)
    print(f"{args.speakers} enrolled speakers, {args.dim}-dim embeddings, {args.queries} queries, "
          "qmf calibration and top 5 included")
    for name, cohort_embeddings in (("cosine", None), (f"AS-norm (cohort {args.cohort}, top_n 300)", cohort)):
        prepare, times = measure(store, cohort_embeddings, args.queries, rng)
        times_ms = sorted(1000 * value for value in times)
        print(f"{name}: preparation {prepare:.2f} s once per store load; per query median "
              f"{statistics.median(times_ms):.1f} ms, 95th percentile "
              f"{times_ms[int(0.95 * (len(times_ms) - 1))]:.1f} ms")


if __name__ == "__main__":
    main()
