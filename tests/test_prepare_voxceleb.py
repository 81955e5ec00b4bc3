"""Tests of VoxCeleb preparation: m4a -> wav conversion, train.txt, eval.txt and the CLIs.

The trees are built here: wav files with write_audio, m4a files by encoding pure
tones with ffmpeg (tests that need it are skipped when it is not installed). Each
tone sits exactly on an FFT bin of the converted length, so the peak of a converted
file's spectrum tells which source it came from.
"""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from fixtures import REPO_ROOT, load_program
from src.data.audio import AudioError, write_audio
from src.data.lists import ListFormatError, read_train_list
from src.fileio import is_temporary_name, list_files
from src.prepare.common import PrepareError, run_parallel
from src.prepare.convert import ConversionSummary, convert_file, convert_tree
from src.prepare.lists import build_train_list, prepare_eval_list

SCRIPT = os.path.join(REPO_ROOT, "scripts", "prepare_voxceleb.py")
RATE = 16000
LENGTH = 16384  # 16 AAC frames at 16 kHz: decodes back to exactly this many samples
HAS_FFMPEG = shutil.which("ffmpeg") is not None
NO_FFMPEG = "ffmpeg is not installed (apt-get install ffmpeg); it makes the m4a inputs"
needs_ffmpeg = pytest.mark.skipif(not HAS_FFMPEG, reason=NO_FFMPEG)

# relative m4a path -> (tone Hz, source rate, channels); tones are multiples of 16000/1024 Hz
M4A_SOURCES = {
    "id00012/21Uxsk56VDQ/00001.m4a": (250.0, 16000, 1),
    "id00012/21Uxsk56VDQ/00002.m4a": (500.0, 16000, 1),
    "id00012/Zx4Cq9a6m8Y/00001.m4a": (750.0, 32000, 2),
    "id00015/0fijmz4vTVU/00001.m4a": (1000.0, 16000, 1),
}
CORRUPT = "id00015/0fijmz4vTVU/00002.m4a"


def tone(frequency, num_samples, rate=RATE, amplitude=0.3):
    phase = 2 * np.pi * frequency * np.arange(num_samples) / rate
    return (amplitude * np.sin(phase)).astype(np.float32)


def encode_m4a(path, frequency, rate, channels, scratch):
    """Encode LENGTH samples at 16 kHz (scaled to ``rate``) of a tone into ``path`` as AAC."""
    wave = tone(frequency, LENGTH * rate // RATE, rate)
    soundfile.write(scratch, np.stack([wave] * channels, axis=1), rate, subtype="PCM_16")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", scratch,
                    "-c:a", "aac", path], check=True)


def peak_frequency(wave):
    return np.argmax(np.abs(np.fft.rfft(wave))) * RATE / len(wave)


def all_files(root):
    """Every file under ``root`` (hidden ones included), relative, sorted."""
    return sorted(os.path.relpath(os.path.join(folder, name), root)
                  for folder, _, names in os.walk(root) for name in names)


@pytest.fixture(scope="module")
def m4a_tree(tmp_path_factory):
    """VoxCeleb2-style aac tree: the M4A_SOURCES, one corrupt file and one hidden '._' file."""
    if not HAS_FFMPEG:
        pytest.skip(NO_FFMPEG)
    root = tmp_path_factory.mktemp("vox2") / "aac"
    scratch = str(root.parent / "scratch.wav")
    for relative, (frequency, rate, channels) in M4A_SOURCES.items():
        encode_m4a(str(root / relative), frequency, rate, channels, scratch)
    (root / CORRUPT).write_bytes(b"\x00garbage, not an MPEG-4 file\xff" * 64)
    (root / "id00012" / "21Uxsk56VDQ" / "._00001.m4a").write_bytes(b"resource fork")
    return root


def build_wav_tree(root, utterances):
    """Write a 0.1 s tone at each relative path of ``utterances`` under ``root``."""
    for index, relative in enumerate(utterances):
        write_audio(os.path.join(root, relative), tone(100.0 + index, 1600))


def load_cli():
    return load_program(os.path.join("scripts", "prepare_voxceleb.py"), "prepare_voxceleb_cli")


# ---------------------------------------------------------------- conversion

