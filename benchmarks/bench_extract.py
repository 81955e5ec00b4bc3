"""Speed of full-length embedding extraction with the default network (channels 1024).

Embeds synthetic utterances of about ``--seconds`` seconds (each of another length, within
5%) one at a time through EmbeddingExtractor (one graph with a dynamic time axis, as
eval.py does) and prints:

- the one-off costs: graph compilation and the first feature call (librosa start-up);
- speed of the network alone and of log-mel features + network, as audio seconds per
  wall second ("x real time") and as real-time factor RTF = wall seconds / audio seconds;
- with ``--static``, what a plain static-shape graph costs instead: compilation for
  every new utterance length.

Weights are random: speed does not depend on them. Usage:
    python benchmarks/bench_extract.py [--utterances 5] [--seconds 10] [--static]
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mindspore import Tensor  # noqa: E402

from src.config import load_config  # noqa: E402
from src.data.audio import SAMPLE_RATE  # noqa: E402
from src.data.features import log_mel  # noqa: E402
from src.evaluation.embeddings import EmbeddingExtractor  # noqa: E402
from src.model import build_embedding_network  # noqa: E402
from src.runtime import conv_impl, init_context  # noqa: E402


def timed(function, *arguments):
    """(result, wall seconds) of one call."""
    start = time.perf_counter()
    result = function(*arguments)
    return result, time.perf_counter() - start


def report(label, audio_seconds, wall_seconds):
    """Print audio seconds per wall second and the real-time factor (wall / audio)."""
    speed = audio_seconds / wall_seconds
    print(f"  {label:<22} {speed:7.1f}x real time   RTF {1 / speed:.4f}")


def static_graph_costs(config, impl, lengths):
    """Wall seconds of the first and second call of a static-shape network per length (frames)."""
    network = build_embedding_network(config, impl)
    network.set_train(False)
    costs = []
    for frames in lengths:
        features = Tensor(np.zeros((1, frames, config.in_channels), dtype=np.float32))
        _, first = timed(lambda: network(features).asnumpy())
        _, second = timed(lambda: network(features).asnumpy())
        costs.append((frames, first, second))
    return costs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=5, help="timed utterances")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each utterance")
    parser.add_argument("--static", action="store_true", help="also time a static-shape graph")
    options = parser.parse_args()

    config, _ = load_config([])
    device = init_context(config)
    impl = conv_impl(config, device)
    extractor = EmbeddingExtractor(build_embedding_network(config, impl), config.in_channels)
    print(f"device {device}, conv_impl {impl}, channels {config.channels}, "
          f"{options.utterances} utterances of {options.seconds:g} s")
    compile_seconds = extractor.compile()
    print(f"  graph compilation      {compile_seconds:.1f} s (once, for every length)")
    _, startup_seconds = timed(log_mel, np.zeros(SAMPLE_RATE, dtype=np.float32))
    print(f"  first feature call     {startup_seconds:.1f} s (library start-up, once)")

    # Every utterance has another length (within 5% of --seconds), as in a real trial list.
    rng = np.random.default_rng(0)
    audio_seconds = feature_seconds = network_seconds = 0.0
    for _ in range(options.utterances):
        samples = int(options.seconds * rng.uniform(0.95, 1.05) * SAMPLE_RATE)
        wave = (0.1 * rng.standard_normal(samples)).astype(np.float32)
        features, seconds = timed(log_mel, wave)
        feature_seconds += seconds
        _, seconds = timed(extractor.embed_features, features)
        network_seconds += seconds
        audio_seconds += samples / SAMPLE_RATE
    print(f"  per utterance: features {feature_seconds / options.utterances:.3f} s, "
          f"network {network_seconds / options.utterances:.3f} s")
    report("network alone", audio_seconds, network_seconds)
    report("features + network", audio_seconds, feature_seconds + network_seconds)
    print(f"  graphs compiled: {extractor.compiled_graphs} for {options.utterances} different lengths")

    if options.static:
        frames = int(options.seconds * 100) + 1
        print("static-shape graph (one compilation per new length):")
        for length, first, second in static_graph_costs(config, impl, (frames, frames + 1)):
            print(f"  {length} frames: first call {first:.1f} s, next call {second:.3f} s")


if __name__ == "__main__":
    main()
