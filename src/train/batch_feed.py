"""Training batches handed over by a reading thread, so that the loop waits for them in short slices.

A stop request (SIGTERM, SIGINT) is then acted on within a second whatever the data pipeline is
doing, and a pipeline that delivers nothing for ``data_timeout`` seconds stops the run with an
error naming the state of its worker processes, instead of hanging for ever.

MindSpore's pipeline, blocked on a stopped or hung worker, cannot be torn down from inside the
process: its exit handlers wait for that worker, and killing the worker crashes the thread
reading from it. So a run that ends while the feed is stuck in the pipeline
(:attr:`BatchFeed.stuck`) leaves at once through ``exit_at_once`` (src/cli.py), after its
position is saved and its message printed, and a detached helper kills the worker processes
once it has gone (:meth:`BatchFeed.end_workers_after_exit`). A run ending otherwise resumes
stopped workers, so that MindSpore's exit handlers can end them.

>>> feed = BatchFeed(training_batches(dataset), timeout=300)        # doctest: +SKIP
>>> batch = feed.next(stop)        # None at the end of the pipeline or on a stop request
"""
import os
import queue
import signal
import subprocess
import threading
import time

from src.errors import InputError

POLL_SECONDS = 0.2
_END = object()
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
    """Batches of ``batches`` (an iterator over the pipeline) read ahead by a daemon thread.

    ``timeout``: seconds :meth:`next` waits for one batch before raising DataStallError (0: no limit).
    """

    def __init__(self, batches, timeout):
        self.timeout = timeout
        self.workers = []
        self.waited = 0.0  # seconds next() has waited for batches
        self._queue = queue.Queue(maxsize=2)
        self._in_pipeline = False
        self._thread = threading.Thread(target=self._read, args=(iter(batches),), name="batch-feed", daemon=True)
        self._thread.start()

    def _read(self, batches):
        while True:
            self._in_pipeline = True
            try:
                batch = next(batches, _END)
            except Exception as error:  # raised in the training loop by next()
                batch = error
            self._in_pipeline = False
            self._queue.put(batch)
            if batch is _END or isinstance(batch, Exception):
                return

    @property
    def stuck(self):
        """Whether the reading thread waits inside the pipeline (a normal exit could then hang)."""
        return self._thread.is_alive() and self._in_pipeline

    def next(self, stop=None):
        """The next (features, labels) batch; None at the end of the pipeline or, with ``stop`` (a
        StopRequests), once it holds a signal. Raises what the pipeline raised, or DataStallError."""
        started = time.monotonic()
        try:
            return self._next(stop, started)
        finally:
            self.waited += time.monotonic() - started

    def _next(self, stop, started):
        while True:
            if stop is not None:
                if stop.signal_name:
                    return None
                stop.reclaim()  # MindSpore may have put its own handlers in meanwhile
            try:
                item = self._queue.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if self.timeout and time.monotonic() - started > self.timeout:
                    raise DataStallError(f"the data pipeline delivered no batch for {self.timeout} s "
                                         f"(data_timeout): {self.describe_workers()}") from None
                continue
            if item is _END:
                return None
            if isinstance(item, Exception):
                raise item
            if not self.workers:
                self.workers = child_processes()  # MindSpore's worker processes, started by now
            return item

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
        """Resume stopped worker processes, so that MindSpore's exit handlers can end them."""
        for pid in self.workers:
            if process_state(pid) in ("T", "t"):
                try:
                    os.kill(pid, signal.SIGCONT)
                except OSError:
                    pass
