"""One training run per checkpoint folder, from its first step to its end.

:func:`claim_folder` writes ``<folder>/run.lock`` (host, process id, start time) for as long
as the run lasts and removes it at the end, however the run ends. A second run started on
the same folder meanwhile is refused with one line naming the owner, even before the first
run has saved anything. A lock whose process is gone (a run killed with SIGKILL, a crashed
machine restarted) is taken over with a warning when it names this host; a lock of another
host cannot be checked from here, so the message says how to remove it. Only rank 0 of a
data-parallel run claims the folder; the other ranks write nothing into it.
"""
import contextlib
import logging
import os
import socket
import time

from src.fileio import OutputError, check_writable_folder

LOGGER = logging.getLogger(__name__)

LOCK_NAME = "run.lock"


class FolderInUseError(OutputError):
    """A checkpoint folder that another running training holds."""


def _owner_text():
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    return f"host {socket.gethostname()} pid {os.getpid()} started {started}\n"


def _parse_owner(text):
    """(host, pid, started) of a lock's text, or None when it is not one."""
    words = text.split()
    if len(words) < 4 or words[0] != "host" or words[2] != "pid" or not words[3].isdigit():
        return None
    return words[1], int(words[3]), " ".join(words[5:])


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _create(path, text):
    """Create the lock file with ``text``; False when it exists already."""
    try:
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(text)
    return True


def _read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _take(folder, setting):
    """Write this process's lock into ``folder``, taking over a stale one; return its text."""
    path = os.path.join(folder, LOCK_NAME)
    text = _owner_text()
    for _ in range(3):  # another process may take a stale lock between our read and create
        if _create(path, text):
            return text
        held = _read(path)
        if held is None:
            continue
        owner = _parse_owner(held)
        if owner is None:
            raise FolderInUseError(f"{setting}: {path} is not a lock this project wrote ({held[:60]!r}); "
                                   "delete it if no training uses the folder")
        host, pid, started = owner
        if host != socket.gethostname():
            raise FolderInUseError(f"{setting}: {folder} is in use by the training of pid {pid} on host {host} "
                                   f"(started {started}); if that run has ended, delete {path}")
        if pid != os.getpid() and _process_alive(pid):
            raise FolderInUseError(f"{setting}: {folder} is in use by the training of pid {pid} on this host "
                                   f"(started {started}); wait for it, stop it, or use another {setting}")
        LOGGER.warning("%s: took over the lock of pid %d (started %s), which is no longer running", path, pid,
                       started)
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
    raise FolderInUseError(f"{setting}: could not take {path}; another run is starting in {folder}")


@contextlib.contextmanager
def claim_folder(folder, setting="ckpt_save_dir"):
    """Hold ``folder`` (created if needed) for the training run inside the block.

    Raises :class:`FolderInUseError` (one line naming the owner) when another live run holds
    it, OutputError when it cannot be written.
    """
    check_writable_folder(folder, setting)
    text = _take(folder, setting)
    path = os.path.join(folder, LOCK_NAME)
    try:
        yield path
    finally:
        if _read(path) == text:
            os.remove(path)


def release_folder(folder):
    """Remove ``folder``'s lock if this process holds it, for a run that ends at once without leaving the
    block of :func:`claim_folder` (a stuck data pipeline, src/train/batch_feed.py)."""
    path = os.path.join(folder, LOCK_NAME)
    owner = _parse_owner(_read(path) or "")
    if owner is not None and owner[:2] == (socket.gethostname(), os.getpid()):
        os.remove(path)
