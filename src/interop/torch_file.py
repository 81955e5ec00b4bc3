"""PyTorch checkpoint files read without torch, and without running what they hold.

``torch.save`` (PyTorch 1.6 and later) writes a zip archive: ``<name>/data.pkl``, a pickle of
the saved object in which every tensor is a call of ``torch._utils._rebuild_tensor_v2`` on a
storage, and ``<name>/data/<key>``, the raw bytes of each storage. :func:`read_torch_file`
unpickles ``data.pkl`` and returns the object with every tensor as a numpy array (bfloat16
widened to float32). A checkpoint is untrusted input, so the reader:

- admits only the rebuild functions, the storage types, ``collections.OrderedDict`` and
  plain containers as globals; any other global, which is how a pickle runs code, is refused
  with :class:`TorchFileError` naming it, and nothing of it is called;
- runs only the pickle opcodes a saved state dict uses, and BUILD (setting an object's
  attributes) only on the dictionaries the pickle itself made, so nothing a file says
  reaches an object that outlives its reading;
- bounds memory before allocating it: data.pkl at most ``MAX_PICKLE_BYTES``, each storage
  member exactly the size its declaration needs, the storages and tensors together at most
  ``max_bytes``, and no tensor whose strides make two of its elements the same one (a
  stride-0 view would otherwise expand a small storage into any size).

The legacy format (before PyTorch 1.6), TorchScript archives and damaged files are refused
with a message saying which. :func:`write_torch_file` writes an OrderedDict of numpy arrays
in the same format, naming only those admitted objects, so that ``torch.load``
(``weights_only`` too) and this reader read it.

>>> state = read_torch_file("embedding_model.ckpt")              # doctest: +SKIP
>>> state["blocks.0.conv.conv.weight"].shape                      # doctest: +SKIP
(1024, 80, 5)
"""
import collections
import io
import math
import os
import pickle
import pickletools
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
# A state dict's data.pkl takes about 150 bytes a tensor: 4 MiB is far above any ECAPA-TDNN's.
MAX_PICKLE_BYTES = 4 << 20
# The storages and tensors of one file together; a 1024-channel ECAPA-TDNN holds about 90 MB.
MAX_TENSOR_BYTES = 1 << 30
# The opcodes torch.save's pickles (protocols 2 to 4) use for tensors and plain containers.
ALLOWED_OPCODES = {
    "PROTO", "FRAME", "STOP", "MARK", "POP", "POP_MARK", "MEMOIZE", "BINPUT", "LONG_BINPUT", "BINGET",
    "LONG_BINGET", "GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD", "BINPERSID", "NONE", "NEWTRUE", "NEWFALSE",
    "BININT", "BININT1", "BININT2", "LONG1", "BINFLOAT", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8",
    "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "EMPTY_LIST", "APPEND", "APPENDS", "LIST",
    "EMPTY_DICT", "DICT", "SETITEM", "SETITEMS",
}
_COMPRESSIONS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)


class TorchFileError(InputError):
    """A file that is not a readable PyTorch checkpoint, or one that asks for code to run."""


class StorageType:
    """Stands for a torch storage class (``torch.FloatStorage``, ...) in the unpickled object."""

    __slots__ = ("name", "dtype")

    def __init__(self, name):
        self.name = name
        self.dtype = STORAGE_TYPES[name]


class _Storage:
    """The values (1-D numpy array) of one storage of the archive being read."""

    __slots__ = ("values",)

    def __init__(self, values):
        self.values = values


def _overlaps(size, stride):
    """Whether two indices of a tensor of ``size`` at ``stride`` (in elements) reach one element."""
    reach = 0
    for step, extent in sorted((step, extent) for extent, step in zip(size, stride) if extent > 1):
        if step <= reach:
            return True
        reach += (extent - 1) * step
    return False


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    """An ``nn.Parameter``: its data."""
    return data


class _Size(tuple):
    """``torch.Size``: a tuple."""


def _refuse_opcode(name):
    def refuse(unpickler):
        raise TorchFileError(f"{unpickler.path}: data.pkl uses the pickle opcode {name}, which a saved "
                             "state dict does not; refused")
    return refuse


def _restricted_dispatch():
    """The pure-Python unpickler's opcode table with every opcode outside ALLOWED_OPCODES refused."""
    names = {op.code.encode("latin-1")[0]: op.name for op in pickletools.opcodes}
    return {code: function if names[code] in ALLOWED_OPCODES else _refuse_opcode(names[code])
            for code, function in pickle._Unpickler.dispatch.items()}


