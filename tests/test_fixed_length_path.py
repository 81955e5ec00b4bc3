"""The fixed-length path end to end: preprocess -> MindIR on the CPU runner (or ONNX with
onnxruntime) -> postprocess, with the first window of each utterance or windows covering it.

A tiny network is exported with a short input; run_infer_cpu.sh and run_infer_onnx.sh run on a
synthetic corpus whose utterances are shorter and longer than that input, and every
intermediate file and the final scores are compared with an in-process computation of the
same network.
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
from src.config import load_config
from src.inference.fixed_length import (bin_file_name, bin_file_names, fixed_length_features, fixed_length_wave,
                                        read_window_list, window_features, window_file_name, window_starts)
from src.inference import preprocessing
from src.inference.folding import fold_batch_norm
from src.inference.preprocessing import write_feature_folder
from src.inference.results import average_embeddings
from src.inference.runner import parse_args, run_inference
from fixtures import TINY_NETWORK_ARGS, tiny_network
from src.checkpoint import load_embedding_weights, save_checkpoint

REPO = Path(__file__).resolve().parents[1]
CPU_SCRIPT = REPO / "scripts" / "run_infer_cpu.sh"
ASCEND_SCRIPT = REPO / "scripts" / "run_infer_310.sh"
ONNX_SCRIPT = REPO / "scripts" / "run_infer_onnx.sh"
LENGTH = 120                      # frames = 19,040 samples = 1.19 s; window hop 60 frames by default
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
    folded = fold_batch_norm(network, load_config(TINY_NETWORK_ARGS)[0], "shifted")
    export_network(folded, (1, LENGTH, 80), str(root / "model"), "ONNX")
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
    (ONNX_SCRIPT, ["{model}"], "usage: bash"),
    (ONNX_SCRIPT, ["{model}", "{data}"], "error: ONNX '{model}' does not end with .onnx"),
    (ONNX_SCRIPT, ["nowhere.onnx", "{data}"], "error: ONNX 'nowhere.onnx' not found"),
    (ASCEND_SCRIPT, ["{model}", "{data}"], "usage: bash"),
    (ASCEND_SCRIPT, ["{data}", "{model}", "0"], "does not end with .mindir"),
    (ASCEND_SCRIPT, ["{model}", "0", "{data}"], "error: DATA '0' is not a folder"),
    (ASCEND_SCRIPT, ["{model}", "{data}", "one"], "error: DEVICE_ID 'one' is not a non-negative integer"),
])
def test_scripts_check_their_arguments(setup, tmp_path, script, args, message):
    paths = {"data": setup / "data", "model": setup / "model.mindir", "ckpt": setup / "weights.ckpt"}
    result = run_script(script, *(arg.format(**paths) for arg in args), cwd=tmp_path)
    assert result.returncode == 1
    assert message.format(**paths) in result.stdout + result.stderr
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


def test_window_starts_step_by_the_hop_and_end_at_the_end():
    # length 3 frames = 320 samples; hop 1 frame = 160 samples.
    assert window_starts(700, 3, 1) == [0, 160, 320, 380]
    assert window_starts(960, 3, 2) == [0, 320, 640]     # the end falls on a hop: no repeated window
    assert window_starts(321, 3, 1) == [0, 1]
    assert window_starts(320, 3, 1) == window_starts(100, 3, 5) == [0]
    assert window_file_name("id0/v/00001.wav", 3) == "id0_v_00001.w0003.bin"


def test_window_features_cover_the_utterance_and_short_audio_is_the_first_input():
    wave = np.random.default_rng(2).standard_normal(28800).astype(np.float32)  # 1.8 s
    windows = window_features(wave, LENGTH, 60)
    samples = (LENGTH - 1) * 160
    assert len(windows) == 3  # starts 0, 9600 and 28800 - 19040 = 9760
    np.testing.assert_array_equal(windows[0], fixed_length_features(wave, LENGTH))
    np.testing.assert_array_equal(windows[1][0], log_mel(wave[9600:9600 + samples]))
    np.testing.assert_array_equal(windows[-1][0], log_mel(wave[-samples:]))
    short = wave[:9000]
    np.testing.assert_array_equal(np.concatenate(window_features(short, LENGTH, 60)),
                                  fixed_length_features(short, LENGTH))


def test_average_embeddings_normalises_each_then_the_mean():
    np.testing.assert_allclose(average_embeddings([[3.0, 4.0], [0.0, 2.0]]),
                               np.array([0.3, 0.9]) / np.sqrt(0.9), rtol=1e-6)
    np.testing.assert_allclose(average_embeddings([[3.0, 4.0], [0.0, 20.0]]),
                               average_embeddings([[30.0, 40.0], [0.0, 2.0]]), rtol=1e-6)
    np.testing.assert_array_equal(average_embeddings([[0.0, 0.0]]), [0.0, 0.0])


def run_preprocess(setup, out, *settings):
    result = subprocess.run([sys.executable, str(REPO / "preprocess.py"), *TINY_NETWORK_ARGS,
                             f"--eval_list={setup / 'data' / 'eval.txt'}",
                             f"--eval_path={setup / 'data' / 'eval' / 'wav'}",
                             f"--output_path={out}", f"--length={LENGTH}", *settings],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def folder_contents(folder):
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_windows_first_writes_exactly_the_single_input_files(setup, tmp_path):
    # The same files as the default run (whose features test_preprocess_writes_the_waveform_crop_features
    # checks); features agree to float rounding, since another process may sum the mel products in another order.
    run_preprocess(setup, tmp_path / "first", "--windows=first")
    found, expected = folder_contents(tmp_path / "first"), folder_contents(setup / "work" / "preprocess_Result")
    assert sorted(found) == sorted(expected) and "utt_list.txt" in found and "windows.txt" not in found
    for name, content in expected.items():
        if name.endswith(".bin"):
            np.testing.assert_allclose(np.frombuffer(found[name], np.float32), np.frombuffer(content, np.float32),
                                       rtol=1e-6, atol=1e-6)
        else:
            assert found[name] == content


@pytest.fixture(scope="module")
def windowed(setup):
    """Features of every window (hop 60 frames); run_infer_cpu.sh and run_infer_onnx.sh on them."""
    features = setup / "windowed"
    printed = run_preprocess(setup, features, "--windows=all")
    assert "windows every 60 frames" in printed
    for script, model, work in ((CPU_SCRIPT, "model.mindir", "windowed_cpu"),
                                (ONNX_SCRIPT, "model.onnx", "windowed_onnx")):
        (setup / work).mkdir()
        result = run_script(script, setup / model, features, cwd=setup / work)
        assert result.returncode == 0, result.stdout + result.stderr
    return features


def test_windows_all_embeds_every_window_and_scores_their_average(setup, windowed):
    network = tiny_network()
    load_embedding_weights(str(setup / "weights.ckpt"), network)
    network.set_train(False)
    trials = read_trial_list(setup / "data" / "eval.txt")
    pairs = read_window_list(windowed / "windows.txt")
    assert not (windowed / "utt_list.txt").exists()
    assert sorted(name for name, _ in pairs) == sorted(path.name for path in (windowed / "feat").iterdir())
    embeddings = {}
    for utterance in trial_utterances(trials):
        wave = read_audio(setup / "data" / "eval" / "wav" / utterance)
        names = [name for name, owner in pairs if owner == utterance]
        windows = window_features(wave, LENGTH, 60)
        # 0.6 s and 1.0 s fit in one window; 1.8 s takes windows starting at 0, 0.6 and 0.61 s.
        assert len(names) == len(windows) == (3 if wave.size > 20000 else 1)
        assert names == [window_file_name(utterance, index) for index in range(len(windows))]
        embeddings[utterance] = average_embeddings([network(Tensor(features)).asnumpy()[0] for features in windows])
    scores = score_trials(embeddings, trials)
    _, script_scores = read_scores(setup / "windowed_cpu" / "scores.txt")
    np.testing.assert_allclose(script_scores, scores, rtol=0, atol=1e-5)
    result = evaluate(scores, trial_labels(trials))
    assert (setup / "windowed_cpu" / "acc.log").read_text().splitlines() == format_summary(result)
    _, first_scores = read_scores(setup / "work" / "scores.txt")
    assert np.abs(first_scores - script_scores).max() > 1e-3  # the longest utterances are scored otherwise


def test_onnx_twin_gives_the_cpu_runner_scores_and_eer(setup, windowed):
    for cpu_work, onnx_work in (("work", "onnx_first"), ("windowed_cpu", "windowed_onnx")):
        if not (setup / onnx_work).exists():
            (setup / onnx_work).mkdir()
            result = run_script(ONNX_SCRIPT, setup / "model.onnx", setup / "work" / "preprocess_Result",
                                cwd=setup / onnx_work)
            assert result.returncode == 0, result.stdout + result.stderr
        _, cpu_scores = read_scores(setup / cpu_work / "scores.txt")
        _, onnx_scores = read_scores(setup / onnx_work / "scores.txt")
        np.testing.assert_allclose(onnx_scores, cpu_scores, rtol=0, atol=1e-5)
        assert (setup / onnx_work / "acc.log").read_text() == (setup / cpu_work / "acc.log").read_text()
        timing = (setup / onnx_work / "time_Result" / "test_perform_static.txt").read_text()
        count = len(list((setup / cpu_work / "result_Files").iterdir()))
        assert count == (9 if cpu_work == "work" else 15)  # 3 of the 9 utterances have 3 windows
        assert re.fullmatch(TIMING.pattern.replace("infer_count 9", f"infer_count {count}"), timing)


def test_postprocess_names_utterances_without_windows(setup, windowed, tmp_path, monkeypatch):
    listing = tmp_path / "windows.txt"
    listing.write_text("".join(line + "\n" for line in (windowed / "windows.txt").read_text().splitlines()
                               if not line.endswith(" id2/video0/00002.wav")))
    monkeypatch.setattr(sys, "argv", ["postprocess.py", "--result_path", str(setup / "windowed_cpu" / "result_Files"),
                                      "--emb_size", "8", "--eval_list", str(setup / "data" / "eval.txt"),
                                      "--window_list", str(listing), "--log_file", str(tmp_path / "acc.log")])
    with pytest.raises(InputError, match=r"windows\.txt lists no window of 1 utterance\(s\) of the trial list: "
                                         r"id2/video0/00002\.wav"):
        postprocess.main()


def test_preprocess_names_every_missing_file_before_writing_anything(setup, tmp_path):
    trials = tmp_path / "eval.txt"
    trials.write_text((setup / "data" / "eval.txt").read_text() + "1 gone/a.wav gone/b.wav\n")
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, str(REPO / "preprocess.py"), *TINY_NETWORK_ARGS, f"--eval_list={trials}",
                             f"--eval_path={setup / 'data' / 'eval' / 'wav'}", f"--output_path={out}",
                             f"--length={LENGTH}"], capture_output=True, text=True, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (f"error: eval_list {trials}: 2 of 11 audio files "
                                              f"not found under '{setup / 'data' / 'eval' / 'wav'}', first: "
                                              "gone/a.wav, gone/b.wav")
    assert not (out / "feat").exists()


def test_an_interpreter_without_mindspore_is_named_with_the_way_to_the_right_one(setup, tmp_path):
    stand_in = tmp_path / "python"
    stand_in.write_text("#!/bin/sh\nexit 1\n")
    stand_in.chmod(0o755)
    result = subprocess.run(["bash", str(CPU_SCRIPT), str(setup / "model.mindir"), str(setup / "data")], cwd=tmp_path,
                            env=dict(os.environ, PYTHON=str(stand_in)), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (f"error: the interpreter '{stand_in}' ({stand_in}) cannot import mindspore; activate the "
                             "environment scripts/install.sh made (source .venv/bin/activate) or set "
                             "PYTHON=/path/to/.venv/bin/python\n")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["python"]


def test_an_interrupted_preprocess_leaves_no_list_beside_its_partial_features(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    waves = tmp_path / "wav"
    utterances = [f"u{index}.wav" for index in range(3)]
    for name in utterances:
        write_audio(str(waves / name), rng.standard_normal(16000).astype(np.float32) * 0.1)
    trials = tmp_path / "trials.txt"
    trials.write_text("1 u0.wav u1.wav\n0 u0.wav u2.wav\n")
    out = tmp_path / "out"
    write_feature_folder(str(trials), utterances, str(waves), str(out), 40)
    assert (out / "utt_list.txt").is_file()
    reads = []

    def interrupted_read(path):
        if reads:
            raise KeyboardInterrupt
        reads.append(path)
        return read_audio(path)

    monkeypatch.setattr(preprocessing, "read_audio", interrupted_read)
    with pytest.raises(KeyboardInterrupt):
        write_feature_folder(str(trials), utterances, str(waves), str(out), 40, windows="all")
    assert not (out / "utt_list.txt").exists() and not (out / "windows.txt").exists()
    assert sorted(os.listdir(out / "feat")) == [f"u0.w{index:04d}.bin" for index in range(5)]  # 1 s, hop 20 frames
