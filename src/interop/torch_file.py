"""PyTorch checkpoint files read without torch, and without running what they hold.

``torch.save`` (PyTorch 1.6 and later) writes a zip archive: ``<name>/data.pkl``, a pickle of
the saved object in which every tensor is a call of ``torch._utils._rebuild_tensor_v2`` on a
storage, and ``<name>/data/<key>``, the raw bytes of each storage. :func:`read_torch_file`
unpickles ``data.pkl`` with an unpickler that admits only those rebuild functions, the
storage types, ``collections.OrderedDict`` and plain containers, and returns the object with
every tensor as a numpy array (bfloat16 widened to float32). Any other global a pickle asks
for, which is how a pickle runs code, is refused with :class:`TorchFileError` naming it, and
nothing of it is called. The legacy format (before PyTorch 1.6) and TorchScript archives are
refused with a message saying so.

:func:`write_torch_file` writes an OrderedDict of numpy arrays in the same format, naming only
those admitted objects, so that ``torch.load`` (``weights_only`` too) and this reader read it.

>>> state = read_torch_file("embedding_model.ckpt")              # doctest: +SKIP
>>> state["blocks.0.conv.conv.weight"].shape                      # doctest: +SKIP
(1024, 80, 5)
"""
import collections
import os
import pickle
import struct
import zipfile

import numpy as np

from src.errors import InputError
from src.fileio import atomic_write

# numpy type of each storage type; bfloat16 (no numpy type) is read as uint16 and widened.
STORAGE_TYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16", "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class TorchFileError(InputError):
    """A file that is not a readable PyTorch checkpoint, or one that asks for code to run."""


class StorageType:
    """Stands for a torch storage class (``torch.FloatStorage``, ...) in the unpickled object."""

    def __init__(self, name):
        self.name = name
        self.dtype = STORAGE_TYPES[name]


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                    metadata=None):
    """The numpy array (a copy) of a tensor: ``size`` elements of ``storage`` (1-D) at ``stride``."""
    size, stride = tuple(size), tuple(stride)
    if len(size) != len(stride) or storage_offset < 0 or any(step < 0 for step in stride):
        raise TorchFileError(f"a tensor of size {size} has the stride {stride} and offset {storage_offset}")
    if any(extent == 0 for extent in size):
        return np.zeros(size, storage.dtype)
    last = storage_offset + sum((extent - 1) * step for extent, step in zip(size, stride))
    if last >= storage.size:
        raise TorchFileError(f"a tensor of size {size} reaches element {last} of a storage of {storage.size}")
    view = np.lib.stride_tricks.as_strided(storage[storage_offset:], shape=size,
                                           strides=[step * storage.itemsize for step in stride])
    return np.array(view)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    """An ``nn.Parameter``: its data."""
    return data


