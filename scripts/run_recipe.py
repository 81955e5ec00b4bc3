"""The full recipe in stages: train, large-margin fine-tune, average, evaluate, export.

    python scripts/run_recipe.py CONFIG TRAIN_DIR EVAL_DIR OUT_DIR [--stage N] [--stop_stage M]
                                 [--finetune_config FILE] [--num_average K] [--key=value ...]

TRAIN_DIR holds train.txt and train/wav/, EVAL_DIR eval.txt and eval/wav/. Stages:

    1 train      train.py with CONFIG                              -> OUT_DIR/train/
    2 finetune   train.py with CONFIG, then the --finetune_config   -> OUT_DIR/finetune/
                 settings, from the weights of stage 1's last checkpoint (init_from)
    3 average    the K newest checkpoints of stage 2 (of stage 1 if stage 2 has none)
                                                                    -> OUT_DIR/average.ckpt
    4 evaluate   eval.py on EVAL_DIR: cosine, then AS-norm with the training list as cohort
                                                                    -> OUT_DIR/eval_{cosine,asnorm}/
    5 export     export.py (MindIR)                                 -> OUT_DIR/export/

Each finished stage leaves OUT_DIR/stage<N>_<name>.done and is skipped when the recipe runs
again (delete the file to redo it); an interrupted training stage resumes (resume=auto). A
SIGTERM or SIGINT is passed on to the running program, which stops cleanly (training saves
its position), and the recipe exits with 143 / 130 without marking the stage done.
--stage/--stop_stage limit the stages run. Every stage logs to OUT_DIR/logs/. The EER and
minDCF of each scoring are printed, then a table of the stages (the seconds each took, the
final epoch's training loss, the last validation EER, the test EERs); the last line is the
final system's (AS-norm). The training stages' TensorBoard events are in OUT_DIR/train/ and
OUT_DIR/finetune/, so ``tensorboard --logdir OUT_DIR`` shows them side by side.
Trailing --key=value settings go to every stage and win over the config files. MUSAN and
RIR folders come from the config, or from the environment variables MUSAN_PATH and
RIR_PATH when set. Programs run from the repository root under this interpreter.
"""
import os

os.environ.setdefault("GLOG_v", "3")  # MindSpore's own log: errors only, unless GLOG_v is set

import json
import subprocess
import sys
import time

from src.cli import ArgumentParser, run_main
from src.config import read_yaml_settings
from src.errors import InputError
from src.evaluation.embeddings import copy_cache
from src.evaluation.evaluate import METRICS_FILE as EVAL_METRICS_FILE
from src.fileio import write_lines, write_text
from src.interrupts import Interrupted, signal_name
from src.train.run_record import METRICS_FILE as TRAIN_METRICS_FILE, read_records

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = {1: "train", 2: "finetune", 3: "average", 4: "evaluate", 5: "export"}
SCORINGS = (("cosine", "none"), ("AS-norm", "asnorm"))
LOG_TAIL_LINES = 20
STAGE_TIMES = "stage_times.json"  # seconds each finished stage took


class RecipeError(InputError):
    """Arguments the recipe cannot run with, or a stage that failed."""


def parse_args(argv):
    """Positional folders, stage range and options; trailing --key=value settings in ``settings``."""
    parser = ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("config", help="recipe settings (YAML), e.g. configs/small.yaml")
    parser.add_argument("train_dir", help="folder with train.txt and train/wav/")
    parser.add_argument("eval_dir", help="folder with eval.txt and eval/wav/")
    parser.add_argument("out_dir", help="folder for every output of the recipe")
    parser.add_argument("--stage", type=int, default=1, help="first stage to run (1-5)")
    parser.add_argument("--stop_stage", type=int, default=5, help="last stage to run (1-5)")
    parser.add_argument("--finetune_config", default=os.path.join(REPO_ROOT, "configs", "lm_finetune.yaml"),
                        help="settings of stage 2, applied over CONFIG")
    parser.add_argument("--num_average", type=int, default=3, help="checkpoints averaged in stage 3")
    args, settings = parser.parse_known_args(argv)
    for setting in settings:
        if not (setting.startswith("--") and "=" in setting):
            raise RecipeError(f"unexpected argument {setting!r}; settings are given as --key=value")
    args.settings = settings
    if not 1 <= args.stage <= args.stop_stage <= 5:
        raise RecipeError(f"--stage {args.stage} --stop_stage {args.stop_stage}: need 1 <= stage <= stop_stage <= 5")
    if args.num_average < 1:
        raise RecipeError(f"--num_average: {args.num_average} must be >= 1")
    for path, what in ((args.config, "CONFIG"), (args.finetune_config, "--finetune_config"),
                       (os.path.join(args.train_dir, "train.txt"), "TRAIN_DIR"),
                       (os.path.join(args.eval_dir, "eval.txt"), "EVAL_DIR")):
        if not os.path.isfile(path):
            raise RecipeError(f"{what}: file {path} not found")
    for path, what in ((os.path.join(args.train_dir, "train", "wav"), "TRAIN_DIR"),
                       (os.path.join(args.eval_dir, "eval", "wav"), "EVAL_DIR")):
        if not os.path.isdir(path):
            raise RecipeError(f"{what}: folder {path} not found")
    for key in ("config", "finetune_config", "train_dir", "eval_dir", "out_dir"):
        setattr(args, key, os.path.abspath(getattr(args, key)))
    return args


