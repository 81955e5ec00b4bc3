"""Calibration measured by speaker-disjoint cross-validation over all unseen speakers.

Every pair of the utterances of DATA_DIR/eval.txt is a trial (target when both are of one
speaker). The speakers are dealt by rank (sorted names) into ``--groups`` K groups. The
trials between groups i and j (within group i when i = j) are calibrated by a fit on the
trials among the other groups only, so no trial is calibrated with either of its speakers
seen; the LLRs of all cells are then pooled and measured together. With K = 5 and 25
speakers, each fit sees 15 or 20 speakers, and the measured list holds every trial.

eval.py scores CHECKPOINT once with cosine and once with AS-norm (training list as
cohort) on the all-pairs list; the fits (linear and QMF, each at cal_prior 0.01 and 0.05)
run here on its scores, with the durations from the audio headers and the raw embedding
norms from eval.py's embedding cache. The table gives, per scoring, EER, minDCF and
actDCF at p = 0.01 and 0.05, Cllr and minCllr; then per calibration the gap
``actDCF / minDCF - 1`` at the operating point of the fit's prior, to the calibrated
scores' own minDCF and to the AS-norm scores' minDCF. Usage:

    python benchmarks/calibration_crossval.py DATA_DIR CHECKPOINT OUT_DIR [--config FILE]
        [--groups 5] [--top_n 100] [--key=value ...]

DATA_DIR holds eval.txt, eval/wav/, train.txt and train/wav/ (the so762 layout); the
config must describe CHECKPOINT's network.
"""
import os

os.environ.setdefault("GLOG_v", "3")  # MindSpore's own log: errors only, unless GLOG_v is set

import subprocess
import sys
from itertools import combinations

import numpy as np

from benchmarks.calibration_folds import calibration_arguments, checked_folders, speaker_of
from src.cli import run_main
from src.data.lists import read_trial_list
from src.errors import InputError
from src.evaluation.calibration import fit_calibration
from src.evaluation.embeddings import CACHE_FILE_NAME, audio_durations, copy_cache
from src.evaluation.metrics import evaluate
from src.evaluation.report import read_scores
from src.fileio import write_lines

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRIORS = (0.01, 0.05)
KINDS = ("linear", "qmf")


class CrossValidationError(InputError):
    """Arguments the benchmark cannot run with, or an evaluation that failed."""


def all_pairs(eval_list):
    """(trial lines of every utterance pair, sorted speaker names) of the utterances in ``eval_list``."""
    names = sorted({name for trial in read_trial_list(eval_list) for name in (trial.utt_a, trial.utt_b)})
    lines = [f"{int(speaker_of(first) == speaker_of(second))} {first} {second}"
             for first, second in combinations(names, 2)]
    return lines, sorted({speaker_of(name) for name in names})


def speaker_groups(speakers, count):
    """Group index of each speaker: rank r of the sorted names goes to group r mod ``count``."""
    if len(speakers) < 2 * count:
        raise CrossValidationError(f"{len(speakers)} speakers cannot fill {count} groups of two or more")
    return {speaker: rank % count for rank, speaker in enumerate(speakers)}


def trial_cells(trials, groups):
    """(N, 2) int: the sorted pair of group indices of each trial's two speakers."""
    pairs = np.array([(groups[speaker_of(trial.utt_a)], groups[speaker_of(trial.utt_b)]) for trial in trials])
    return np.sort(pairs, axis=1)


def cross_validated_llrs(kind, prior, labels, scores, durations, norms, cells):
    """LLRs (N,) of N trials, each cell's from a fit on the trials of the other groups only.

    cells: (N, 2) from :func:`trial_cells`; the other arguments as for fit_calibration.
    """
    llrs = np.empty_like(scores)
    for cell in {tuple(pair) for pair in cells.tolist()}:
        measured = (cells == cell).all(axis=1)
        fit_on = ~np.isin(cells, cell).any(axis=1)
        calibration, _ = fit_calibration(kind, labels[fit_on], prior, scores[fit_on], durations[fit_on],
                                         norms[fit_on], scoring="", model_sha256="", fitted_on={})
        llrs[measured] = calibration.llrs(scores[measured], durations[measured], norms[measured])
    return llrs


def raw_norms(cache_path, trials, audio_root):
    """(N, 2) raw embedding L2 norms of the trials' two sides, from an eval.py embedding cache."""
    with np.load(cache_path, allow_pickle=False) as stored:
        norms = dict(zip(stored["paths"].tolist(), np.linalg.norm(stored["embeddings"].astype(np.float64), axis=1)))
    def norm(name):
        return norms[os.path.abspath(os.path.join(audio_root, name))]
    return np.array([(norm(trial.utt_a), norm(trial.utt_b)) for trial in trials])