class _Size(tuple):
    """``torch.Size``: a tuple."""


ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "Size"): _Size,
    **{("torch", name): StorageType(name) for name in STORAGE_TYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles ``data.pkl`` of ``archive`` (zipfile.ZipFile) whose entries start with ``prefix``."""

    def __init__(self, handle, archive, prefix, path, big_endian):
        super().__init__(handle)
        self.archive, self.prefix, self.path, self.big_endian = archive, prefix, path, big_endian
        self.storages = {}

    def find_class(self, module, name):
        allowed = ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise TorchFileError(
                f"{self.path}: asks for the Python object {module}.{name}, which is not a tensor, an OrderedDict "
                "or a plain container; refused without running it (a checkpoint that names other objects can "
                "run code when loaded)")
        return allowed

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], StorageType) and isinstance(pid[2], str)):
            raise TorchFileError(f"{self.path}: an object of data.pkl refers to {pid!r}, not to a storage")
        _, storage_type, key, _, numel = pid
        if key not in self.storages:
            self.storages[key] = self._read_storage(storage_type, key, numel)
        return self.storages[key]

    def _read_storage(self, storage_type, key, numel):
        entry = f"{self.prefix}data/{key}"
        try:
            raw = self.archive.read(entry)
        except KeyError:
            raise TorchFileError(f"{self.path}: the storage {entry} is missing from the archive") from None
        stored = np.uint16 if storage_type.dtype == "bfloat16" else storage_type.dtype
        itemsize = np.dtype(stored).itemsize
        if len(raw) < numel * itemsize:
            raise TorchFileError(f"{self.path}: the storage {entry} holds {len(raw)} bytes, {numel} elements of "
                                 f"{storage_type.name} need {numel * itemsize}")
        values = np.frombuffer(raw, np.dtype(stored).newbyteorder(">" if self.big_endian else "<"), count=numel)
        if storage_type.dtype == "bfloat16":
            return (values.astype(np.uint32) << 16).view(np.float32)
        return values.astype(np.dtype(stored).newbyteorder("="))


def _archive_prefix(archive, path):
    """The folder (with '/') holding data.pkl in a torch.save archive."""
    names = archive.namelist()
    pickles = [name for name in names if name.endswith("data.pkl") and name.count("/") == 1]
    if not pickles:
        if any(name.endswith("constants.pkl") for name in names):
            raise TorchFileError(f"{path}: is a TorchScript archive (torch.jit.save), not a saved state dict")
        raise TorchFileError(f"{path}: a zip archive without the data.pkl of torch.save")
    return pickles[0][:-len("data.pkl")]


def read_torch_file(path):
    """The object saved in the PyTorch checkpoint ``path``, tensors as numpy arrays (module docstring).

    Raises TorchFileError naming the file for a missing, legacy-format or damaged file and
    for a pickle that asks for anything but tensors and plain containers.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise TorchFileError(f"{path}: file not found")
    if not zipfile.is_zipfile(path):
        raise TorchFileError(f"{path}: not a zip archive of torch.save (PyTorch 1.6 or later); a file in the "
                             "legacy format is not read: load it and save it again with a recent PyTorch")
    try:
        with zipfile.ZipFile(path) as archive:
            prefix = _archive_prefix(archive, path)
            byteorder = f"{prefix}byteorder"
            big_endian = byteorder in archive.namelist() and archive.read(byteorder).strip() == b"big"
            with archive.open(f"{prefix}data.pkl") as handle:
                return _RestrictedUnpickler(handle, archive, prefix, path, big_endian).load()
    except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError, ValueError, TypeError, IndexError) as error:
        if isinstance(error, TorchFileError):
            raise
        raise TorchFileError(f"{path}: damaged PyTorch checkpoint ({type(error).__name__}: {error})") from None


def _pickled_int(value):
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if 0 <= value < 65536:
        return b"M" + struct.pack("<H", value)
    return b"J" + struct.pack("<i", value)


def _pickled_text(text):
    encoded = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(encoded)) + encoded


def _pickled_tuple(values):
    return b"(" + b"".join(_pickled_int(value) for value in values) + b"t" if values else b")"


_EMPTY_ORDERED_DICT = b"ccollections\nOrderedDict\n)R"
_STORAGE_NAMES = {np.dtype(dtype): name for name, dtype in STORAGE_TYPES.items() if dtype != "bfloat16"}


def _state_pickle(names_and_arrays):
    """data.pkl (pickle protocol 2) of an OrderedDict {name: tensor}; storage i holds array i."""
    parts = [b"\x80\x02", _EMPTY_ORDERED_DICT, b"("]
    for key, (name, array) in enumerate(names_and_arrays):
        storage = (b"(" + _pickled_text("storage") + f"ctorch\n{_STORAGE_NAMES[array.dtype]}\n".encode()
                   + _pickled_text(str(key)) + _pickled_text("cpu") + _pickled_int(array.size) + b"tQ")
        strides = [step // array.itemsize for step in array.strides]
        parts += [_pickled_text(name), b"ctorch._utils\n_rebuild_tensor_v2\n(", storage, _pickled_int(0),
                  _pickled_tuple(array.shape), _pickled_tuple(strides), b"\x89", _EMPTY_ORDERED_DICT, b"tR"]
    parts.append(b"u.")
    return b"".join(parts)


def write_torch_file(path, tensors, archive_name="archive"):
    """Write ``tensors`` ({name: numpy array}, in order) as torch.save writes a state dict (atomically).

    The arrays keep their type (float32, float64, float16, the integer types, bool).
    """
    arrays = [(name, np.array(value, dtype=np.asarray(value).dtype.newbyteorder("<"), order="C"))
              for name, value in tensors.items()]
    unknown = [name for name, array in arrays if array.dtype not in _STORAGE_NAMES]
    if unknown:
        raise TorchFileError(f"{path}: {unknown[0]} has the type {dict(arrays)[unknown[0]].dtype}, which has no "
                             "torch storage")
    with atomic_write(path, suffix=".pt") as temporary:
        with zipfile.ZipFile(temporary, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr(f"{archive_name}/data.pkl", _state_pickle(arrays))
            archive.writestr(f"{archive_name}/byteorder", "little")
            for key, (_, array) in enumerate(arrays):
                archive.writestr(f"{archive_name}/data/{key}", array.tobytes())
            archive.writestr(f"{archive_name}/version", "3\n")
    return os.fspath(path)
