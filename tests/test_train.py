"""Training: learning, overflow skipping, checkpoints, SIGKILL + resume, bad input.

The 2-process data-parallel run is tested through its launcher in test_train_scripts.py.
"""
import errno
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import matplotlib.image
import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

from fixtures import PLAIN_RECIPE_ARGS, REPO_ROOT, TINY_NETWORK_ARGS, tiny_network, write_tone_corpus
from tensorboard_view import tensorboard_scalars
from src.checkpoint import read_checkpoint
from src.config import ConfigError
from src.data.audio import write_audio
from src.model.aam_softmax import AAMSoftmax
from src.model.speaker_loss import SpeakerLoss
from src.fileio import DiskFullError, OutputError, list_files
from src.kernels.cells import unavailable_reason
from src.kernels.network import apply_cpu_kernels
from src.train.batch_feed import child_processes, process_state
from src.train.run_folder import CheckpointError, CheckpointManager, TrainingState, prepare_checkpoint_folder
from src.train.folder_lock import LOCK_NAME, FolderInUseError, claim_folder
from src.train.margin_schedule import MarginSchedule
from src.train.run_record import RunRecord
from src.train.step import TrainStep


def _tiny_step(learning_rate=3e-3, grad_clip=5.0, kernels="none"):
    network = apply_cpu_kernels(tiny_network(in_channels=10), kernels, "CPU", input_gradient=False)
    loss_net = SpeakerLoss(network, AAMSoftmax(8, 4))
    optimizer = nn.Adam(loss_net.trainable_params(), learning_rate=learning_rate)
    step = TrainStep(loss_net, optimizer, grad_clip=grad_clip)
    step.set_train(True)
    return step


@pytest.fixture(scope="module")
def plain_step():
    """One tiny training step without kernels, shared: each new one costs seconds of graph compilation."""
    return _tiny_step()


@pytest.mark.parametrize("kernels", ["none", "bf16"])  # float32 kernels: test_cpu_kernels.py
def test_loss_falls_when_training_on_separable_speakers(rng, kernels, request):
    if kernels != "none" and unavailable_reason() is not None:
        pytest.skip(f"CPU kernels: {unavailable_reason()}")
    step = request.getfixturevalue("plain_step") if kernels == "none" else _tiny_step(kernels=kernels)
    centres = rng.standard_normal((4, 1, 10)).astype(np.float32)
    losses = []
    for _ in range(40):
        labels = rng.integers(0, 4, 8).astype(np.int32)
        features = centres[labels] + 0.5 * rng.standard_normal((8, 30, 10)).astype(np.float32)
        loss, correct, skipped, _, norm = step(Tensor(features), Tensor(labels))
        assert float(norm.asnumpy()) > 0
        assert not bool(skipped.asnumpy())
        losses.append(float(loss.asnumpy()))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    assert float(correct.asnumpy()) >= 6


def test_non_finite_gradients_skip_the_update(plain_step):
    step = plain_step
    before = {p.name: p.asnumpy().copy() for p in step.loss_net.trainable_params()}
    steps_before = int(step.optimizer.global_step.asnumpy()[0])
    features = np.zeros((8, 30, 10), np.float32)  # the shapes of the loss test's batches: no new graph
    features[0, 3, 4] = np.nan
    _, _, skipped, _, _ = step(Tensor(features), Tensor(np.arange(8, dtype=np.int32) % 4))
    assert bool(skipped.asnumpy())
    for parameter in step.loss_net.trainable_params():
        np.testing.assert_array_equal(parameter.asnumpy(), before[parameter.name])
    assert int(step.optimizer.global_step.asnumpy()[0]) == steps_before


def test_checkpoint_rotation_keeps_newest_and_best(tmp_path):
    cell = nn.Dense(2, 2)
    manager = CheckpointManager(str(tmp_path), keep_max=2)
    manager.save(cell, 1, 5, 5, epoch_loss=1.0)
    manager.save(cell, 2, 5, 10, epoch_loss=2.0)
    manager.save(cell, 3, 5, 15, epoch_loss=3.0)
    manager.save(cell, 4, 2, 17)
    assert manager.checkpoints() == ["ecapa-1_5.ckpt", "ecapa-3_5.ckpt", "ecapa-4_2.ckpt"]
    assert open(tmp_path / "last").read().split() == ["ecapa-4_2.ckpt"]
    assert open(tmp_path / "best").read().split()[0] == "ecapa-1_5.ckpt"
    assert int(read_checkpoint(str(tmp_path / "ecapa-4_2.ckpt"))["trained_steps"].asnumpy()) == 17
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]