def yaml_settings(path):
    """The settings of a YAML file as --key=value arguments (a later layer than --config)."""
    content = read_yaml_settings(path)
    words = {True: "true", False: "false", None: ""}
    return [f"--{key}={words.get(value, value) if isinstance(value, (bool, type(None))) else value}"
            for key, value in content.items()]


class Recipe:
    """The stages of one recipe run; see the module docstring."""

    def __init__(self, args):
        self.args = args
        self.out = args.out_dir
        self.python = sys.executable
        os.makedirs(os.path.join(self.out, "logs"), exist_ok=True)
        self.data = [f"--train_list={args.train_dir}/train.txt", f"--train_path={args.train_dir}/train/wav"]
        self.augmentation = [f"--{key}={os.environ[name]}" for key, name in
                             (("musan_path", "MUSAN_PATH"), ("rir_path", "RIR_PATH")) if os.environ.get(name)]
        self.model = os.path.join(self.out, "average.ckpt")

    def marker(self, stage):
        return os.path.join(self.out, f"stage{stage}_{STAGES[stage]}.done")

    def run(self, stage, name, command):
        """Run one program of a stage from the repository root, output to its log; stdout returned."""
        log_path = os.path.join(self.out, "logs", f"stage{stage}_{name}.log")
        print(f"stage {stage} {STAGES[stage]}: {name} (log {log_path})", flush=True)
        with open(log_path, "w", encoding="utf-8") as log:
            log.write(" ".join(command) + "\n")
            log.flush()
            # In a session of its own, the program hears a signal once: the one passed on here.
            process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=log, text=True,
                                       start_new_session=True)
            try:
                stdout, _ = process.communicate()
            except Interrupted as interruption:
                process.send_signal(interruption.signum)
                stdout, _ = process.communicate()
                log.write(stdout)
                raise Interrupted(interruption.signum,
                                  f"interrupted by {signal_name(interruption.signum)} in stage {stage} "
                                  f"({STAGES[stage]}), which stopped with status {process.returncode} "
                                  f"(see {log_path}); run the recipe again to continue") from None
            log.write(stdout)
        if process.returncode:
            with open(log_path, encoding="utf-8") as log:
                tail = log.read().splitlines()[-LOG_TAIL_LINES:]
            sys.stderr.write("\n".join(tail) + "\n")
            raise RecipeError(f"stage {stage} ({STAGES[stage]}) failed with status {process.returncode}; "
                              f"see {log_path}")
        return stdout

    def script(self, name, *arguments):
        return [self.python, os.path.join(REPO_ROOT, name), *arguments]

    def train(self):
        self.run(1, "train", self.script("train.py", "--config", self.args.config, *self.data,
                                         f"--ckpt_save_dir={self.out}/train", "--resume=auto",
                                         *self.augmentation, *self.args.settings))
        return []

    def finetune(self):
        start = last_checkpoint(os.path.join(self.out, "train"))
        self.run(2, "finetune", self.script("train.py", "--config", self.args.config,
                                            *yaml_settings(self.args.finetune_config), *self.data,
                                            f"--ckpt_save_dir={self.out}/finetune", "--resume=auto",
                                            f"--init_from={start}", *self.augmentation, *self.args.settings))
        return []

    def average(self):
        finetune = os.path.join(self.out, "finetune")
        source = finetune if os.path.isfile(os.path.join(finetune, "last")) else os.path.join(self.out, "train")
        output = self.run(3, "average", self.script("scripts/average_checkpoints.py", f"--run_dir={source}",
                                                    f"--num={self.args.num_average}", f"--output={self.model}"))
        print(output.strip())
        return []

    def evaluate(self):
        results = []
        previous = None
        for title, norm in SCORINGS:
            folder = self.eval_folder(norm)
            if previous is not None:
                copy_cache(previous, folder)
            output = self.run(4, title, self.script(
                "eval.py", "--config", self.args.config, f"--model_path={self.model}",
                f"--eval_list={self.args.eval_dir}/eval.txt", f"--eval_path={self.args.eval_dir}/eval/wav",
                *self.data, f"--eval_output_dir={folder}", f"--score_norm={norm}", *self.args.settings))
            results.append(f"{title}: " + "  ".join(line for line in output.splitlines()
                                                     if line.startswith(("EER", "minDCF"))))
            print(results[-1], flush=True)
            previous = folder
        return results

    def export(self):
        folder = os.path.join(self.out, "export")
        os.makedirs(folder, exist_ok=True)
        output = self.run(5, "export", self.script("export.py", "--config", self.args.config,
                                                   f"--checkpoint_path={self.model}",
                                                   f"--file_name={folder}/ecapatdnn", *self.args.settings))
        print(next((line for line in output.splitlines() if line.startswith("exported")), output.strip()))
        return []

    def stage(self, number):
        """Run stage ``number`` unless its marker says it is done; return its result lines."""
        marker = self.marker(number)
        if os.path.isfile(marker):
            print(f"stage {number} {STAGES[number]}: done before ({marker}), skipped", flush=True)
            with open(marker, encoding="utf-8") as handle:
                lines = handle.read().splitlines()
            for line in lines:
                print(line)
            return lines
        start = time.monotonic()
        lines = getattr(self, STAGES[number])()
        times = self.stage_seconds()
        times[str(number)] = time.monotonic() - start
        write_text(os.path.join(self.out, STAGE_TIMES), json.dumps(times) + "\n")
        write_lines(marker, lines)
        return lines

    def stage_seconds(self):
        """{stage number (text): seconds it took} of the stages finished so far."""
        path = os.path.join(self.out, STAGE_TIMES)
        if not os.path.isfile(path):
            return {}
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)

    def table(self):
        """Lines of a table of the stages: time, final training loss, last validation EER, test EERs."""
        times = self.stage_seconds()
        rows = [("", "time", "final loss", "valid EER", "test EER")]
        for number, name in STAGES.items():
            loss = valid = test = "-"
            if name in ("train", "finetune"):
                records = read_records(os.path.join(self.out, name, TRAIN_METRICS_FILE))
                epochs = [record for record in records if record["kind"] == "epoch"]
                validations = [record for record in records if record["kind"] == "validation"]
                loss = f"{epochs[-1]['loss']:.4f}" if epochs else "-"
                valid = f"{100 * validations[-1]['eer']:.2f}%" if validations else "-"
            if name == "evaluate":
                test = ", ".join(f"{title} {100 * metrics['eer']:.2f}%" for title, metrics in self.test_metrics())
            seconds = f"{times[str(number)]:.1f} s" if str(number) in times else "-"
            rows.append((f"{number} {name}", seconds, loss, valid, test or "-"))
        widths = [max(len(row[column]) for row in rows) for column in range(4)]
        return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4] for row in rows]

    def eval_folder(self, norm):
        """The output folder of stage 4's scoring with ``score_norm`` ``norm``."""
        return os.path.join(self.out, f"eval_{norm if norm != 'none' else 'cosine'}")

    def test_metrics(self):
        """(scoring title, metrics.json of eval.py) of each evaluation written so far."""
        found = []
        for title, norm in SCORINGS:
            path = os.path.join(self.eval_folder(norm), EVAL_METRICS_FILE)
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as handle:
                    found.append((title, json.load(handle)))
        return found


def last_checkpoint(folder):
    """The checkpoint the ``last`` pointer of a run folder names (see src/train/run_folder.py)."""
    pointer = os.path.join(folder, "last")
    if not os.path.isfile(pointer):
        raise RecipeError(f"stage 2 needs the checkpoints of stage 1: {pointer} not found")
    with open(pointer, encoding="utf-8") as handle:
        return os.path.join(folder, handle.read().split()[0])


def main(argv=None):
    """Run the stages the command line ``argv`` asks for."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    recipe = Recipe(args)
    for number in range(args.stage, args.stop_stage + 1):
        recipe.stage(number)
    print("\n".join(recipe.table()))
    evaluated = recipe.marker(4)
    if os.path.isfile(evaluated):
        with open(evaluated, encoding="utf-8") as handle:
            final = handle.read().splitlines()[-1]
        print(f"final system ({recipe.model}, {final.split(':', 1)[0]}): {final.split(':', 1)[1].strip()}")


if __name__ == "__main__":
    run_main(main)
