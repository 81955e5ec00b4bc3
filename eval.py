"""Evaluate an ECAPA-TDNN checkpoint on a trial list, verify one pair, or extract embeddings.

    python eval.py --model_path CKPT [--eval_list eval.txt --eval_path wav/ ...]
    python eval.py --model_path CKPT --verify a.wav b.wav [--threshold 0.5 | --calibration_file C.json]
    python eval.py --model_path CKPT --extract LIST OUTDIR

CKPT is a training checkpoint or an exported-weights checkpoint. Every setting of
src/config.py is accepted as --key=value or from a --config YAML file. Relative paths
are relative to the current directory.
"""
import os

os.environ.setdefault("GLOG_v", "3")  # MindSpore's own log: errors only, unless GLOG_v is set

import logging

from src.checkpoint import load_embedding_weights
from src.cli import run_main
from src.config import format_config, load_config, require_files
from src.errors import InputError
from src.data.front_ends import front_end_of
from src.evaluation.embeddings import EmbeddingExtractor, model_fingerprint
from src.evaluation.evaluate import prepare_inputs, run_evaluation
from src.evaluation.verify_extract import (check_audio_list, extract_to_folder, prepare_verification,
                                    read_verification_audio, verify_pair)
from src.evaluation.sharding import Shards
from src.fileio import check_writable_folder
from src.inference.folding import fold_batch_norm
from src.model import build_embedding_network
from src.kernels.network import apply_cpu_kernels
from src.device import (conv_impl, init_context, join_process_group,
                         launched_distributed)

logger = logging.getLogger("eval")


def add_arguments(parser):
    """The two alternative modes to evaluating the trial list."""
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--verify", nargs=2, metavar=("WAV_A", "WAV_B"), default=None,
                       help="print the score of two audio files and ACCEPT or REJECT: the raw "
                            "score against threshold, or with calibration_file the LLR against the "
                            "p_target (or target_fa_rate) threshold")
    modes.add_argument("--extract", nargs=2, metavar=("LIST", "OUTDIR"), default=None,
                       help="write OUTDIR/<path with / -> _>.npy for every audio path in LIST "
                            "(one per line; relative paths are relative to LIST's folder)")


def load_extractor(config, distributed=False):
    """The embedding network of the config with the weights of model_path, ready to extract.

    ``distributed``: this process is one rank of a launch (see src/device.py init_context).
    """
    device = init_context(config, distributed)
    impl = conv_impl(config, device)
    network = build_embedding_network(config, impl)
    load_embedding_weights(config.model_path, network)
    folded = fold_batch_norm(network, config, impl) if config.fold_batch_norm else None
    network = apply_cpu_kernels(network if folded is None else folded, config.cpu_kernels, device,
                                config.num_threads)
    extractor = EmbeddingExtractor(network, config.in_channels, config.extraction_graphs, front_end_of(config))
    logger.info("loaded %s on %s%s, %s graphs, cpu_kernels %s, features %s", config.model_path, device,
                "" if folded is None else ", batch norm folded", extractor.graphs, config.cpu_kernels,
                config.features)
    return extractor


def verify(config, path_a, path_b):
    """Print the score of two audio files, the LLR with a calibration_file, and ACCEPT or REJECT.

    Both files, the cohort and the calibration file are checked (readable, enough speech,
    fitting the settings) before the model is loaded (see src/evaluation/verify_extract.py).
    """
    wave_a, wave_b = read_verification_audio(path_a), read_verification_audio(path_b)
    setup = prepare_verification(config)
    for line in verify_pair(config, setup, load_extractor(config), path_a, wave_a, path_b, wave_b):
        print(line)


def extract(config, list_path, out_dir):
    """Write the embedding of every file of an audio list to out_dir (see src/evaluation/verify_extract.py)."""
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
    distributed = launched_distributed()
    extractor = load_extractor(config, distributed)
    shards = None
    if distributed:
        rank, size = join_process_group()
        shards = Shards(rank, size, config.eval_output_dir, model_fingerprint(config.model_path, extractor.network,
                                                                                  config.features))
    lines = run_evaluation(config, extractor, inputs, shards)
    if shards is not None and not shards.gathers:
        logger.info("rank %d of %d: %s; rank 0 scores the trials", shards.rank, shards.size, "; ".join(lines))
        return
    for line in lines:
        print(line)
    print(f"outputs in {config.eval_output_dir}")


def main(argv=None):
    """Parse the settings and run the requested mode; ``argv`` defaults to the command line."""
    config, options = load_config(argv, description=__doc__.splitlines()[0], add_arguments=add_arguments)
    require_files(config, "model_path")
    if (options.verify or options.extract) and launched_distributed():
        raise InputError("--verify and --extract run as one process; only trial-list evaluation is "
                         "split over the processes of a launcher")
    if options.verify:
        verify(config, *options.verify)
    elif options.extract:
        extract(config, *options.extract)
    else:
        evaluate_trials(config)


if __name__ == "__main__":
    run_main(main)