# ---- train.py end to end (subprocesses) ----

def _train_command(root, ckpt_dir, *extra):
    return [sys.executable, os.path.join(REPO_ROOT, "train.py"), f"--train_list={root}/train.txt",
            f"--train_path={root}/train/wav", "--class_num=4", "--minibatch_size=4", "--segment_frames=60",
            "--num_epochs=2", "--augment=false", "--log_interval=1", f"--ckpt_save_dir={ckpt_dir}",
            "--base_lrate=1e-4", "--max_lrate=1e-2", "--lr_step_size=2", "--num_workers=1",
            *TINY_NETWORK_ARGS, *PLAIN_RECIPE_ARGS, *extra]


def _run(command, cwd, **kwargs):
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600, **kwargs)


def _trainable(ckpt_path):
    return {name: value.asnumpy() for name, value in read_checkpoint(ckpt_path).items()
            if name.startswith(("embedding_network.", "head.", "moment1.", "moment2."))}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    write_tone_corpus(root, num_speakers=4, utterances=3)
    return root


# Speed perturbation (classes x3) and a margin warm-up over both epochs: their draws and
# margins must continue exactly too.
RECIPE_FEATURES = ("--speed_perturb=0.9,1.0,1.1", "--class_num=auto", "--aam_margin_start=0.05",
                   "--margin_warmup_start=0", "--margin_warmup_end=2")


@pytest.fixture(scope="module")
def straight_run(corpus, tmp_path_factory):
    """An uninterrupted run of RECIPE_FEATURES, every step logged: (its checkpoint folder, its stderr)."""
    root = tmp_path_factory.mktemp("straight")
    result = _run(_train_command(corpus, root / "ckpt", *RECIPE_FEATURES), cwd=root)
    assert result.returncode == 0, result.stderr[-2000:]
    return root / "ckpt", result.stderr


@pytest.fixture(scope="module")
def validated_run(corpus, tmp_path_factory):
    """The run of ``straight_run`` logged every 3 steps and validated on trials of the training speakers."""
    root = tmp_path_factory.mktemp("validated")
    utterances = [line.split()[1] for line in (corpus / "train.txt").read_text().splitlines()]
    trials = [f"{int(a[:7] == b[:7])} {a} {b}" for index, a in enumerate(utterances) for b in utterances[index + 1:]]
    (root / "valid.txt").write_text("\n".join(trials) + "\n")
    result = _run(_train_command(corpus, root / "ckpt", *RECIPE_FEATURES, "--log_interval=3",
                                 f"--valid_list={root}/valid.txt", f"--valid_path={corpus}/train/wav"), cwd=root)
    assert result.returncode == 0, result.stderr[-2000:]
    return root / "ckpt", result.stderr


