"""The fixed-length path end to end: preprocess -> MindIR on the CPU runner -> postprocess.

A tiny network is exported with a short input; run_infer_cpu.sh runs on a synthetic corpus
whose utterances are shorter and longer than that input, and every intermediate file and the
final scores are compared with an in-process computation of the same network.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mindspore import Tensor

import postprocess
from src.data.audio import read_audio, write_audio
from src.data.features import log_mel
from src.data.lists import read_trial_list, trial_utterances
from src.errors import InputError
from src.evaluation.metrics import evaluate
from src.evaluation.report import format_summary, read_scores
from src.evaluation.scoring import score_trials, trial_labels
from src.inference.binary_io import BinFileError
from src.inference.exporter import export_network
from src.inference.fixed_length import bin_file_name, bin_file_names, fixed_length_features, fixed_length_wave
from src.inference.runner import parse_args, run_inference
from fixtures import tiny_network
from src.checkpoint import load_embedding_weights, save_checkpoint

REPO = Path(__file__).resolve().parents[1]
CPU_SCRIPT = REPO / "scripts" / "run_infer_cpu.sh"
ASCEND_SCRIPT = REPO / "scripts" / "run_infer_310.sh"
LENGTH = 120                      # frames = 19,040 samples = 1.19 s
SECONDS = (0.6, 1.0, 1.8)         # utterance durations: two padded, one cropped
PITCHES = (110.0, 170.0, 240.0)   # one voice per speaker
TIMING = re.compile(r"ECAPA-TDNN inference cost average time: \d+\.\d{3} ms of infer_count 9 "
                    r"\(total \d+\.\d{3} ms\)\n")


def write_corpus(root):
    """3 speakers x 3 utterances under root/eval/wav and all 36 pair trials in root/eval.txt."""
    rng = np.random.default_rng(7)
    utterances = []
    for speaker, pitch in enumerate(PITCHES):
        for index, seconds in enumerate(SECONDS):
            time = np.arange(int(seconds * 16000)) / 16000
            wave = 0.3 * np.sin(2 * np.pi * pitch * (1 + 0.1 * index) * time) + 0.05 * rng.standard_normal(time.size)
            utterance = f"id{speaker}/video{index % 2}/{index:05d}.wav"
            write_audio(root / "eval" / "wav" / utterance, wave)
            utterances.append((speaker, utterance))
    lines = [f"{int(a[0] == b[0])} {a[1]} {b[1]}\n"
             for position, a in enumerate(utterances) for b in utterances[position + 1:]]
    (root / "eval.txt").write_text("".join(lines))


def run_script(script, *args, cwd):
    environment = dict(os.environ, PYTHON=sys.executable)
    return subprocess.run(["bash", str(script), *map(str, args)], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Corpus, checkpoint and MindIR in one folder; run_infer_cpu.sh run once in 'work/'."""
    root = tmp_path_factory.mktemp("fixed_length")
    write_corpus(root / "data")
    network = tiny_network()
    rng = np.random.default_rng(3)
    for name, parameter in network.parameters_dict().items():
        values = 0.3 * rng.standard_normal(parameter.shape)
        parameter.set_data(Tensor((0.5 + np.abs(values) if "variance" in name else values).astype(np.float32)))
    save_checkpoint(network, str(root / "weights.ckpt"))
    network.set_train(False)
    export_network(network, (1, LENGTH, 80), str(root / "model"), "MINDIR")
    work = root / "work"
    work.mkdir()
    # The script is called by a relative path, as from scripts/ or the repository root.
    result = run_script(os.path.relpath(CPU_SCRIPT, work), "../model.mindir", "../data", cwd=work)
    assert result.returncode == 0, result.stdout + result.stderr
    return root


@pytest.fixture(scope="module")
def in_process(setup):
    """Embeddings and scores of the checkpoint network computed here on fixed_length_features."""
    network = tiny_network()
    load_embedding_weights(str(setup / "weights.ckpt"), network)
    network.set_train(False)
    trials = read_trial_list(setup / "data" / "eval.txt")
    embeddings = {}
    for utterance in trial_utterances(trials):
        wave = read_audio(setup / "data" / "eval" / "wav" / utterance)
        embeddings[utterance] = network(Tensor(fixed_length_features(wave, LENGTH))).asnumpy()[0]
    scores = score_trials(embeddings, trials)
    return embeddings, scores, evaluate(scores, trial_labels(trials))


