"""Reading PyTorch checkpoint files without torch (src/interop/torch_file.py), against files that
torch itself wrote (tests/data/make_torch_files.py), and refusing pickles that would run code."""
import os
import pickle
import zipfile

import numpy as np
import pytest

from fixtures import REPO_ROOT
from src.interop.torch_file import TorchFileError, read_torch_file, write_torch_file

DATA = os.path.join(REPO_ROOT, "tests", "data")


def test_every_tensor_of_a_torch_file_reads_back_with_its_values_shape_and_type():
    state = read_torch_file(os.path.join(DATA, "torch_tensors.pt"))
    assert list(state)[:7] == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                               "1.num_batches_tracked"]
    np.testing.assert_array_equal(state["0.weight"], np.arange(18, dtype=np.float32).reshape(3, 2, 3) / 10)
    assert state["0.weight"].dtype == np.float32
    np.testing.assert_array_equal(state["0.bias"], [-1.0, 0.0, 1.0])
    np.testing.assert_array_equal(state["1.running_mean"], [0.5, 1.5, 2.5])
    assert state["1.num_batches_tracked"].shape == () and state["1.num_batches_tracked"] == 7
    assert state["1.num_batches_tracked"].dtype == np.int64
    np.testing.assert_array_equal(state["transposed"], np.arange(6, dtype=np.float32).reshape(2, 3).T)
    np.testing.assert_array_equal(state["row_view"], [4.0, 5.0, 6.0, 7.0])
    assert state["half"].dtype == np.float16 and state["half"].tolist() == [1.5, -2.0]
    assert state["bfloat16"].dtype == np.float32 and state["bfloat16"].tolist() == [1.5, -2.0, 3.0]
    assert state["float64"].dtype == np.float64 and state["float64"].tolist() == [0.1, 0.2]
    assert state["int32"].dtype == np.int32 and state["int32"].tolist() == [1, -2]
    assert state["bool"].tolist() == [True, False]
    assert state["parameter"].tolist() == [0.25, 0.25]
    assert state["scalar"].shape == () and float(state["scalar"]) == 3.5


def test_containers_around_the_tensors_are_kept():
    saved = read_torch_file(os.path.join(DATA, "torch_nested.pt"))
    assert saved["epoch"] == 3 and saved["name"] == "ecapa" and tuple(saved["shape"]) == (3, 4)
    np.testing.assert_array_equal(saved["model"]["row_view"], [4.0, 5.0, 6.0, 7.0])


class _RunsACommand:
    """Pickles as a call of os.system, as a malicious checkpoint would."""

    def __reduce__(self):
        return os.system, ("touch should-not-exist",)


def _with_pickle(tmp_path, payload, name="evil.pt"):
    """A copy of torch_tensors.pt whose data.pkl is ``payload``."""
    path = tmp_path / name
    with zipfile.ZipFile(os.path.join(DATA, "torch_tensors.pt")) as source, zipfile.ZipFile(path, "w") as target:
        for entry in source.namelist():
            target.writestr(entry, payload if entry.endswith("data.pkl") else source.read(entry))
    return path


def test_a_pickle_asking_for_code_is_refused_without_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _with_pickle(tmp_path, pickle.dumps({"weight": _RunsACommand()}, protocol=2))
    with pytest.raises(TorchFileError, match=r"evil\.pt: asks for the Python object posix\.system, which is not a "
                                             r"tensor, an OrderedDict or a plain container; refused without running"):
        read_torch_file(path)
    assert not (tmp_path / "should-not-exist").exists()
    builtin = _with_pickle(tmp_path, pickle.dumps(eval, protocol=2), "builtin.pt")
    with pytest.raises(TorchFileError, match="asks for the Python object __builtin__.eval"):
        read_torch_file(builtin)


@pytest.mark.parametrize("content, message", [
    (b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.", r"a PyTorch file in the legacy format \(before "
                                                       r"PyTorch 1\.6\), which is not read: load it and save it again"),
    (b"", r"the file is empty \(0 bytes\)"),
    (b"hello world", "not a PyTorch checkpoint"),
])
def test_legacy_empty_or_foreign_files_are_refused_with_a_message(tmp_path, content, message):
    path = tmp_path / "old.pt"
    path.write_bytes(content)
    with pytest.raises(TorchFileError, match=f"old.pt: {message}"):
        read_torch_file(path)


def test_damaged_archives_are_named(tmp_path):
    whole = open(os.path.join(DATA, "torch_tensors.pt"), "rb").read()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(TorchFileError, match=r"truncated.pt: a damaged or incomplete zip archive .*an interrupted "
                                             "download or copy"):
        read_torch_file(truncated)
    missing_storage = tmp_path / "missing.pt"
    with zipfile.ZipFile(os.path.join(DATA, "torch_tensors.pt")) as source, \
            zipfile.ZipFile(missing_storage, "w") as target:
        for entry in source.namelist():
            if not entry.endswith("/data/0"):
                target.writestr(entry, source.read(entry))
    with pytest.raises(TorchFileError, match=r"missing.pt: the storage torch_tensors/data/0 is missing"):
        read_torch_file(missing_storage)
    with pytest.raises(TorchFileError, match="nowhere.pt: file not found"):
        read_torch_file(tmp_path / "nowhere.pt")


def test_written_files_read_back_bit_exactly_and_name_only_tensors(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {"conv.weight": rng.standard_normal((4, 3, 5)).astype(np.float32),
               "transposed": rng.standard_normal((3, 2)).astype(np.float32).T,
               "bn.num_batches_tracked": np.array(12345678, np.int64), "half": np.array([0.5, -1], np.float16),
               "mask": np.array([True, False]), "wide": rng.standard_normal(70000).astype(np.float64)}
    path = write_torch_file(tmp_path / "state.pt", tensors)
    state = read_torch_file(path)
    assert list(state) == list(tensors)
    for name, array in tensors.items():
        assert state[name].dtype == array.dtype and state[name].shape == array.shape, name
        np.testing.assert_array_equal(state[name], array, err_msg=name)
    with zipfile.ZipFile(path) as archive:
        assert archive.read("archive/byteorder") == b"little"
    with pytest.raises(TorchFileError, match=r"c has the type complex64, which has no torch storage"):
        write_torch_file(tmp_path / "complex.pt", {"c": np.zeros(2, np.complex64)})
    assert not (tmp_path / "complex.pt").exists()