def test_sigkill_then_resume_continues_exactly(corpus, straight_run, tmp_path):
    """Killed mid-run, a resumed run ends with the weights of an uninterrupted run."""
    straight_dir, _ = straight_run
    # The warm-up lasts both epochs, so no epoch is at the final margin: none is 'best'.
    assert sorted(os.listdir(straight_dir)) == ["ecapa-1_3.ckpt", "ecapa-2_3.ckpt", "last", "metrics.jsonl",
                                                "tensorboard", "training_curves.png"]

    killed_dir = tmp_path / "killed"
    with open(tmp_path / "killed.log", "w") as killed_log:
        process = subprocess.Popen(_train_command(corpus, killed_dir, "--save_checkpoint_steps=2",
                                                  *RECIPE_FEATURES), cwd=tmp_path,
                                   stdout=subprocess.DEVNULL, stderr=killed_log)
        deadline = time.time() + 300
        while not (killed_dir / "ecapa-2_1.ckpt").exists():
            assert process.poll() is None and time.time() < deadline, "training ended before step 4"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
    names = [name for name in os.listdir(killed_dir) if name.startswith("ecapa-")]
    assert "ecapa-2_3.ckpt" not in names and "ecapa-1_2.ckpt" in names

    # From step 2, though steps 3 and 4 were logged and step 4's events were written with its checkpoint.
    resumed = _run(_train_command(corpus, killed_dir, "--save_checkpoint_steps=2",
                                  f"--resume={killed_dir / 'ecapa-1_2.ckpt'}", *RECIPE_FEATURES), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert re.search(r"resumed from .*ecapa-1_2\.ckpt at step 2", resumed.stderr)
    assert re.search(r"epoch 2 step 3/3 \(global 6\) .* lr 5\.050e-03", resumed.stderr)
    assert "aam head 0.00 M (12 classes)" in resumed.stderr
    margin = MarginSchedule(0.05, 0.2, 0, 2, 3)(5)  # the last step's, part way up the warm-up
    assert 0.05 < margin < 0.2 and re.search(rf"\(global 6\) .* margin {margin:.4f}", resumed.stderr)
    expected = _trainable(str(straight_dir / "ecapa-2_3.ckpt"))
    actual = _trainable(str(killed_dir / "ecapa-2_3.ckpt"))
    assert expected.keys() == actual.keys() and len(expected) > 20
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)

    # TensorBoard and metrics.jsonl show the killed-and-resumed run's curves as its log lines printed
    # them: the killed run's lines up to the resumed step, then the resumed run's; each step once, in
    # order (the killed run's later steps purged). The resumed run's first step, its graph's
    # compilation, is not logged: steps 2, 4, 5, 6.
    killed_figures = _logged_figures((tmp_path / "killed.log").read_text())
    assert {3, 4} <= set(killed_figures)
    printed = {step: figures for step, figures in killed_figures.items() if step <= 2}
    printed.update(_logged_figures(resumed.stderr))
    assert sorted(printed) == [2, 4, 5, 6]
    records = [json.loads(line) for line in (killed_dir / "metrics.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records if record["kind"] == "step"] == [2, 4, 5, 6]
    shown = tensorboard_scalars({"resumed": killed_dir / "tensorboard"}, [f"train/{key}" for key in PRINTED])
    for key, (decimals, scale) in PRINTED.items():
        steps = [step for step, _ in shown["resumed"][f"train/{key}"]]
        assert steps == sorted(printed), (key, steps, sorted(printed))
        for step, value in shown["resumed"][f"train/{key}"]:
            assert round(value * scale, decimals) == pytest.approx(printed[step][key], abs=1.01 * 10 ** -decimals), \
                (key, step)


# The figures of a log line whose printed precision the tests compare: key -> (decimals, factor).
PRINTED = {"loss": (4, 1), "accuracy": (2, 1), "margin": (4, 1)}


def _logged_figures(log):
    """{global step: {loss, accuracy, learning_rate, margin}} of a training log's step lines."""
    found = {}
    for match in re.finditer(r"\(global (\d+)\) loss (\S+) acc (\S+)% lr (\S+) .* margin (\S+) ", log):
        step, loss, accuracy, rate, margin = match.groups()
        found[int(step)] = {"loss": float(loss), "accuracy": float(accuracy), "learning_rate": float(rate),
                            "margin": float(margin)}
    return found


def test_a_run_records_its_figures_and_draws_its_curves(straight_run, validated_run):
    for (folder, log), panels in ((straight_run, 2), (validated_run, 3)):
        records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        steps = {record["step"]: record for record in records if record["kind"] == "step"}
        assert sorted(steps) == sorted(_logged_figures(log))
        for step, figures in _logged_figures(log).items():
            assert round(steps[step]["loss"], 4) == pytest.approx(figures["loss"], abs=1.01e-4)
            assert f"{steps[step]['learning_rate']:.3e}" == f"{figures['learning_rate']:.3e}"
            assert 0 <= steps[step]["data_wait"] <= 100 and steps[step]["grad_norm"] > 0
        epochs = [record for record in records if record["kind"] == "epoch"]
        assert [(record["epoch"], record["step"]) for record in epochs] == [(1, 3), (2, 6)]
        validations = [record for record in records if record["kind"] == "validation"]
        assert [f"epoch {record['epoch']} validation: EER {100 * record['eer']:.2f}%" for record in validations] == \
            re.findall(r"epoch \d+ validation: EER \S+%", log)
        # The picture: 8 x 2.6 inches a panel at 100 dpi, every panel drawn on.
        image = matplotlib.image.imread(folder / "training_curves.png")
        assert image.shape[:2] == (260 * panels, 800)
        for panel in range(panels):
            band = image[260 * panel + 40:260 * (panel + 1) - 40, 120:700, :3]
            assert band.std() > 0.05 and (band < 0.5).mean() > 0.002, panel


def _wait_for_line(path, text, process, seconds=300):
    deadline = time.time() + seconds
    while text not in path.read_text():
        assert process.poll() is None and time.time() < deadline, f"no {text!r} in {path}"
        time.sleep(0.05)


def _gone(pid):
    return process_state(pid) in (None, "Z", "X")


def _stop_the_data_workers(process):
    """SIGSTOP the data pipeline's processes of training ``process`` (its 2 workers and MindSpore's
    clean-up process, which cannot be told apart from outside); their ids."""
    time.sleep(1)  # the pipeline's processes have started with the first batch
    children = child_processes(process.pid)
    assert len(children) == 3, children
    for pid in children:
        os.kill(pid, signal.SIGSTOP)
    return children


# SIGINT arrives while the loop waits for a batch that stopped data workers never send.
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT-stalled"])
def test_a_signal_stops_training_after_saving_its_position(corpus, tmp_path, signum):
    run_dir, log = tmp_path / "run", tmp_path / "train.log"
    workers = ["--num_workers=2", "--worker_processes=true"] if signum == signal.SIGINT else []
    with open(log, "w") as stderr:
        process = subprocess.Popen(_train_command(corpus, run_dir, "--num_epochs=1000", *workers), cwd=tmp_path,
                                   stdout=subprocess.DEVNULL, stderr=stderr)
        _wait_for_line(log, "first step, including graph compilation", process)
        if signum == signal.SIGTERM:
            # Meanwhile the folder is the run's: a second run is refused, though no checkpoint is there yet.
            second = _run(_train_command(corpus, run_dir), cwd=tmp_path)
            started = (run_dir / LOCK_NAME).read_text().split(" started ")[1].strip()
            assert second.returncode == 1 and "Traceback" not in second.stderr
            assert second.stderr.splitlines()[-1] == (
                f"error: ckpt_save_dir: {run_dir} is in use by the training of pid {process.pid} on this host "
                f"(started {started}); wait for it, stop it, or use another ckpt_save_dir")
        else:
            children = _stop_the_data_workers(process)
            time.sleep(1.5)
        process.send_signal(signum)
        status = process.wait(timeout=20 if signum == signal.SIGINT else 120)
    # MindSpore turns a SIGINT that arrives during a step into a SIGTERM (src/interrupts.py).
    name = {143: "SIGTERM", 130: "SIGINT"}[status] if signum == signal.SIGINT else "SIGTERM"
    assert status == 128 + signal.Signals[name].value
    stopped = re.fullmatch(rf"interrupted by {name} at epoch (\d+) step (\d+) \(global (\d+)\), saved (\S+); "
                           r"--resume=auto continues", log.read_text().splitlines()[-1])
    assert stopped, log.read_text()[-2000:]
    epoch, step_in_epoch, step = (int(value) for value in stopped.groups()[:3])
    assert stopped.group(4) == str(run_dir / f"ecapa-{epoch}_{step_in_epoch}.ckpt")
    assert (run_dir / "last").read_text().split() == [f"ecapa-{epoch}_{step_in_epoch}.ckpt"]
    assert int(read_checkpoint(stopped.group(4))["trained_steps"].asnumpy()) == step == 3 * (epoch - 1) + step_in_epoch
    assert not (run_dir / LOCK_NAME).exists()
    if signum == signal.SIGINT:  # the stopped processes are resumed, and MindSpore's clean-up ends the workers
        deadline = time.time() + 10
        while not all(_gone(pid) for pid in children) and time.time() < deadline:
            time.sleep(0.1)
        assert all(_gone(pid) for pid in children)


def test_a_stalled_data_worker_stops_training_with_its_state_named(corpus, tmp_path):
    run_dir, log = tmp_path / "run", tmp_path / "train.log"
    with open(log, "w") as stderr:
        process = subprocess.Popen(_train_command(corpus, run_dir, "--num_epochs=1000", "--num_workers=2",
                                                  "--worker_processes=true", "--data_timeout=3"),
                                   cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=stderr)
        _wait_for_line(log, "first step, including graph compilation", process)
        children = _stop_the_data_workers(process)
        status = process.wait(timeout=30)
    last = log.read_text().splitlines()[-1]
    stalled = re.fullmatch(rf"error: the data pipeline delivered no batch for 3 s \(data_timeout\): its worker "
                           rf"processes are {children[0]} stopped \(SIGSTOP or a debugger\), {children[1]} stopped "
                           rf"\(SIGSTOP or a debugger\), .*; position saved in "
                           r"(\S+); once the data reads, --resume=auto continues", last)
    assert status == 1 and stalled, last
    assert (run_dir / "last").read_text().split() == [os.path.basename(stalled.group(1))]
    assert not (run_dir / LOCK_NAME).exists()
    deadline = time.time() + 10
    while not all(_gone(pid) for pid in children) and time.time() < deadline:
        time.sleep(0.1)
    assert all(_gone(pid) for pid in children)


def test_the_folder_lock_names_its_owner_and_goes_at_the_end(tmp_path):
    with pytest.raises(RuntimeError), claim_folder(str(tmp_path)) as lock:
        host, pid = open(lock).read().split()[1:4:2]
        assert (host, int(pid)) == (socket.gethostname(), os.getpid())
        raise RuntimeError("the run failed")
    assert os.listdir(tmp_path) == []


def test_a_lock_of_a_live_process_or_another_host_refuses_and_a_dead_ones_is_taken_over(tmp_path, caplog):
    lock = tmp_path / LOCK_NAME
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        lock.write_text(f"host {socket.gethostname()} pid {sleeper.pid} started 2026-01-02 03:04:05\n")
        with pytest.raises(FolderInUseError, match=rf"is in use by the training of pid {sleeper.pid} on this host "
                                                   r"\(started 2026-01-02 03:04:05\)"):
            with claim_folder(str(tmp_path)):
                pass
    finally:
        sleeper.kill()
        sleeper.wait()
    assert lock.exists()
    with claim_folder(str(tmp_path)):
        assert f"pid {os.getpid()} " in lock.read_text()
    assert f"took over the lock of pid {sleeper.pid}" in caplog.text and not lock.exists()
    lock.write_text("host elsewhere pid 12 started 2026-01-02 03:04:05\n")
    with pytest.raises(FolderInUseError, match=rf"pid 12 on host elsewhere .*; if that run has ended, delete {lock}"):
        with claim_folder(str(tmp_path)):
            pass


@pytest.mark.parametrize("problem,message", [
    ("class_num", r"^error: class_num: set to 5 but .*train.txt has 4 speakers$"),
    ("malformed", r"^error: .*train.txt:3: expected '<speaker> <relative/path.wav>', got 'id00000'$"),
    ("missing", r"^error: .*train.txt: 1 listed files are missing under .* \(e.g. id00003/v0/00009.wav\)"),
    ("unreadable", r"^error: 2 unreadable training files \(max_bad_audio is 1\); last: .*: cannot read audio"),
    ("silent", r"^error: none of the 12 training files is usable audio; last: .*: no active speech in "),
    ("one_speaker", r"^error: .*train.txt: lists one speaker \(id00002\); training a speaker classifier needs two"),
    ("diverging", r"^error: every one of the 6 steps of this run was skipped because of non-finite gradients, "
                  r"so the weights in .*ecapa-2_3.ckpt are not trained"),
])
def test_bad_training_input_stops_with_one_line(corpus, tmp_path, problem, message):
    root = tmp_path / "data"
    shutil.copytree(corpus, root)
    extra = []
    lines = (root / "train.txt").read_text().splitlines()
    if problem == "class_num":
        extra = ["--class_num=5"]
    elif problem == "unreadable":
        for name in ("id00001/v0/00000.wav", "id00002/v0/00001.wav"):
            (root / "train" / "wav" / name).write_bytes(b"not audio")
        extra = ["--max_bad_audio=1"]
    elif problem == "malformed":
        lines[2] = "id00000"
    elif problem == "silent":
        for name in lines:
            write_audio(root / "train" / "wav" / name.split()[1], np.zeros(16000, np.float32))
        extra = ["--max_bad_audio=100"]
    elif problem == "one_speaker":
        lines = [line for line in lines if line.startswith("id00002 ")]
        extra = ["--class_num=auto"]
    elif problem == "diverging":
        extra = ["--aam_scale=1e38"]  # the logits overflow: every gradient is NaN
    else:
        lines.append("id00003 id00003/v0/00009.wav")
        extra = ["--max_bad_audio=0"]
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    result = _run(_train_command(root, tmp_path / "ckpt", *extra), cwd=tmp_path)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and re.match(message, errors[0]), result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_mixed_precision_network_trains_and_matches_float32(rng):
    """Under O2 the layers run in float16 with float32 weights and batch-norm statistics."""
    from src.device import apply_mixed_precision

    def build():
        ms.set_seed(3)
        return tiny_network(in_channels=10)

    reference, half = build(), apply_mixed_precision(build(), "O2")
    features = Tensor(rng.standard_normal((4, 30, 10)).astype(np.float32))
    for network in (reference, half):
        network.set_train(False)
    expected, actual = reference(features).asnumpy(), half(features).asnumpy()
    assert all(p.dtype == ms.float32 for p in half.trainable_params())
    np.testing.assert_allclose(actual.astype(np.float32), expected, rtol=0.05, atol=0.05)
    loss_net = SpeakerLoss(half, AAMSoftmax(8, 4))
    step = TrainStep(loss_net, nn.Adam(loss_net.trainable_params(), learning_rate=1e-3))
    step.set_train(True)
    loss, _, skipped, _, _ = step(features, Tensor(np.array([0, 1, 2, 3], np.int32)))
    assert np.isfinite(float(loss.asnumpy())) and not bool(skipped.asnumpy())


# ---- one run per checkpoint folder, resuming, writing (unit level) ----

def _fake_checkpoint(folder, name, content=b"weights"):
    os.makedirs(folder, exist_ok=True)
    (folder / name).write_bytes(content)


def test_fresh_run_refuses_a_folder_holding_another_runs_checkpoints(tmp_path):
    _fake_checkpoint(tmp_path, "ecapa-1_4.ckpt")
    _fake_checkpoint(tmp_path, "ecapa-2_4.ckpt")
    with pytest.raises(CheckpointError) as caught:
        prepare_checkpoint_folder(str(tmp_path), "")
    message = str(caught.value)
    assert message.startswith(f"ckpt_save_dir: {tmp_path} already holds 2 checkpoints of another run")
    assert "ecapa-1_4.ckpt, ecapa-2_4.ckpt" in message
    assert "--resume=auto" in message and "--ckpt_save_dir" in message and "--overwrite_checkpoints=true" in message
    assert (tmp_path / "ecapa-1_4.ckpt").read_bytes() == b"weights"


def test_overwrite_setting_deletes_the_earlier_run(tmp_path):
    _fake_checkpoint(tmp_path, "ecapa-1_4.ckpt")
    (tmp_path / "last").write_text("ecapa-1_4.ckpt\n")
    (tmp_path / "best").write_text("ecapa-1_4.ckpt 0.5\n")
    (tmp_path / "notes.txt").write_text("kept")
    assert prepare_checkpoint_folder(str(tmp_path), "", overwrite=True) is None
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_resume_auto_follows_last_not_the_highest_name(tmp_path):
    for name in ("ecapa-1_3.ckpt", "ecapa-2_3.ckpt", "ecapa-9_9.ckpt"):
        _fake_checkpoint(tmp_path, name)
    (tmp_path / "last").write_text("ecapa-2_3.ckpt\n")
    assert prepare_checkpoint_folder(str(tmp_path), "auto") == str(tmp_path / "ecapa-2_3.ckpt")
    (tmp_path / "last").write_text("ecapa-7_1.ckpt\n")
    with pytest.raises(CheckpointError, match="names ecapa-7_1.ckpt, which is not in"):
        prepare_checkpoint_folder(str(tmp_path), "auto")


def test_resume_auto_in_an_empty_folder_says_it_starts_fresh(tmp_path, caplog):
    with caplog.at_level("INFO"):
        assert prepare_checkpoint_folder(str(tmp_path / "new"), "auto") is None
    assert "no checkpoint in" in caplog.text and "starting a fresh run" in caplog.text


def test_explicit_resume_into_a_folder_of_another_run_is_refused(tmp_path):
    _fake_checkpoint(tmp_path / "a", "ecapa-1_4.ckpt")
    _fake_checkpoint(tmp_path / "b", "ecapa-5_4.ckpt")
    assert prepare_checkpoint_folder(str(tmp_path / "a"), str(tmp_path / "a" / "ecapa-1_4.ckpt")) \
        == str(tmp_path / "a" / "ecapa-1_4.ckpt")
    assert prepare_checkpoint_folder(str(tmp_path / "c"), str(tmp_path / "a" / "ecapa-1_4.ckpt")) \
        == str(tmp_path / "a" / "ecapa-1_4.ckpt")
    with pytest.raises(CheckpointError, match="already holds 1 checkpoints of another run"):
        prepare_checkpoint_folder(str(tmp_path / "b"), str(tmp_path / "a" / "ecapa-1_4.ckpt"))


def test_rotation_touches_only_the_runs_own_files(tmp_path):
    _fake_checkpoint(tmp_path, "toy-9_9.ckpt")
    _fake_checkpoint(tmp_path, "ecapa-99_1.ckpt.bak")
    cell = nn.Dense(2, 2)
    manager = CheckpointManager(str(tmp_path), keep_max=1, prefix="ecapa")
    for step in range(1, 4):
        manager.save(cell, step, 1, step)
    assert manager.checkpoints() == ["ecapa-3_1.ckpt"]
    assert (tmp_path / "toy-9_9.ckpt").is_file() and (tmp_path / "ecapa-99_1.ckpt.bak").is_file()


def test_leftover_temporaries_are_removed_and_the_folder_must_be_usable(tmp_path):
    (tmp_path / ".ecapa-2_1.ckpt.abc123xy.part.ckpt").write_bytes(b"torn")
    (tmp_path / ".last.q1w2e3r4.part").write_text("torn")
    (tmp_path / ".hidden_note").write_text("not ours")
    prepare_checkpoint_folder(str(tmp_path), "")
    assert sorted(os.listdir(tmp_path)) == [".hidden_note"]
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match=r"^ckpt_save_dir: .*file exists and is not a folder$"):
        prepare_checkpoint_folder(str(tmp_path / "file"), "")
    with pytest.raises(OutputError, match=r"^ckpt_save_dir: cannot create the folder .*file/sub"):
        prepare_checkpoint_folder(str(tmp_path / "file" / "sub"), "")


def test_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    cell = nn.Dense(4, 3)
    manager = CheckpointManager(str(tmp_path), keep_max=5)
    manager.save(cell, 1, 2, 2, epoch_loss=1.0)
    before = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}

    def fill_the_disk(parameters, path, append_dict=None):
        with open(path, "wb") as handle:
            handle.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ms, "save_checkpoint", fill_the_disk)
    with pytest.raises(DiskFullError) as caught:
        manager.save(cell, 2, 2, 4, epoch_loss=0.5)
    assert re.search(r"ecapa-2_2\.ckpt: no space left .* needs about 0\.0 MB", str(caught.value))
    assert {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)} == before