def test_fixed_length_wave_crops_from_the_start_and_repeats_short_audio():
    long_wave = np.arange(20000, dtype=np.float32)
    np.testing.assert_array_equal(fixed_length_wave(long_wave, 3), np.arange(320))
    short = np.array([1, 2, 3], dtype=np.float32)
    padded = fixed_length_wave(short, 2)
    assert padded.shape == (160,)
    np.testing.assert_array_equal(padded[:7], [1, 2, 3, 1, 2, 3, 1])
    assert fixed_length_features(long_wave, LENGTH).shape == (1, LENGTH, 80)
    with pytest.raises(ValueError, match="at least 2 frames"):
        fixed_length_wave(long_wave, 1)


def test_bin_file_names_replace_slashes_and_refuse_collisions():
    assert bin_file_name("id10270/5r0dWxy17C8/00001.wav") == "id10270_5r0dWxy17C8_00001.bin"
    with pytest.raises(InputError, match="'a_b/c.wav' and 'a/b_c.wav' both map to the file name 'a_b_c.bin'"):
        bin_file_names(["a_b/c.wav", "a/b_c.wav"])


def test_preprocess_writes_the_waveform_crop_features(setup):
    out = setup / "work" / "preprocess_Result"
    utterances = trial_utterances(read_trial_list(setup / "data" / "eval.txt"))
    samples = (LENGTH - 1) * 160
    for utterance in utterances:
        wave = read_audio(setup / "data" / "eval" / "wav" / utterance)
        cropped = np.tile(wave, 4)[:samples]  # 4 copies cover the shortest (0.6 s) utterance
        stored = np.fromfile(out / "feat" / bin_file_name(utterance), dtype=np.float32)
        np.testing.assert_array_equal(stored.reshape(LENGTH, 80), log_mel(cropped))
    listed = (out / "utt_list.txt").read_text().splitlines()
    assert listed == sorted(f"{bin_file_name(utterance)} {utterance}" for utterance in utterances)
    assert (out / "eval.txt").read_bytes() == (setup / "data" / "eval.txt").read_bytes()


def test_cpu_path_reproduces_the_in_process_network(setup, in_process):
    embeddings, scores, result = in_process
    work = setup / "work"
    for utterance, expected in embeddings.items():
        stored = np.fromfile(work / "result_Files" / bin_file_name(utterance), dtype=np.float32)
        np.testing.assert_allclose(stored, expected, rtol=1e-5, atol=1e-6)
    _, script_scores = read_scores(work / "scores.txt")
    np.testing.assert_allclose(script_scores, scores, rtol=0, atol=1e-6)
    assert np.unique(scores).size == scores.size  # no ties: the EER comparison is not trivial
    labels = [trial.target for trial in read_trial_list(setup / "data" / "eval.txt")]
    assert evaluate(script_scores, labels).eer == result.eer
    assert (work / "acc.log").read_text().splitlines() == format_summary(result)
    assert TIMING.fullmatch((work / "time_Result" / "test_perform_static.txt").read_text())


def test_a_preprocessed_folder_is_accepted_as_data(setup):
    other = setup / "other_work"
    other.mkdir()
    result = run_script(CPU_SCRIPT, setup / "model.mindir", setup / "work" / "preprocess_Result", cwd=other)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "using the features preprocessed in" in result.stdout
    assert not (other / "preprocess_Result").exists()
    assert (other / "scores.txt").read_text() == (setup / "work" / "scores.txt").read_text()


def test_runner_defaults_and_repeated_options():
    args = parse_args(["--mindir_path=m.mindir", "--input_path", "feat"])
    assert (args.result_path, args.time_file, args.device_id) == (
        "./result_Files", os.path.join("time_Result", "test_perform_static.txt"), None)
    with pytest.raises(SystemExit):
        parse_args(["--mindir_path=m.mindir", "--input_path=a", "--input_path=b"])


def test_runner_names_a_feature_file_of_the_wrong_size(setup, tmp_path):
    feat = tmp_path / "feat"
    feat.mkdir()
    np.zeros((1, LENGTH - 1, 80), dtype=np.float32).tofile(feat / "short.bin")
    with pytest.raises(BinFileError, match=r"short\.bin: expected 9600 float32 values \(38400 bytes\) but the "
                                           r"file has 38080 bytes \(model input shape \(1, 120, 80\)\)"):
        run_inference(str(setup / "model.mindir"), str(feat), str(tmp_path / "out"), str(tmp_path / "t.txt"))


