"""Audio that cannot be used: non-finite samples, silence, too-short clips, truncated WAV files.

Each entry point must either use such audio with a warning or stop with one ``error:`` line
naming the file; training skips it and counts it against ``max_bad_audio``.
"""
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import yaml

from eval_support import program_in_process
from fixtures import (REPO_ROOT, TINY_NETWORK, bad_files, speaker_wave, tiny_network, training_settings,
                      write_tone_corpus)
from src.cli import run_main
from src.data import speech_content
from src.data.audio import SAMPLE_RATE, AudioError, read_audio, write_audio
from src.data.dataset import DataError, TrainingSamples, create_train_dataset, read_training_list
from src.data.speech_content import SpeechContent, measure
from src.checkpoint import save_checkpoint


def write_non_finite(path, seconds=1.0):
    """A 32-bit float WAV of a tone with one NaN and one +inf sample."""
    wave = speaker_wave(0, seconds, np.random.default_rng(1))
    wave[100], wave[200] = np.nan, np.inf
    os.makedirs(os.path.dirname(path), exist_ok=True)
    soundfile.write(path, wave, SAMPLE_RATE, subtype="FLOAT")
    return path


def low_noise(seconds, dbfs, rng):
    """White noise (S,) whose RMS level is ``dbfs``."""
    return (10 ** (dbfs / 20) * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)


# ---------------------------------------------------------------- reading


def test_non_finite_samples_make_audio_unreadable(tmp_path):
    path = write_non_finite(str(tmp_path / "nan.wav"))
    with pytest.raises(AudioError, match=r"nan.wav: has 2 non-finite samples \(NaN or inf\)$"):
        read_audio(path)
    with pytest.raises(AudioError, match="has 2 non-finite samples"):
        read_audio(path, allow_resample=True)


def test_truncated_wav_is_used_with_one_warning(tmp_path, caplog, rng):
    whole = str(tmp_path / "whole.wav")
    write_audio(whole, speaker_wave(0, 1.0, rng))
    data = open(whole, "rb").read()
    cut = str(tmp_path / "cut.wav")
    with open(cut, "wb") as handle:
        handle.write(data[:44 + 2 * 6000])  # 44-byte header, 6000 of the 16000 16-bit samples
    with caplog.at_level(logging.WARNING, logger="src.data.audio"):
        assert read_audio(whole).shape == (16000,)
        assert caplog.records == []
        wave = read_audio(cut)
        read_audio(cut)
    np.testing.assert_array_equal(wave, read_audio(whole)[:6000])
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1, messages
    assert messages[0].startswith(f"{cut}: truncated file: its header declares 16000 samples (1.00 s) "
                                  "but it holds 6000 (0.38 s)")


# ---------------------------------------------------------------- speech content


def test_frames_cover_the_whole_wave_including_a_partial_last_frame():
    wave = np.concatenate([np.full(400, 0.1), np.zeros(400), np.full(100, 1.0)])
    levels = speech_content.frame_levels_dbfs(wave)
    np.testing.assert_allclose(levels, [-20.0, -np.inf, 0.0])
    content = measure(wave.astype(np.float32))
    # -20 dBFS is within 40 dB of the loudest frame (0 dBFS): 400 + 100 active samples.
    assert content == SpeechContent(duration_seconds=900 / SAMPLE_RATE, active_seconds=500 / SAMPLE_RATE)


