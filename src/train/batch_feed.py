"""Training batches, with a watch over the waits for them: a stalled pipeline or a stop request while
the loop waits on it ends the run, instead of hanging it for ever.

The loop takes its batches in its own thread (MindSpore's pipeline crashes the process later
when an iterator was read from another thread). While it waits inside the pipeline, a signal's
Python handler cannot run, so a watch thread (:class:`BatchFeed`) follows the wait: through the
signal wakeup file descriptor it sees a SIGTERM or SIGINT arrive, and by the clock it sees a
wait pass ``data_timeout`` seconds. A wait that outlasts a signal by :data:`SIGNAL_GRACE_SECONDS`,
or the timeout, calls the run's ``leave`` with what happened; the run saves its position, prints
its message and ends the process at once (src/cli.py ``exit_now``): MindSpore's exit handlers
would wait for the stuck worker for ever, and killing the worker crashes the reading thread. A
detached helper kills the worker processes once the run's process has gone
(:meth:`BatchFeed.end_workers_after_exit`). A run stopped between two batches exits normally,
after resuming stopped workers (:meth:`BatchFeed.release_workers`), which those handlers wait for.

>>> feed = BatchFeed(training_batches(dataset), timeout=300, leave=stop_the_run)   # doctest: +SKIP
>>> batch = feed.next()        # None at the end of the pipeline
"""
import os
import select
import signal
import subprocess
import threading
import time

from src.errors import InputError
from src.interrupts import HANDLED_SIGNALS

POLL_SECONDS = 0.2
SIGNAL_GRACE_SECONDS = 1.0  # a healthy pipeline hands over its batch well within this
STATES = {"T": "stopped (SIGSTOP or a debugger)", "t": "stopped by a debugger", "D": "waiting on a disk or "
          "network file system", "Z": "dead", "R": "running", "S": "sleeping"}


class DataStallError(InputError):
    """A data pipeline that delivered no batch for ``data_timeout`` seconds."""


class DataWorkerDiedError(InputError):
    """A data worker process that ended during training (MindSpore then stops the run with SIGTERM)."""


def child_processes(pid=None):
    """Process ids of the children of process ``pid`` (default: this one), from /proc."""
    pid = os.getpid() if pid is None else pid
    children = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                children += [int(child) for child in handle.read().split()]
    except OSError:
        return []
    return children


def process_state(pid):
    """The one-letter state of process ``pid`` ('R', 'S', 'T', 'Z', ...), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


class BatchFeed:
    """Batches of ``batches`` (an iterator over the pipeline), their waits watched (module docstring).

    ``timeout``: seconds one wait may last (0: no limit). ``leave(signum)`` is called from the watch
    thread when a wait outlasts a signal (its number) or the timeout (None); it must end the process.
    """

    def __init__(self, batches, timeout, leave):
        self.timeout = timeout
        self.leave = leave
        self.workers = []
        self.waited = 0.0  # seconds next() has waited for batches
        self.waiting_since = None
        self._batches = iter(batches)
        self._wakeup_read, wakeup_write = os.pipe()
        os.set_blocking(wakeup_write, False)
        self._wakeup_write = wakeup_write
        self._previous_wakeup = signal.set_wakeup_fd(wakeup_write)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="batch-watch", daemon=True)
        self._thread.start()

    def next(self):
        """The next (features, labels) batch, or None at the end of the pipeline."""
        self.waiting_since = time.monotonic()
        try:
            batch = next(self._batches, None)
        finally:
            self.waited += time.monotonic() - self.waiting_since
            self.waiting_since = None
        if batch is not None and not self.workers:
            self.workers = child_processes()  # MindSpore's worker processes, started by now
        return batch

    def _signal_received(self):
        """The number of a stop signal (SIGTERM, SIGINT) written to the wakeup descriptor since the last
        call, or None; waits up to POLL_SECONDS for one."""
        readable, _, _ = select.select([self._wakeup_read], [], [], POLL_SECONDS)
        if not readable:
            return None
        stops = [signum for signum in os.read(self._wakeup_read, 64) if signum in HANDLED_SIGNALS]
        return stops[-1] if stops else None

    def _watch(self):
        # A signal received during a step is acted on by the loop after it, unless the loop then
        # waits on a stuck pipeline: so it is kept, and counts once a wait has lasted the grace.
        signum = None
        while not self._closed.is_set():
            signum = self._signal_received() or signum
            waiting_since, now = self.waiting_since, time.monotonic()
            if waiting_since is None:
                continue
            if signum is not None and now - waiting_since > SIGNAL_GRACE_SECONDS:
                self.leave(signum)
                return
            if self.timeout and now - waiting_since > self.timeout:
                self.leave(None)
                return

    def close(self):
        """Stop watching and give the signal wakeup descriptor back."""
        self._closed.set()
        self._thread.join()
        signal.set_wakeup_fd(self._previous_wakeup)
        os.close(self._wakeup_read)
        os.close(self._wakeup_write)

    def describe_workers(self):
        """The state of each data worker process, or what threads mean, as text."""
        if not self.workers:
            return ("its worker threads deliver nothing (worker_processes false): an audio read that hangs, e.g. "
                    "on a network file system?")
        states = [(pid, process_state(pid)) for pid in self.workers]
        return "its worker processes are " + ", ".join(
            f"{pid} {STATES.get(state, state) if state else 'gone'}" for pid, state in states)

    def dead_workers(self):
        """The data worker processes that have ended (gone or dead)."""
        return [pid for pid in self.workers if process_state(pid) in (None, "Z", "X")]

    def end_workers_after_exit(self):
        """Have the worker processes killed once this process has ended (a detached helper waits for it):
        stuck or stopped, they would stay, and resumed they print MindSpore's tracebacks into the run's log."""
        if not self.workers:
            return
        pid = os.getpid()
        wait = f"while [ -e /proc/{pid} ] && ! grep -q ') Z ' /proc/{pid}/stat 2>/dev/null; do sleep 0.1; done"
        subprocess.Popen(["sh", "-c", f"{wait}; kill -9 {' '.join(map(str, self.workers))} 2>/dev/null"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)

    def release_workers(self):
        """Resume stopped worker processes, so that MindSpore's exit handlers, which wait for them, can end
        them (a run stopped by a signal between two batches exits normally)."""
        for pid in self.workers:
            if process_state(pid) in ("T", "t"):
                try:
                    os.kill(pid, signal.SIGCONT)
                except OSError:
                    pass
