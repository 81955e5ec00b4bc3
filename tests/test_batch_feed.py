"""The watch over the training loop's waits for batches (src/train/batch_feed.py), on plain iterators."""
import os
import signal
import threading
import time

from src.train.batch_feed import SIGNAL_GRACE_SECONDS, BatchFeed


def _blocking_batches(released, reader_threads):
    """One batch, then a wait that lasts until ``released`` is set (a stuck pipeline), then the end."""
    reader_threads.append(threading.current_thread())
    yield "first"
    reader_threads.append(threading.current_thread())
    released.wait(30)


def _feed(timeout):
    released, reader_threads, calls = threading.Event(), [], []

    def leave(signum):  # a run would save its position and end the process here
        calls.append((signum, time.monotonic()))
        released.set()

    return BatchFeed(_blocking_batches(released, reader_threads), timeout, leave), reader_threads, calls


def test_batches_are_read_in_the_callers_thread_and_a_stalled_wait_calls_leave_after_the_timeout():
    feed, reader_threads, calls = _feed(timeout=0.6)
    try:
        assert feed.next() == "first"
        started = time.monotonic()
        assert feed.next() is None  # released by leave, then the end of the batches
        assert len(calls) == 1 and calls[0][0] is None
        assert 0.6 <= calls[0][1] - started <= 2.0
        assert reader_threads == [threading.main_thread()] * 2  # MindSpore's iterators must not change thread
        assert feed.waited >= 0.6
    finally:
        feed.close()


def test_a_stop_signal_during_a_stuck_wait_calls_leave_with_it_after_the_grace():
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)  # the run's handler; writes the wakeup
    feed, _, calls = _feed(timeout=0)
    try:
        assert feed.next() == "first"
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
        timer.start()
        started = time.monotonic()
        assert feed.next() is None
        assert [signum for signum, _ in calls] == [signal.SIGTERM]
        assert SIGNAL_GRACE_SECONDS <= calls[0][1] - started <= SIGNAL_GRACE_SECONDS + 1.5
    finally:
        feed.close()
        signal.signal(signal.SIGTERM, previous)


def test_without_a_stall_or_a_signal_leave_is_never_called_and_close_gives_the_wakeup_back():
    before = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(before)
    calls = []
    feed = BatchFeed(iter(["a", "b"]), 0.5, calls.append)
    assert [feed.next(), feed.next(), feed.next()] == ["a", "b", None]
    time.sleep(0.8)
    feed.close()
    assert calls == [] and signal.set_wakeup_fd(before) == before