@pytest.mark.parametrize("case, active, problem", [
    ("tone", 2.0, None),
    ("quiet tone", 2.0, None),
    ("silence", 0.0, "has 0.00 s of active speech in 2.00 s, less than the minimum of 0.25 s"),
    ("noise at -70 dBFS", 0.0, "has 0.00 s of active speech in 2.00 s"),
    ("0.05 s tone", 0.05, "is 0.05 s long, shorter than the minimum of 0.5 s"),
    ("loud tone, then noise 45 dB below it", 0.5, None),
    ("0.1 s of tone in 2 s of silence", 0.1, "has 0.10 s of active speech in 2.00 s"),
])
def test_speech_content_known_answers(case, active, problem, rng):
    tone = speaker_wave(1, 2.0, rng)  # peak 0.2, frames at -22..-21 dBFS
    loud = 4 * tone[:8000]  # frames at -10..-9 dBFS
    waves = {
        "tone": tone,
        "quiet tone": tone * 10 ** (-30 / 20),  # frames near -52 dBFS: quiet, above the -60 dBFS floor
        "silence": np.zeros(2 * SAMPLE_RATE, np.float32),
        "noise at -70 dBFS": low_noise(2.0, -70, rng),
        "0.05 s tone": tone[:800],
        # The noise (about -55 dBFS) is above the absolute floor but not within 40 dB of the tone.
        "loud tone, then noise 45 dB below it": np.concatenate([loud, low_noise(1.5, -55, rng)]),
        "0.1 s of tone in 2 s of silence": np.concatenate([np.zeros(16000), tone[:1600], np.zeros(14400)]),
    }
    content = measure(waves[case].astype(np.float32))
    assert content.active_seconds == pytest.approx(active, abs=0.026)
    if problem is None:
        assert content.problem() is None
    else:
        assert problem in content.problem()
        assert content.has_speech == (active > 0)


# ---------------------------------------------------------------- training


def _training_corpus(tmp_path):
    """2 speakers x 2 utterances: a 0.05 s tone, digital silence, NaN samples, a normal tone."""
    list_path = write_tone_corpus(tmp_path, num_speakers=2, utterances=2)
    root = os.path.join(tmp_path, "train", "wav")
    paths = [os.path.join(root, name) for name in ("id00000/v0/00000.wav", "id00000/v0/00001.wav",
                                                   "id00001/v0/00000.wav", "id00001/v0/00001.wav")]
    write_audio(paths[0], speaker_wave(0, 0.05, np.random.default_rng(2)))
    write_audio(paths[1], np.zeros(SAMPLE_RATE, np.float32))
    write_non_finite(paths[2], seconds=0.3)  # shorter than a crop: every crop holds the NaN
    return list_path, root, paths


def _config(tmp_path, list_path, **overrides):
    settings = dict(class_num=2, max_bad_audio=2, minibatch_size=2, num_epochs=3, num_workers=1)
    return training_settings(tmp_path, list_path, **{**settings, **overrides})


def test_training_skips_silent_and_non_finite_files_and_checks_each_file_once(tmp_path, monkeypatch):
    import src.data.dataset as dataset

    list_path, root, paths = _training_corpus(tmp_path)
    utterances, labels, _ = read_training_list(_config(tmp_path, list_path))
    measured, reads = [], []
    monkeypatch.setattr(dataset, "measure", lambda wave: measured.append(len(wave)) or measure(wave))
    monkeypatch.setattr(dataset, "read_audio", lambda path: reads.append(path) or read_audio(path))
    samples = TrainingSamples(utterances, labels, root, segment_frames=50, seed=0, max_bad_audio=2)
    features, label = samples[0]  # the 0.05 s tone has speech: it is used (repeated to the crop)
    assert label == 0 and features.shape == (50, 80)
    _, label = samples[1]  # silence -> NaN -> the normal tone of speaker 1
    assert label == 1
    assert bad_files(samples) == {paths[1], paths[2]}
    for epoch in (1, 2):
        assert samples[epoch * 4 + 1][1] == 1
        assert samples[epoch * 4][1] == 0
    assert len(measured) == 3  # the short tone, the silence and the normal tone, once each
    assert reads.count(paths[1]) == 1 and reads.count(paths[2]) == 1  # bad files are not read again
    strict = TrainingSamples(utterances, labels, root, segment_frames=50, seed=0, max_bad_audio=1)
    with pytest.raises(DataError, match=r"2 unreadable training files .*00000.wav: has 2 non-finite"):
        strict[1]
    with pytest.raises(DataError, match=r"1 unreadable training files .*00001.wav: no active speech "
                                        r"in 1.00 s \(silence; active = 25 ms frames above -60 dBFS"):
        TrainingSamples(utterances, labels, root, segment_frames=50, seed=0, max_bad_audio=0)[1]


