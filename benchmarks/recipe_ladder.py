"""What each part of the recipe adds: EER and minDCF(0.01) of a cumulative ladder, per seed.

Rows, each adding one part to the row above it (every row is a training or a scoring of
``scripts/run_recipe.py`` with CONFIG, normally configs/small.yaml, with the parts below it
switched off and augmentation switched on or off by settings):

    a  zoo recipe: fixed margin, no speed perturbation, no augmentation
    b  + MUSAN/RIR augmentation at the zoo's settings (every kind weight 1, noise 0-15 dB,
         babble 3-8 talkers at 13-20 dB each)
    b' + augmentation at CONFIG's milder settings instead
    c  + speed perturbation (CONFIG's factors; speakers x 3 classes)
    d  + margin schedule (CONFIG's warm-up)
    e  + large-margin fine-tuning (configs/lm_finetune.yaml), last checkpoint
    f  + average of the last 3 fine-tuning checkpoints
    g  + AS-norm (training list as cohort)
    h  g without augmentation: all stages of CONFIG's recipe with augment false (the final
         system of configs/small.yaml, which keeps augmentation off)

Rows a-e score the last checkpoint of their run with cosine scoring. Each (seed, row) result
goes to OUT_DIR/results.json as soon as it is known, and a run that is started again skips
the rows it holds, so an interrupted ladder continues where it stopped (an interrupted
training resumes from its last checkpoint). Ladders of other seeds may run at the same time
into the same OUT_DIR (one process per seed uses more cores); results.json merges them. The
table printed at the end gives, per row, the mean over the seeds and the spread
(lowest-highest) of EER and minDCF(p=0.01). Usage:

    python benchmarks/recipe_ladder.py DATA_DIR OUT_DIR --seeds 1234 7
        [--config configs/small.yaml] [--rows a b ...] [--table] [--key=value ...]

DATA_DIR holds train.txt, train/wav/, eval.txt and eval/wav/ (train and evaluate on its
speakers: the so762 and arabic_sc layout). MUSAN/RIR folders come from the config or the
MUSAN_PATH / RIR_PATH environment variables, as in run_recipe.py; trailing --key=value
settings go to every training and scoring (e.g. --num_threads=1 to run two ladders side
by side on 2 cores). --table prints the table of OUT_DIR/results.json without running.
"""
import fcntl
import json
import os
import re
import statistics
import subprocess
import sys

from src.cli import ArgumentParser, run_main
from src.errors import InputError
from src.fileio import write_text

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXED_MARGIN = ["--margin_warmup_end=0"]
NO_SPEED_PERTURBATION = ["--speed_perturb="]
ZOO_AUGMENTATION = ["--augment=true", "--aug_clean=1", "--aug_reverb=1", "--aug_noise=1",
                        "--aug_babble=1", "--aug_music=1", "--noise_snr=0,15", "--babble_snr=13,20",
                        "--babble_talkers=3,8"]
# Row name -> (description, settings over CONFIG for its training run).
TRAININGS = {
    "a": ("zoo recipe (fixed margin, no speed perturbation, no augmentation)",
          ["--augment=false", *NO_SPEED_PERTURBATION, *FIXED_MARGIN]),
    "b": ("+ augmentation at the zoo's settings", [*ZOO_AUGMENTATION, *NO_SPEED_PERTURBATION, *FIXED_MARGIN]),
    "b'": ("+ augmentation at the config's settings (instead of b)",
           ["--augment=true", *NO_SPEED_PERTURBATION, *FIXED_MARGIN]),
    "c": ("+ speed perturbation", ["--augment=true", *FIXED_MARGIN]),
    "d": ("+ margin schedule", ["--augment=true"]),
}
# Rows that come from the recipe run of row d: its stages 2-4.
RECIPE_ROWS = {
    "e": "+ large-margin fine-tuning",
    "f": "+ averaging the last 3 checkpoints",
    "g": "+ AS-norm",
}
WITHOUT_AUGMENTATION = "h"
ROWS = [*TRAININGS, *RECIPE_ROWS, WITHOUT_AUGMENTATION]
EER_LINE = re.compile(r"EER = ([0-9.]+)%\s+minDCF\(p=0\.01\) = ([0-9.]+)")


class LadderError(InputError):
    """A ladder that cannot run, or a program of it that failed."""


