"""Tests of the MindSpore-free C++ helpers of ascend310_infer/ (file I/O, listing, options).

The helpers and their C++ test program are compiled with g++ into a temporary folder; the C++
checks must all pass, and .bin files written by numpy must read back bit-exactly in C++ (and the
other way round), which pins the raw float32 format shared by preprocess.py, the inference
program and postprocess.py.
"""
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

INFER_DIR = Path(__file__).resolve().parents[1] / "ascend310_infer"
SOURCES = [INFER_DIR / "src" / "utils.cc", INFER_DIR / "test" / "test_utils.cc"]


@pytest.fixture(scope="module")
def test_utils(tmp_path_factory):
    """Path of the compiled C++ test program."""
    compiler = shutil.which("g++")
    if compiler is None:
        pytest.skip("g++ is not installed")
    binary = tmp_path_factory.mktemp("ascend310_infer") / "test_utils"
    command = [compiler, "-std=c++17", "-Wall", "-Wextra", "-Werror", f"-I{INFER_DIR}",
               *map(str, SOURCES), "-o", str(binary)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"compilation failed:\n{result.stderr}"
    return binary


def run(binary, *args):
    return subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True,
                          timeout=60, check=False)


def test_cpp_checks_pass(test_utils):
    result = run(test_utils)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("checks passed, 0 failed")
    passed = int(result.stdout.split("test_utils: ")[1].split()[0])
    assert passed >= 60  # every group of checks ran


def _features(frames=13, mels=80, seed=0):
    """A (1, frames, mels) float32 array with awkward values among normal ones."""
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(1, frames, mels)).astype(np.float32)
    feats[0, 0, :6] = [0.0, -0.0, np.float32(1e-42), np.finfo(np.float32).max, -np.inf, 1.0]
    return feats


def test_numpy_written_bin_reads_back_exactly_in_cpp(test_utils, tmp_path):
    feats = _features()
    path = tmp_path / "id10270_5r0dWxy17C8_00001.bin"
    feats.tofile(path)

    result = run(test_utils, "--dump", path, feats.size)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert lines[:2] == ["count", str(feats.size)]
    values = np.array([float(v) for v in lines[2:]], dtype=np.float64).astype(np.float32)
    np.testing.assert_array_equal(values, feats.ravel())
    assert np.signbit(values[1]) and not np.signbit(values[0])


def test_cpp_written_bin_is_byte_identical_and_numpy_readable(test_utils, tmp_path):
    embedding = np.random.default_rng(1).normal(size=192).astype("<f4")
    source, copy = tmp_path / "utt.bin", tmp_path / "result" / "utt.bin"
    copy.parent.mkdir()
    embedding.tofile(source)

    result = run(test_utils, "--copy", source, copy, 192)

    assert result.returncode == 0, result.stderr
    assert copy.read_bytes() == source.read_bytes()
    np.testing.assert_array_equal(np.fromfile(copy, dtype="<f4"), embedding)
    assert not (copy.parent / "utt.bin.tmp").exists()


def test_wrong_size_is_rejected_naming_the_file(test_utils, tmp_path):
    frames = 1199
    path = tmp_path / "short.bin"
    np.zeros((1, frames - 1, 80), dtype=np.float32).tofile(path)

    result = run(test_utils, "--dump", path, frames * 80)

    assert result.returncode == 1
    assert f"{path}: expected 95920 float32 values (383680 bytes) but the file has 383360 bytes" in result.stderr
    assert result.stdout == "count 95840\n"


def test_truncated_float_is_rejected_naming_the_file(test_utils, tmp_path):
    path = tmp_path / "torn.bin"
    path.write_bytes(np.ones(3, dtype=np.float32).tobytes()[:-1])

    result = run(test_utils, "--dump", path, 3)

    assert result.returncode == 1
    assert f"{path}: size 11 bytes is not a whole number of float32 values" in result.stderr
