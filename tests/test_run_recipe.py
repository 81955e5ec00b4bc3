"""scripts/run_recipe.sh: the five stages on a tiny corpus, stage ranges and skipping finished stages."""
import json
import os
import re
import signal
import subprocess
import sys
import time

from fixtures import REPO_ROOT, TINY_NETWORK, write_tone_corpus
from src.fileio import list_files
from tensorboard_view import tensorboard_scalars

RECIPE = os.path.join(REPO_ROOT, "scripts", "run_recipe.sh")
TINY_RECIPE = {**TINY_NETWORK, "minibatch_size": 4, "segment_frames": 60, "num_epochs": 1, "augment": "false",
               "musan_path": '""', "rir_path": '""', "speed_perturb": '"0.9,1.0,1.1"', "base_lrate": 1e-4,
               "max_lrate": 1e-2, "lr_step_size": 2, "num_workers": 1, "top_n": 5, "length": 100}
TINY_FINETUNE = {"segment_frames": 80, "aam_margin": 0.5, "speed_perturb": '""', "num_epochs": 1}


def _yaml(path, values):
    path.write_text("".join(f"{key}: {value}\n" for key, value in values.items()))
    return str(path)


def _recipe(tmp_path, *arguments):
    environment = {**os.environ, "PYTHON": sys.executable}
    environment.pop("MUSAN_PATH", None)
    environment.pop("RIR_PATH", None)
    return subprocess.run(["bash", RECIPE, *arguments], cwd=tmp_path, capture_output=True, text=True,
                          timeout=900, env=environment)


def _corpus(tmp_path):
    data = tmp_path / "data"
    write_tone_corpus(data, num_speakers=4, utterances=3)
    utterances = [line.split()[1] for line in (data / "train.txt").read_text().splitlines()]
    trials = [f"{int(a[:7] == b[:7])} {a} {b}" for index, a in enumerate(utterances) for b in utterances[index + 1:]]
    (data / "eval.txt").write_text("\n".join(trials) + "\n")
    (data / "eval").mkdir()
    os.symlink(data / "train" / "wav", data / "eval" / "wav")
    return str(data)


def _outputs(out):
    """Every file below ``out`` with its modification time, logs and markers aside."""
    return {name: os.stat(os.path.join(out, name)).st_mtime_ns for name in list_files(out, "")
            if not name.startswith("logs/") and not name.endswith(".done")}


