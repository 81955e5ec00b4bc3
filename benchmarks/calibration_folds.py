"""How well a calibration fitted on some unseen speakers holds on others: two-fold figures.

The evaluation speakers of DATA_DIR/eval.txt are split by rank (sorted names): the
even-ranked ones form group A, the odd-ranked ones group B. Each group's trial list is every
pair of its utterances (target when both are of one speaker). Fold A->B fits the
calibration on A's list (``cal_list``) and measures on B's, fold B->A the other way round;
no speaker is in both lists of a fold. For each fold eval.py scores CHECKPOINT with

    cosine, AS-norm (training list as cohort), and AS-norm + linear / QMF calibration fitted
    at cal_prior 0.01 and at 0.05

and the table gives EER, minDCF and actDCF at p = 0.01 and 0.05, Cllr and minCllr, then
per fold and calibration the gap ``actDCF / minDCF - 1`` at the operating point of the fit's
prior. Last, from the AS-norm scores of the two folds, the gap of a linear calibration fitted
at priors 0.01, 0.05 and 0.5 on the other group (as in the folds) and on the measured list
itself (an oracle: what the linear form allows at best), with each fit's slope and offset.
Lists, scores and logs go to OUT_DIR (the embeddings are extracted once per fold and copied
between its runs). Usage:

    python benchmarks/calibration_folds.py DATA_DIR CHECKPOINT OUT_DIR [--config FILE]
        [--top_n 100] [--key=value ...]

DATA_DIR holds eval.txt, eval/wav/, train.txt and train/wav/ (the so762 layout); the
config must describe CHECKPOINT's network (e.g. configs/small.yaml for a recipe run).
"""
import os

os.environ.setdefault("GLOG_v", "3")  # MindSpore's own log: errors only, unless GLOG_v is set

import re
import subprocess
import sys
from collections import defaultdict
from itertools import combinations

import numpy as np

from src.cli import ArgumentParser, run_main
from src.data.lists import read_trial_list
from src.errors import InputError
from src.evaluation.calibration import fit_logistic
from src.evaluation.metrics import act_dcf_from_llrs, compute_min_dcf
from src.evaluation.report import read_scores
from src.evaluation.embeddings import copy_cache
from src.fileio import write_lines

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRIORS = (0.01, 0.05)
METRICS = ("EER", "minDCF(p=0.01)", "minDCF(p=0.05)", "actDCF(p=0.01)", "actDCF(p=0.05)", "Cllr", "minCllr")
METRIC_LINE = re.compile(r"^(\S+) = ([0-9.]+)%?$", re.MULTILINE)


class FoldsError(InputError):
    """Arguments the benchmark cannot run with, or an evaluation that failed."""


def speaker_of(utterance):
    return utterance.split("/", 1)[0]


def group_lists(eval_list):
    """The all-pairs trial lists (lines) of speaker groups A and B of ``eval_list``."""
    utterances = defaultdict(set)
    for trial in read_trial_list(eval_list):
        for utterance in (trial.utt_a, trial.utt_b):
            utterances[speaker_of(utterance)].add(utterance)
    speakers = sorted(utterances)
    if len(speakers) < 4:
        raise FoldsError(f"{eval_list}: {len(speakers)} speakers; two groups need at least 4")
    groups = {}
    for name, members in (("A", speakers[0::2]), ("B", speakers[1::2])):
        names = sorted(utterance for speaker in members for utterance in utterances[speaker])
        groups[name] = [f"{int(speaker_of(first) == speaker_of(second))} {first} {second}"
                        for first, second in combinations(names, 2)]
    return groups


def metrics(output):
    """The first value of each metric in :data:`METRICS` printed by eval.py."""
    found = {}
    for name, value in METRIC_LINE.findall(output):
        found.setdefault(name, float(value))
    return found


def calibration_arguments(description):
    """The option parser of the calibration benchmarks: DATA_DIR CHECKPOINT OUT_DIR --config --top_n."""
    parser = ArgumentParser(description=description)
    parser.add_argument("data_dir", help="folder with eval.txt, eval/wav/, train.txt, train/wav/")
    parser.add_argument("checkpoint", help="the model to score")
    parser.add_argument("out_dir", help="folder for the lists, the evaluations and their logs")
    parser.add_argument("--config", default=os.path.join(REPO_ROOT, "configs", "small.yaml"),
                        help="settings describing the checkpoint's network")
    parser.add_argument("--top_n", type=int, default=100, help="AS-norm cohort top_n")
    return parser


def checked_folders(args, error):
    """(data folder, output folder), absolute, once eval.txt, the checkpoint and the config exist;
    ``error`` (an InputError class) otherwise."""
    data, out = os.path.abspath(args.data_dir), os.path.abspath(args.out_dir)
    for path in (os.path.join(data, "eval.txt"), args.checkpoint, args.config):
        if not os.path.isfile(path):
            raise error(f"file {path} not found")
    return data, out


