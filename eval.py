"""Evaluate an ECAPA-TDNN checkpoint on a trial list, verify one pair, identify speakers, or extract embeddings.

    python eval.py --model_path CKPT [--eval_list eval.txt --eval_path wav/ ...]
    python eval.py --model_path CKPT --verify a.wav b.wav [--threshold 0.5 | --calibration_file C.json]
    python eval.py --model_path CKPT --extract LIST OUTDIR
    python eval.py --model_path CKPT --enroll_list ENROLL --eval_list TRIALS ...   (enrolled speakers)
    python eval.py --model_path CKPT --enroll_list ENROLL --identify TEST_LIST

CKPT is a training checkpoint or an exported-weights checkpoint. Every setting of
src/config.py is accepted as --key=value or from a --config YAML file. Relative paths
are relative to the current directory.
"""
import os

os.environ.setdefault("GLOG_v", "3")  # MindSpore's own log: errors only, unless GLOG_v is set

import logging

from src.cli import run_main
from src.config import format_config, load_config, require_files
from src.errors import InputError
from src.evaluation.embeddings import model_fingerprint
from src.evaluation.extractor import load_extractor
from src.evaluation.evaluate import prepare_inputs, run_evaluation
from src.evaluation.verify_extract import (check_audio_list, extract_to_folder, prepare_verification,
                                    read_verification_audio, verify_pair)
from src.evaluation.sharding import Shards
from src.speakers.identify_eval import prepare_identification, run_identification
from src.fileio import check_writable_folder
from src.device import join_process_group, launched_distributed

logger = logging.getLogger("eval")


def add_arguments(parser):
    """The two alternative modes to evaluating the trial list."""
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--verify", nargs=2, metavar=("WAV_A", "WAV_B"), default=None,
                       help="print the score of two audio files and ACCEPT or REJECT: the raw "
                            "score against threshold, or with calibration_file the LLR against the "
                            "p_target (or target_fa_rate) threshold")
    modes.add_argument("--identify", metavar="TEST_LIST", default=None,
                       help="identify each utterance of TEST_LIST ('<speaker> <utt>' lines, paths relative to "
                            "eval_path) among the speakers of enroll_list: top-1 and top-5 accuracy, and the "
                            "open-set detection and identification rate at false-alarm rates when some "
                            "speakers are not enrolled; writes identification.json to eval_output_dir")
    modes.add_argument("--extract", nargs=2, metavar=("LIST", "OUTDIR"), default=None,
                       help="write OUTDIR/<path with / -> _>.npy for every audio path in LIST "
                            "(one per line; relative paths are relative to LIST's folder)")


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


def identify(config, test_list):
    """Identification figures of a labelled test list (see src/speakers/identify_eval.py)."""
    inputs = prepare_identification(config, test_list)
    check_writable_folder(config.eval_output_dir, "eval_output_dir")
    for line in run_identification(config, load_extractor(config), inputs, test_list):
        print(line)
    print(f"outputs in {config.eval_output_dir}")


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
    if (options.verify or options.extract or options.identify) and launched_distributed():
        raise InputError("--verify, --identify and --extract run as one process; only trial-list evaluation "
                         "is split over the processes of a launcher")
    if options.verify:
        verify(config, *options.verify)
    elif options.identify:
        identify(config, options.identify)
    elif options.extract:
        extract(config, *options.extract)
    else:
        evaluate_trials(config)


if __name__ == "__main__":
    run_main(main)