def test_stages_run_in_order_and_finished_stages_are_skipped(tmp_path):
    data = _corpus(tmp_path)
    config = _yaml(tmp_path / "tiny.yaml", TINY_RECIPE)
    finetune = _yaml(tmp_path / "finetune.yaml", TINY_FINETUNE)
    out = str(tmp_path / "out")
    common = [config, data, data, out, f"--finetune_config={finetune}"]

    first = _recipe(tmp_path, *common, "--stop_stage", "1")
    assert first.returncode == 0, first.stderr[-3000:]
    printed = first.stdout.splitlines()
    assert printed[0] == f"stage 1 train: train (log {out}/logs/stage1_train.log)" and len(printed) == 7
    assert re.match(r"1 train +\d+\.\d s +\d+\.\d{4} +- +-$", printed[2]) and printed[3].split()[2:] == ["-"] * 4
    assert os.path.isfile(os.path.join(out, "stage1_train.done")) and not os.path.exists(os.path.join(out, "finetune"))

    full = _recipe(tmp_path, *common)
    assert full.returncode == 0, full.stderr[-3000:]
    lines = full.stdout.splitlines()
    assert lines[0] == f"stage 1 train: done before ({out}/stage1_train.done), skipped"
    assert [line.split(":")[0] for line in lines if line.startswith("stage ")][1:] == [
        "stage 2 finetune", "stage 3 average", "stage 4 evaluate", "stage 4 evaluate", "stage 5 export"]
    scorings = [line for line in lines if re.match(r"^(cosine|AS-norm): EER = \d+\.\d\d%  minDCF\(p=0\.01\) = ", line)]
    assert len(scorings) == 2
    assert re.match(rf"^final system \({re.escape(out)}/average\.ckpt, AS-norm\): EER = \d+\.\d\d%  minDCF", lines[-1])
    assert lines[-1].endswith(scorings[1].split(": ", 1)[1])
    finetune_log = open(os.path.join(out, "logs", "stage2_finetune.log")).read()
    assert "aam head 0.00 M (4 classes)" in finetune_log and "first 4 of the 12 rows of head.weight" in finetune_log
    assert os.path.isfile(os.path.join(out, "export", "ecapatdnn.mindir"))
    # The table of the stages, before the final line.
    start = next(index for index, line in enumerate(lines) if line.split()[:3] == ["time", "final", "loss"])
    table = lines[start:start + 6]
    assert table[0].split() == ["time", "final", "loss", "valid", "EER", "test", "EER"]
    assert [row.split()[:2] for row in table[1:]] == [["1", "train"], ["2", "finetune"], ["3", "average"],
                                                      ["4", "evaluate"], ["5", "export"]]
    epochs = [json.loads(line) for line in open(os.path.join(out, "train", "metrics.jsonl"))
              if '"kind": "epoch"' in line]
    assert re.fullmatch(rf"1 train +\d+\.\d s +{epochs[-1]['loss']:.4f} +- +-", table[1])
    eers = [line.split("EER = ")[1].split("%")[0] for line in scorings]
    assert table[4].endswith(f"cosine {eers[0]}%, AS-norm {eers[1]}%") and start + 6 == len(lines) - 1
    # tensorboard --logdir on the recipe folder shows both training stages.
    shown = tensorboard_scalars(["train/tensorboard", "finetune/tensorboard"], ["train/loss"], logdir=out)
    for stage in ("train", "finetune"):  # one epoch, logged at its last step (log_interval 20)
        records = [json.loads(line) for line in open(os.path.join(out, stage, "metrics.jsonl"))]
        assert [(step, round(value, 4)) for step, value in shown[f"{stage}/tensorboard"]["train/loss"]] == [
            (record["step"], round(record["loss"], 4)) for record in records if record["kind"] == "step"]
    finished = _outputs(out)

    again = _recipe(tmp_path, *common)
    assert again.returncode == 0, again.stderr[-3000:]
    assert [line for line in again.stdout.splitlines() if line.startswith("stage ")] == [
        f"stage {number} {name}: done before ({out}/stage{number}_{name}.done), skipped"
        for number, name in ((1, "train"), (2, "finetune"), (3, "average"), (4, "evaluate"), (5, "export"))]
    assert again.stdout.splitlines()[-1] == lines[-1]
    assert _outputs(out) == finished


def test_bad_arguments_stop_with_one_error_line(tmp_path):
    config = _yaml(tmp_path / "tiny.yaml", TINY_RECIPE)
    missing = _recipe(tmp_path, config, str(tmp_path), str(tmp_path), str(tmp_path / "out"))
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"error: TRAIN_DIR: file {tmp_path}/train.txt not found"
    data = _corpus(tmp_path)
    stages = _recipe(tmp_path, config, data, data, str(tmp_path / "out"), "--stage", "4", "--stop_stage", "2")
    assert stages.returncode == 1 and stages.stderr.strip().startswith("error: --stage 4 --stop_stage 2: need")


def test_a_signal_to_the_recipe_stops_its_training_cleanly_and_leaves_the_stage_unfinished(tmp_path):
    data = _corpus(tmp_path)
    config = _yaml(tmp_path / "tiny.yaml", {**TINY_RECIPE, "num_epochs": 1000})
    out = tmp_path / "out"
    environment = {**os.environ, "PYTHON": sys.executable}
    recipe = subprocess.Popen(["bash", RECIPE, config, data, data, str(out), "--stop_stage", "1"], cwd=tmp_path,
                              env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "logs" / "stage1_train.log"
    deadline = time.time() + 300
    while not (log.exists() and "first step, including graph compilation" in log.read_text()):
        assert recipe.poll() is None and time.time() < deadline, "the training stage did not start"
        time.sleep(0.05)
    recipe.send_signal(signal.SIGTERM)
    _, stderr = recipe.communicate(timeout=120)
    assert recipe.returncode == 143
    assert stderr.splitlines()[-1] == (f"interrupted by SIGTERM in stage 1 (train), which stopped with status 143 "
                                       f"(see {log}); run the recipe again to continue")
    assert re.search(r"interrupted by SIGTERM at epoch \d+ step \d+ .*--resume=auto continues", log.read_text())
    assert not (out / "stage1_train.done").exists() and (out / "train" / "last").exists()
