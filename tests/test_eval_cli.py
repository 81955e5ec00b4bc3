"""eval.py from the command line: trial-list evaluation, --verify, --extract and bad input."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml

from eval_support import (embed_file, program_in_process, save_training_checkpoint, write_corpus, write_train_list,
                          write_trials)
from fixtures import REPO_ROOT, TINY_NETWORK, tiny_network
from src.cli import run_main
from src.data.lists import ListFormatError
from src.evaluation.calibration_step import SEEN_UTTERANCES_WARNING
from src.evaluation.calibration import Calibration, load_calibration, save_calibration
from src.evaluation.embeddings import EmbeddingExtractor, audio_durations
from src.fileio import file_fingerprint
from src.evaluation.verify_extract import output_name, read_audio_list
from src.evaluation.metrics import evaluate
from src.evaluation.report import read_scores
from src.evaluation.scoring import trial_labels
from src.kernels.cells import unavailable_reason
from src.checkpoint import save_checkpoint

EVAL_SCRIPT = os.path.join(REPO_ROOT, "eval.py")


@pytest.fixture(scope="module")
def eval_script():
    """eval.py loaded as a module, to call its main() in this process.

    The context set-up is skipped (conftest already chose CPU and GRAPH_MODE); the
    subprocess runs cover it.
    """
    with program_in_process("eval.py", "eval_script") as module:
        yield module


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Synthetic eval/train corpora, lists, a YAML config and two checkpoints of one tiny network.

    Returns (root folder, network): ``training.ckpt`` holds the network inside a training
    cell, ``exported.ckpt`` the bare network.
    """
    root = tmp_path_factory.mktemp("workspace")
    data = root / "data"
    rng = np.random.default_rng(11)
    evaluation = write_corpus(data / "eval", 3, 3, rng)
    training = write_corpus(data / "train", 4, 2, rng, prefix="t")
    write_trials(data / "eval.txt", evaluation)
    write_train_list(data / "train.txt", training)
    network = tiny_network()
    save_training_checkpoint(network, root / "training.ckpt")
    save_checkpoint(network, root / "exported.ckpt")
    settings = dict(TINY_NETWORK, eval_list=str(data / "eval.txt"), eval_path=str(data / "eval"),
                    train_list=str(data / "train.txt"), train_path=str(data / "train"),
                    eval_output_dir=str(root / "results"))
    (root / "tiny.yaml").write_text(yaml.safe_dump(settings))
    return root, network


@pytest.fixture(scope="module")
def reference(workspace):
    """Extractor with the checkpoints' weights, for expected embeddings."""
    return EmbeddingExtractor(workspace[1])