def table_row(title, result):
    cells = [f"{100 * result.eer:.2f} %"] + [f"{result.min_dcf[p]:.3f}" for p in PRIORS]
    cells += [f"{result.act_dcf[p]:.3f}" for p in PRIORS] + [f"{result.cllr:.3f}", f"{result.min_cllr:.3f}"]
    return f"| {title} | " + " | ".join(cells) + " |"


def run_eval(command, folder):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "eval.log"), "w", encoding="utf-8") as log:
        result = subprocess.run(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode:
        raise CrossValidationError(f"eval.py failed with status {result.returncode}; see {folder}/eval.log")
    return read_scores(os.path.join(folder, "scores.txt"))


def main(argv=None):
    parser = calibration_arguments(__doc__.split("\n\n", 1)[0])
    parser.add_argument("--groups", type=int, default=5, help="number of speaker groups K")
    args, settings = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    data, out = checked_folders(args, CrossValidationError)
    if args.groups < 3:
        raise CrossValidationError(f"--groups {args.groups}: a cell of two groups needs at least one more to fit on")
    lines, speakers = all_pairs(os.path.join(data, "eval.txt"))
    groups = speaker_groups(speakers, args.groups)
    os.makedirs(out, exist_ok=True)
    pairs = write_lines(os.path.join(out, "pairs_all.txt"), lines)
    print(f"{len(lines)} trials ({sum(line.startswith('1') for line in lines)} target) of {len(speakers)} "
          f"speakers in {args.groups} groups: {pairs}", flush=True)
    audio_root = os.path.join(data, "eval", "wav")
    common = [sys.executable, os.path.join(REPO_ROOT, "eval.py"), "--config", os.path.abspath(args.config),
              f"--model_path={os.path.abspath(args.checkpoint)}", f"--eval_path={audio_root}",
              f"--eval_list={pairs}", f"--train_list={data}/train.txt", f"--train_path={data}/train/wav", *settings]
    cosine_dir, asnorm_dir = os.path.join(out, "cosine"), os.path.join(out, "asnorm")
    trials, cosine = run_eval([*common, f"--eval_output_dir={cosine_dir}"], cosine_dir)
    copy_cache(cosine_dir, asnorm_dir)
    asnorm_trials, asnorm = run_eval([*common, f"--eval_output_dir={asnorm_dir}", "--score_norm=asnorm",
                                      f"--top_n={args.top_n}"], asnorm_dir)
    if [(t.utt_a, t.utt_b) for t in asnorm_trials] != [(t.utt_a, t.utt_b) for t in trials]:
        raise CrossValidationError(f"{asnorm_dir}/scores.txt lists other trials than {cosine_dir}/scores.txt")
    labels = np.array([trial.target for trial in trials])
    names = sorted({name for trial in trials for name in (trial.utt_a, trial.utt_b)})
    seconds = dict(zip(names, audio_durations(names, audio_root)))
    durations = np.array([(seconds[trial.utt_a], seconds[trial.utt_b]) for trial in trials])
    norms = raw_norms(os.path.join(cosine_dir, CACHE_FILE_NAME), trials, audio_root)
    cells = trial_cells(trials, groups)
    results = {"cosine": evaluate(cosine, labels), "AS-norm": evaluate(asnorm, labels)}
    for prior in PRIORS:
        for kind in KINDS:
            llrs = cross_validated_llrs(kind, prior, labels, asnorm, durations, norms, cells)
            results[f"AS-norm + {kind}, fit at {prior:g}"] = evaluate(llrs, labels)
    print("| scoring | EER | minDCF(0.01) | minDCF(0.05) | actDCF(0.01) | actDCF(0.05) | Cllr | minCllr |")
    print("|---" * 8 + "|")
    for title, result in results.items():
        print(table_row(title, result))
    for title, result in results.items():
        if ", fit at " in title:
            prior = float(title.rsplit(" ", 1)[1])
            act = result.act_dcf[prior]
            print(f"{title}: actDCF(p={prior:g}) {act:.3f}; gap to its own minDCF "
                  f"{act / result.min_dcf[prior] - 1:+.1%}, to AS-norm's "
                  f"{act / results['AS-norm'].min_dcf[prior] - 1:+.1%}")


if __name__ == "__main__":
    run_main(main)
