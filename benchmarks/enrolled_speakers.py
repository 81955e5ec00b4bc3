"""Enrolled speakers on a corpus's held-out speakers: verification and identification figures.

    python benchmarks/enrolled_speakers.py DATA_DIR MODEL OUT_DIR [--config configs/small.yaml]
        [--enroll 3] [--folds 5] [--seed 0] [--key=value ...]

DATA_DIR holds eval.txt and eval/wav/<speaker>/... (held-out speakers), train.txt and
train/wav/ (the cohort of AS-norm), as so762 and arabic_sc do. Each held-out speaker is
enrolled from ``--enroll`` of its utterances drawn at random (``--seed``) and tested on the
others; the same draws' first utterance makes the one-recording enrollment, so both are
tested on the same recordings. With cosine and with AS-norm scoring, eval.py then gives:

- pairs: EER and minDCF(0.01) of DATA_DIR/eval.txt (single utterance against single utterance);
- enrolled 1 / enrolled N: EER and minDCF(0.01) of every speaker against every test utterance;
- closed-set identification among all held-out speakers: top-1 and top-5 accuracy;
- open-set identification: the speakers are split into ``--folds`` folds; in turn, one fold
  is left unenrolled (its speakers are the unknown ones) and the rest enrolled; the DIR at
  false-alarm rates of 1, 5 and 10 % is averaged over the folds.

Lists, each run's outputs and results.json go to OUT_DIR (one embedding cache for all runs);
the last lines printed are a markdown table. Trailing --key=value settings go to every run.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys

import numpy as np

from src.cli import ArgumentParser, run_main
from src.data.lists import read_trial_list, trial_utterances
from src.errors import InputError
from src.evaluation.embeddings import CACHE_FILE_NAME
from src.fileio import write_lines, write_text

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCORINGS = (("cosine", "none"), ("AS-norm", "asnorm"))


def parse_args(argv):
    parser = ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("data_dir")
    parser.add_argument("model")
    parser.add_argument("out_dir")
    parser.add_argument("--config", default=os.path.join(REPO_ROOT, "configs", "small.yaml"))
    parser.add_argument("--enroll", type=int, default=3, help="utterances each speaker is enrolled from")
    parser.add_argument("--folds", type=int, default=5, help="folds of speakers for the open-set figures")
    parser.add_argument("--seed", type=int, default=0, help="seed of the enrollment draws")
    args, settings = parser.parse_known_args(argv)
    if any(not (setting.startswith("--") and "=" in setting) for setting in settings):
        raise InputError(f"unexpected arguments {settings}; settings are given as --key=value")
    args.settings = settings
    return args


def write_lists(args):
    """Write the enrollment, trial and test lists; return ``{name: path}``."""
    utterances = trial_utterances(read_trial_list(os.path.join(args.data_dir, "eval.txt")))
    by_speaker = {}
    for utterance in utterances:
        by_speaker.setdefault(utterance.split("/")[0], []).append(utterance)
    rng = np.random.default_rng(args.seed)
    enrolled, tests = {}, []
    for speaker, own in sorted(by_speaker.items()):
        if len(own) <= args.enroll:
            raise InputError(f"{speaker}: {len(own)} utterances, not more than --enroll {args.enroll}")
        drawn = [own[index] for index in rng.permutation(len(own))]
        enrolled[speaker] = drawn[:args.enroll]
        tests += [(speaker, utterance) for utterance in drawn[args.enroll:]]
    folder = os.path.join(args.out_dir, "lists")
    paths = {name: os.path.join(folder, f"{name}.txt") for name in ("enroll_1", f"enroll_{args.enroll}",
                                                                      "trials", "queries")}
    write_lines(paths["enroll_1"], (f"{speaker} {own[0]}" for speaker, own in enrolled.items()))
    write_lines(paths[f"enroll_{args.enroll}"], (" ".join([speaker, *own]) for speaker, own in enrolled.items()))
    write_lines(paths["trials"], (f"{model} {utterance} {'target' if model == speaker else 'nontarget'}"
                                  for model in enrolled for speaker, utterance in tests))
    write_lines(paths["queries"], (f"{speaker} {utterance}" for speaker, utterance in tests))
    speakers = list(enrolled)
    for fold in range(args.folds):
        name = f"enroll_{args.enroll}_open{fold}"
        paths[name] = os.path.join(folder, f"{name}.txt")
        write_lines(paths[name], (" ".join([speaker, *enrolled[speaker]])
                                  for index, speaker in enumerate(speakers) if index % args.folds != fold))
    return paths


class Runner:
    """eval.py runs sharing one embedding cache (OUT_DIR/cache)."""

    def __init__(self, args):
        self.args = args
        self.cache = os.path.join(args.out_dir, "cache")
        os.makedirs(self.cache, exist_ok=True)

    def eval(self, name, options):
        """Run eval.py into OUT_DIR/runs/<name>; return the folder."""
        folder = os.path.join(self.args.out_dir, "runs", name)
        os.makedirs(folder, exist_ok=True)
        if os.path.exists(os.path.join(self.cache, CACHE_FILE_NAME)):
            shutil.copy(os.path.join(self.cache, CACHE_FILE_NAME), folder)
        data = self.args.data_dir
        command = [sys.executable, os.path.join(REPO_ROOT, "eval.py"), "--config", self.args.config,
                   f"--model_path={self.args.model}", f"--eval_path={data}/eval/wav",
                   f"--train_list={data}/train.txt", f"--train_path={data}/train/wav",
                   f"--eval_output_dir={folder}", *options, *self.args.settings]
        result = subprocess.run(command, capture_output=True, text=True)
        with open(os.path.join(folder, "run.log"), "w", encoding="utf-8") as log:
            log.write(" ".join(command) + "\n" + result.stdout + result.stderr)
        if result.returncode:
            raise InputError(f"eval.py failed for {name} (see {folder}/run.log): {result.stderr.strip()[-500:]}")
        shutil.copy(os.path.join(folder, CACHE_FILE_NAME), self.cache)
        return folder

    def verification(self, name, options):
        with open(os.path.join(self.eval(name, options), "metrics.json"), encoding="utf-8") as handle:
            metrics = json.load(handle)
        return {"eer": 100 * metrics["eer"], "min_dcf": metrics["min_dcf"]["0.01"]["value"],
                "trials": metrics["trials"]}

    def identification(self, name, options):
        with open(os.path.join(self.eval(name, options), "identification.json"), encoding="utf-8") as handle:
            return json.load(handle)


def study(args):
    paths = write_lists(args)
    runner = Runner(args)
    results = {}
    many = f"enroll_{args.enroll}"
    for scoring, norm in SCORINGS:
        scored = [f"--score_norm={norm}"]
        row = {"pairs": runner.verification(f"{norm}_pairs", [*scored, f"--eval_list={args.data_dir}/eval.txt"])}
        for enrollment in ("enroll_1", many):
            row[enrollment] = runner.verification(f"{norm}_{enrollment}", [
                *scored, f"--enroll_list={paths[enrollment]}", f"--eval_list={paths['trials']}"])
            closed = runner.identification(f"{norm}_{enrollment}_closed", [
                *scored, f"--enroll_list={paths[enrollment]}", f"--identify={paths['queries']}"])
            row[enrollment]["top_1"] = 100 * closed["top_k_accuracy"]["1"]
            row[enrollment]["top_5"] = 100 * closed["top_k_accuracy"]["5"]
        folds = [runner.identification(f"{norm}_{many}_open{fold}", [
            *scored, f"--enroll_list={paths[f'{many}_open{fold}']}", f"--identify={paths['queries']}"])
            for fold in range(args.folds)]
        row["open_set"] = {f"{100 * entry['false_alarm_rate']:g}": 100 * statistics.mean(
            fold["open_set"][index]["dir"] for fold in folds) for index, entry in enumerate(folds[0]["open_set"])}
        results[scoring] = row
    write_text(os.path.join(args.out_dir, "results.json"), json.dumps(results, indent=1) + "\n")
    return results


def table(results, enroll):
    many = f"enroll_{enroll}"
    lines = [f"| scoring | pairs EER % / minDCF | enrolled from 1: EER % / minDCF | enrolled from {enroll}: EER % / "
             f"minDCF | top-1 % (1 / {enroll}) | top-5 % (1 / {enroll}) | open-set DIR % at FA 1 / 5 / 10 % |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for scoring, row in results.items():
        cells = [f"{row[key]['eer']:.2f} / {row[key]['min_dcf']:.3f}" for key in ("pairs", "enroll_1", many)]
        cells.append(f"{row['enroll_1']['top_1']:.1f} / {row[many]['top_1']:.1f}")
        cells.append(f"{row['enroll_1']['top_5']:.1f} / {row[many]['top_5']:.1f}")
        cells.append(" / ".join(f"{value:.1f}" for value in row["open_set"].values()))
        lines.append(f"| {scoring} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    results = study(args)
    print(json.dumps(results, indent=1))
    print(table(results, args.enroll))


if __name__ == "__main__":
    run_main(main)
