"""Tests of the synthetic demo corpus: determinism, layout, lists, audio and speaker identity."""
import os
import re
import subprocess
import sys
from itertools import combinations

import librosa
import numpy as np
import pytest
import soundfile

from src.data.audio import SAMPLE_RATE, read_audio
from src.data.lists import read_train_list, read_trial_list, trial_utterances
from src.demo_corpus import (CorpusSettingsError, draw_session, draw_speaker,
                             generate_demo_corpus, make_trials, synthesize_utterance)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO_ROOT, "scripts", "make_demo_corpus.py")
TINY = dict(num_train_speakers=3, num_eval_speakers=3, utterances_per_speaker=4, seed=7,
            eval_utterances_per_speaker=3, sessions_per_speaker=2,
            min_seconds=1.0, max_seconds=2.0)
UTTERANCE_PATTERN = re.compile(r"^id9\d{4}/[A-Za-z0-9_-]{11}/\d{5}\.wav$")


def _all_files(root):
    """{relative path: bytes} of every file under ``root``."""
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, root)] = handle.read()
    return found


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """(folder, summary) of a tiny corpus."""
    folder = tmp_path_factory.mktemp("demo") / "corpus"
    return str(folder), generate_demo_corpus(folder, **TINY)


@pytest.fixture(scope="module")
def waves(corpus):
    """{speaker id: [waveform, ...]} over both splits of the tiny corpus."""
    folder, _ = corpus
    by_speaker = {}
    for split in ("train", "eval"):
        wav_root = os.path.join(folder, split, "wav")
        for speaker in sorted(os.listdir(wav_root)):
            for video in sorted(os.listdir(os.path.join(wav_root, speaker))):
                for name in sorted(os.listdir(os.path.join(wav_root, speaker, video))):
                    by_speaker.setdefault(speaker, []).append(
                        read_audio(os.path.join(wav_root, speaker, video, name)))
    return by_speaker


def test_same_seed_gives_identical_files_and_other_seed_differs(corpus, tmp_path):
    folder, _ = corpus
    generate_demo_corpus(tmp_path / "again", **TINY)
    generate_demo_corpus(tmp_path / "other", **{**TINY, "seed": 8})
    first, again, other = (_all_files(path) for path in
                           (folder, tmp_path / "again", tmp_path / "other"))
    assert len(first) == 3 * 4 + 3 * 3 + 2
    assert again == first
    first_audio = {content for name, content in first.items() if name.endswith(".wav")}
    other_audio = {content for name, content in other.items() if name.endswith(".wav")}
    assert len(other_audio) == len(first_audio) and not first_audio & other_audio
    assert other["train.txt"] != first["train.txt"]


