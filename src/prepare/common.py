"""Pieces shared by the dataset preparation steps.

- :class:`PrepareError` for input that preparation cannot work with; its message
  is one line naming the path and what is wrong, fit to print to a user as is.
- :func:`check_utterance_layout` checks that the relative paths
  :func:`src.fileio.list_files` found follow ``<speaker>/<video>/<n>.<ext>``.
- :func:`run_parallel` runs a function over many items on worker threads with a
  progress bar. Threads suffice: the work is either an ffmpeg subprocess or file
  I/O in libsndfile, both of which release the interpreter lock.
"""
import os
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