class _RestrictedUnpickler(pickle._Unpickler):  # the pure-Python unpickler: its opcodes can be restricted
    """Unpickles the ``data`` of data.pkl of ``archive`` (zipfile.ZipFile) whose entries start with ``prefix``."""

    dispatch = _restricted_dispatch()

    def __init__(self, data, archive, prefix, path, big_endian, max_bytes):
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix, self.path, self.big_endian = archive, prefix, path, big_endian
        self.max_bytes = self.bytes_left = max_bytes
        self.storages = {}
        self.globals = {
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2"): self._rebuild_tensor,
            ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
            ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
            ("torch", "Size"): _Size,
            **{("torch", name): StorageType(name) for name in STORAGE_TYPES},
        }

    def find_class(self, module, name):
        allowed = self.globals.get((module, name))
        if allowed is not None:
            return allowed
        if module == "torch" and name.endswith("Storage"):
            raise TorchFileError(f"{self.path}: holds a tensor of type torch.{name}, which this reader does not "
                                 f"read (it reads {', '.join(STORAGE_TYPES)})")
        raise TorchFileError(
            f"{self.path}: asks for the Python object {module}.{name}, which is not a tensor, an OrderedDict "
            "or a plain container; refused without running it (a checkpoint that names other objects can "
            "run code when loaded)")

    def load_build(self):
        """BUILD: accepted only on a dictionary of this pickle (an OrderedDict's ``_metadata``), and dropped."""
        state = self.stack.pop()
        target = self.stack[-1]
        if type(target) not in (dict, collections.OrderedDict) or not isinstance(state, dict):
            raise TorchFileError(f"{self.path}: data.pkl sets the attributes of a {type(target).__name__}; only "
                                 "a state dict's own attributes may be set, refused")
    dispatch[pickle.BUILD[0]] = load_build

    def _spend(self, nbytes, what):
        if nbytes > self.bytes_left:
            raise TorchFileError(f"{self.path}: {what} needs {nbytes} bytes, beyond the {self.max_bytes} bytes "
                                 "of storages and tensors a checkpoint may hold here")
        self.bytes_left -= nbytes

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], StorageType) and isinstance(pid[2], str)
                and type(pid[4]) is int and pid[4] >= 0):
            raise TorchFileError(f"{self.path}: an object of data.pkl refers to {_short(pid)}, not to a storage")
        _, storage_type, key, _, numel = pid
        if key not in self.storages:
            self.storages[key] = self._read_storage(storage_type, key, numel)
        return self.storages[key]

    def _read_storage(self, storage_type, key, numel):
        entry = f"{self.prefix}data/{key}"
        try:
            info = self.archive.getinfo(entry)
        except KeyError:
            raise TorchFileError(f"{self.path}: the storage {entry} is missing from the archive") from None
        stored = np.dtype(np.uint16 if storage_type.dtype == "bfloat16" else storage_type.dtype)
        needed = numel * stored.itemsize
        if info.file_size != needed:
            raise TorchFileError(f"{self.path}: the storage {entry} holds {info.file_size} bytes, {numel} elements "
                                 f"of {storage_type.name} need {needed}")
        self._spend(needed, f"the storage {entry}")
        values = np.frombuffer(_read_member(self.archive, info, self.path), stored.newbyteorder(
            ">" if self.big_endian else "<"))
        if storage_type.dtype == "bfloat16":
            return _Storage((values.astype(np.uint32) << 16).view(np.float32))
        return _Storage(values.astype(stored.newbyteorder("=")))

    def _rebuild_tensor(self, storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                        metadata=None):
        """The numpy array (a copy) of a tensor: ``size`` elements of ``storage`` at ``stride``."""
        if not isinstance(storage, _Storage):
            raise TorchFileError(f"{self.path}: a tensor is built on {_short(storage)}, not on a storage")
        numbers = (storage_offset, *size, *stride) if isinstance(size, tuple) and isinstance(stride, tuple) else ()
        if (not numbers or len(size) != len(stride) or any(type(number) is not int or number < 0
                                                             for number in numbers)):
            raise TorchFileError(f"{self.path}: a tensor has the size {_short(size)}, stride {_short(stride)} and "
                                 f"offset {_short(storage_offset)}; expected tuples of non-negative integers")
        values = storage.values
        if any(extent == 0 for extent in size):
            return np.zeros(size, values.dtype)
        last = storage_offset + sum((extent - 1) * step for extent, step in zip(size, stride))
        if last >= values.size:
            raise TorchFileError(f"{self.path}: a tensor of size {size} reaches element {last} of a storage of "
                                 f"{values.size}")
        if _overlaps(size, stride):
            raise TorchFileError(f"{self.path}: a tensor of size {size} has the stride {stride}, which makes "
                                 "several of its elements one element of its storage; torch.save does not "
                                 "write such tensors")
        self._spend(math.prod(size) * values.itemsize, f"a tensor of size {size}")
        view = np.lib.stride_tricks.as_strided(values[storage_offset:], shape=size,
                                               strides=[step * values.itemsize for step in stride])
        return np.array(view)