@needs_ffmpeg
def test_convert_tree_writes_16k_mono_wavs_and_logs_the_corrupt_file(m4a_tree, tmp_path):
    out = tmp_path / "wav"
    summary = convert_tree(str(m4a_tree), str(out), jobs=2, progress=False)

    assert (summary.total, summary.converted, summary.skipped) == (5, 4, 0)
    assert [failure.path for failure in summary.failures] == [CORRUPT]
    assert "ffmpeg failed" in summary.failures[0].reason
    assert str(m4a_tree / CORRUPT) in summary.failures[0].reason
    expected = sorted(relative[:-4] + ".wav" for relative in M4A_SOURCES)
    assert all_files(out) == expected  # no temporary or partial file left behind
    for relative, (frequency, _, _) in M4A_SOURCES.items():
        path = out / (relative[:-4] + ".wav")
        info = soundfile.info(str(path))
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (
            RATE, 1, LENGTH, "PCM_16")
        wave, _ = soundfile.read(str(path), dtype="float32")
        assert peak_frequency(wave) == frequency


@needs_ffmpeg
def test_convert_tree_resumes_without_redoing_finished_files(m4a_tree, tmp_path):
    out = tmp_path / "wav"
    convert_tree(str(m4a_tree), str(out), jobs=2, progress=False)
    finished = out / "id00012" / "21Uxsk56VDQ" / "00001.wav"
    stamps = {path: os.stat(out / path).st_mtime_ns for path in all_files(out)}

    again = convert_tree(str(m4a_tree), str(out), jobs=2, progress=False)
    assert (again.converted, again.skipped, len(again.failures)) == (0, 4, 1)
    assert {path: os.stat(out / path).st_mtime_ns for path in all_files(out)} == stamps

    finished.unlink()
    stale = out / "id00012" / "21Uxsk56VDQ" / ".00001.wav.x7Kq2z.part"
    stale.write_bytes(b"left by a killed run")
    third = convert_tree(str(m4a_tree), str(out), jobs=1, progress=False)
    assert (third.converted, third.skipped) == (1, 3)
    assert soundfile.info(str(finished)).frames == LENGTH
    assert not stale.exists()


def test_convert_file_renames_only_a_finished_decode(tmp_path, monkeypatch):
    source, target = str(tmp_path / "in.m4a"), tmp_path / "out" / "00001.wav"
    seen = []

    def fake_ffmpeg(command, **_):
        output = command[-1]
        seen.append((os.path.basename(output), target.exists()))
        soundfile.write(output, tone(250.0, 800), RATE, subtype="PCM_16", format="WAV")
        return subprocess.CompletedProcess(command, 0 if len(seen) == 1 else 1, "", "x: Broken\n")

    monkeypatch.setattr("src.prepare.convert.subprocess.run", fake_ffmpeg)
    convert_file(source, str(target))
    ((written, target_existed),) = seen
    assert is_temporary_name(written) and written.startswith(".00001.wav.")
    assert not target_existed
    assert all_files(tmp_path / "out") == ["00001.wav"]
    assert soundfile.info(str(target)).frames == 800

    target.unlink()
    with pytest.raises(AudioError, match="in.m4a: ffmpeg failed: x: Broken"):
        convert_file(source, str(target))
    assert all_files(tmp_path / "out") == []


def test_convert_tree_without_ffmpeg_names_the_install_command(tmp_path, monkeypatch):
    source = tmp_path / "aac" / "id1" / "v1"
    source.mkdir(parents=True)
    (source / "00001.m4a").write_bytes(b"x")
    monkeypatch.setattr("src.prepare.convert.shutil.which", lambda name: None)
    with pytest.raises(PrepareError, match="apt-get install ffmpeg"):
        convert_tree(str(tmp_path / "aac"), str(tmp_path / "wav"), progress=False)