def test_training_pipeline_survives_non_finite_audio(tmp_path):
    list_path, _, _ = _training_corpus(tmp_path)
    dataset, steps_per_epoch = create_train_dataset(_config(tmp_path, list_path))
    batches = list(dataset.create_tuple_iterator(num_epochs=1, output_numpy=True))
    assert len(batches) == 3 * steps_per_epoch == 6
    assert all(np.isfinite(features).all() for features, _ in batches)


# ---------------------------------------------------------------- evaluation entry points


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Tone corpora with one bad file each, trial and audio lists, a YAML config and a tiny checkpoint."""
    root = tmp_path_factory.mktemp("bad_audio")
    rng = np.random.default_rng(5)
    for folder in ("eval", "train"):
        for speaker in range(2):
            for number in range(2):
                write_audio(root / folder / f"s{speaker}" / f"{number}.wav", speaker_wave(speaker, 1.0, rng))
    write_audio(root / "eval" / "silence.wav", np.zeros(SAMPLE_RATE, np.float32))
    write_audio(root / "eval" / "noise.wav", low_noise(1.0, -70, rng))
    write_audio(root / "eval" / "short.wav", speaker_wave(0, 0.05, rng))
    write_non_finite(str(root / "eval" / "nan.wav"))
    write_non_finite(str(root / "train" / "s1" / "nan.wav"))
    good = "1 s0/0.wav s0/1.wav\n0 s0/0.wav s1/0.wav\n1 s1/0.wav s1/1.wav\n0 s0/1.wav s1/1.wav\n"
    (root / "trials.txt").write_text(good)
    (root / "trials_nan.txt").write_text(good + "0 s0/0.wav nan.wav\n")
    (root / "trials_low.txt").write_text(good + "0 s0/0.wav silence.wav\n0 short.wav s1/0.wav\n"
                                                "0 silence.wav s1/1.wav\n")
    (root / "train.txt").write_text("s0 s0/0.wav\ns0 s0/1.wav\ns1 s1/0.wav\ns1 s1/nan.wav\n")
    save_checkpoint(tiny_network(), str(root / "model.ckpt"))
    settings = dict(TINY_NETWORK, eval_list=str(root / "trials.txt"), eval_path=str(root / "eval"),
                    train_list=str(root / "train.txt"), train_path=str(root / "train"),
                    eval_output_dir=str(root / "results"), model_path=str(root / "model.ckpt"))
    (root / "tiny.yaml").write_text(yaml.safe_dump(settings))
    return root


@pytest.fixture(scope="module")
def eval_script():
    """eval.py loaded as a module (context set-up skipped: conftest chose CPU and GRAPH_MODE)."""
    with program_in_process("eval.py", "eval_script_bad_audio") as module:
        yield module


def _one_error_line(completed, *fragments):
    output = completed.stdout + completed.stderr
    assert completed.returncode == 1, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, output[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.mark.parametrize("entry", ["run_eval_cpu.sh", "verify", "extract", "asnorm cohort", "preprocess"])
def test_non_finite_audio_stops_every_entry_point_with_one_line(workspace, entry):
    root = workspace
    config = f"--config={root / 'tiny.yaml'}"
    eval_py = [sys.executable, os.path.join(REPO_ROOT, "eval.py"), config]
    bad = root / "eval" / "nan.wav"
    commands = {
        "run_eval_cpu.sh": ["bash", os.path.join(REPO_ROOT, "scripts", "run_eval_cpu.sh"), "0",
                            str(root / "model.ckpt"), config, f"--eval_list={root / 'trials_nan.txt'}"],
        "verify": eval_py + ["--verify", str(root / "eval" / "s0" / "0.wav"), str(bad)],
        "extract": eval_py + ["--extract", str(root / "eval" / "extract_nan.txt"), str(root / "vectors_nan")],
        "asnorm cohort": eval_py + ["--score_norm=asnorm", "--top_n=2"],
        "preprocess": [sys.executable, os.path.join(REPO_ROOT, "preprocess.py"), config,
                       f"--eval_list={root / 'trials_nan.txt'}", f"--output_path={root / 'pre'}",
                       "--length=100"],
    }
    (root / "eval" / "extract_nan.txt").write_text("s0/0.wav\nnan.wav\n")
    if entry == "asnorm cohort":
        bad = root / "train" / "s1" / "nan.wav"
    completed = subprocess.run(commands[entry], cwd=root, capture_output=True, text=True, timeout=300,
                               env=dict(os.environ, PYTHON=sys.executable))
    _one_error_line(completed, str(bad), "has 2 non-finite samples (NaN or inf)")


@pytest.mark.parametrize("pair, culprit, fragments", [
    (("silence.wav", "silence.wav"), "silence.wav", ["0.00 s of active speech in 1.00 s",
                                                     "minimum of 0.25 s", "-60 dBFS", "40 dB"]),
    (("s0/0.wav", "silence.wav"), "silence.wav", ["0.00 s of active speech"]),
    (("noise.wav", "s0/0.wav"), "noise.wav", ["0.00 s of active speech"]),
    (("s0/0.wav", "short.wav"), "short.wav", ["is 0.05 s long, shorter than the minimum of 0.5 s"]),
])
def test_verify_refuses_audio_without_enough_speech(workspace, eval_script, capsys, pair, culprit, fragments):
    root = workspace
    argv = ["--config", str(root / "tiny.yaml"), "--verify", *(str(root / "eval" / name) for name in pair)]
    with pytest.raises(SystemExit) as stop:
        run_main(eval_script.main, argv)
    assert stop.value.code == 1
    captured = capsys.readouterr()
    assert "ACCEPT" not in captured.out and "REJECT" not in captured.out
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, captured.err
    assert errors[0].startswith(f"error: {root / 'eval' / culprit}: ")
    assert errors[0].endswith("; cannot verify with it")
    for fragment in fragments:
        assert fragment in errors[0]


def _warnings_about(caplog, name):
    return [record.getMessage() for record in caplog.records
            if record.levelno == logging.WARNING and name in record.getMessage()]


def test_trial_list_scores_low_speech_utterances_with_one_warning_each(workspace, eval_script, capsys, caplog):
    root = workspace
    output = root / "results_low"
    with caplog.at_level(logging.WARNING):
        eval_script.main(["--config", str(root / "tiny.yaml"), f"--eval_list={root / 'trials_low.txt'}",
                          f"--eval_output_dir={output}"])
    printed = capsys.readouterr().out
    assert len((output / "scores.txt").read_text().splitlines()) == 7  # every trial is scored
    for name in ("silence.wav", "short.wav"):
        warnings = _warnings_about(caplog, name)
        assert len(warnings) == 1 and warnings[0].endswith("; used anyway"), warnings
    assert "2 too short or with too little speech, used anyway" in printed
    assert str(root / "eval" / "silence.wav") in printed
    assert "2 too short or with too little speech, used anyway" in (output / "eval.log").read_text()


def test_extract_writes_low_speech_files_with_a_warning(workspace, eval_script, capsys, caplog):
    root = workspace
    (root / "eval" / "extract_low.txt").write_text("s0/0.wav\nsilence.wav\nnoise.wav\n")
    with caplog.at_level(logging.WARNING):
        eval_script.main(["--config", str(root / "tiny.yaml"),
                          "--extract", str(root / "eval" / "extract_low.txt"), str(root / "vectors_low")])
    printed = capsys.readouterr().out
    assert sorted(os.listdir(root / "vectors_low")) == ["noise.npy", "s0_0.npy", "silence.npy"]
    assert len(_warnings_about(caplog, "noise.wav")) == 1 and len(_warnings_about(caplog, "s0/0.wav")) == 0
    assert "2 too short or with too little speech, used anyway" in printed


def test_preprocess_writes_low_speech_features_with_a_warning(workspace, tmp_path, caplog):
    from src.inference.preprocessing import write_feature_folder

    root = workspace
    with caplog.at_level(logging.WARNING):
        feature_dir = write_feature_folder(str(root / "trials_low.txt"), ["s0/0.wav", "short.wav", "silence.wav"],
                                           str(root / "eval"), str(tmp_path), length=100)
    assert sorted(os.listdir(feature_dir)) == ["s0_0.bin", "short.bin", "silence.bin"]
    assert len(_warnings_about(caplog, "short.wav")) == 1 and len(_warnings_about(caplog, "silence.wav")) == 1
    assert _warnings_about(caplog, "s0/0.wav") == []
