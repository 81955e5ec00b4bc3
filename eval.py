"""Evaluate an ECAPA-TDNN checkpoint on a trial list, verify one pair, or extract embeddings.

    python eval.py --model_path CKPT [--eval_list eval.txt --eval_path wav/ ...]
    python eval.py --model_path CKPT --verify a.wav b.wav [--threshold 0.5]
    python eval.py --model_path CKPT --extract LIST OUTDIR

CKPT is a training checkpoint or an exported-weights checkpoint. Every setting of
src/config.py is accepted as --key=value or from a --config YAML file. Relative paths
are relative to the current directory.
"""
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from src.checkpoint import load_embedding_weights  # noqa: E402
from src.cli import run_main  # noqa: E402
from src.config import format_config, load_config, require_files  # noqa: E402
from src.evaluation.embeddings import EmbeddingExtractor  # noqa: E402
from src.evaluation.evaluate import prepare_inputs, run_evaluation  # noqa: E402
from src.evaluation.extract import (check_audio_list, extract_to_folder, read_verification_audio,  # noqa: E402
                                    verify_pair)
from src.fileio import check_writable_folder  # noqa: E402
from src.model import build_embedding_network  # noqa: E402
from src.runtime import conv_impl, init_context  # noqa: E402

logger = logging.getLogger("eval")


def add_arguments(parser):
    """The two alternative modes to evaluating the trial list."""
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--verify", nargs=2, metavar=("WAV_A", "WAV_B"), default=None,
                       help="print the cosine score of two audio files and ACCEPT if it is "
                            ">= threshold, else REJECT")
    modes.add_argument("--extract", nargs=2, metavar=("LIST", "OUTDIR"), default=None,
                       help="write OUTDIR/<path with / -> _>.npy for every audio path in LIST "
                            "(one per line; relative paths are relative to LIST's folder)")


def load_extractor(config):
    """The embedding network of the config with the weights of model_path, ready to extract."""
    device = init_context(config)
    network = build_embedding_network(config, conv_impl(config, device))
    load_embedding_weights(config.model_path, network)
    logger.info("loaded %s on %s", config.model_path, device)
    return EmbeddingExtractor(network, config.in_channels)


def verify(config, path_a, path_b):
    """Print the cosine score of two audio files and ACCEPT (score >= threshold) or REJECT.

    Both files are read and checked (readable, enough speech) before the model is loaded.
    """
    wave_a, wave_b = read_verification_audio(path_a), read_verification_audio(path_b)
    score = verify_pair(load_extractor(config), path_a, wave_a, path_b, wave_b)
    decision = "ACCEPT" if score >= config.threshold else "REJECT"
    print(f"score = {score:.4f}  threshold = {config.threshold:g}  {decision}")


def extract(config, list_path, out_dir):
    """Write the embedding of every file of an audio list to out_dir (see src/evaluation/extract.py)."""
    entries = check_audio_list(list_path)
    check_writable_folder(out_dir, "--extract OUTDIR")
    stats = extract_to_folder(load_extractor(config), entries, out_dir)
    print(f"wrote {len(entries)} embeddings to {out_dir}")
    print(stats.describe())


def evaluate_trials(config):
    """Score eval_list and write the results to eval_output_dir (see src/evaluation/evaluate.py)."""
    logger.info("settings:\n%s", format_config(config))
    inputs = prepare_inputs(config)
    check_writable_folder(config.eval_output_dir, "eval_output_dir")
    for line in run_evaluation(config, load_extractor(config), inputs):
        print(line)
    print(f"outputs in {config.eval_output_dir}")


def main(argv=None):
    """Parse the settings and run the requested mode; ``argv`` defaults to the command line."""
    config, options = load_config(argv, description=__doc__.splitlines()[0], add_arguments=add_arguments)
    require_files(config, "model_path")
    if options.verify:
        verify(config, *options.verify)
    elif options.extract:
        extract(config, *options.extract)
    else:
        evaluate_trials(config)


if __name__ == "__main__":
    run_main(main)
