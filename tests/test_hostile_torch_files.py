"""Hostile PyTorch files, crafted with the standard library: the reader (src/interop/torch_file.py)
refuses each with one message naming the file, keeps nothing of one file for the next, and
bounds its memory before allocating (checked in a child process under an address-space limit)."""
import os
import pickle
import re
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

from fixtures import REPO_ROOT
from src.interop import torch_file
from src.interop.torch_file import MAX_PICKLE_BYTES, TorchFileError, read_torch_file

CLEAN = os.path.join(REPO_ROOT, "tests", "data", "torch_tensors.pt")
ORDERED_DICT = b"ccollections\nOrderedDict\n)R"


def _op(value):
    """The pickle opcodes (protocol 2) that push ``value``, without PROTO and STOP."""
    return pickle.dumps(value, protocol=2)[2:-1]


def _tensor_pickle(size, stride, numel, storage="FloatStorage", offset=0, storage_object=None):
    """data.pkl of an OrderedDict {'w': one tensor} of ``size`` at ``stride`` on storage '0' of ``numel``."""
    reference = storage_object if storage_object is not None else (
        b"(" + _op("storage") + f"ctorch\n{storage}\n".encode() + _op("0") + _op("cpu") + _op(numel) + b"tQ")
    return (b"\x80\x02" + ORDERED_DICT + b"(" + _op("w") + b"ctorch._utils\n_rebuild_tensor_v2\n(" + reference
            + _op(offset) + _op(tuple(size)) + _op(tuple(stride)) + b"\x89" + ORDERED_DICT + b"tRu.")


def _archive(path, members, compression=zipfile.ZIP_STORED):
    """A zip archive at ``path`` of {name: bytes} under the folder 'archive/'."""
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, content in members.items():
            archive.writestr(f"archive/{name}", content)
    return path


def _clean_members():
    with zipfile.ZipFile(CLEAN) as archive:
        return {name.split("/", 1)[1]: archive.read(name) for name in archive.namelist()}


def _patch_central_directory(path, offset, value):
    """Set the 2-byte field at ``offset`` of every central-directory entry of the zip at ``path``."""
    content = bytearray(path.read_bytes())
    start = content.find(b"PK\x01\x02")
    while start >= 0:
        content[start + offset:start + offset + 2] = value.to_bytes(2, "little")
        start = content.find(b"PK\x01\x02", start + 4)
    path.write_bytes(bytes(content))


def test_a_file_cannot_change_how_the_next_file_is_read(tmp_path):
    # BUILD on the shared storage type: 'torch.FloatStorage.dtype = float16', then the clean pickle.
    members = _clean_members()
    clean_pickle = members["data.pkl"]
    attack = b"ctorch\nFloatStorage\n}" + _op("dtype") + _op("float16") + b"sb0"
    members["data.pkl"] = clean_pickle[:2] + attack + clean_pickle[2:]
    hostile = _archive(tmp_path / "embedding_model.ckpt", members)
    with pytest.raises(TorchFileError, match=r"embedding_model.ckpt: data.pkl sets the attributes of a "
                                             r"StorageType; only a state dict's own attributes may be set"):
        read_torch_file(hostile)
    state = read_torch_file(CLEAN)
    assert state["0.weight"].dtype == np.float32
    np.testing.assert_array_equal(state["0.weight"], np.arange(18, dtype=np.float32).reshape(3, 2, 3) / 10)


@pytest.mark.parametrize("payload, opcode", [
    (b"\x80\x02B\x04\x00\x00\x00abcd.", "BINBYTES"),
    (b"\x80\x02ccollections\nOrderedDict\n)\x81.", "NEWOBJ"),
    (b"\x80\x02N2.", "DUP"),
])
def test_opcodes_a_state_dict_does_not_use_are_refused(tmp_path, payload, opcode):
    path = _archive(tmp_path / "odd.pt", {"data.pkl": payload})
    with pytest.raises(TorchFileError, match=f"odd.pt: data.pkl uses the pickle opcode {opcode}, which a saved "
                                             "state dict does not"):
        read_torch_file(path)


