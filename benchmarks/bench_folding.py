"""Speed of full-length extraction with batch norm folded (src/inference/folding.py) vs kept.

Builds the configured network (default settings: channels 1024) with random weights and
batch-norm statistics, its folded inference copy, and one EmbeddingExtractor for each (one
graph with a dynamic time axis, as eval.py uses). Both embed the same utterances of about
``--seconds`` seconds, interleaved in rounds so that both see the same load; prints the
network time per utterance of each, their ratio, the largest embedding difference and the
load average. Usage:

    python benchmarks/bench_folding.py [--rounds 3] [--seconds 10] [--channels 1024]
"""
import os

os.environ.setdefault("GLOG_v", "3")  # MindSpore's own log: errors only, unless GLOG_v is set

import argparse
import time

import numpy as np

from mindspore import Tensor

from src.config import load_config
from src.evaluation.embeddings import EmbeddingExtractor
from src.inference.folding import fold_batch_norm
from src.model import build_embedding_network
from src.device import conv_impl, init_context


def randomise_batch_norms(network, rng):
    """Give every batch norm of ``network`` random statistics and affine parameters."""
    for name, parameter in network.parameters_dict().items():
        if name.endswith(("moving_mean", "gamma", "beta")):
            values = 0.3 * rng.standard_normal(parameter.shape) + (1.0 if name.endswith("gamma") else 0.0)
        elif name.endswith("moving_variance"):
            values = 0.5 + rng.random(parameter.shape)
        else:
            continue
        parameter.set_data(Tensor(values.astype(np.float32)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (each embeds every utterance once)")
    parser.add_argument("--utterances", type=int, default=2, help="utterances per round")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each utterance")
    parser.add_argument("--channels", type=int, default=1024, help="channels of the network")
    options = parser.parse_args()

    config, _ = load_config([f"--channels={options.channels}"])
    device = init_context(config)
    impl = conv_impl(config, device)
    rng = np.random.default_rng(0)
    network = build_embedding_network(config, impl)
    randomise_batch_norms(network, rng)
    network.set_train(False)
    extractors = {"kept": EmbeddingExtractor(network, config.in_channels),
                  "folded": EmbeddingExtractor(fold_batch_norm(network, config, impl), config.in_channels)}
    print(f"device {device}, conv_impl {impl}, channels {config.channels}, {options.rounds} rounds of "
          f"{options.utterances} utterances of about {options.seconds:g} s")
    for name, extractor in extractors.items():
        print(f"  {name:<7} graph compilation {extractor.compile():.1f} s")

    frames = [int(options.seconds * 100 * rng.uniform(0.95, 1.05)) for _ in range(options.utterances)]
    inputs = [rng.standard_normal((count, config.in_channels)).astype(np.float32) for count in frames]
    seconds = {name: 0.0 for name in extractors}
    difference = 0.0
    for _ in range(options.rounds):
        outputs = {}
        for name, extractor in extractors.items():
            start = time.perf_counter()
            outputs[name] = [extractor.embed_features(features) for features in inputs]
            seconds[name] += time.perf_counter() - start
        difference = max([difference] + [float(np.abs(a - b).max() / np.abs(a).max())
                                         for a, b in zip(outputs["kept"], outputs["folded"])])
    count = options.rounds * options.utterances
    for name, total in seconds.items():
        print(f"  {name:<7} network {1000 * total / count:8.1f} ms per utterance")
    print(f"  folded / kept time ratio {seconds['folded'] / seconds['kept']:.3f}; largest embedding difference "
          f"{difference:.2g} x largest value; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
