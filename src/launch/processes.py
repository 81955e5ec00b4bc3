"""The launcher's child processes: one run in the foreground, or a supervised group of ranks.

- :func:`run_in_foreground` runs one command to its end in the launcher's process group
  (a Ctrl-C on the terminal reaches it directly), its output optionally copied to a log.
- :class:`RankGroup` runs one process per rank, each the leader of its own session so that
  it and everything it starts can be signalled together; the first rank that fails is
  named and the others are stopped, since they would wait for it forever.

A SIGTERM to the launcher raises :class:`src.interrupts.Interrupted`, a KeyboardInterrupt
(``run_main``), so the clean-up done for a Ctrl-C (stopping the children) runs for it too.

A child asked to stop gets SIGTERM and, if it is still running after ``grace_seconds``,
SIGKILL.
"""
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

GRACE_SECONDS = 10.0
POLL_SECONDS = 0.2
CHUNK_BYTES = 65536


def _shell_status(returncode):
    """A Popen return code as a shell reports it: 128 + N for a process killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def _ending(returncode):
    """How a process ended, in words: 'exit status 3' or 'killed by SIGKILL'."""
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exit status {returncode}"


def _stop(processes, own_groups, grace_seconds):
    """SIGTERM to each process (to its whole process group with ``own_groups``), SIGKILL after the grace."""
    def send(process, signum):
        try:
            if own_groups:
                os.killpg(process.pid, signum)
            else:
                process.send_signal(signum)
        except ProcessLookupError:
            pass

    running = [process for process in processes if process.poll() is None]
    for process in running:
        send(process, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    for process in running:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            send(process, signal.SIGKILL)
            process.wait()


def _copy_output(stream, log_path):
    """Copy the byte stream ``stream`` to the launcher's stdout and to the file ``log_path`` until it ends."""
    with open(log_path, "wb") as log:
        while True:
            chunk = stream.read1(CHUNK_BYTES)
            if not chunk:
                return
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            log.write(chunk)
            log.flush()


def run_in_foreground(command, env, cwd, log_path=None, grace_seconds=GRACE_SECONDS):
    """Run ``command`` (a list) in ``cwd`` with the environment ``env``; return its exit status.

    With ``log_path`` its stdout and stderr, merged, go both to the launcher's stdout and to
    that file (as ``2>&1 | tee``); without, the child writes to the launcher's own streams.
    The status is the shell's: 128 + N when signal N killed it. A KeyboardInterrupt while it
    runs stops it before going on.
    """
    teed = log_path is not None
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE if teed else None,
                               stderr=subprocess.STDOUT if teed else None)
    try:
        if teed:
            _copy_output(process.stdout, log_path)
        return _shell_status(process.wait())
    except KeyboardInterrupt:
        _stop([process], own_groups=False, grace_seconds=grace_seconds)
        raise
    finally:
        if teed:
            process.stdout.close()


@dataclass(frozen=True)
class Rank:
    """One started rank: its RANK_ID, the log its output goes to and its process."""
    rank_id: int
    log_path: str
    process: subprocess.Popen


class RankGroup:
    """The ranks this server runs, each in its own session, output to its own log.

    Used as a context manager: leaving the block by an exception (KeyboardInterrupt
    included) stops the ranks still running, with everything they started.
    """

    def __init__(self, grace_seconds=GRACE_SECONDS, poll_seconds=POLL_SECONDS):
        self.grace_seconds = grace_seconds
        self.poll_seconds = poll_seconds
        self.ranks = []

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        if exc_type is not None:
            self._stop_all()
        return False

    def _stop_all(self):
        _stop([rank.process for rank in self.ranks], own_groups=True, grace_seconds=self.grace_seconds)

    def start(self, rank_id, command, env, cwd, log_path):
        """Start rank ``rank_id`` as ``command`` in ``cwd`` with ``env``; stdout and stderr to ``log_path``."""
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.ranks.append(Rank(rank_id, log_path, process))

    def wait(self):
        """Wait for every rank; return the RANK_IDs of those that failed, in the order they ended.

        When the first rank fails, one ``error:`` line on stderr names it and its log, and
        the other ranks are stopped (they then count as failed too).
        """
        failed = []
        running = list(self.ranks)
        while running:
            for rank in [rank for rank in running if rank.process.poll() is not None]:
                running.remove(rank)
                if rank.process.returncode == 0:
                    continue
                if not failed:
                    print(f"error: rank {rank.rank_id} failed ({_ending(rank.process.returncode)}), see "
                          f"{rank.log_path}; stopping the other ranks", file=sys.stderr, flush=True)
                failed.append(rank.rank_id)
            if failed:
                self._stop_all()
            elif running:
                time.sleep(self.poll_seconds)
        return failed
