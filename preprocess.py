"""Write the fixed-length feature files of the evaluation utterances.

    python preprocess.py [--eval_list eval.txt] [--eval_path eval/wav] [--output_path DIR]
                         [--length N | --mindir_path MODEL] [--windows first|all] [--window_hop H]
                         [--config FILE.yaml]

With ``windows: first`` (the default) every utterance of the trial list becomes
``<output_path>/feat/<name>.bin``: float32 (1, length, 80) log-mel features of its first
``length`` frames (shorter audio repeated), the exact input of the exported model (see
src/inference/fixed_length.py), listed in ``utt_list.txt`` ('<name>.bin <utterance>' lines).
With ``windows: all`` every utterance becomes ``feat/<name>.w<k>.bin`` files, windows of
``length`` frames every ``window_hop`` frames (0 = length // 2) with the last one aligned to
the end of the utterance, listed in ``windows.txt`` ('<window file> <utterance>' lines);
postprocess.py averages their embeddings. The folder also receives a copy of the trial list
as ``eval.txt``. ``--mindir_path`` takes ``length`` from the model's input shape (MindIR or
ONNX) and the front end from its model card (the .json export.py writes beside it), so that
an imported SpeechBrain or WeSpeaker model gets its library's features. Existing .bin files
in ``<output_path>/feat`` are removed first.
"""
import os

os.environ.setdefault("GLOG_v", "3")  # MindSpore's own log: errors only, unless GLOG_v is set

import time

from src.cli import run_main
from src.config import ConfigError, load_config, require_dirs, require_files
from src.data.front_ends import FRONT_ENDS, front_end_of
from src.data.lists import read_trial_list, trial_utterances
from src.evaluation.embeddings import require_audio_files
from src.fileio import check_writable_folder
from src.inference.binary_io import list_bin_files
from src.inference.fixed_length import TRIAL_LIST, WINDOW_LIST, check_fixed_length, window_hop
from src.inference.model_file import ModelFileError, fixed_length_of, model_card_path, read_model_card
from src.inference.preprocessing import write_feature_folder


def add_arguments(parser):
    parser.add_argument("--output_path", default="./preprocess_Result", help="folder to fill")
    parser.add_argument("--mindir_path", default="",
                        help="exported model (MindIR or ONNX) whose input length replaces the length setting")


def model_front_end(config, model_path):
    """The front end for the model at ``model_path`` (or none): its model card's, else the setting's.
    ConfigError when the features setting names another one than the card, or the card an unknown one."""
    card = read_model_card(model_path) if model_path else None
    if card is None:
        if model_path:
            print(f"warning: {model_path} has no model card ({model_card_path(model_path)}); computing the "
                  f"features setting's front end, {config.features}")
        return front_end_of(config)
    if card["features"] not in FRONT_ENDS:
        raise ModelFileError(f"{model_card_path(model_path)}: names the front end {card['features'][:40]!r}, which "
                             f"is not one of {', '.join(sorted(FRONT_ENDS))}")
    if card["features"] == config.features:
        return front_end_of(config)
    if config.features != "zoo":
        raise ConfigError(f"features: {config.features}, but {model_card_path(model_path)} says the model takes "
                          f"{card['features']} features")
    print(f"front end {card['features']}, from {model_card_path(model_path)}")
    return FRONT_ENDS[card["features"]]


def main():
    config, args = load_config(description="Write fixed-length feature files for inference",
                               add_arguments=add_arguments)
    require_files(config, "eval_list")
    require_dirs(config, "eval_path")
    length = fixed_length_of(args.mindir_path, config.in_channels) if args.mindir_path else config.length
    check_fixed_length(length)
    front_end = model_front_end(config, args.mindir_path)
    check_writable_folder(args.output_path, "--output_path")
    trials = read_trial_list(config.eval_list)
    utterances = trial_utterances(trials)
    require_audio_files(utterances, config.eval_path, f"eval_list {config.eval_list}")

    start = time.perf_counter()
    feature_dir = write_feature_folder(config.eval_list, utterances, config.eval_path, args.output_path, length,
                                       config.windows, config.window_hop, front_end)
    count = len(list_bin_files(feature_dir))
    windows = ("" if config.windows == "first" else
               f", windows every {window_hop(length, config.window_hop)} frames listed in "
               f"{os.path.join(args.output_path, WINDOW_LIST)}")
    print(f"wrote {count} feature files of shape (1, {length}, {config.in_channels}) for {len(utterances)} "
          f"utterances to {feature_dir} in {time.perf_counter() - start:.1f} s{windows} ({len(trials)} trials in "
          f"{os.path.join(args.output_path, TRIAL_LIST)})")


if __name__ == "__main__":
    run_main(main)
