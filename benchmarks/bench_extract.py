"""Speed of full-length embedding extraction (network alone), by utterance length and variant.

Embeds synthetic utterances of about each ``--seconds`` length (each of another length,
within 5 %, as in a real trial list) one at a time through EmbeddingExtractor, as eval.py
does (batch norm folded unless ``--fold_batch_norm=false``). A variant is one ``--graphs``
kind with one ``--kernels`` value of the cpu_kernels setting:

- ``dynamic``: one graph with a dynamic time axis for every length;
- ``buckets``: static-shape graphs of the padded bucket lengths, with the frame mask;
- ``none`` / ``float32`` / ``bf16``: MindSpore's own ops, or the custom kernels with float32 or
  bfloat16 products (see src/kernels).

Variants alternate utterance by utterance, so all see the same machine load. Printed per
length and variant: the real-time factor of the network alone (RTF = wall seconds / audio
seconds, median over the utterances), its ratio to the first variant's, and the one-off
cost of compilation (the dynamic graph once; each bucket at its first utterance). Then, per
variant, the largest difference from the first variant's embeddings and their smallest
cosine similarity. Weights are random: speed does not depend on them. Settings of the
network (``--channels=512``, ``--num_threads=1`` ...) can be added. Usage:

    python benchmarks/bench_extract.py [--utterances 5] [--seconds 2 5 10 30]
        [--graphs dynamic buckets] [--kernels none float32 bf16] [--files] [--key=value ...]

With ``--files`` it then writes WAV files of the same lengths and times eval.py's whole
extraction of them (reading, features and network, compilation excluded) per variant, against
the network's share of the same run.
"""
import os

os.environ.setdefault("GLOG_v", "3")  # MindSpore's own log: errors only, unless GLOG_v is set

import argparse
import statistics
import tempfile
import time

import numpy as np

from benchmarks.machine import ProductRates, describe_machine, forward_flops
from src.config import load_config
from src.data.audio import SAMPLE_RATE, write_audio
from src.data.features import log_mel
from src.evaluation.embeddings import EXTRACTION_GRAPHS, EmbeddingExtractor, bucket_frames, extract_embeddings
from src.inference.folding import fold_batch_norm
from src.model import build_embedding_network
from src.device import conv_impl, init_context
from src.kernels.network import apply_cpu_kernels


def build_extractors(config, impl, device, graphs, kernel_choices):
    """{(graph kind, cpu_kernels): EmbeddingExtractor}, each on its own copy of one network (same weights)."""
    network = build_embedding_network(config, impl)
    extractors = {}
    for kind in graphs:
        for kernels in kernel_choices:
            copy = build_embedding_network(config, impl)
            for target, source in zip(copy.get_parameters(), network.get_parameters()):
                target.set_data(source.data.copy())
            copy.set_train(False)
            if config.fold_batch_norm:
                copy = fold_batch_norm(copy, config, impl) or copy
            copy = apply_cpu_kernels(copy, kernels, device, config.num_threads)
            extractors[(kind, kernels)] = EmbeddingExtractor(copy, config.in_channels, kind)
    return extractors