def main(argv=None):
    parser = calibration_arguments(__doc__.split("\n\n", 1)[0])
    args, settings = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    data, out = checked_folders(args, FoldsError)
    os.makedirs(out, exist_ok=True)
    lists = {}
    for name, lines in group_lists(os.path.join(data, "eval.txt")).items():
        lists[name] = os.path.join(out, f"pairs_{name}.txt")
        write_lines(lists[name], lines)
        targets = sum(line.startswith("1") for line in lines)
        print(f"group {name}: {len(lines)} trials ({targets} target) in {lists[name]}", flush=True)
    common = ["--config", os.path.abspath(args.config), f"--model_path={os.path.abspath(args.checkpoint)}",
              f"--eval_path={data}/eval/wav", f"--train_list={data}/train.txt",
              f"--train_path={data}/train/wav", *settings]
    asnorm = ["--score_norm=asnorm", f"--top_n={args.top_n}"]
    variants = [("cosine", []), ("AS-norm", asnorm)]
    for prior in PRIORS:
        for kind in ("linear", "qmf"):
            variants.append((f"AS-norm + {kind}, prior {prior:g}", [
                *asnorm, f"--score_calibration={kind}", f"--cal_prior={prior}", f"--cal_path={data}/eval/wav"]))
    rows, gaps = [], []
    for calibrate_on, measure_on in (("A", "B"), ("B", "A")):
        fold = f"{calibrate_on}->{measure_on}"
        first = None
        for index, (title, extra) in enumerate(variants):
            folder = os.path.join(out, f"fold_{calibrate_on}{measure_on}", f"variant{index}")
            if first is not None:
                copy_cache(first, folder)
            calibration = [f"--cal_list={lists[calibrate_on]}"] if "--score_calibration" in " ".join(extra) else []
            command = [sys.executable, os.path.join(REPO_ROOT, "eval.py"), *common,
                       f"--eval_list={lists[measure_on]}", f"--eval_output_dir={folder}", *extra, *calibration]
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, "eval.log"), "w", encoding="utf-8") as log:
                result = subprocess.run(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
                log.write(result.stdout)
            if result.returncode:
                raise FoldsError(f"eval.py failed with status {result.returncode}; see {folder}/eval.log")
            first = first or folder
            values = metrics(result.stdout)
            rows.append(f"| {fold} | {title} | " + " | ".join(f"{values[name]:.3f}" if name != "EER"
                                                             else f"{values[name]:.2f} %" for name in METRICS) + " |")
            print(rows[-1], flush=True)
            if ", prior " in title:
                prior = title.rsplit(" ", 1)[1]
                gap = values[f"actDCF(p={prior})"] / values[f"minDCF(p={prior})"] - 1
                gaps.append(f"{fold} {title}: actDCF(p={prior}) {values[f'actDCF(p={prior})']:.3f} "
                            f"vs minDCF {values[f'minDCF(p={prior})']:.3f}: {gap:+.1%}")
    print("| fold | scoring | " + " | ".join(METRICS) + " |")
    print("|---" * (len(METRICS) + 2) + "|")
    print("\n".join(rows))
    print("\n".join(gaps))
    print("\n".join(linear_fit_gaps(os.path.join(out, "fold_AB", "variant1", "scores.txt"),
                                     os.path.join(out, "fold_BA", "variant1", "scores.txt"))))


def labelled_scores(path):
    trials, values = read_scores(path)
    return values, np.array([trial.target for trial in trials])


def linear_fit_gaps(scores_on_b, scores_on_a):
    """Lines: per measured group and p_target, the gap of linear fits on the other group and on itself."""
    lines = []
    for measured, other, name in ((scores_on_b, scores_on_a, "B"), (scores_on_a, scores_on_b, "A")):
        values, labels = labelled_scores(measured)
        for p_target in PRIORS:
            min_dcf = compute_min_dcf(values, labels, p_target)[0]
            cells = []
            for source, fit_on in (("other group", other), ("itself", measured)):
                fit_values, fit_labels = labelled_scores(fit_on)
                for prior in (p_target, 0.5):
                    weights, bias = fit_logistic(fit_values[:, np.newaxis], fit_labels, prior)
                    act = act_dcf_from_llrs(values * weights[0] + bias, labels, p_target)[0]
                    cells.append(f"fit on {source} at {prior:g}: {act / min_dcf - 1:+.1%} "
                                 f"(slope {weights[0]:.2f}, offset {bias:.2f})")
            lines.append(f"linear on AS-norm, measured on {name}, p={p_target:g} (minDCF {min_dcf:.3f}): "
                         + "; ".join(cells))
    return lines


if __name__ == "__main__":
    run_main(main)