def test_cpu_program_exit_statuses_follow_the_310_program(setup, tmp_path):
    program = [sys.executable, str(REPO / "scripts" / "infer_cpu.py")]
    feat = setup / "work" / "preprocess_Result" / "feat"
    usage = subprocess.run([*program, f"--input_path={feat}"], cwd=tmp_path, capture_output=True, text=True)
    assert usage.returncode == 2
    assert "the following arguments are required: --mindir_path" in usage.stderr
    failed = subprocess.run([*program, "--mindir_path=absent.mindir", f"--input_path={feat}"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert failed.returncode == 1
    assert failed.stderr.startswith("error: absent.mindir") and failed.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def run_postprocess(monkeypatch, results, setup):
    monkeypatch.setattr(sys, "argv", ["postprocess.py", "--result_path", str(results), "--emb_size", "8",
                                      "--eval_list", str(setup / "data" / "eval.txt"),
                                      "--log_file", str(results / "acc.log")])
    postprocess.main()


def test_postprocess_names_a_missing_result_file(setup, tmp_path, monkeypatch):
    results = tmp_path / "results"
    shutil.copytree(setup / "work" / "result_Files", results)
    (results / "id1_video0_00002.bin").unlink()
    with pytest.raises(BinFileError, match=r"id1_video0_00002\.bin: result file of utterance "
                                           r"id1/video0/00002\.wav not found"):
        run_postprocess(monkeypatch, results, setup)


def test_postprocess_names_a_result_file_of_the_wrong_size(setup, tmp_path, monkeypatch):
    results = tmp_path / "results"
    shutil.copytree(setup / "work" / "result_Files", results)
    np.zeros(9, dtype=np.float32).tofile(results / "id0_video1_00001.bin")
    with pytest.raises(BinFileError, match=r"id0_video1_00001\.bin: expected 8 float32 values \(32 bytes\) "
                                           r"but the file has 36 bytes"):
        run_postprocess(monkeypatch, results, setup)
    assert not (results / "acc.log").exists()


@pytest.mark.parametrize("script,args,message", [
    (CPU_SCRIPT, [], "usage: bash"),
    (CPU_SCRIPT, ["nowhere.mindir", "{data}"], "error: MINDIR 'nowhere.mindir' not found"),
    (CPU_SCRIPT, ["{ckpt}", "{data}"], "does not end with .mindir"),
    (CPU_SCRIPT, ["{model}", "{data}/eval.txt"], "eval.txt' is not a folder"),
    (ASCEND_SCRIPT, ["{model}", "{data}"], "usage: bash"),
    (ASCEND_SCRIPT, ["{data}", "{model}", "0"], "does not end with .mindir"),
    (ASCEND_SCRIPT, ["{model}", "0", "{data}"], "error: DATA '0' is not a folder"),
    (ASCEND_SCRIPT, ["{model}", "{data}", "one"], "error: DEVICE_ID 'one' is not a non-negative integer"),
])
def test_scripts_check_their_arguments(setup, tmp_path, script, args, message):
    paths = {"data": setup / "data", "model": setup / "model.mindir", "ckpt": setup / "weights.ckpt"}
    result = run_script(script, *(arg.format(**paths) for arg in args), cwd=tmp_path)
    assert result.returncode == 1
    assert message in result.stdout + result.stderr
    assert list(tmp_path.iterdir()) == []


def test_cpu_script_rejects_data_without_a_trial_list(setup, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(setup / "work" / "preprocess_Result" / "feat", data / "feat")
    (data / "utt_list.txt").write_text("")
    result = run_script(CPU_SCRIPT, setup / "model.mindir", data, cwd=tmp_path)
    assert result.returncode == 1
    assert "holds preprocessed features but no eval.txt" in result.stderr

    shutil.rmtree(data / "feat")
    result = run_script(CPU_SCRIPT, setup / "model.mindir", data, cwd=tmp_path)
    assert result.returncode == 1
    assert "holds neither eval.txt with eval/wav/" in result.stderr