def test_resume_with_another_batch_size_or_epoch_count_is_refused(tmp_path):
    cell = nn.Dense(2, 2)
    manager = CheckpointManager(str(tmp_path), keep_max=2)
    run = {"minibatch_size": 4, "num_epochs": 2, "group_size": 1, "steps_per_epoch": 3}
    path = manager.save(cell, 1, 3, 3, run_settings=run)
    state = TrainingState(path)
    state.check_run_settings(run)
    for key, value, named in (("minibatch_size", 8, "minibatch_size"), ("num_epochs", 3, "num_epochs"),
                              ("group_size", 2, "the number of devices"),
                              ("steps_per_epoch", 5, "the train_list")):
        with pytest.raises(CheckpointError) as caught:
            state.check_run_settings({**run, key: value})
        assert f"was trained with {key} {run[key]}, this run has {value}" in str(caught.value)
        assert f"Resume with the same {named}" in str(caught.value)


def test_second_run_into_a_used_folder_stops_with_one_line_and_keeps_its_files(corpus, straight_run, tmp_path):
    shutil.copytree(straight_run[0], tmp_path / "ckpt")
    finished = {name: (tmp_path / "ckpt" / name).read_bytes() for name in list_files(tmp_path / "ckpt", "")}
    second = _run(_train_command(corpus, tmp_path / "ckpt", "--seed=9", *RECIPE_FEATURES), cwd=tmp_path)
    errors = [line for line in second.stderr.splitlines() if line.startswith("error")]
    assert second.returncode == 1 and len(errors) == 1 and "Traceback" not in second.stderr
    assert re.match(r"^error: ckpt_save_dir: .* already holds 2 checkpoints of another run "
                    r"\(ecapa-1_3.ckpt, ecapa-2_3.ckpt\)", errors[0])
    resized = _run(_train_command(corpus, tmp_path / "ckpt", "--minibatch_size=2", "--resume=auto",
                                  *RECIPE_FEATURES), cwd=tmp_path)
    errors = [line for line in resized.stderr.splitlines() if line.startswith("error")]
    assert resized.returncode == 1 and len(errors) == 1
    assert "was trained with minibatch_size 4, this run has 2" in errors[0]
    assert {name: (tmp_path / "ckpt" / name).read_bytes() for name in list_files(tmp_path / "ckpt", "")} == finished