def _read_under_limit(path, limit_mb=1500):
    """Read ``path`` in a child process limited to ``limit_mb`` MB of address space: (message, peak RSS MB)."""
    program = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, ({limit_mb} << 20, {limit_mb} << 20))
        from src.interop.torch_file import TorchFileError, read_torch_file
        try:
            read_torch_file(sys.argv[1])
            print("read")
        except TorchFileError as error:
            print(error)
        # VmHWM: this process's peak resident memory (ru_maxrss would carry the parent's over exec).
        print(next(int(line.split()[1]) // 1024 for line in open("/proc/self/status") if line.startswith("VmHWM")))
    """)
    done = subprocess.run([sys.executable, "-c", program, str(path)], capture_output=True, text=True, timeout=120,
                          cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    message, peak = done.stdout.strip().rsplit("\n", 1)
    return message, int(peak)


def test_small_files_declaring_huge_tensors_are_refused_before_allocating(tmp_path):
    # 4 bytes of storage viewed as a (2^20, 2^20) tensor at stride 0: 4 TiB if expanded.
    _archive(tmp_path / "expanded.pt", {"data.pkl": _tensor_pickle((1 << 20, 1 << 20), (0, 0), 1),
                                                   "data/0": bytes(4)})
    # 8 tensors of 2 GiB, each a stride-0 row over one 2 KiB storage.
    eight = b"".join(_tensor_pickle((1 << 19, 512), (0, 1), 512)[len(b"\x80\x02") + len(ORDERED_DICT):-2]
                     for _ in range(8))
    _archive(tmp_path / "rows.pt", {"data.pkl": b"\x80\x02" + ORDERED_DICT + eight + b".",
                                           "data/0": bytes(2048)})
    # A storage member inflating to 512 MiB, of which the declaration needs 4 bytes.
    with zipfile.ZipFile(tmp_path / "inflating.pt", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", _tensor_pickle((1,), (1,), 1))
        with archive.open("archive/data/0", "w", force_zip64=True) as member:
            for _ in range(32):
                member.write(bytes(16 << 20))
    # data.pkl of 8 MiB (a BINBYTES8 of 1 GiB would follow): refused by its size in the directory.
    _archive(tmp_path / "big_pickle.pt", {"data.pkl": b"\x80\x02\x8e" + (1 << 30).to_bytes(8, "little")
                                                       + bytes(8 << 20)}, zipfile.ZIP_DEFLATED)
    expected = {
        "expanded.pt": r"a tensor of size \(1048576, 1048576\) has the stride \(0, 0\), which makes several of "
                       "its elements one element of its storage",
        "rows.pt": r"a tensor of size \(524288, 512\) has the stride \(0, 1\)",
        "inflating.pt": r"the storage archive/data/0 holds 536870912 bytes, 1 elements of FloatStorage need 4",
        "big_pickle.pt": f"its data.pkl is {8 * 2 ** 20 + 11} bytes, more than the {MAX_PICKLE_BYTES}",
    }
    for name, pattern in expected.items():
        message, peak_mb = _read_under_limit(tmp_path / name)
        assert message.startswith(str(tmp_path / name) + ": "), message
        assert re.search(pattern, message), message
        assert peak_mb < 250, (name, peak_mb)


def test_storages_and_tensors_beyond_the_limit_are_refused(tmp_path):
    with pytest.raises(TorchFileError, match=r"torch_tensors.pt: a tensor of size \(3, 2, 3\) needs 72 bytes, "
                                             r"beyond the 100 bytes of storages and tensors"):
        read_torch_file(CLEAN, max_bytes=100)
    with pytest.raises(TorchFileError, match=r"torch_tensors.pt: the storage torch_tensors/data/\d+ needs \d+ "
                                             r"bytes, beyond the 10 bytes"):
        read_torch_file(CLEAN, max_bytes=10)
    # One 4 KiB storage, read by 300 full views: the copies, not the storage, pass the limit.
    views = b"".join(_tensor_pickle((1024,), (1,), 1024)[len(b"\x80\x02") + len(ORDERED_DICT):-2]
                     for _ in range(300))
    path = _archive(tmp_path / "views.pt", {"data.pkl": b"\x80\x02" + ORDERED_DICT + views + b".",
                                            "data/0": bytes(4096)})
    with pytest.raises(TorchFileError, match=r"views.pt: a tensor of size \(1024,\) needs 4096 bytes, beyond the "
                                             "1000000 bytes"):
        read_torch_file(path, max_bytes=1_000_000)


@pytest.mark.parametrize("payload, pattern", [
    (_tensor_pickle((2,), (1,), 2, storage_object=_op("abc")), r"a tensor is built on 'abc', not on a storage"),
    (_tensor_pickle((2,), (1,), 2, storage="ComplexFloatStorage"),
     r"holds a tensor of type torch.ComplexFloatStorage, which this reader does not read"),
    (_tensor_pickle((2, "x"), (1, 1), 2), r"a tensor has the size \(2, 'x'\), stride \(1, 1\) and offset 0; "
                                          "expected tuples of non-negative integers"),
    (_tensor_pickle((2,), (1,), 2, offset=-1),
     r"a tensor has the size \(2,\), stride \(1,\) and offset -1; expected tuples of non-negative integers"),
    (b"\x80\x02" + _op(("x",)) + b"Q.", r"an object of data.pkl refers to \('x',\), not to a storage"),
    (b"\x80\x02K\x05", r"damaged PyTorch checkpoint \(EOFError"),
])
def test_malformed_pickles_are_one_message(tmp_path, payload, pattern):
    path = _archive(tmp_path / "bad.pt", {"data.pkl": payload, "data/0": bytes(8)})
    with pytest.raises(TorchFileError, match="bad.pt: " + pattern):
        read_torch_file(path)


@pytest.mark.parametrize("offset, value, pattern", [
    (8, 0x0801, r"the member archive/\S+ is encrypted; torch.save does not encrypt"),
    (10, 99, r"the member archive/\S+ is compressed with zip method 99, which torch.save does not use"),
])
def test_encrypted_or_oddly_compressed_members_are_refused(tmp_path, offset, value, pattern):
    path = _archive(tmp_path / "packed.pt", _clean_members())
    _patch_central_directory(path, offset, value)
    with pytest.raises(TorchFileError, match="packed.pt: " + pattern):
        read_torch_file(path)


def test_a_torchscript_archive_is_named_with_the_way_to_a_state_dict(tmp_path):
    members = dict(_clean_members(), **{"constants.pkl": b"\x80\x02).", "code/__torch__.py": b"x = 1\n"})
    path = _archive(tmp_path / "scripted.pt", members)
    with pytest.raises(TorchFileError, match=r"scripted.pt: is a TorchScript archive \(torch.jit.save\).*load it "
                                             r"with torch.jit.load and save its state_dict\(\) with torch.save"):
        read_torch_file(path)


def test_running_out_of_memory_is_one_message(monkeypatch):
    def no_memory(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(torch_file.np, "frombuffer", no_memory)
    with pytest.raises(TorchFileError, match="torch_tensors.pt: reading it needs more memory than this machine has"):
        read_torch_file(CLEAN)
