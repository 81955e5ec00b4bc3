"""Stopping on SIGTERM or SIGINT with a clear line and the shell's status, never as a success.

Schedulers (Slurm, Kubernetes, ModelArts) send SIGTERM some seconds before they kill a job,
and Ctrl-C sends SIGINT. The programs handle both themselves:

- :func:`interrupt_on_signals`: within the block, either signal raises :class:`Interrupted`
  where the program is, so ``finally`` clauses and atomic writers clean up (evaluation,
  the launcher, the recipe).
- :class:`StopRequests`: within the block, the first signal is only recorded; the training
  loop asks :attr:`StopRequests.signal_name` after each step, saves its position and then
  raises :class:`Interrupted`. A further signal more than :data:`REPEAT_SECONDS` later raises
  at once (a signal passed on by a launcher that got the first one too is no reason to).
  MindSpore installs handlers of its own when a data pipeline starts and while a graph runs
  (one turns SIGINT into a SIGTERM to the process, so a Ctrl-C during a training step is
  reported as SIGTERM, status 143); :meth:`StopRequests.reclaim` puts the run's handlers back
  after each step.

:func:`src.cli.run_main` prints the message of an :class:`Interrupted` and exits with
128 + the signal number (143 for SIGTERM, 130 for SIGINT).
"""
import contextlib
import signal
import threading
import time

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# A signal this soon after the first is the same request (a launcher passing it on).
REPEAT_SECONDS = 2.0


class Interrupted(KeyboardInterrupt):
    """A run stopped by signal ``signum``; ``str()`` is the line to print."""

    def __init__(self, signum, message=None):
        self.signum = signum
        super().__init__(message or f"interrupted by {signal_name(signum)}")

    @property
    def status(self):
        """The exit status a shell reports for this signal: 128 + its number."""
        return 128 + self.signum


def signal_name(signum):
    """'SIGTERM' for signal.SIGTERM, and so on."""
    return signal.Signals(signum).name


@contextlib.contextmanager
def _handlers(handler):
    """Install ``handler`` for HANDLED_SIGNALS within the block (main thread only; elsewhere nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum in HANDLED_SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextlib.contextmanager
def interrupt_on_signals():
    """Within the block, SIGTERM and SIGINT raise :class:`Interrupted` at once."""
    def interrupt(signum, frame):
        raise Interrupted(signum)

    with _handlers(interrupt):
        yield


class StopRequests:
    """A context manager that turns the first SIGTERM or SIGINT into a request to stop.

    >>> with StopRequests() as stop:                     # doctest: +SKIP
    ...     for batch in batches:
    ...         train(batch)
    ...         if stop.signal_name:
    ...             save(); raise stop.interruption("after step 12")
    """

    def __init__(self):
        self.signum = None
        self._received = None
        self._context = None

    @property
    def signal_name(self):
        """The name of the signal received ('SIGTERM'), or None while none was."""
        return None if self.signum is None else signal_name(self.signum)

    def interruption(self, message):
        """The :class:`Interrupted` to raise: 'interrupted by SIGTERM <message>'."""
        return Interrupted(self.signum, f"interrupted by {self.signal_name} {message}")

    def _request(self, signum, frame):
        if self.signum is None:
            self.signum, self._received = signum, time.monotonic()
        elif time.monotonic() - self._received > REPEAT_SECONDS:
            raise Interrupted(signum, f"interrupted again by {signal_name(signum)}; stopped at once")

    def __enter__(self):
        self._context = _handlers(self._request)
        self._context.__enter__()
        return self

    def reclaim(self):
        """Put this object's handlers back after MindSpore installed its own (see the module docstring)."""
        if threading.current_thread() is threading.main_thread():
            for signum in HANDLED_SIGNALS:
                signal.signal(signum, self._request)

    def __exit__(self, *exc_info):
        return self._context.__exit__(*exc_info)
