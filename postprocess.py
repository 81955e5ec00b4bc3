"""Score the trials from the embedding files of the fixed-length inference path.

    python postprocess.py --result_path DIR [--eval_list eval.txt] [--emb_size N | --mindir_path M]
                          [--window_list windows.txt] [--log_file acc.log] [--score_file scores.txt]
                          [--config FILE.yaml]

Reads ``<result_path>/<name>.bin`` (emb_size float32 values) for every utterance of the trial
list (names as in src/inference/fixed_length.py); with ``--window_list`` (the windows.txt of
preprocess.py with ``windows: all``) the results of an utterance's windows instead, whose
L2-normalised mean (L2-normalised again) is its embedding. Each trial is scored by cosine
similarity and EER and minDCF are computed with the same code as eval.py. The summary is
printed and appended to ``--log_file`` (``EER = x.xx%`` first). ``--mindir_path`` takes
emb_size from the model's output shape (MindIR or ONNX). A missing or wrongly sized result
file stops the script naming the file.
The ``calibration_file`` setting (a calibration eval.py fitted on plain cosine scores) turns
the scores into LLRs first; a qmf one reads the audio durations from ``eval_path``.
"""
import os

os.environ.setdefault("GLOG_v", "3")  # MindSpore's own log: errors only, unless GLOG_v is set

from src.cli import run_main
from src.config import load_config, require_files
from src.data.lists import read_trial_list, trial_utterances
from src.errors import InputError
from src.fileio import check_writable_file
from src.evaluation.calibration_step import calibrate_cosine_scores
from src.evaluation.metrics import evaluate
from src.evaluation.report import UNCALIBRATED_NOTE, append_summary, format_summary, write_scores
from src.evaluation.scoring import score_trials, trial_labels
from src.inference.model_file import embedding_size_of
from src.inference.fixed_length import read_window_list
from src.inference.results import read_result_embeddings, read_window_embeddings


def add_arguments(parser):
    parser.add_argument("--result_path", default="./result_Files", help="folder of <name>.bin embeddings")
    parser.add_argument("--mindir_path", default="",
                        help="exported model (MindIR or ONNX) whose output size replaces the emb_size setting")
    parser.add_argument("--window_list", default="",
                        help="windows.txt of preprocess.py (windows: all): average each utterance's windows")
    parser.add_argument("--log_file", default="acc.log", help="text file the summary is appended to")
    parser.add_argument("--score_file", default="", help="also write '<utt_a> <utt_b> <score> <label>' lines here")


def main():
    config, args = load_config(description="EER and minDCF from fixed-length inference results",
                               add_arguments=add_arguments)
    require_files(config, "eval_list")
    check_writable_file(args.log_file, "--log_file")
    if args.score_file:
        check_writable_file(args.score_file, "--score_file")
    emb_size = embedding_size_of(args.mindir_path) if args.mindir_path else config.emb_size
    trials = read_trial_list(config.eval_list)
    if args.window_list:
        require_files(args, "window_list")
        embeddings = read_window_embeddings(args.result_path, read_window_list(args.window_list),
                                            trial_utterances(trials), emb_size, args.window_list)
    else:
        embeddings = read_result_embeddings(args.result_path, trial_utterances(trials), emb_size)
    try:
        scores = score_trials(embeddings, trials)
        note = UNCALIBRATED_NOTE
        if config.calibration_file:
            calibration, scores = calibrate_cosine_scores(config.calibration_file, trials, scores, embeddings,
                                                          config.eval_path)
            note = f"scores are LLRs of the {calibration.kind} calibration {config.calibration_file}"
        result = evaluate(scores, trial_labels(trials))
    except InputError:
        raise
    except ValueError as error:
        raise InputError(f"{config.eval_list} with results in {args.result_path}: {error}") from None
    if args.score_file:
        write_scores(args.score_file, trials, scores)
    for line in format_summary(result) + [note]:
        print(line)
    append_summary(args.log_file, result)
    print(f"{len(trials)} trials, {len(embeddings)} utterances; summary appended to {args.log_file}")


if __name__ == "__main__":
    run_main(main)