def test_train_list_layout(corpus):
    folder, summary = corpus
    train = read_train_list(os.path.join(folder, "train.txt"))
    assert train.speakers == ["id90001", "id90002", "id90003"]
    assert len(train.utterances) == 12
    assert sorted(train.labels) == [0] * 4 + [1] * 4 + [2] * 4
    for utterance in train.utterances:
        assert UTTERANCE_PATTERN.match(utterance), utterance
        assert os.path.isfile(os.path.join(folder, "train", "wav", utterance))
    videos = {speaker: {u.split("/")[1] for u in train.utterances if u.startswith(speaker)}
              for speaker in train.speakers}
    assert all(len(names) == 2 for names in videos.values())
    with open(os.path.join(folder, "train.txt"), encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    assert lines == sorted(lines)
    assert summary["train"]["speakers"] == 3 and summary["train"]["utterances"] == 12


def test_trial_list_labels_and_balance(corpus):
    folder, summary = corpus
    trials = read_trial_list(os.path.join(folder, "eval.txt"))
    utterances = trial_utterances(trials)
    on_disk = sorted(os.path.relpath(os.path.join(root, name), os.path.join(folder, "eval", "wav"))
                     for root, _, names in os.walk(os.path.join(folder, "eval", "wav"))
                     for name in names)
    assert utterances == on_disk and len(on_disk) == 9
    assert all(UTTERANCE_PATTERN.match(utterance) for utterance in utterances)
    eval_speakers = {utterance.split("/")[0] for utterance in utterances}
    train_speakers = set(read_train_list(os.path.join(folder, "train.txt")).speakers)
    assert eval_speakers == {"id90004", "id90005", "id90006"}
    assert not eval_speakers & train_speakers
    for trial in trials:
        assert trial.target == (trial.utt_a.split("/")[0] == trial.utt_b.split("/")[0])
    pairs = [(trial.utt_a, trial.utt_b) for trial in trials]
    assert len(set(pairs)) == len(pairs) and all(a < b for a, b in pairs)
    # 3 speakers x C(3, 2) same-speaker pairs, and as many different-speaker pairs
    assert sum(trial.target for trial in trials) == 9
    assert sum(not trial.target for trial in trials) == 9
    assert summary["eval"] == {**summary["eval"], "speakers": 3, "utterances": 9,
                               "trials": 18, "target_trials": 9}


def test_make_trials_against_hand_enumeration():
    speakers = [["a/v/1.wav", "a/v/2.wav", "a/w/1.wav"], ["b/v/1.wav"]]
    trials = make_trials(speakers, seed=0)
    assert trials == [(True, "a/v/1.wav", "a/v/2.wav"), (True, "a/v/1.wav", "a/w/1.wav"),
                      (False, "a/v/1.wav", "b/v/1.wav"), (True, "a/v/2.wav", "a/w/1.wav"),
                      (False, "a/v/2.wav", "b/v/1.wav"), (False, "a/w/1.wav", "b/v/1.wav")]
    balanced = make_trials([["a/1", "a/2"], ["b/1", "b/2"], ["c/1", "c/2"]], seed=3)
    assert [target for target, _, _ in balanced].count(False) == 3
    assert make_trials([["a/1", "a/2"], ["b/1", "b/2"], ["c/1", "c/2"]], seed=3) == balanced


def test_audio_format_length_and_level(corpus, waves):
    folder, summary = corpus
    some_file = os.path.join(folder, "train", "wav",
                             read_train_list(os.path.join(folder, "train.txt")).utterances[0])
    info = soundfile.info(some_file)
    assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
    total_seconds = 0.0
    for wave in (wave for speaker_waves in waves.values() for wave in speaker_waves):
        assert SAMPLE_RATE * 1.0 <= len(wave) <= SAMPLE_RATE * 2.0
        total_seconds += len(wave) / SAMPLE_RATE
        peak = np.max(np.abs(wave))
        rms = np.sqrt(np.mean(wave ** 2))
        assert peak <= 0.91, "clipped or too hot"
        assert 10 ** (-30 / 20) < rms < 10 ** (-22 / 20), f"RMS {20 * np.log10(rms):.1f} dBFS"
        frames = librosa.feature.rms(y=wave, frame_length=400, hop_length=160)[0]
        loud, quiet = np.percentile(frames, [90, 5])
        assert 20 * np.log10(loud / quiet) > 15, "no speech/pause contrast"
    hours = summary["train"]["hours"] + summary["eval"]["hours"]
    assert hours == pytest.approx(total_seconds / 3600.0, rel=1e-6)


def _median_pitch(wave):
    """Median YIN pitch (Hz) over the louder half of the 10 ms frames of ``wave``."""
    f0 = librosa.yin(wave, fmin=60, fmax=400, sr=SAMPLE_RATE, frame_length=1024, hop_length=160)
    energy = librosa.feature.rms(y=wave, frame_length=1024, hop_length=160)[0][:len(f0)]
    return float(np.median(f0[energy > np.median(energy)]))


def test_each_speaker_has_its_own_pitch(waves):
    log_pitch = {speaker: np.log2([_median_pitch(wave) for wave in speaker_waves]) * 12.0
                 for speaker, speaker_waves in waves.items()}
    # the measured pitch follows each speaker's own median pitch (within accents and shifts)
    for index, (speaker, semitones) in enumerate(sorted(log_pitch.items())):
        declared = 12.0 * np.log2(draw_speaker(TINY["seed"], index).f0_median)
        assert np.all(np.abs(semitones - declared) < 3.0), (speaker, semitones - declared)
    # one-way analysis of variance: speakers explain most of the spread of utterance pitch
    groups = list(log_pitch.values())
    grand = np.mean(np.concatenate(groups))
    between = sum(len(g) * (g.mean() - grand) ** 2 for g in groups) / (len(groups) - 1)
    within = (sum(((g - g.mean()) ** 2).sum() for g in groups)
              / (sum(len(g) for g in groups) - len(groups)))
    assert between / within > 20.0


def _voiced_spectrum(wave):
    """Mean log-mel spectrum (40,) over the louder half of the frames of ``wave``."""
    mel = np.log(librosa.feature.melspectrogram(y=wave, sr=SAMPLE_RATE, n_fft=512,
                                                hop_length=160, n_mels=40) + 1e-8)
    energy = mel.mean(axis=0)
    return mel[:, energy > np.median(energy)].mean(axis=1)


def test_voices_differ_more_between_than_within_speakers():
    """Through one and the same channel, two utterances are closer when one speaker said both."""
    session = draw_session(TINY["seed"], 0, 0)
    spectra = [[_voiced_spectrum(synthesize_utterance(draw_speaker(TINY["seed"], speaker), session,
                                                      np.random.default_rng([speaker, take]), 3.0))
                for take in range(3)] for speaker in range(4)]
    within = [np.linalg.norm(a - b) for takes in spectra for a, b in combinations(takes, 2)]
    between = [np.linalg.norm(a - b) for first, second in combinations(spectra, 2)
               for a in first for b in second]
    assert np.mean(within) < 0.8 * np.mean(between)


@pytest.mark.parametrize("setting, value, message", [
    ("num_eval_speakers", 1, "num_eval_speakers must be >= 2"),
    ("num_train_speakers", 0, "num_train_speakers must be >= 1"),
    ("eval_utterances_per_speaker", 1, "eval_utterances_per_speaker must be >= 2"),
    ("seed", -1, "seed must be >= 0"),
    ("seed", 1.5, "seed must be an integer"),
    ("max_seconds", 0.5, "min_seconds <= max_seconds"),
])
def test_bad_settings_are_rejected(tmp_path, setting, value, message):
    with pytest.raises(CorpusSettingsError, match=message):
        generate_demo_corpus(tmp_path / "corpus", **{**TINY, setting: value})
    assert not os.path.exists(tmp_path / "corpus")


def test_existing_corpus_needs_overwrite(tmp_path):
    small = {**TINY, "num_train_speakers": 1, "num_eval_speakers": 2,
             "utterances_per_speaker": 2, "eval_utterances_per_speaker": 2}
    generate_demo_corpus(tmp_path, **small)
    expected = _all_files(tmp_path)
    stray = tmp_path / "train" / "wav" / "id99999" / "old" / "00001.wav"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"stale")
    with pytest.raises(CorpusSettingsError, match="already holds train, eval, train.txt, eval"):
        generate_demo_corpus(tmp_path, **small)
    generate_demo_corpus(tmp_path, **small, overwrite=True)
    assert _all_files(tmp_path) == expected