def run_eval(*arguments, cwd):
    return subprocess.run([sys.executable, EVAL_SCRIPT, *map(str, arguments)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def assert_one_line_error(completed, *fragments):
    assert completed.returncode == 1, completed.stderr
    assert "Traceback" not in completed.stderr
    errors = [line for line in completed.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, completed.stderr
    for fragment in fragments:
        assert fragment in errors[0]


def run_script(name, *arguments, cwd):
    return subprocess.run(["bash", os.path.join(REPO_ROOT, "scripts", name), *map(str, arguments)],
                          cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHON=sys.executable))


@pytest.fixture(scope="module")
def evaluated(workspace):
    """One AS-norm evaluation through scripts/run_eval_cpu.sh, called from outside the repository."""
    root, _ = workspace
    completed = run_script("run_eval_cpu.sh", 0, "training.ckpt", f"--config={root / 'tiny.yaml'}",
                           "--score_norm=asnorm", "--mean_subtraction", "true", "--top_n=4", cwd=root)
    assert completed.returncode == 0, completed.stderr + completed.stdout
    return completed


def test_eval_writes_results_and_prints_metrics(workspace, evaluated):
    root, _ = workspace
    output = root / "results"
    for name in ("scores.txt", "det.png", "score_hist.png", "eval.log", "embeddings.npz"):
        assert (output / name).is_file(), name
    trials, scores = read_scores(output / "scores.txt")
    assert len(trials) == len((root / "data" / "eval.txt").read_text().splitlines())
    result = evaluate(scores, trial_labels(trials))
    eer = re.search(r"^EER = (\d+\.\d\d)%$", evaluated.stdout, re.MULTILINE)
    assert eer and float(eer.group(1)) == pytest.approx(100 * result.eer, abs=0.005)
    assert re.search(r"^minDCF\(p=0.01\) = \d\.\d{4}$", evaluated.stdout, re.MULTILINE)
    assert re.search(r"^minDCF\(p=0.05\) = \d\.\d{4}$", evaluated.stdout, re.MULTILINE)
    assert "x real time" in evaluated.stdout
    log = (output / "eval.log").read_text()
    assert "AS-norm (cohort 8, top_n 4)" in log and eer.group(0) in log
    metrics = json.loads((output / "metrics.json").read_text())
    assert f"EER = {100 * metrics['eer']:.2f}%" == eer.group(0) and metrics["eer"] == result.eer
    assert metrics["min_dcf"]["0.01"]["value"] == result.min_dcf[0.01][0]
    assert set(metrics["min_dcf"]) == {"0.01", "0.05"}
    assert (metrics["trials"], metrics["target_trials"]) == (len(trials), int(sum(t.target for t in trials)))
    assert metrics["model_sha256"] == file_fingerprint(root / "training.ckpt") and metrics["calibration"] is None
    assert f"scoring: {metrics['scoring']}\n" in log and "AS-norm (cohort 8, top_n 4)" in metrics["scoring"]
    assert "act_dcf" not in metrics and "cllr" not in metrics  # raw scores are no LLRs
    assert eer.group(0) in (root / "eval.log").read_text()  # the script's copy of the output


def test_run_eval_scripts_check_their_arguments(workspace):
    root, _ = workspace
    for name in ("run_eval_ascend.sh", "run_eval_gpu.sh", "run_eval_cpu.sh"):
        completed = run_script(name, "first", "training.ckpt", cwd=root)
        assert completed.returncode == 1
        assert "DEVICE_ID must be a non-negative integer, got 'first'" in completed.stderr
        assert f"usage: bash {name} DEVICE_ID CKPT" in completed.stderr
    completed = run_script("run_eval_cpu.sh", 0, "absent.ckpt", cwd=os.path.join(REPO_ROOT, "scripts"))
    assert completed.returncode == 1 and "CKPT 'absent.ckpt' is not a file" in completed.stderr
    assert not os.path.exists(os.path.join(REPO_ROOT, "scripts", "eval.log"))


def test_second_run_reuses_the_cache(workspace, evaluated, eval_script, capsys, monkeypatch):
    root, _ = workspace
    first = (root / "results" / "scores.txt").read_text()
    monkeypatch.chdir(root)
    eval_script.main(["--config", "tiny.yaml", "--model_path", "training.ckpt",
                      "--score_norm=asnorm", "--mean_subtraction=true", "--top_n=4"])
    printed = capsys.readouterr().out
    assert "all 9 embeddings taken from the cache" in printed
    assert "all 8 embeddings taken from the cache" in printed
    assert (root / "results" / "scores.txt").read_text() == first


def test_verify_prints_score_and_decision(workspace, reference, eval_script, capsys):
    root, _ = workspace
    wave_a, wave_b = root / "data/eval/spk0/v1/00000.wav", root / "data/eval/spk1/v1/00001.wav"
    a, b = embed_file(reference, wave_a), embed_file(reference, wave_b)
    expected = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    threshold = round(expected, 4) + 0.001
    eval_script.main(["--config", str(root / "tiny.yaml"), "--model_path", str(root / "exported.ckpt"),
                      "--verify", str(wave_a), str(wave_b), "--threshold", str(threshold)])
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 2, printed
    match = re.fullmatch(r"score = (-?\d\.\d{4})  threshold = (\S+)  (ACCEPT|REJECT)", printed[0])
    assert match, printed
    assert float(match.group(1)) == pytest.approx(expected, abs=1e-4)
    assert match.group(3) == "REJECT"
    assert printed[1].startswith("uncalibrated decision: raw score (cosine) >= threshold")


def test_verify_a_file_against_itself_scores_one(workspace, eval_script, capsys):
    root, _ = workspace
    wave = str(root / "data/eval/spk0/v1/00000.wav")
    eval_script.main(["--config", str(root / "tiny.yaml"), "--model_path", str(root / "exported.ckpt"),
                      "--verify", wave, wave])
    assert capsys.readouterr().out.splitlines()[0] == "score = 1.0000  threshold = 0.5  ACCEPT"


def test_extract_writes_one_vector_per_listed_file(workspace, reference, eval_script, tmp_path):
    root, _ = workspace
    absolute = root / "data/eval/spk2/v1/00002.wav"
    audio_list = root / "data" / "eval" / "list.txt"
    audio_list.write_text(f"spk0/v1/00000.wav\n\n{absolute}\n./spk0/v1/00000.wav\n")
    eval_script.main(["--config", str(root / "tiny.yaml"), "--model_path", str(root / "exported.ckpt"),
                      "--extract", str(audio_list), str(tmp_path / "vectors")])
    expected_names = {"spk0_v1_00000.npy": root / "data/eval/spk0/v1/00000.wav",
                      output_name(str(absolute)): absolute}
    assert sorted(os.listdir(tmp_path / "vectors")) == sorted(expected_names)
    for name, wave in expected_names.items():
        vector = np.load(tmp_path / "vectors" / name)
        assert vector.shape == (TINY_NETWORK["emb_size"],) and vector.dtype == np.float32
        np.testing.assert_allclose(vector, embed_file(reference, wave), rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(unavailable_reason() is not None, reason=f"CPU kernels: {unavailable_reason()}")
def test_extract_on_the_cpu_kernels(workspace, reference, eval_script, tmp_path):
    root, _ = workspace
    audio_list = root / "data" / "eval" / "kernels.txt"
    audio_list.write_text("spk0/v1/00000.wav\nspk1/v1/00001.wav\n")
    vectors = {}
    for kernels in ("float32", "bf16"):
        eval_script.main(["--config", str(root / "tiny.yaml"), "--model_path", str(root / "exported.ckpt"),
                          "--cpu_kernels", kernels, "--extract", str(audio_list), str(tmp_path / kernels)])
        vectors[kernels] = {name: np.load(tmp_path / kernels / name) for name in os.listdir(tmp_path / kernels)}
    for name, wave in (("spk0_v1_00000.npy", "spk0/v1/00000.wav"), ("spk1_v1_00001.npy", "spk1/v1/00001.wav")):
        expected = embed_file(reference, root / "data" / "eval" / wave)
        np.testing.assert_allclose(vectors["float32"][name], expected, rtol=1e-4, atol=1e-5)
        bf16 = vectors["bf16"][name]
        assert bf16 @ expected / np.linalg.norm(bf16) / np.linalg.norm(expected) > 0.999


def test_audio_list_rules(tmp_path):
    assert output_name("spk1/a/001.wav") == "spk1_a_001.npy"
    assert output_name("/data/x/2.flac") == "data_x_2.npy"
    audio_list = tmp_path / "sub" / "list.txt"
    audio_list.parent.mkdir()
    audio_list.write_text("a/1.wav\n/abs/b.wav\na/1.wav\na/1.flac\n")
    with pytest.raises(ListFormatError, match=r"list.txt:4: 'a/1.flac' would be written to a_1.npy, "
                                              r"like the entry on line 1"):
        read_audio_list(audio_list)
    audio_list.write_text("a/1.wav\n/abs/b.wav\n")
    assert read_audio_list(audio_list) == [("a/1.wav", str(tmp_path / "sub" / "a" / "1.wav")),
                                           ("/abs/b.wav", "/abs/b.wav")]


def test_missing_trial_files_stop_with_one_line(workspace, tmp_path):
    root, _ = workspace
    trials = tmp_path / "trials.txt"
    trials.write_text("1 spk0/v1/00000.wav spk0/v1/00001.wav\n0 spk0/v1/00000.wav spk7/v1/00000.wav\n"
                      "0 spk0/v1/00000.wav spk8/v1/00000.wav\n")
    completed = run_eval("--config", "tiny.yaml", "--model_path", "exported.ckpt",
                         f"--eval_list={trials}", cwd=root)
    assert_one_line_error(completed, "trials.txt: 2 of 4 audio files not found",
                          "spk7/v1/00000.wav, spk8/v1/00000.wav")


def test_checkpoint_of_another_size_stops_with_one_line(workspace):
    root, _ = workspace
    completed = run_eval("--config", "tiny.yaml", "--model_path", "training.ckpt", "--emb_size=16",
                         cwd=root)
    assert_one_line_error(completed, "training.ckpt", "'fc.weight'", "(8, 48)", "(16, 48)")


def test_malformed_trial_line_and_missing_inputs(workspace, eval_script, tmp_path, capsys):
    root, _ = workspace
    malformed = tmp_path / "trials.txt"
    malformed.write_text("1 spk0/v1/00000.wav spk0/v1/00001.wav\n2 spk0/v1/00000.wav spk1/v1/00000.wav\n")
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    cases = [
        (["--eval_list", str(malformed)], f"{malformed}:2: expected '<1|0> <utt_a> <utt_b>'"),
        (["--model_path", str(tmp_path / "none.ckpt")], "model_path: file"),
        (["--model_path", str(tmp_path)], f"model_path: '{tmp_path}' is a folder, expected a file"),
        (["--model_path", str(empty)], f"{empty}: the file is empty (0 bytes), expected a MindSpore checkpoint"),
        (["--verify", str(tmp_path / "a.wav"), str(tmp_path / "b.wav")], "a.wav: audio file not found"),
        (["--extract", str(tmp_path / "list.txt"), str(tmp_path)], "list.txt: list file not found"),
        (["--eval_list", str(root / "data/eval/spk0/v1/00000.wav")],
         f"{root / 'data/eval/spk0/v1/00000.wav'}:1: not UTF-8 text (byte 0x"),
    ]
    for arguments, message in cases:
        argv = ["--config", str(root / "tiny.yaml"), "--model_path", str(root / "exported.ckpt"),
                *arguments]
        with pytest.raises(SystemExit) as stop:
            run_main(lambda: eval_script.main(argv))
        assert stop.value.code == 1
        assert message in capsys.readouterr().err


def test_eval_fits_applies_and_reports_a_calibration(workspace, reference, eval_script, capsys, monkeypatch):
    root, _ = workspace
    monkeypatch.chdir(root)
    common = ["--config", "tiny.yaml", "--model_path", "training.ckpt", "--score_norm=asnorm", "--top_n=4",
              "--eval_output_dir", "calibrated"]
    eval_script.main(common)
    uncalibrated = capsys.readouterr().out.splitlines()
    assert uncalibrated[0].startswith("EER = ") and uncalibrated[7].startswith("actDCF and Cllr read the raw")
    raw_trials, raw_scores = read_scores(root / "calibrated" / "scores.txt")

    eval_script.main(common + ["--score_calibration=qmf", "--cal_trials=20"])
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("EER = ")
    assert [line.split(" = ")[0] for line in printed[1:7]] == [
        "minDCF(p=0.01)", "minDCF(p=0.05)", "actDCF(p=0.01)", "actDCF(p=0.05)", "Cllr", "minCllr"]
    assert printed[7] == "scores are LLRs of the qmf calibration"
    raw_result = evaluate(raw_scores, trial_labels(raw_trials))
    assert printed[8] == (f"before calibration (raw scores read as LLRs): EER = {100 * raw_result.eer:.2f}%, "
                          f"minDCF(p=0.01) = {raw_result.min_dcf[0.01][0]:.4f}, "
                          f"minDCF(p=0.05) = {raw_result.min_dcf[0.05][0]:.4f}, "
                          f"actDCF(p=0.01) = {raw_result.act_dcf[0.01][0]:.4f}, "
                          f"actDCF(p=0.05) = {raw_result.act_dcf[0.05][0]:.4f}, "
                          f"Cllr = {raw_result.cllr:.4f}, minCllr = {raw_result.min_cllr:.4f}")
    assert printed[9] == SEEN_UTTERANCES_WARNING  # the automatic list is made of training utterances
    assert printed[10].startswith("calibration: qmf fitted on 14 trials (4 target) of "
                                  "calibrated/calibration_trials.txt")

    # The calibration list: 4 speakers of 2 utterances give 4 target pairs; 20 - 10 = 10
    # non-target pairs requested, all possible.
    cal_trials = (root / "calibrated" / "calibration_trials.txt").read_text().splitlines()
    assert len(cal_trials) == 14 and sum(line.startswith("1 ") for line in cal_trials) == 4
    calibration = load_calibration(root / "calibrated" / "calibration.json")
    assert calibration.kind == "qmf" and calibration.scoring == "cosine, AS-norm (cohort 8, top_n 4)"
    assert calibration.model_sha256 == file_fingerprint(root / "training.ckpt")
    assert calibration.fitted_on["trials"] == 14 and calibration.fitted_on["targets"] == 4
    assert calibration.fitted_on["trial_list"] == str(root / "calibrated" / "calibration_trials.txt")
    metrics = json.loads((root / "calibrated" / "metrics.json").read_text())
    assert metrics["calibration"] == "qmf" and printed[0] == f"EER = {100 * metrics['eer']:.2f}%"
    assert [f"{metrics['act_dcf'][p]['value']:.4f}" for p in ("0.01", "0.05")] == [
        line.split(" = ")[1] for line in printed[3:5]]
    assert printed[5] == f"Cllr = {metrics['cllr']:.4f}" and printed[6] == f"minCllr = {metrics['min_cllr']:.4f}"

    # scores.txt holds the calibration applied to the raw scores, with the trials' quality measures.
    trials, llrs = read_scores(root / "calibrated" / "scores.txt")
    assert trials == raw_trials
    data = root / "data" / "eval"
    seconds = dict(zip(*(lambda names: (names, audio_durations(names, str(data))))(
        sorted({t.utt_a for t in trials} | {t.utt_b for t in trials}))))
    norm = {name: np.linalg.norm(embed_file(reference, data / name)) for name in seconds}
    durations = np.array([[seconds[t.utt_a], seconds[t.utt_b]] for t in trials])
    norms = np.array([[norm[t.utt_a], norm[t.utt_b]] for t in trials])
    np.testing.assert_allclose(llrs, calibration.llrs(raw_scores, durations, norms), rtol=1e-4, atol=1e-4)

    # The saved file applied to the same trials gives the same LLRs, without a new fit.
    eval_script.main(common + [f"--calibration_file={root / 'calibrated' / 'calibration.json'}",
                               "--eval_output_dir", "applied"])
    printed = capsys.readouterr().out.splitlines()
    assert printed[7] == "scores are LLRs of the qmf calibration"
    np.testing.assert_allclose(read_scores(root / "applied" / "scores.txt")[1], llrs, rtol=1e-6, atol=1e-6)


def write_cosine_calibration(root, name, **fields):
    """A linear calibration of plain cosine scores of exported.ckpt saved as ``root/name``."""
    values = dict(kind="linear", features=("score",), weights=(10.0,), bias=-2.0, prior=0.5,
                  scoring="cosine", model_sha256=file_fingerprint(root / "exported.ckpt"),
                  fitted_on={"model_path": "exported.ckpt"},
                  fa_thresholds=[{"fa_rate": 0.01, "llr_threshold": 1.5, "miss_rate": 0.2}])
    values.update(fields)
    return save_calibration(root / name, Calibration(**values))


@pytest.mark.parametrize("operating_point, threshold", [
    ([], np.log(99)), (["--p_target=0.5"], 0.0), (["--target_fa_rate=0.01"], 1.5)])
def test_verify_with_a_calibration_prints_the_llr_and_a_calibrated_decision(
        workspace, reference, eval_script, capsys, operating_point, threshold):
    root, _ = workspace
    wave_a, wave_b = root / "data/eval/spk0/v1/00000.wav", root / "data/eval/spk0/v1/00001.wav"
    a, b = embed_file(reference, wave_a), embed_file(reference, wave_b)
    cosine = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    path = write_cosine_calibration(root, "cosine.json")
    eval_script.main(["--config", str(root / "tiny.yaml"), "--model_path", str(root / "exported.ckpt"),
                      "--verify", str(wave_a), str(wave_b), f"--calibration_file={path}", *operating_point])
    printed = capsys.readouterr().out.strip().splitlines()
    match = re.fullmatch(r"score = (-?\d\.\d{4})  llr = (-?\d+\.\d{4})  threshold = (-?\d+\.\d{4})  "
                         r"(ACCEPT|REJECT)", printed[0])
    assert match, printed
    assert float(match.group(1)) == pytest.approx(cosine, abs=1e-4)
    llr = 10.0 * cosine - 2.0
    assert float(match.group(2)) == pytest.approx(llr, abs=1e-3)
    assert float(match.group(3)) == pytest.approx(threshold, abs=1e-4)
    assert match.group(4) == ("ACCEPT" if llr >= threshold else "REJECT")
    assert printed[1].startswith("calibrated decision: LLR >= ")
    assert f"linear calibration {path}" in printed[1]
    uses_fa_rate = any(option.startswith("--target_fa_rate") for option in operating_point)
    assert ("false-accept rate on the calibration list" in printed[1]) == uses_fa_rate


@pytest.mark.parametrize("extra, message", [
    (["--target_fa_rate=0.05"],
     "target_fa_rate: 0.05 has no threshold in the calibration file (stored rates: 0.01)"),
    (["--score_norm=asnorm", "--top_n=4"], "fitted on 'cosine' scores, but the settings give "
                                           "'cosine, AS-norm (cohort 8, top_n 4)' scores"),
    (["--model_path=training.ckpt"], "fitted on the scores of another checkpoint (exported.ckpt)"),
    (["--calibration_file=absent.json"], "calibration_file: file 'absent.json' not found"),
])
def test_verify_refuses_a_calibration_that_does_not_fit(workspace, eval_script, capsys, extra, message):
    root, _ = workspace
    write_cosine_calibration(root, "cosine.json")
    argv = ["--config", str(root / "tiny.yaml"), "--model_path", str(root / "exported.ckpt"),
            "--calibration_file", str(root / "cosine.json"), *extra,
            "--verify", str(root / "data/eval/spk0/v1/00000.wav"), str(root / "data/eval/spk1/v1/00001.wav")]
    cwd = os.getcwd()
    os.chdir(root)
    try:
        with pytest.raises(SystemExit) as stop:
            run_main(lambda: eval_script.main(argv))
    finally:
        os.chdir(cwd)
    assert stop.value.code == 1
    captured = capsys.readouterr()
    assert "ACCEPT" not in captured.out and "REJECT" not in captured.out
    assert message in captured.err


def test_uncalibrated_verify_refuses_a_false_accept_target(workspace, eval_script, capsys):
    root, _ = workspace
    argv = ["--config", str(root / "tiny.yaml"), "--model_path", str(root / "exported.ckpt"),
            "--target_fa_rate=0.01", "--verify", str(root / "data/eval/spk0/v1/00000.wav"),
            str(root / "data/eval/spk1/v1/00001.wav")]
    with pytest.raises(SystemExit):
        run_main(lambda: eval_script.main(argv))
    assert "target_fa_rate: needs a calibration_file" in capsys.readouterr().err


def test_fitting_and_applying_a_calibration_at_once_is_refused(workspace):
    root, _ = workspace
    completed = run_eval("--config", "tiny.yaml", "--model_path", "exported.ckpt", "--score_calibration=linear",
                         "--calibration_file=x.json", cwd=root)
    assert_one_line_error(completed, "calibration_file: set either score_calibration", "not both")