def test_validation_during_training_is_logged_and_moves_the_best_pointer(validated_run):
    ckpt_dir, stderr = validated_run
    eers = {int(epoch): float(eer) for epoch, eer in
            re.findall(r"epoch (\d) validation: EER (\d+\.\d+)%, minDCF\(p=0\.01\) [\d.]+", stderr)}
    assert sorted(eers) == [1, 2]
    name, value, metric = (ckpt_dir / "best").read_text().split()
    best_epoch = min(eers, key=lambda epoch: (eers[epoch], epoch))
    assert name == f"ecapa-{best_epoch}_3.ckpt" and metric == "valid_eer"
    assert abs(100 * float(value) - eers[best_epoch]) < 0.006


def test_losses_read_at_log_lines_equal_those_read_every_step(straight_run, validated_run):
    """Step outputs are read only at log lines and checkpoints; the logged means do not change."""
    every_step, every_third = ([float(value) for value in re.findall(r"\(global \d+\) loss (\d+\.\d+) acc", stderr)]
                               for _, stderr in (straight_run, validated_run))
    # Every step of epoch 1 but the first (graph compilation) is logged one by one, then epoch 2.
    assert len(every_step) == 5 and len(every_third) == 2
    np.testing.assert_allclose(every_third, [np.mean(every_step[:2]), np.mean(every_step[2:])], atol=2e-4)


def test_a_pointer_file_given_as_a_checkpoint_names_the_checkpoint_it_points_to(tmp_path):
    manager = CheckpointManager(str(tmp_path), keep_max=2)
    manager.save(nn.Dense(2, 2), 1, 5, 5, epoch_loss=1.0)
    for pointer in ("last", "best"):
        with pytest.raises(CheckpointError, match=rf"{pointer}: is the pointer file of a training folder, not a "
                                                  rf"checkpoint; it names ecapa-1_5.ckpt: pass \S+/ecapa-1_5.ckpt"):
            read_checkpoint(str(tmp_path / pointer))


def test_tensorboard_without_its_writer_installed_is_one_line_and_off_needs_none(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # an environment without the package
    with pytest.raises(ConfigError, match=r"^tensorboard: the tensorboardX package is not installed"):
        RunRecord(str(tmp_path), 0, {"channels": 16}, tensorboard=True)
    record = RunRecord(str(tmp_path), 0, {"channels": 16}, tensorboard=False)
    record.step(1, 1, loss=2.5)
    record.close()
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {"kind": "step", "step": 1, "epoch": 1, "loss": 2.5}