def _run_cli(arguments, cwd):
    return subprocess.run([sys.executable, *arguments], cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)


def test_command_line_from_any_folder(tmp_path):
    arguments = ["--num_train_speakers", "2", "--num_eval_speakers", "2",
                 "--utterances_per_speaker", "2", "--eval_utterances_per_speaker", "2",
                 "--min_seconds", "1", "--max_seconds", "1.2", "--seed", "3"]
    elsewhere = _run_cli([SCRIPT, "--out_dir", str(tmp_path / "elsewhere"), *arguments],
                         cwd=tmp_path)
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert "train: 2 speakers, 4 utterances" in elsewhere.stdout
    assert "eval:  2 speakers, 4 utterances" in elsewhere.stdout
    assert "4 trials (2 target)" in elsewhere.stdout
    from_root = _run_cli([os.path.join("scripts", "make_demo_corpus.py"), "--out_dir",
                          str(tmp_path / "from_root"), *arguments], cwd=REPO_ROOT)
    assert from_root.returncode == 0, from_root.stderr
    assert _all_files(tmp_path / "elsewhere") == _all_files(tmp_path / "from_root")


def test_command_line_reports_bad_settings(tmp_path):
    result = _run_cli([SCRIPT, "--out_dir", str(tmp_path / "corpus"), "--num_eval_speakers", "1"],
                      cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == "error: num_eval_speakers must be >= 2, got 1\n"
    assert not os.path.exists(tmp_path / "corpus")
    misspelt = _run_cli([SCRIPT, "--out_dir", str(tmp_path / "corpus"), "--seeds", "1"],
                        cwd=tmp_path)
    assert misspelt.returncode == 1
    assert misspelt.stderr == "error: unknown option --seeds (did you mean --seed?); see --help\n"
