"""Pieces shared by the dataset preparation steps.

- :class:`PrepareError` for input that preparation cannot work with; its message
  is one line naming the path and what is wrong, fit to print to a user as is.
- :func:`find_files` lists a folder tree as sorted, '/'-separated relative paths,
  :func:`check_utterance_layout` checks they follow ``<speaker>/<video>/<n>.<ext>``.
- :func:`write_lines` writes a text list atomically.
- :func:`run_parallel` runs a function over many items on worker threads with a
  progress bar. Threads suffice: the work is either an ffmpeg subprocess or file
  I/O in libsndfile, both of which release the interpreter lock.
"""
import os
import tempfile
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

from tqdm import tqdm

from src.errors import InputError

WAV_SUFFIX = ".wav"
UTTERANCE_DEPTH = 3  # <speaker>/<video>/<n>.<ext>


class PrepareError(InputError):
    """Input that a preparation step cannot use (missing folder, wrong layout, bad option)."""


@dataclass(frozen=True)
class Failure:
    """One input file that a step could not process, and why (one line)."""
    path: str
    reason: str


def require_folder(path, what):
    """Raise :class:`PrepareError` unless ``path`` is a folder; ``what`` names its role."""
    if not os.path.isdir(path):
        raise PrepareError(f"{path}: {what} folder not found")


def require_jobs(jobs):
    """Raise :class:`PrepareError` unless ``jobs`` is a positive worker count."""
    if jobs < 1:
        raise PrepareError(f"--jobs must be at least 1, got {jobs}")


def _visible_files(root):
    """Yield ``(relative folder, name)`` of the files under ``root``, top-down.

    Symbolic links to folders are followed. Names starting with '.' are skipped:
    they are hidden files such as the '._name' copies some archivers add, and the
    temporary files this package writes while a file is being produced.
    """
    for folder, subfolders, names in os.walk(root, followlinks=True):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        relative_folder = os.path.relpath(folder, root)
        for name in names:
            if not name.startswith("."):
                yield relative_folder, name


def find_files(root, suffix):
    """Sorted relative paths (with /) of the visible files under ``root`` ending in ``suffix``."""
    found = []
    for relative_folder, name in _visible_files(root):
        if name.endswith(suffix):
            relative = name if relative_folder == "." else os.path.join(relative_folder, name)
            found.append(relative.replace(os.sep, "/"))
    return sorted(found)


def contains_files(root, suffix):
    """True when some visible file under ``root`` ends in ``suffix`` (stops at the first one)."""
    return any(name.endswith(suffix) for _, name in _visible_files(root))


def check_utterance_layout(root, relative_paths, suffix):
    """Raise :class:`PrepareError` unless every path is ``<speaker>/<video>/<n><suffix>``.

    The usual cause of a mismatch is pointing at a parent or child of the folder
    that holds the speaker folders; the message says so and names the first offender.
    """
    for relative in relative_paths:
        if relative.count("/") != UTTERANCE_DEPTH - 1:
            raise PrepareError(
                f"{root}: expected files laid out as <speaker>/<video>/<n>{suffix}, found "
                f"{relative!r}; give the folder that directly holds the speaker folders")


def hidden_temporary(path):
    """A temporary name beside ``path``, hidden from :func:`find_files` (starts with '.')."""
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.part")


def write_lines(path, lines):
    """Write ``lines`` (strings without newlines) to ``path``, one a line, atomically."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".", suffix=".part", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.writelines(line + "\n" for line in lines)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def run_parallel(function, items, jobs, description, progress=None):
    """Yield ``(item, function(item))`` for every item, in completion order.

    ``jobs`` worker threads run at once, and at most ``2 * jobs`` items are queued,
    so memory stays flat for a million files. ``progress`` shows a tqdm bar when
    True, hides it when False, and when None shows it only if stderr is a
    terminal. An exception raised by ``function`` propagates to the caller.
    """
    items = list(items)
    disable = None if progress is None else not progress
    bar = tqdm(total=len(items), desc=description, unit="file", disable=disable)
    with bar, ThreadPoolExecutor(max_workers=jobs) as pool:
        running = {}
        for item in items:
            running[pool.submit(function, item)] = item
            if len(running) >= 2 * jobs:
                yield from _collect(running, bar, FIRST_COMPLETED)
        yield from _collect(running, bar, ALL_COMPLETED)


def _collect(running, bar, return_when):
    """Wait for futures of ``running`` (future -> item), remove the finished ones and
    yield their ``(item, result)``, ticking ``bar`` once for each."""
    finished, _ = wait(running, return_when=return_when)
    for future in finished:
        bar.update(1)
        yield running.pop(future), future.result()
