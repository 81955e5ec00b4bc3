"""File-system helpers shared by every part of the project.

- :func:`atomic_write` is the one way the project writes a file: the content goes to a
  hidden temporary file in the target's folder, which is renamed onto the target only when
  it is complete, so a reader never sees a partial file and a crash never damages an older
  one. A full disk becomes a one-line :class:`DiskFullError` (the file-size limit of ``ulimit
  -f`` an :class:`OutputError`) and leaves no temporary file.
- :func:`remove_stale_temporaries` deletes what killed writers left behind.
- :func:`list_files` is the one directory scanner (sorted, hidden entries skipped).
- :func:`text_lines` is the one reader of the project's text lists (UTF-8, a byte-order
  mark accepted, a byte that is not UTF-8 named with its line).
- :func:`check_writable_folder` and :func:`check_writable_file` test an output location
  before any expensive work is done for it.
- :func:`file_fingerprint` is the SHA-256 that ties a record (model card, metrics) to a file.
"""
import contextlib
import errno
import functools
import hashlib
import os
import re
import shutil
import tempfile

from src.errors import InputError

TEMPORARY_SUFFIX = ".part"
# Names made by atomic_write: '.<target name>.<random>.part', optionally with a suffix.
_TEMPORARY_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{6,}\.part(\.[A-Za-z0-9]+)?$")


class OutputError(InputError):
    """An output location that cannot be created or written."""


class DiskFullError(OutputError):
    """A write that failed because its file system is full."""


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _free_megabytes(folder):
    try:
        return shutil.disk_usage(folder).free / 1e6
    except OSError:
        return float("nan")


@contextlib.contextmanager
def atomic_write(path, needed_bytes=None, suffix=""):
    """Yield a hidden temporary path beside ``path``; rename it to ``path`` when the block ends.

    The caller writes the complete file to the yielded path. If the block raises, the
    temporary file is removed and ``path`` is left as it was. Parent folders are created.
    The finished file gets the usual permissions (0666 minus the umask). When the disk is
    full, :class:`DiskFullError` names the file, the space it needs (``needed_bytes``,
    when given) and the space left. ``suffix`` ends the temporary name, for writers that
    insist on an extension (``.ckpt``, ``.npy``).

    >>> with atomic_write("scores.txt") as temporary:          # doctest: +SKIP
    ...     with open(temporary, "w") as handle:
    ...         handle.write("a b 0.5 1\\n")
    """
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    make_folder(folder)
    handle, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=TEMPORARY_SUFFIX + suffix, dir=folder)
    os.close(handle)
    try:
        os.chmod(temporary, 0o666 & ~_umask())
        yield temporary
        os.replace(temporary, path)
    except OSError as error:
        if error.errno == errno.EFBIG:
            raise OutputError(f"{path}: the file would pass the file-size limit of this process (ulimit -f); "
                              "the previous file, if any, is unchanged") from None
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        needs = f"it needs about {needed_bytes / 1e6:.1f} MB, " if needed_bytes else ""
        raise DiskFullError(f"{path}: no space left on the device of {folder} ({needs}"
                            f"{_free_megabytes(folder):.1f} MB are free); the previous file, if any, "
                            "is unchanged") from None
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_text(path, text):
    """Write the string ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_write(path) as temporary:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
    return path


def write_lines(path, lines):
    """Write ``lines`` (strings without newlines) to ``path``, one a line, atomically."""
    return write_text(path, "".join(line + "\n" for line in lines))


def is_temporary_name(name):
    """True for the file names :func:`atomic_write` gives its temporary files."""
    return bool(_TEMPORARY_NAME.match(name))


def remove_stale_temporaries(folder, of=None):
    """Delete the temporary files a killed :func:`atomic_write` left in ``folder`` (only those of the
    file named ``of``, when given); return their names."""
    if not os.path.isdir(folder):
        return []
    removed = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if is_temporary_name(name) and (of is None or name.startswith(f".{of}.")) and os.path.isfile(path):
            os.remove(path)
            removed.append(name)
    return removed


def make_folder(folder, setting=None):
    """Create ``folder`` (and its parents); an :class:`OutputError` names it when that fails.

    ``setting`` names the option the folder came from, for the message.
    """
    where = f"{setting}: " if setting else ""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise OutputError(f"{where}{folder} exists and is not a folder")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{where}cannot create the folder {folder} ({error.strerror})") from None
    return folder


def check_writable_folder(folder, setting=None):
    """Create ``folder`` if needed and check a file can be written in it; OutputError if not."""
    make_folder(folder, setting)
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        where = f"{setting}: " if setting else ""
        raise OutputError(f"{where}cannot write in the folder {folder} ({error.strerror})") from None
    return folder


def check_writable_file(path, setting=None):
    """Check that the file ``path`` can be written (its folder is made); OutputError if not."""
    where = f"{setting}: " if setting else ""
    if os.path.isdir(path):
        raise OutputError(f"{where}{path} is a folder, expected a file name")
    check_writable_folder(os.path.dirname(os.path.abspath(path)), setting)
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise OutputError(f"{where}the file {path} is not writable")
    return path


def file_fingerprint(path):
    """SHA-256 (hex) of the bytes of the file ``path``: names one exact version of a model file.

    Remembered per path, inode, size and change time (a file rewritten in place or replaced by
    :func:`atomic_write` changes one of them), so that the model an evaluation fingerprints for
    its cache, its calibration and its metrics is read once.
    """
    status = os.stat(path)
    return _sha256(os.path.abspath(path), status.st_ino, status.st_size, status.st_ctime_ns)


@functools.lru_cache(maxsize=16)
def _sha256(path, inode, size, ctime_ns):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def list_files(root, suffix):
    """Sorted '/'-separated paths, relative to ``root``, of the files under it ending in ``suffix``.

    The suffix is compared without regard to case (``.wav`` finds ``A.WAV``). Folders
    are descended at any depth, following symbolic links; names starting with '.' (hidden
    files and folders, archiver metadata, unfinished writes) are skipped.
    """
    suffix = suffix.lower()
    found = []
    for folder, subfolders, names in os.walk(root, followlinks=True):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        relative_folder = os.path.relpath(folder, root)
        for name in names:
            if not name.startswith(".") and name.lower().endswith(suffix):
                relative = name if relative_folder == "." else os.path.join(relative_folder, name)
                found.append(relative.replace(os.sep, "/"))
    return sorted(found)


class TextEncodingError(InputError):
    """A list file that is not UTF-8 text."""


UTF8_BOM = "\ufeff"


def text_lines(path):
    """Yield ``(line_number, line)`` (from 1, newline kept) of the UTF-8 text file ``path``.

    A byte-order mark at the start (files saved on Windows) is dropped. A line that is not
    UTF-8 raises :class:`TextEncodingError` naming the file, the line, the byte and its column.
    """
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise TextEncodingError(
                    f"{path}:{number}: not UTF-8 text (byte 0x{raw[error.start]:02x} at column {error.start + 1}); "
                    "is it a text list? Save it as UTF-8") from None
            if number == 1 and line.startswith(UTF8_BOM):
                line = line[len(UTF8_BOM):]
            yield number, line