def cosine(a, b):
    """Cosine similarity of two embeddings (flattened)."""
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--utterances", type=int, default=5, help="timed utterances per length")
    parser.add_argument("--seconds", type=float, nargs="+", default=[2.0, 5.0, 10.0, 30.0],
                        help="utterance lengths")
    parser.add_argument("--graphs", nargs="+", default=["dynamic"], choices=EXTRACTION_GRAPHS)
    parser.add_argument("--kernels", nargs="+", default=["none"], choices=("none", "float32", "bf16"))
    parser.add_argument("--files", action="store_true",
                        help="also time eval.py's whole extraction of WAV files against the network alone")
    options, settings = parser.parse_known_args()
    config, _ = load_config(settings)
    device = init_context(config)
    impl = conv_impl(config, device)
    extractors = build_extractors(config, impl, device, options.graphs, options.kernels)
    layers = build_embedding_network(config, impl)  # for the FLOPs of its products
    products = ProductRates()
    names = {variant: "/".join(variant) for variant in extractors}
    first = next(iter(extractors))
    print(f"{describe_machine()}; device {device}, conv_impl {impl}, channels {config.channels}, batch norm "
          f"{'folded' if config.fold_batch_norm else 'kept'}, threads {config.num_threads or 'all'}, "
          f"{options.utterances} utterances per length, load {os.getloadavg()[0]:.1f}")
    for variant, extractor in extractors.items():
        seconds = extractor.compile()
        if seconds:
            print(f"  {names[variant]}: graph compilation {seconds:.1f} s (once, for every length)")

    rng = np.random.default_rng(0)
    largest_difference = {variant: 0.0 for variant in extractors}
    smallest_cosine = {variant: 1.0 for variant in extractors}
    for length in options.seconds:
        rates = {variant: [] for variant in extractors}
        utilisation = {variant: [] for variant in extractors}
        compile_seconds = {variant: 0.0 for variant in extractors}
        for _ in range(options.utterances):
            samples = int(length * rng.uniform(0.95, 1.05) * SAMPLE_RATE)
            features = log_mel((0.1 * rng.standard_normal(samples)).astype(np.float32))
            flops = sum(forward_flops(layers, 1, features.shape[0]).values())
            product_rates = products.measure()  # between the utterances: the same machine load
            reference = None
            for variant, extractor in extractors.items():
                if variant[0] == "buckets" and bucket_frames(features.shape[0]) not in extractor.buckets:
                    before = extractor.bucket_compile_seconds
                    extractor.embed_features(features)  # compiles the bucket
                    compile_seconds[variant] += extractor.bucket_compile_seconds - before
                start = time.perf_counter()
                embedding = extractor.embed_features(features)
                seconds = time.perf_counter() - start
                rates[variant].append(seconds * SAMPLE_RATE / samples)
                matching = products.matching(variant[1]) if variant[1] in product_rates else "float32"
                utilisation[variant].append(1e-9 * flops / seconds / product_rates[matching])
                reference = embedding if reference is None else reference
                largest_difference[variant] = max(largest_difference[variant],
                                                  float(np.abs(embedding - reference).max()))
                smallest_cosine[variant] = min(smallest_cosine[variant], cosine(embedding, reference))
        line = f"{length:5.1f} s:"
        for variant, values in rates.items():
            line += (f"  {names[variant]} RTF {statistics.median(values):.4f} "
                     f"MFU {100 * statistics.median(utilisation[variant]):.0f}%")
            if variant != first:
                line += f" ({statistics.median(values) / statistics.median(rates[first]):.2f}x)"
            if compile_seconds[variant]:
                line += f" (bucket compilation {compile_seconds[variant]:.1f} s)"
        print(line + f"  load {os.getloadavg()[0]:.1f}", flush=True)
    print(products.describe() + "; MFU: the network's product FLOPs per second / the rate of its precision "
          "(bf16 for cpu_kernels bf16, float32 otherwise)")
    for variant in extractors:
        if variant != first:
            print(f"{names[variant]} against {names[first]}: largest embedding difference "
                  f"{largest_difference[variant]:.2e}, smallest cosine {smallest_cosine[variant]:.6f}")
    if options.files:
        whole_extraction(extractors, names, options.seconds, options.utterances, rng)


def whole_extraction(extractors, names, lengths, count, rng):
    """Print, per length and variant, eval.py's whole extraction of WAV files (reading, features,
    network; compilation excluded) against its network-alone time, variants alternating."""
    with tempfile.TemporaryDirectory() as folder:
        for length in lengths:
            files = []
            for index in range(count):
                samples = int(length * rng.uniform(0.95, 1.05) * SAMPLE_RATE)
                files.append(f"{length:g}s_{index}.wav")
                write_audio(os.path.join(folder, files[-1]), (0.1 * rng.standard_normal(samples)).astype(np.float32))
            line = f"{length:5.1f} s files:"
            for variant, extractor in extractors.items():
                _, stats = extract_embeddings(extractor, files, folder)
                whole = stats.total_seconds - stats.compile_seconds
                line += (f"  {names[variant]} whole RTF {whole / stats.audio_seconds:.4f}, network "
                         f"{stats.network_seconds / stats.audio_seconds:.4f} ({whole / stats.network_seconds:.2f}x)")
            print(line + f"  load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
