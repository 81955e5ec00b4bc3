"""Prepare VoxCeleb for training and evaluation: wav tree, train.txt and eval.txt.

  train: converts a VoxCeleb2 ``aac`` tree (<spk>/<video>/<n>.m4a) to 16 kHz mono
         16-bit wav under <out>/train/wav, or takes a tree that is already wav
         (VoxCeleb1 ``wav``) as it is, then writes <out>/train.txt.
  eval:  checks an official trial list (veri_test2.txt, list_test_all2.txt,
         list_test_hard2.txt) against the eval wav folder and writes <out>/eval.txt.

Exit status: 0 on success; 1 for bad options, when the input is unusable, an eval
wav is missing, every file failed to convert, or (with --strict) any file failed.
"""
import argparse
import os
import sys

from src.cli import ArgumentParser, run_main
from src.data.lists import read_trial_list
from src.fileio import list_files, write_lines
from src.prepare.common import PrepareError, require_folder
from src.prepare.convert import SOURCE_SUFFIX, convert_tree, failure_lines
from src.prepare.lists import build_train_list, prepare_eval_list, trial_speakers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAILURES_FILE = "train_convert_failures.txt"


def parse_args(argv):
    parser = ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="wav tree (converting m4a) and train.txt")
    train.add_argument("--input", required=True,
                       help="folder holding <spk>/<video>/<n>.m4a (VoxCeleb2 dev/aac) "
                            "or <spk>/<video>/<n>.wav (VoxCeleb1 wav)")
    train.add_argument("--out", required=True,
                       help="dataset folder, e.g. dataset/Voxceleb2: gets train/wav (when "
                            f"converting), train.txt and {FAILURES_FILE}")
    train.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                       help="files converted at once (default: number of CPUs)")
    train.add_argument("--strict", action="store_true",
                       help="fail (exit 1, no train.txt) when any file fails to convert; "
                            "by default failures are logged and skipped")
    train.add_argument("--exclude_trials", metavar="TRIAL_LIST",
                       help="leave out the speakers that occur in this trial list")

    evaluation = commands.add_parser("eval", help="check a trial list and write eval.txt")
    evaluation.add_argument("--trials", required=True,
                            help="official trial list, e.g. veri_test2.txt")
    evaluation.add_argument("--wav_dir", required=True,
                            help="eval wav folder the trial paths are relative to "
                                 "(VoxCeleb1 wav)")
    evaluation.add_argument("--out", required=True, help="dataset folder: gets eval.txt")
    evaluation.add_argument("--show_missing", type=int, default=20, metavar="N",
                            help="missing wavs to print (default 20)")
    return parser.parse_args(argv)


def run_train(args):
    """Convert (if the input is m4a) and write train.txt; return the exit status."""
    require_folder(args.input, "input")
    excluded = ()
    if args.exclude_trials:
        excluded = trial_speakers(read_trial_list(args.exclude_trials))
    if list_files(args.input, SOURCE_SUFFIX):
        wav_root = os.path.join(args.out, "train", "wav")
        summary = convert_tree(args.input, wav_root, jobs=args.jobs)
        failures_path = os.path.join(args.out, FAILURES_FILE)
        write_lines(failures_path, failure_lines(summary.failures))
        print(f"converted {summary.converted}, already done {summary.skipped}, "
              f"failed {len(summary.failures)} of {summary.total} files")
        if summary.failures:
            print(f"failed files are listed in {failures_path}; run again to retry them")
        if summary.run_failed(args.strict):
            return 1
    else:
        print(f"{args.input}: no {SOURCE_SUFFIX} files, listing the wav files as they are")
        wav_root = args.input
    list_path = os.path.join(args.out, "train.txt")
    result = build_train_list(wav_root, list_path, excluded)
    if args.exclude_trials:
        print(f"left out {len(result.excluded_speakers)} speaker(s) "
              f"({result.excluded_utterances} utterances) found in {args.exclude_trials}")
    print(f"wrote {list_path}: {result.speakers} speakers, {result.utterances} utterances")
    print(f"set train_list={list_path} train_path={wav_root} (class_num auto: {result.speakers} speakers)")
    return 0


def run_eval(args):
    """Validate the trial list against the eval wavs and write eval.txt; return the exit status."""
    list_path = os.path.join(args.out, "eval.txt")
    result = prepare_eval_list(args.trials, args.wav_dir, list_path)
    if result.missing:
        shown = result.missing[:max(args.show_missing, 0)]
        for utterance in shown:
            print(f"missing: {os.path.join(args.wav_dir, utterance)}", file=sys.stderr)
        print(f"error: {len(result.missing)} of {result.utterances} wav files named in "
              f"{args.trials} are missing under {args.wav_dir} (first {len(shown)} above); "
              "eval.txt not written", file=sys.stderr)
        return 1
    print(f"wrote {list_path}: {result.trials} trials ({result.targets} target, "
          f"{result.trials - result.targets} non-target) over {result.utterances} utterances")
    print(f"set eval_list={list_path} eval_path={args.wav_dir}")
    return 0


def main(argv=None):
    """Run the command line ``argv``; return the exit status (bad input raises InputError)."""
    args = parse_args(argv)
    try:
        return run_train(args) if args.command == "train" else run_eval(args)
    except OSError as error:
        raise PrepareError(str(error)) from None


if __name__ == "__main__":
    run_main(main)