def _short(value, limit=60):
    """``repr(value)`` cut to ``limit`` characters, for messages about hostile content."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _read_member(archive, info, path):
    """The bytes of the member ``info``, refused if encrypted or compressed by another method than
    torch.save's (stored) or deflate."""
    if info.flag_bits & 0x1:
        raise TorchFileError(f"{path}: the member {info.filename} is encrypted; torch.save does not encrypt")
    if info.compress_type not in _COMPRESSIONS:
        raise TorchFileError(f"{path}: the member {info.filename} is compressed with zip method "
                             f"{info.compress_type}, which torch.save does not use")
    return archive.read(info)


def _archive_prefix(archive, path):
    """The folder (with '/') holding data.pkl in a torch.save archive."""
    names = archive.namelist()
    if any(name.endswith("constants.pkl") or "/code/" in name for name in names):
        raise TorchFileError(f"{path}: is a TorchScript archive (torch.jit.save), not a saved state dict; in "
                             "PyTorch, load it with torch.jit.load and save its state_dict() with torch.save")
    pickles = [name for name in names if name.endswith("data.pkl") and name.count("/") == 1]
    if not pickles:
        raise TorchFileError(f"{path}: a zip archive without the data.pkl of torch.save")
    return pickles[0][:-len("data.pkl")]


def _not_an_archive(path):
    """The TorchFileError for a file that is not a readable zip archive, saying what it looks like."""
    with open(path, "rb") as handle:
        start = handle.read(4)
    if not start:
        return TorchFileError(f"{path}: the file is empty (0 bytes)")
    if start.startswith(b"PK"):
        return TorchFileError(f"{path}: a damaged or incomplete zip archive (its directory at the end is missing "
                              "or broken: an interrupted download or copy?); fetch the file again")
    if start.startswith(b"\x80"):
        return TorchFileError(f"{path}: a PyTorch file in the legacy format (before PyTorch 1.6), which is not "
                              "read: load it and save it again with a recent PyTorch")
    return TorchFileError(f"{path}: not a PyTorch checkpoint (neither the zip archive of torch.save nor a "
                          "legacy-format pickle)")


def read_torch_file(path, max_bytes=MAX_TENSOR_BYTES):
    """The object saved in the PyTorch checkpoint ``path``, tensors as numpy arrays (module docstring).

    ``max_bytes`` bounds the bytes of its storages and tensors together. Raises TorchFileError
    naming the file for a missing, legacy-format, damaged or oversized file and for a pickle
    that asks for anything but tensors and plain containers.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise TorchFileError(f"{path}: file not found")
    if not zipfile.is_zipfile(path):
        raise _not_an_archive(path)
    try:
        with zipfile.ZipFile(path) as archive:
            prefix = _archive_prefix(archive, path)
            byteorder = f"{prefix}byteorder"
            big_endian = (byteorder in archive.namelist()
                          and _read_member(archive, archive.getinfo(byteorder), path).strip() == b"big")
            info = archive.getinfo(f"{prefix}data.pkl")
            if info.file_size > MAX_PICKLE_BYTES:
                raise TorchFileError(f"{path}: its data.pkl is {info.file_size} bytes, more than the "
                                     f"{MAX_PICKLE_BYTES} a state dict's needs")
            data = _read_member(archive, info, path)
            return _RestrictedUnpickler(data, archive, prefix, path, big_endian, max_bytes).load()
    except TorchFileError:
        raise
    except MemoryError:
        raise TorchFileError(f"{path}: reading it needs more memory than this machine has") from None
    except Exception as error:  # any other failure of an untrusted file's parsing means a damaged file
        raise TorchFileError(f"{path}: damaged PyTorch checkpoint ({type(error).__name__}: "
                             f"{_short(str(error), 200)})") from None


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


def write_torch_archive(path, tensors, archive_name="archive"):
    """Write ``tensors`` ({name: numpy array}, in order) to ``path`` as torch.save writes a state dict.

    Not atomic: :func:`write_torch_file` is, and callers writing several files at once give this
    their temporary paths. The arrays keep their type (float32, float64, float16, the integer
    types, bool).
    """
    arrays = [(name, np.array(value, dtype=np.asarray(value).dtype.newbyteorder("<"), order="C"))
              for name, value in tensors.items()]
    unknown = [name for name, array in arrays if array.dtype not in _STORAGE_NAMES]
    if unknown:
        raise TorchFileError(f"{path}: {unknown[0]} has the type {dict(arrays)[unknown[0]].dtype}, which has no "
                             "torch storage")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{archive_name}/data.pkl", _state_pickle(arrays))
        archive.writestr(f"{archive_name}/byteorder", "little")
        for key, (_, array) in enumerate(arrays):
            archive.writestr(f"{archive_name}/data/{key}", array.tobytes())
        archive.writestr(f"{archive_name}/version", "3\n")


def write_torch_file(path, tensors, archive_name="archive"):
    """Write ``tensors`` as :func:`write_torch_archive` does, atomically; returns ``path``."""
    with atomic_write(path, suffix=".pt") as temporary:
        write_torch_archive(temporary, tensors, archive_name)
    return os.fspath(path)
