"""Tests of MUSAN chunking and RIR listing on small generated trees, and of the CLI.

Source recordings hold random 16-bit sample values, so a chunk equal to the
matching slice of its source proves both the chunk boundaries and a lossless copy.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from src.data.audio import read_audio, write_audio
from src.data.augment import Augmenter
from src.prepare.common import PrepareError
from src.prepare.musan import chunk_bounds, list_rirs, locate_simulated_rirs, split_musan

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATE = 16000
CHUNK = 5 * RATE

# relative MUSAN path -> length in samples, and the chunk ranges it must give
RECORDINGS = {
    "noise/free-sound/noise-free-sound-0000.wav": 12 * RATE + RATE // 2,   # 5 + 5 + 2.5 s
    "noise/sound-bible/noise-sound-bible-0001.wav": 10 * RATE + 9600,      # 5 + 5, 0.6 s dropped
    "music/fma/music-fma-0000.wav": CHUNK,                                 # exactly one chunk
    "speech/librivox/speech-librivox-0000.wav": RATE // 2,                 # too short
}
EXPECTED_CHUNKS = {
    "noise/noise-free-sound-0000": [(0, CHUNK), (CHUNK, 2 * CHUNK),
                                    (2 * CHUNK, 12 * RATE + RATE // 2)],
    "noise/noise-sound-bible-0001": [(0, CHUNK), (CHUNK, 2 * CHUNK)],
    "music/music-fma-0000": [(0, CHUNK)],
}


def random_pcm(num_samples, seed):
    """Random samples on the 16-bit grid, so writing them as PCM_16 loses nothing."""
    return np.random.default_rng(seed).integers(-20000, 20000, num_samples) / 32768.0


@pytest.fixture
def musan(tmp_path):
    root = tmp_path / "musan"
    for seed, (relative, length) in enumerate(RECORDINGS.items()):
        write_audio(str(root / relative), random_pcm(length, seed))
    (root / "music" / "fma" / "ANNOTATIONS").write_text("not audio")
    return root


def chunk_files(out):
    return sorted(os.path.relpath(os.path.join(folder, name), out)
                  for folder, _, names in os.walk(out) for name in names)


@pytest.mark.parametrize("num_samples, expected", [
    (12 * RATE + RATE // 2, [(0, CHUNK), (CHUNK, 2 * CHUNK), (2 * CHUNK, 12 * RATE + RATE // 2)]),
    (2 * CHUNK, [(0, CHUNK), (CHUNK, 2 * CHUNK)]),
    (CHUNK + RATE, [(0, CHUNK), (CHUNK, CHUNK + RATE)]),           # 1 s rest: kept
    (CHUNK + RATE - 1, [(0, CHUNK)]),                               # just under 1 s: dropped
    (RATE, [(0, RATE)]),
    (RATE - 1, []),
])
def test_chunk_bounds_keeps_a_last_chunk_of_at_least_one_second(num_samples, expected):
    assert chunk_bounds(num_samples, CHUNK, RATE) == expected


def test_split_musan_writes_chunks_equal_to_source_slices(musan, tmp_path):
    out = tmp_path / "musan_split"
    summary = split_musan(str(musan), str(out), jobs=2, progress=False)

    assert dict(summary.sources) == {"noise": 2, "music": 1, "speech": 1}
    assert dict(summary.chunks) == {"noise": 5, "music": 1, "speech": 0}
    assert (summary.written, summary.skipped) == (6, 0)
    assert summary.too_short == ["speech/librivox/speech-librivox-0000.wav"]
    assert summary.failures == [] and summary.missing_categories == []
    assert chunk_files(out) == sorted(f"{folder}/{index:05d}.wav"
                                      for folder, bounds in EXPECTED_CHUNKS.items()
                                      for index in range(len(bounds)))
    sources = {relative.split("/")[0] + "/" + relative.rsplit("/", 1)[1][:-4]: relative
               for relative in RECORDINGS}
    for folder, bounds in EXPECTED_CHUNKS.items():
        source = read_audio(str(musan / sources[folder]))
        for index, (start, stop) in enumerate(bounds):
            path = str(out / folder / f"{index:05d}.wav")
            info = soundfile.info(path)
            assert (info.samplerate, info.channels, info.subtype) == (RATE, 1, "PCM_16")
            np.testing.assert_array_equal(read_audio(path), source[start:stop])


def test_split_musan_resumes_and_fills_in_missing_chunks(musan, tmp_path):
    out = tmp_path / "musan_split"
    split_musan(str(musan), str(out), progress=False)
    stamps = {path: os.stat(out / path).st_mtime_ns for path in chunk_files(out)}

    again = split_musan(str(musan), str(out), jobs=2, progress=False)
    assert (again.written, again.skipped) == (0, 3)
    assert {path: os.stat(out / path).st_mtime_ns for path in chunk_files(out)} == stamps

    lost = out / "noise" / "noise-free-sound-0000" / "00001.wav"
    lost.unlink()
    third = split_musan(str(musan), str(out), progress=False)
    assert (third.written, third.skipped) == (1, 2)
    source = read_audio(str(musan / "noise/free-sound/noise-free-sound-0000.wav"))
    np.testing.assert_array_equal(read_audio(str(lost)), source[CHUNK:2 * CHUNK])


def test_split_musan_logs_unreadable_recordings_and_goes_on(musan, tmp_path):
    broken = musan / "noise" / "free-sound" / "noise-free-sound-0009.wav"
    broken.write_bytes(b"RIFF not really a wav file" * 10)
    slow = musan / "speech" / "librivox" / "speech-librivox-0009.wav"
    soundfile.write(str(slow), random_pcm(3 * 8000, 9), 8000, subtype="PCM_16")

    summary = split_musan(str(musan), str(tmp_path / "out"), progress=False)

    assert [failure.path for failure in summary.failures] == [
        "noise/free-sound/noise-free-sound-0009.wav", "speech/librivox/speech-librivox-0009.wav"]
    assert "cannot read audio" in summary.failures[0].reason
    assert "sample rate is 8000 Hz" in summary.failures[1].reason
    assert summary.written == 6


def test_split_musan_options_and_bad_input(musan, tmp_path):
    short_rest = split_musan(str(musan), str(tmp_path / "a"), min_last_seconds=0.5, progress=False)
    assert short_rest.chunks["noise"] == 6  # the 0.6 s rest is now kept
    assert short_rest.chunks["speech"] == 1
    assert soundfile.info(str(tmp_path / "a/noise/noise-sound-bible-0001/00002.wav")).frames == 9600

    for chunk_seconds, min_last in [(0, 1.0), (5.0, 0), (2.0, 3.0)]:
        with pytest.raises(PrepareError, match="need chunk length > 0"):
            split_musan(str(musan), str(tmp_path / "b"), chunk_seconds=chunk_seconds,
                        min_last_seconds=min_last)
    with pytest.raises(PrepareError, match="MUSAN folder not found"):
        split_musan(str(tmp_path / "absent"), str(tmp_path / "b"))
    with pytest.raises(PrepareError, match="none of the folders noise, speech, music found"):
        split_musan(str(musan / "noise"), str(tmp_path / "b"))


def test_split_musan_copes_with_a_missing_category_and_rejects_name_clashes(musan, tmp_path):
    for name in os.listdir(musan / "music" / "fma"):
        os.remove(musan / "music" / "fma" / name)
    os.rmdir(musan / "music" / "fma")
    os.rmdir(musan / "music")
    summary = split_musan(str(musan), str(tmp_path / "out"), progress=False)
    assert summary.missing_categories == ["music"]
    assert "music" not in summary.sources

    write_audio(str(musan / "noise" / "other" / "noise-free-sound-0000.wav"), random_pcm(RATE, 5))
    with pytest.raises(PrepareError, match="'free-sound/noise-free-sound-0000.wav' and "
                                           "'other/noise-free-sound-0000.wav'"):
        split_musan(str(musan), str(tmp_path / "out"), progress=False)


RIRS = ["smallroom/Room001/Room001-00001.wav", "smallroom/Room001/Room001-00002.wav",
        "smallroom/Room002/Room002-00001.wav", "mediumroom/Room001/Room001-00001.wav",
        "largeroom/Room001/Room001-00001.wav", "largeroom/Room007/Room007-00003.wav"]


def build_rirs(root):
    for index, relative in enumerate(RIRS):
        write_audio(str(root / "simulated_rirs" / relative), random_pcm(400, index))


def test_list_rirs_writes_the_sorted_list_and_counts_room_types(tmp_path):
    build_rirs(tmp_path / "RIRS_NOISES")
    rir_root = locate_simulated_rirs(str(tmp_path / "RIRS_NOISES"))
    assert rir_root == str(tmp_path / "RIRS_NOISES" / "simulated_rirs")
    assert locate_simulated_rirs(rir_root) == rir_root

    counts = list_rirs(rir_root, str(tmp_path / "rir_list.txt"))

    assert dict(counts) == {"smallroom": 3, "mediumroom": 1, "largeroom": 2}
    assert (tmp_path / "rir_list.txt").read_text().splitlines() == sorted(RIRS)


def test_list_rirs_rejects_empty_and_flat_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PrepareError, match=r"no \.wav files found"):
        list_rirs(str(tmp_path / "empty"), str(tmp_path / "list.txt"))
    write_audio(str(tmp_path / "flat" / "rir.wav"), random_pcm(400, 0))
    with pytest.raises(PrepareError, match="found 'rir.wav'"):
        list_rirs(str(tmp_path / "flat"), str(tmp_path / "list.txt"))
    with pytest.raises(PrepareError, match="RIR folder not found"):
        locate_simulated_rirs(str(tmp_path / "absent"))


def run_cli(*arguments, cwd=None):
    return subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "split_musan.py"),
                           *arguments], cwd=cwd, capture_output=True, text=True)


def test_cli_splits_lists_and_reports(musan, tmp_path):
    build_rirs(tmp_path / "RIRS_NOISES")
    rir_root = tmp_path / "RIRS_NOISES" / "simulated_rirs"
    result = subprocess.run(
        [sys.executable, "split_musan.py", "--musan", str(musan), "--out",
         str(tmp_path / "musan_split"), "--jobs", "2", "--rirs", str(tmp_path / "RIRS_NOISES")],
        cwd=os.path.join(ROOT, "scripts"), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for expected in ["music: 1 recordings -> 1 chunks", "noise: 2 recordings -> 5 chunks",
                     "speech: 1 recordings -> 0 chunks", "largeroom: 2 RIRs",
                     "mediumroom: 1 RIRs", "smallroom: 3 RIRs",
                     f"wrote {rir_root / 'rir_list.txt'}: 6 RIRs", f"set rir_path={rir_root}"]:
        assert expected in lines
    assert len((rir_root / "rir_list.txt").read_text().splitlines()) == 6
    assert not (tmp_path / "rir_list.txt").exists()

    missing = run_cli("--musan", str(tmp_path / "absent"), "--out", str(tmp_path / "x"))
    assert missing.returncode == 1
    assert missing.stderr == f"error: {tmp_path / 'absent'}: MUSAN folder not found\n"


def test_cli_rir_list_option_writes_the_list_elsewhere(musan, tmp_path):
    build_rirs(tmp_path / "RIRS_NOISES")
    elsewhere = tmp_path / "lists" / "rirs.txt"
    result = run_cli("--musan", str(musan), "--out", str(tmp_path / "musan_split"),
                     "--rirs", str(tmp_path / "RIRS_NOISES"), "--rir_list", str(elsewhere))
    assert result.returncode == 0, result.stderr
    assert elsewhere.read_text().splitlines() == sorted(RIRS)
    assert not (tmp_path / "RIRS_NOISES" / "simulated_rirs" / "rir_list.txt").exists()


def test_cli_bad_options_give_one_error_line_and_status_1(musan, tmp_path):
    for options, message in [(["--musan", str(musan), "--out", str(tmp_path), "--job", "2"],
                              "error: unknown option --job (did you mean --jobs?)"),
                             (["--musan", str(musan)],
                              "error: the following arguments are required: --out"),
                             (["--musan", str(musan), "--out", str(tmp_path), "--jobs", "two"],
                              "error: argument --jobs: invalid int value: 'two'")]:
        result = run_cli(*options)
        assert result.returncode == 1
        assert result.stderr.startswith(message) and result.stderr.count("\n") == 1
    assert os.listdir(tmp_path) == ["musan"]


def test_augmenter_uses_the_written_rir_list_instead_of_the_folder(tmp_path):
    build_rirs(tmp_path / "RIRS_NOISES")
    rir_root = locate_simulated_rirs(str(tmp_path / "RIRS_NOISES"))
    list_rirs(rir_root, os.path.join(rir_root, "rir_list.txt"))
    unlisted = os.path.join(rir_root, "smallroom", "Room009", "Room009-00001.wav")
    write_audio(unlisted, random_pcm(400, 99))

    augmenter = Augmenter("", rir_root, {"reverb": 1})

    assert augmenter.files["reverb"] == tuple(os.path.join(rir_root, relative)
                                              for relative in sorted(RIRS))
    assert unlisted not in augmenter.files["reverb"]
