"""The scalars a real TensorBoard server shows, read over HTTP from 127.0.0.1 (for the tests)."""
import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return json.loads(response.read())


def tensorboard_scalars(runs, tags, logdir=None, seconds=90):
    """{run: {tag: [(step, value), ...]}} as TensorBoard serves them.

    ``runs``: {name: event folder}, or with ``logdir`` the names of runs TensorBoard finds below
    it (their folders relative to it, as ``tensorboard --logdir`` names them). Starts
    ``tensorboard`` (the package's own server, pure-Python loading) on a free port of
    127.0.0.1, waits until every run shows every tag of ``tags``, reads them and stops it.
    """
    port = _free_port()
    source = ["--logdir", str(logdir)] if logdir else [
        "--logdir_spec", ",".join(f"{name}:{folder}" for name, folder in runs.items())]
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", *source, "--host", "127.0.0.1",
                               "--port", str(port), "--load_fast", "false", "--reload_interval", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + seconds
        while True:
            assert server.poll() is None, server.stderr.read()[-2000:]
            try:
                shown = _get(port, "/data/plugin/scalars/tags")
                # A folder holding event files itself is the run '<name>/.'.
                keys = {run: next((key for key in shown if key in (run, f"{run}/.")), None) for run in runs}
                if all(keys[run] and set(tags) <= set(shown[keys[run]]) for run in runs):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"TensorBoard showed no {tags} for {list(runs)} in {seconds} s"
            time.sleep(0.5)
        return {run: {tag: [(step, value) for _, step, value in _get(
                    port, "/data/plugin/scalars/scalars?" + urllib.parse.urlencode({"run": keys[run], "tag": tag}))]
                      for tag in tags} for run in runs}
    finally:
        server.terminate()
        server.wait(timeout=30)
