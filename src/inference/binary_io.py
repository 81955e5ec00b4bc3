"""Raw float32 ``.bin`` files: the exchange format of the fixed-length inference path.

A ``.bin`` file is a bare sequence of little-endian float32 values with no header, as
``numpy.ndarray.tofile`` writes it and as ascend310_infer/ reads and writes it: a feature
file holds 1 * length * 80 values (C order of a (1, length, 80) array), an embedding file
holds emb_size values. Since there is no header, the size is the only check available and
every reader checks it.
"""
import os

import numpy as np

from src.errors import InputError
from src.fileio import atomic_write

FLOAT_BYTES = 4
BIN_SUFFIX = ".bin"


class BinFileError(InputError):
    """A .bin file or folder that is missing, or a file holding another number of values."""


def list_bin_files(folder):
    """Paths of the regular ``*.bin`` files directly inside ``folder``, sorted by file name.

    The order is the one ascend310_infer/ uses (byte order of the names). Raises
    BinFileError when the folder is missing or holds no .bin file.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise BinFileError(f"input folder {folder} does not exist or is not a folder")
    names = sorted(name for name in os.listdir(folder)
                   if name.endswith(BIN_SUFFIX) and os.path.isfile(os.path.join(folder, name)))
    if not names:
        raise BinFileError(f"input folder {folder} holds no {BIN_SUFFIX} file")
    return [os.path.join(folder, name) for name in names]


def check_float_file(path, count, what="file"):
    """Raise BinFileError naming ``path`` unless it exists and holds exactly ``count`` float32 values.

    ``what`` describes the file in the not-found message (e.g. "result file").
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise BinFileError(f"{path}: {what} not found")
    size = os.path.getsize(path)
    if size != count * FLOAT_BYTES:
        raise BinFileError(f"{path}: expected {count} float32 values ({count * FLOAT_BYTES} bytes) "
                           f"but the file has {size} bytes")


def read_float_file(path, count, what="file"):
    """The ``count`` float32 values of ``path`` as a (count,) array, after :func:`check_float_file`."""
    check_float_file(path, count, what)
    return np.fromfile(path, dtype="<f4", count=count).astype(np.float32, copy=False)


def write_float_file(path, values):
    """Write ``values`` (any shape, converted to float32, C order) to ``path`` atomically.

    The bytes go to a temporary file in the same folder, which is then renamed, so no
    reader ever sees a partly written file.
    """
    data = np.ascontiguousarray(values, dtype="<f4")
    with atomic_write(path) as temporary:
        data.tofile(temporary)