def parse_args(argv):
    parser = ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("data_dir", help="folder with train.txt, train/wav/, eval.txt and eval/wav/")
    parser.add_argument("out_dir", help="folder for every run of the ladder and results.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1234, 7], help="seeds of the runs")
    parser.add_argument("--config", default=os.path.join(REPO_ROOT, "configs", "small.yaml"),
                        help="the recipe (row d's training and the stages after it)")
    parser.add_argument("--rows", nargs="+", default=ROWS, choices=ROWS, help="rows to run")
    parser.add_argument("--table", action="store_true", help="print the table of results.json only")
    args, settings = parser.parse_known_args(argv)
    for setting in settings:
        if not (setting.startswith("--") and "=" in setting):
            raise LadderError(f"unexpected argument {setting!r}; settings are given as --key=value")
    args.settings = settings
    for path in ("train.txt", "eval.txt"):
        if not os.path.isfile(os.path.join(args.data_dir, path)):
            raise LadderError(f"DATA_DIR: file {os.path.join(args.data_dir, path)} not found")
    args.data_dir, args.out_dir, args.config = (os.path.abspath(path) for path in
                                                (args.data_dir, args.out_dir, args.config))
    return args


def scores(output):
    """(EER %, minDCF(0.01)) of each ``EER = ...`` line of a program's output, in order."""
    return [(float(eer), float(dcf)) for eer, dcf in EER_LINE.findall(output)]


class Ladder:
    """The runs of one ladder; results are kept in ``OUT_DIR/results.json``."""

    def __init__(self, args):
        self.args = args
        self.results_path = os.path.join(args.out_dir, "results.json")
        self.results = self.read_results()

    def read_results(self):
        if not os.path.isfile(self.results_path):
            return {}
        with open(self.results_path, encoding="utf-8") as handle:
            return json.load(handle)

    def record(self, seed, row, result):
        """Add one result to results.json, merged with what other ladders of other seeds wrote there."""
        with open(os.path.join(self.args.out_dir, ".results.lock"), "w", encoding="utf-8") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.results = self.read_results()
            self.results.setdefault(str(seed), {})[row] = {"eer": result[0], "min_dcf": result[1]}
            write_text(self.results_path, json.dumps(self.results, indent=1, sort_keys=True) + "\n")
        print(f"seed {seed} row {row}: EER = {result[0]:.2f}%  minDCF(p=0.01) = {result[1]:.4f}", flush=True)

    def done(self, seed, rows):
        return all(row in self.results.get(str(seed), {}) for row in rows)

    def call(self, command, log_path):
        """Run a program from the repository root, its output to ``log_path``; stdout returned."""
        with open(log_path, "w", encoding="utf-8") as log:
            result = subprocess.run([sys.executable, *command], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                    stderr=log, text=True)
            log.write(result.stdout)
        if result.returncode:
            raise LadderError(f"{command[0]} failed with status {result.returncode}; see {log_path}")
        return result.stdout

    def recipe(self, folder, extra, stages):
        data = self.args.data_dir
        command = ["scripts/run_recipe.py", self.args.config, data, data, folder,
                   "--stage", str(stages[0]), "--stop_stage", str(stages[1]), *extra, *self.args.settings]
        return self.call(command, os.path.join(folder, f"recipe_{stages[0]}-{stages[1]}.log"))

    def score_last(self, run_folder, extra, log_path):
        """Cosine EER and minDCF(0.01) of the checkpoint the ``last`` pointer of a run names."""
        with open(os.path.join(run_folder, "last"), encoding="utf-8") as handle:
            checkpoint = os.path.join(run_folder, handle.read().split()[0])
        data = self.args.data_dir
        output = self.call(["eval.py", "--config", self.args.config, f"--model_path={checkpoint}",
                            f"--eval_list={data}/eval.txt", f"--eval_path={data}/eval/wav",
                            f"--train_list={data}/train.txt", f"--train_path={data}/train/wav",
                            f"--eval_output_dir={run_folder}_eval", "--score_norm=none",
                            *extra, *self.args.settings], log_path)
        return scores(output)[0]

    def run(self, seed):
        seed_dir = os.path.join(self.args.out_dir, f"seed{seed}")
        seeded = [f"--seed={seed}"]
        for row, (_, extra) in TRAININGS.items():
            if row not in self.args.rows or self.done(seed, [row]):
                continue
            folder = os.path.join(seed_dir, row.replace("'", "_prime"))
            os.makedirs(folder, exist_ok=True)
            self.recipe(folder, [*seeded, *extra], (1, 1))
            self.record(seed, row, self.score_last(os.path.join(folder, "train"), [*seeded, *extra],
                                                   os.path.join(folder, "score_train.log")))
        wanted = [row for row in RECIPE_ROWS if row in self.args.rows]
        if wanted and not self.done(seed, wanted):
            folder = os.path.join(seed_dir, "d")
            os.makedirs(folder, exist_ok=True)
            final = scores(self.recipe(folder, [*seeded, *TRAININGS["d"][1]], (1, 4)))
            self.record(seed, "e", self.score_last(os.path.join(folder, "finetune"), seeded,
                                                   os.path.join(folder, "score_finetune.log")))
            self.record(seed, "f", final[0])
            self.record(seed, "g", final[1])
        if WITHOUT_AUGMENTATION in self.args.rows and not self.done(seed, [WITHOUT_AUGMENTATION]):
            folder = os.path.join(seed_dir, WITHOUT_AUGMENTATION)
            os.makedirs(folder, exist_ok=True)
            final = scores(self.recipe(folder, [*seeded, "--augment=false"], (1, 4)))
            self.record(seed, WITHOUT_AUGMENTATION, final[1])

    def table(self):
        """Markdown table: per row, mean and spread over the seeds of EER and minDCF(0.01)."""
        self.results = self.read_results()
        descriptions = ({row: text for row, (text, _) in TRAININGS.items()} | RECIPE_ROWS
                        | {WITHOUT_AUGMENTATION: "g without augmentation"})
        seeds = sorted(self.results)
        lines = [f"seeds {', '.join(seeds)}; {self.args.data_dir}",
                 "| row | recipe | EER % mean (spread) | minDCF(0.01) mean (spread) | EER % per seed |",
                 "| --- | --- | --- | --- | --- |"]
        for row in ROWS:
            values = [self.results[seed][row] for seed in seeds if row in self.results[seed]]
            if not values:
                continue
            cells = []
            for key, digits in (("eer", 2), ("min_dcf", 3)):
                numbers = [value[key] for value in values]
                cells.append(f"{statistics.mean(numbers):.{digits}f} "
                             f"({min(numbers):.{digits}f}-{max(numbers):.{digits}f})")
            per_seed = ", ".join(f"{value['eer']:.2f}" for value in values)
            lines.append(f"| {row} | {descriptions[row]} | {cells[0]} | {cells[1]} | {per_seed} |")
        return "\n".join(lines)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    ladder = Ladder(args)
    if not args.table:
        os.makedirs(args.out_dir, exist_ok=True)
        for seed in args.seeds:
            ladder.run(seed)
    print(ladder.table())


if __name__ == "__main__":
    run_main(main)
