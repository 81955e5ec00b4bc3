"""Speed of full-length embedding extraction (network alone), by utterance length and graph kind.

Embeds synthetic utterances of about each ``--seconds`` length (each of another length,
within 5 %, as in a real trial list) one at a time through EmbeddingExtractor, as eval.py
does (batch norm folded unless ``--fold_batch_norm=false``), with each ``--graphs`` kind:

- ``dynamic``: one graph with a dynamic time axis for every length;
- ``buckets``: static-shape graphs of the padded bucket lengths, with the frame mask.

Variants alternate utterance by utterance, so both see the same machine load. Printed per
length and kind: the real-time factor of the network alone (RTF = wall seconds / audio
seconds, median over the utterances), the ratio buckets / dynamic, and the one-off cost of
compilation (the dynamic graph once; each bucket at its first utterance). Then the largest
difference between the two kinds' embeddings. Weights are random: speed does not depend on
them. Settings of the network (``--channels=512``, ``--num_threads=1`` ...) can be added.
Usage:

    python benchmarks/bench_extract.py [--utterances 5] [--seconds 2 5 10 30]
        [--graphs dynamic buckets] [--key=value ...]
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from src.config import load_config  # noqa: E402
from src.data.audio import SAMPLE_RATE  # noqa: E402
from src.data.features import log_mel  # noqa: E402
from src.evaluation.embeddings import EXTRACTION_GRAPHS, EmbeddingExtractor, bucket_frames  # noqa: E402
from src.inference.folding import fold_batch_norm  # noqa: E402
from src.model import build_embedding_network  # noqa: E402
from src.runtime import conv_impl, init_context  # noqa: E402


def build_extractors(config, impl, graphs):
    """One EmbeddingExtractor per graph kind, each on its own copy of one network (same weights)."""
    network = build_embedding_network(config, impl)
    extractors = {}
    for kind in graphs:
        copy = build_embedding_network(config, impl)
        for target, source in zip(copy.get_parameters(), network.get_parameters()):
            target.set_data(source.data.copy())
        copy.set_train(False)
        if config.fold_batch_norm:
            copy = fold_batch_norm(copy, config, impl) or copy
        extractors[kind] = EmbeddingExtractor(copy, config.in_channels, kind)
    return extractors


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--utterances", type=int, default=5, help="timed utterances per length")
    parser.add_argument("--seconds", type=float, nargs="+", default=[2.0, 5.0, 10.0, 30.0],
                        help="utterance lengths")
    parser.add_argument("--graphs", nargs="+", default=list(EXTRACTION_GRAPHS), choices=EXTRACTION_GRAPHS)
    options, settings = parser.parse_known_args()
    config, _ = load_config(settings)
    device = init_context(config)
    impl = conv_impl(config, device)
    extractors = build_extractors(config, impl, options.graphs)
    print(f"device {device}, conv_impl {impl}, channels {config.channels}, batch norm "
          f"{'folded' if config.fold_batch_norm else 'kept'}, threads {config.num_threads or 'all'}, "
          f"{options.utterances} utterances per length, load {os.getloadavg()[0]:.1f}")
    for kind, extractor in extractors.items():
        seconds = extractor.compile()
        if seconds:
            print(f"  {kind}: graph compilation {seconds:.1f} s (once, for every length)")

    rng = np.random.default_rng(0)
    largest_difference = 0.0
    for length in options.seconds:
        rates = {kind: [] for kind in extractors}
        compile_seconds = {kind: 0.0 for kind in extractors}
        for _ in range(options.utterances):
            samples = int(length * rng.uniform(0.95, 1.05) * SAMPLE_RATE)
            features = log_mel((0.1 * rng.standard_normal(samples)).astype(np.float32))
            embeddings = []
            for kind, extractor in extractors.items():
                if kind == "buckets" and bucket_frames(features.shape[0]) not in extractor.buckets:
                    before = extractor.bucket_compile_seconds
                    extractor.embed_features(features)  # compiles the bucket
                    compile_seconds[kind] += extractor.bucket_compile_seconds - before
                start = time.perf_counter()
                embeddings.append(extractor.embed_features(features))
                rates[kind].append((time.perf_counter() - start) * SAMPLE_RATE / samples)
            largest_difference = max(largest_difference, max(
                float(np.abs(embedding - embeddings[0]).max()) for embedding in embeddings))
        line = f"{length:5.1f} s:" + "".join(
            f"  {kind} RTF {statistics.median(values):.4f}" for kind, values in rates.items())
        if len(rates) == 2:
            line += f"  buckets/dynamic {statistics.median(rates['buckets']) / statistics.median(rates['dynamic']):.2f}"
        if compile_seconds.get("buckets"):
            line += f"  (bucket compilation {compile_seconds['buckets']:.1f} s)"
        print(line + f"  load {os.getloadavg()[0]:.1f}", flush=True)
    if len(extractors) == 2:
        print(f"largest difference between the kinds' embeddings: {largest_difference:.2e}")


if __name__ == "__main__":
    main()