def test_convert_tree_rejects_missing_empty_and_misplaced_input(tmp_path):
    with pytest.raises(PrepareError, match="source folder not found"):
        convert_tree(str(tmp_path / "absent"), str(tmp_path / "wav"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(PrepareError, match=r"no \.m4a files found"):
        convert_tree(str(tmp_path / "empty"), str(tmp_path / "wav"))
    misplaced = tmp_path / "dev" / "aac" / "id1" / "v1"
    misplaced.mkdir(parents=True)
    (misplaced / "00001.m4a").write_bytes(b"x")
    with pytest.raises(PrepareError, match="found 'aac/id1/v1/00001.m4a'"):
        convert_tree(str(tmp_path / "dev"), str(tmp_path / "wav"))
    with pytest.raises(PrepareError, match="--jobs must be at least 1"):
        convert_tree(str(tmp_path / "dev" / "aac"), str(tmp_path / "wav"), jobs=0)


@pytest.mark.parametrize("converted, skipped, failed, strict, expected", [
    (3, 0, 0, True, False),
    (3, 0, 1, False, False),
    (3, 0, 1, True, True),
    (0, 2, 1, False, False),   # earlier runs left usable files
    (0, 0, 2, False, True),    # everything failed
])
def test_run_failed_rule(converted, skipped, failed, strict, expected):
    summary = ConversionSummary(total=converted + skipped + failed, converted=converted,
                                skipped=skipped, failures=[None] * failed)
    assert summary.run_failed(strict) is expected


# ---------------------------------------------------------------- shared helpers

def test_list_files_is_sorted_relative_and_skips_hidden_entries(tmp_path):
    for relative in ["b/2.wav", "a/10.wav", "a/9.wav", "a/._9.wav", ".cache/x.wav", "a/notes.txt"]:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"")
    assert list_files(str(tmp_path), ".wav") == ["a/10.wav", "a/9.wav", "b/2.wav"]


def test_run_parallel_returns_each_result_once_and_propagates_errors():
    results = dict(run_parallel(lambda value: value * value, range(50), jobs=2,
                                description="squares", progress=False))
    assert results == {value: value * value for value in range(50)}

    def fail_on_seven(value):
        if value == 7:
            raise RuntimeError("seven")
        return value

    with pytest.raises(RuntimeError, match="seven"):
        list(run_parallel(fail_on_seven, range(20), jobs=2, description="x", progress=False))


# ---------------------------------------------------------------- train list

TRAIN_UTTERANCES = [
    "id10270/5r0dWxy17C8/00001.wav",
    "id10001/1zcIwhmdeo4/00002.wav",
    "id10001/1zcIwhmdeo4/00001.wav",
    "id10001/7w0IBEWc9Qw/00001.wav",
    "id10002/6WO410QOeuo/00001.wav",
    "id10270/5r0dWxy17C8/00002.wav",
]


def test_build_train_list_writes_sorted_speaker_lines(tmp_path):
    wav = tmp_path / "wav"
    build_wav_tree(str(wav), TRAIN_UTTERANCES)
    (wav / "id10001" / "1zcIwhmdeo4" / "._00001.wav").write_bytes(b"hidden")
    (wav / "id10002" / "6WO410QOeuo" / "readme.txt").write_text("not audio")
    list_path = tmp_path / "train.txt"

    summary = build_train_list(str(wav), str(list_path))

    assert list_path.read_text() == (
        "id10001 id10001/1zcIwhmdeo4/00001.wav\n"
        "id10001 id10001/1zcIwhmdeo4/00002.wav\n"
        "id10001 id10001/7w0IBEWc9Qw/00001.wav\n"
        "id10002 id10002/6WO410QOeuo/00001.wav\n"
        "id10270 id10270/5r0dWxy17C8/00001.wav\n"
        "id10270 id10270/5r0dWxy17C8/00002.wav\n")
    assert (summary.speakers, summary.utterances) == (3, 6)
    assert (summary.excluded_speakers, summary.excluded_utterances) == ((), 0)
    parsed = read_train_list(str(list_path))
    assert parsed.speakers == ["id10001", "id10002", "id10270"]
    assert parsed.labels == [0, 0, 0, 1, 2, 2]

    first = list_path.read_bytes()
    build_train_list(str(wav), str(list_path))
    assert list_path.read_bytes() == first


def test_build_train_list_leaves_out_trial_speakers(tmp_path):
    wav = tmp_path / "wav"
    build_wav_tree(str(wav), TRAIN_UTTERANCES)
    list_path = tmp_path / "train.txt"

    summary = build_train_list(str(wav), str(list_path), exclude_speakers=["id10270", "id10309"])

    assert summary.excluded_speakers == ("id10270",)
    assert (summary.speakers, summary.utterances, summary.excluded_utterances) == (2, 4, 2)
    assert [line.split()[0] for line in list_path.read_text().splitlines()] == [
        "id10001", "id10001", "id10001", "id10002"]
    with pytest.raises(PrepareError, match="every speaker is excluded"):
        build_train_list(str(wav), str(list_path),
                         exclude_speakers=["id10001", "id10002", "id10270"])


def test_build_train_list_rejects_bad_trees(tmp_path):
    with pytest.raises(PrepareError, match="wav folder not found"):
        build_train_list(str(tmp_path / "absent"), str(tmp_path / "train.txt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(PrepareError, match=r"no \.wav files found"):
        build_train_list(str(tmp_path / "empty"), str(tmp_path / "train.txt"))
    build_wav_tree(str(tmp_path / "one_speaker"), ["v1/00001.wav"])
    with pytest.raises(PrepareError, match="found 'v1/00001.wav'"):
        build_train_list(str(tmp_path / "one_speaker"), str(tmp_path / "train.txt"))
    assert not (tmp_path / "train.txt").exists()


# ---------------------------------------------------------------- eval list

EVAL_UTTERANCES = ["id10270/x6uYqmx31kE/00001.wav", "id10270/8jEAjG6SegY/00008.wav",
                   "id10300/ize_eiCFEg0/00003.wav"]
TRIALS = ("1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav\n"
          "0 id10270/x6uYqmx31kE/00001.wav id10300/ize_eiCFEg0/00003.wav\n"
          "0 id10300/ize_eiCFEg0/00003.wav id10270/8jEAjG6SegY/00008.wav\n")


def test_prepare_eval_list_copies_a_complete_trial_list(tmp_path):
    build_wav_tree(str(tmp_path / "wav"), EVAL_UTTERANCES)
    trials = tmp_path / "veri_test2.txt"
    trials.write_bytes(TRIALS.replace("\n", "\r\n").encode())  # as some downloads store it

    summary = prepare_eval_list(str(trials), str(tmp_path / "wav"), str(tmp_path / "eval.txt"))

    assert (summary.trials, summary.targets, summary.utterances, summary.missing) == (3, 1, 3, ())
    assert (tmp_path / "eval.txt").read_bytes() == TRIALS.encode()


def test_prepare_eval_list_reports_missing_wavs_and_writes_nothing(tmp_path):
    build_wav_tree(str(tmp_path / "wav"), EVAL_UTTERANCES[:1])
    trials = tmp_path / "list_test_hard2.txt"
    trials.write_text(TRIALS)

    summary = prepare_eval_list(str(trials), str(tmp_path / "wav"), str(tmp_path / "eval.txt"))

    assert summary.missing == ("id10270/8jEAjG6SegY/00008.wav", "id10300/ize_eiCFEg0/00003.wav")
    assert not (tmp_path / "eval.txt").exists()


def test_prepare_eval_list_rejects_malformed_and_escaping_paths(tmp_path):
    (tmp_path / "wav").mkdir()
    malformed = tmp_path / "bad.txt"
    malformed.write_text("1 a/b/1.wav a/b/2.wav\nid10001 id10001/v/00001.wav\n")
    with pytest.raises(ListFormatError, match=r"bad\.txt:2: expected '<1\|0> <utt_a> <utt_b>'"):
        prepare_eval_list(str(malformed), str(tmp_path / "wav"), str(tmp_path / "eval.txt"))
    escaping = tmp_path / "escaping.txt"
    escaping.write_text("1 a/v/1.wav ../secret/v/1.wav\n")
    with pytest.raises(PrepareError, match="'../secret/v/1.wav' is not a relative path"):
        prepare_eval_list(str(escaping), str(tmp_path / "wav"), str(tmp_path / "eval.txt"))
    with pytest.raises(PrepareError, match="eval wav folder not found"):
        prepare_eval_list(str(escaping), str(tmp_path / "absent"), str(tmp_path / "eval.txt"))


# ---------------------------------------------------------------- command line

def test_cli_train_on_a_wav_tree_prints_class_num(tmp_path, capsys):
    build_wav_tree(str(tmp_path / "vox1"), TRAIN_UTTERANCES)
    trials = tmp_path / "veri_test2.txt"
    trials.write_text("1 id10270/5r0dWxy17C8/00001.wav id10270/5r0dWxy17C8/00002.wav\n")

    status = load_cli().main(["train", "--input", str(tmp_path / "vox1"), "--out",
                              str(tmp_path / "data"), "--exclude_trials", str(trials)])

    output = capsys.readouterr().out
    assert status == 0
    assert "left out 1 speaker(s) (2 utterances)" in output
    assert f"train_path={tmp_path / 'vox1'} (class_num auto: 2 speakers)" in output
    assert len((tmp_path / "data" / "train.txt").read_text().splitlines()) == 4


@needs_ffmpeg
def test_cli_train_exit_status_follows_strict_and_total_failure(m4a_tree, tmp_path, capsys):
    cli = load_cli()
    out = tmp_path / "data"
    arguments = ["train", "--input", str(m4a_tree), "--out", str(out), "--jobs", "2"]

    assert cli.main(arguments + ["--strict"]) == 1
    assert not (out / "train.txt").exists()
    assert cli.main(arguments) == 0
    output = capsys.readouterr().out
    assert "converted 0, already done 4, failed 1 of 5 files" in output
    assert f"train_path={out / 'train' / 'wav'} (class_num auto: 2 speakers)" in output
    assert len((out / "train.txt").read_text().splitlines()) == 4
    failures = (out / "train_convert_failures.txt").read_text().splitlines()
    assert [line.split("\t")[0] for line in failures] == [CORRUPT]

    broken = tmp_path / "broken" / "id1" / "v1"
    broken.mkdir(parents=True)
    (broken / "00001.m4a").write_bytes(b"not audio")
    assert cli.main(["train", "--input", str(tmp_path / "broken"), "--out",
                     str(tmp_path / "other")]) == 1


def test_cli_eval_lists_the_first_missing_files_and_the_count(tmp_path, capsys):
    build_wav_tree(str(tmp_path / "wav"), EVAL_UTTERANCES[:1])
    (tmp_path / "veri_test2.txt").write_text(TRIALS)

    status = load_cli().main(["eval", "--trials", str(tmp_path / "veri_test2.txt"), "--wav_dir",
                              str(tmp_path / "wav"), "--out", str(tmp_path), "--show_missing", "1"])

    errors = capsys.readouterr().err.splitlines()
    assert status == 1
    assert errors[0] == f"missing: {tmp_path / 'wav' / 'id10270/8jEAjG6SegY/00008.wav'}"
    assert errors[1].startswith("error: 2 of 3 wav files named in")
    assert len(errors) == 2


def test_cli_runs_from_scripts_folder_and_gives_one_line_errors(tmp_path):
    scripts = os.path.join(REPO_ROOT, "scripts")
    shown = subprocess.run([sys.executable, "prepare_voxceleb.py", "train", "--help"], cwd=scripts,
                           capture_output=True, text=True)
    assert shown.returncode == 0 and "--exclude_trials" in shown.stdout
    failed = subprocess.run([sys.executable, SCRIPT, "train", "--input", str(tmp_path / "absent"),
                             "--out", str(tmp_path)], capture_output=True, text=True)
    assert failed.returncode == 1
    assert failed.stderr == f"error: {tmp_path / 'absent'}: input folder not found\n"
    for options, message in [(["train", "--input", str(tmp_path), "--out", str(tmp_path),
                               "--strikt"], "error: unknown option --strikt"),
                              (["eval", "--trials", "t.txt", "--wav_dir", str(tmp_path)],
                               "error: the following arguments are required: --out")]:
        misused = subprocess.run([sys.executable, SCRIPT, *options], capture_output=True, text=True)
        assert misused.returncode == 1
        assert misused.stderr.startswith(message) and misused.stderr.count("\n") == 1
    assert not (tmp_path / "train.txt").exists()


@needs_ffmpeg
def test_shell_script_prepares_train_and_eval(m4a_tree, tmp_path):
    build_wav_tree(str(tmp_path / "vox1"), EVAL_UTTERANCES)
    (tmp_path / "veri_test2.txt").write_text(TRIALS)
    out = tmp_path / "Voxceleb2"
    result = subprocess.run(
        ["bash", os.path.join(REPO_ROOT, "scripts", "prepare_voxceleb.sh"), str(m4a_tree),
         str(tmp_path / "vox1"), str(tmp_path / "veri_test2.txt"), str(out), "2"],
        capture_output=True, text=True, env={**os.environ, "PYTHON": sys.executable})
    assert result.returncode == 0, result.stderr
    assert os.path.realpath(out / "eval" / "wav") == os.path.realpath(tmp_path / "vox1")
    assert (out / "eval.txt").read_text() == TRIALS
    assert len((out / "train.txt").read_text().splitlines()) == 4
    assert "(class_num auto: 2 speakers)" in result.stdout
