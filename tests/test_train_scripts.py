"""The training launchers in scripts/: argument checks, rank tables, what each launcher starts,
and the process supervision of src/launch.

A stand-in interpreter (PYTHON=<stub>) records the directory, arguments and launcher variables
of every training process it is asked to start, so the Ascend and GPU launchers are checked
without those devices. Two real tiny runs, started together to share the graph-compilation
wait, check run_standalone_train_cpu.sh and run_distribute_train_cpu.sh end to end; the
second is also the uninterrupted reference of the killed-rank run.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import two_machines
from fixtures import PLAIN_RECIPE_ARGS, REPO_ROOT, TINY_NETWORK_ARGS, write_tone_corpus
from src.launch import rank_table
from src.launch.processes import RankGroup, run_in_foreground
from src.train.batch_feed import process_state

SCRIPTS = os.path.join(REPO_ROOT, "scripts")
RANK_TABLE_SCRIPT = os.path.join(SCRIPTS, "rank_table.py")
LAUNCH = os.path.join(SCRIPTS, "launch.py")

STUB = """#!/bin/bash
# Stands in for the training interpreter: train.py and -m (msrun) calls are recorded, the rest
# (the launcher program scripts/launch.py itself) goes to the real interpreter.
case "$1" in
  train.py|eval.py|-m) ;;
  *) exec {python} "$@" ;;
esac
{{
  echo "cwd=$PWD"
  echo "args=$*"
  for name in RANK_TABLE_FILE RANK_SIZE RANK_ID DEVICE_ID MS_WORKER_NUM; do
    echo "$name=${{!name-unset}}"
  done
  echo "python=$(command -v python)"
  echo "python_runs=$(tail -n 1 "$(command -v python)")"
  echo "pid=$$"
}} > "$RECORD_DIR/.${{RANK_ID:-single}}.part"
# Renamed when complete: a rank stopped by the launcher leaves no half-written record.
mv "$RECORD_DIR/.${{RANK_ID:-single}}.part" "$RECORD_DIR/${{RANK_ID:-single}}.txt"
echo "output of rank ${{RANK_ID:-single}}"
if [ "${{RANK_ID:-single}}" = "${{FAIL_RANK:-none}}" ]; then
  exit 3
fi
sleep "${{STUB_SLEEP:-0}}"
"""


def _table(*servers, **fields):
    """A version 1.0 rank table; each server is (server_id, [(device_id, rank_id), ...])."""
    table = {"version": "1.0", "server_count": str(len(servers)), "status": "completed", "server_list": [
        {"server_id": server_id, "host_nic_ip": "reserve",
         "device": [{"device_id": str(device), "device_ip": f"192.168.{device}.{index + 1}", "rank_id": str(rank)}
                    for device, rank in devices]}
        for index, (server_id, devices) in enumerate(servers)]}
    table.update(fields)
    return table


TWO_SERVERS = _table(("10.0.0.1", [(0, 0), (1, 1)]), ("10.0.0.2", [(2, 3), (3, 2)]))


def _write_json(path, content):
    path.write_text(content if isinstance(content, str) else json.dumps(content, indent=1))
    return str(path)


@pytest.fixture
def stub(tmp_path):
    """(environment with PYTHON = the stand-in, folder of its records)."""
    records = tmp_path / "records"
    records.mkdir()
    script = tmp_path / "stub_python"
    script.write_text(STUB.format(python=sys.executable))
    script.chmod(0o755)
    return dict(os.environ, PYTHON=str(script), RECORD_DIR=str(records)), records


def _records(folder):
    """{name: {key: value}} of what the stand-in recorded, one entry per process."""
    result = {}
    for name in sorted(os.listdir(folder)):
        if name.startswith("."):
            continue
        lines = (folder / name).read_text().splitlines()
        result[name[:-len(".txt")]] = dict(line.split("=", 1) for line in lines)
    return result


def _launch(script, *arguments, cwd, env=None, timeout=60):
    return subprocess.run(["bash", os.path.join(SCRIPTS, script), *map(str, arguments)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


# ---- argument checks ----

@pytest.mark.parametrize("script,arguments,message", [
    ("run_standalone_train_ascend.sh", [], "DEVICE_ID is missing"),
    ("run_standalone_train_gpu.sh", ["gpu0"], "DEVICE_ID must be a non-negative integer, got 'gpu0'"),
    ("run_standalone_train_cpu.sh", ["-1", "--num_epochs=1"], "DEVICE_ID must be a non-negative integer, got '-1'"),
    ("run_distribute_train_ascend.sh", [], "RANK_TABLE_FILE is missing"),
    ("run_distribute_train_ascend.sh", ["missing.json"], "RANK_TABLE_FILE 'missing.json' is not a file"),
    ("run_distribute_train_gpu.sh", ["0"], "DEVICE_NUM must be an integer >= 1, got '0'"),
    ("run_distribute_train_gpu.sh", [], "DEVICE_NUM is missing"),
    ("run_distribute_train_cpu.sh", ["two"], "DEVICE_NUM must be an integer >= 1, got 'two'"),
    ("run_distribute_train_cpu.sh", ["1.5"], "DEVICE_NUM must be an integer >= 1, got '1.5'"),
])
def test_bad_arguments_print_usage_and_start_nothing(stub, tmp_path, script, arguments, message):
    env, records = stub
    result = _launch(script, *arguments, cwd=tmp_path, env=env)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"error: {message}"
    assert lines[1].startswith(f"usage: bash {script} ") and lines[1].endswith(" [--key=value ...]")
    assert os.listdir(records) == []
    assert not [name for name in os.listdir(tmp_path) if name.startswith("train_")]


@pytest.mark.parametrize("port", ["80a", "70000", "0"])
def test_bad_master_port_is_refused(stub, tmp_path, port):
    env, records = stub
    result = _launch("run_distribute_train_gpu.sh", 2, cwd=tmp_path, env=dict(env, MASTER_PORT=port))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"error: MASTER_PORT must be a port number, got '{port}'"]
    assert os.listdir(records) == []


@pytest.mark.parametrize("variables, message", [
    ({"LOCAL_WORKER_NUM": "3"}, "LOCAL_WORKER_NUM must be an integer from 1 to DEVICE_NUM (2), got '3'"),
    ({"LOCAL_WORKER_NUM": "1", "NODE_RANK": "1"}, "MASTER_PORT must be set when the workers run on several machines"),
    ({"LOCAL_WORKER_NUM": "1", "MASTER_PORT": "23456"}, "NODE_RANK must be set when the workers run on several"),
    ({"NODE_RANK": "x", "MASTER_PORT": "23456"}, "NODE_RANK must be a non-negative integer, got 'x'"),
])
def test_inconsistent_multi_machine_settings_are_refused(stub, tmp_path, variables, message):
    env, records = stub
    result = _launch("run_distribute_train_cpu.sh", 2, cwd=tmp_path, env=dict(env, **variables))
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(f"error: {message}"), result.stderr
    assert os.listdir(records) == []


def test_msrun_on_several_machines_passes_the_node_options(stub, tmp_path):
    env, records = stub
    variables = dict(MASTER_ADDR="10.1.2.3", MASTER_PORT="23456", NODE_RANK="1", LOCAL_WORKER_NUM="8")
    result = _launch("run_distribute_train_gpu.sh", 16, cwd=tmp_path, env=dict(env, **variables))
    assert result.returncode == 0, result.stderr
    assert _records(records)["single"]["args"].startswith(
        "-m mindspore.parallel.cluster.run --worker_num=16 --local_worker_num=8 --node_rank=1 "
        "--master_addr=10.1.2.3 --master_port=23456 ")


def _launch_train(*arguments, cwd, env):
    """scripts/launch.py run directly (not through a shell launcher)."""
    return subprocess.run([sys.executable, LAUNCH, *map(str, arguments)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_the_launch_program_run_directly_shows_its_own_usage(stub, tmp_path):
    env, records = stub
    result = _launch_train("msrun", "CPU", cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert result.stderr.splitlines()[:2] == ["error: DEVICE_NUM is missing",
                                              "usage: launch.py msrun CPU DEVICE_NUM [--key=value ...]"]
    result = _launch_train("msrun", "Ascend", "2", cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("error: argument target: invalid choice: 'Ascend'")
    assert len(result.stderr.splitlines()) == 1
    assert os.listdir(records) == []


def test_a_missing_interpreter_is_named_before_anything_is_made(tmp_path):
    missing = tmp_path / "nowhere" / "python"
    for arguments in (["standalone", "CPU", "0"], ["msrun", "CPU", "2"]):
        result = _launch_train(*arguments, cwd=tmp_path, env=dict(os.environ, PYTHON=str(missing)))
        assert result.returncode == 1
        assert result.stderr == (f"error: PYTHON '{missing}' not found; set PYTHON to the interpreter that "
                                 "has MindSpore\n")
    assert os.listdir(tmp_path) == []


# ---- rank tables ----

def test_rank_table_lists_this_servers_ranks_in_rank_order(tmp_path):
    path = _write_json(tmp_path / "hccl.json", TWO_SERVERS)
    servers = rank_table.read_rank_table(path)
    assert rank_table.rank_size(servers) == 4
    second = rank_table.local_server(servers, path, addresses={"127.0.0.1", "10.0.0.2"})
    assert second.server_id == "10.0.0.2"
    assert [(device.rank_id, device.device_id) for device in second.devices] == [(3, 2), (2, 3)]
    assert rank_table.local_server(servers, path, server_id="10.0.0.1").server_id == "10.0.0.1"

    listed = subprocess.run([sys.executable, RANK_TABLE_SCRIPT, path, "--server_id", "10.0.0.2"],
                            capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == "2 3\n3 2\n"
    size = subprocess.run([sys.executable, RANK_TABLE_SCRIPT, "--rank_size", path], capture_output=True,
                          text=True, timeout=30)
    assert size.stdout == "4\n"


def test_a_single_server_is_taken_whatever_its_id(tmp_path):
    path = _write_json(tmp_path / "hccl.json", _table(("server-a", [(5, 1), (4, 0)])))
    server = rank_table.local_server(rank_table.read_rank_table(path), path, addresses=set())
    assert [(device.rank_id, device.device_id) for device in server.devices] == [(1, 5), (0, 4)]


def test_this_server_must_be_identifiable_among_several(tmp_path):
    path = _write_json(tmp_path / "hccl.json", TWO_SERVERS)
    servers = rank_table.read_rank_table(path)
    with pytest.raises(rank_table.RankTableError, match=r"2 servers are listed \(10\.0\.0\.1, 10\.0\.0\.2\) and "
                       r"none has a server_id among this host's addresses \(127\.0\.0\.1\); set SERVER_ID"):
        rank_table.local_server(servers, path, addresses={"127.0.0.1"})
    with pytest.raises(rank_table.RankTableError, match=r"no server has server_id '10\.0\.0\.9'"):
        rank_table.local_server(servers, path, server_id="10.0.0.9")


def _with_device_field(key, value, device=1):
    table = _table(("10.0.0.1", [(0, 0), (1, 1)]))
    entry = table["server_list"][0]["device"][device]
    if value is None:
        del entry[key]
    else:
        entry[key] = value
    return table


@pytest.mark.parametrize("content,message", [
    ('{"version": "1.0",\n "server_list": [}', r"not valid JSON \(line 2 column 18: Expecting value\)"),
    ("[]", r"the rank table must be a JSON object"),
    ({"server_list": []}, r"the rank table\.version is missing"),
    (_table(("10.0.0.1", [(0, 0)]), version="1.2"), r"version '1\.2' is not supported \(expected '1\.0'"),
    (_table(("10.0.0.1", [(0, 0)]), status="initializing"), r"status is 'initializing', not 'completed'"),
    (_table(("10.0.0.1", [(0, 0)]), server_list=[]), r"server_list must be a non-empty list"),
    (_table(("10.0.0.1", [(0, 0)]), server_count="2"), r"server_count is 2 but server_list has 1 servers"),
    (_table(("10.0.0.1", [])), r"server_list\[0\]\.device must be a non-empty list"),
    (_with_device_field("rank_id", None), r"server_list\[0\]\.device\[1\]\.rank_id is missing"),
    (_with_device_field("device_id", None), r"server_list\[0\]\.device\[1\]\.device_id is missing"),
    (_with_device_field("device_ip", None), r"server_list\[0\]\.device\[1\]\.device_ip is missing"),
    (_with_device_field("rank_id", "one"), r"server_list\[0\]\.device\[1\]\.rank_id must be a non-negative "
                                           r"integer, got 'one'"),
    (_with_device_field("device_ip", "192.168.1"), r"server_list\[0\]\.device\[1\]\.device_ip must be an IP "
                                                   r"address, got '192\.168\.1'"),
    (_with_device_field("device_id", "0"), r"server_list\[0\]\.device\[1\]\.device_id 0 is listed twice"),
    (_table(("10.0.0.1", [(0, 0), (1, 0)])), r"server_list\[0\]\.device\[1\]\.rank_id 0 is already used by "
                                             r"server_list\[0\]\.device\[0\]\.rank_id"),
    (_table(("10.0.0.1", [(0, 0)]), ("10.0.0.2", [(0, 0)])), r"server_list\[1\]\.device\[0\]\.rank_id 0 is "
                                                             r"already used by server_list\[0\]\.device\[0\]"),
    (_table(("10.0.0.1", [(0, 0), (1, 2)])), r"rank_id values must be 0\.\.1 for 2 devices; 1 is missing"),
    (_table(("10.0.0.1", [(0, 0)]), ("10.0.0.1", [(1, 1)])), r"server_list\[1\]\.server_id '10\.0\.0\.1' is "
                                                             r"listed twice"),
])
def test_invalid_rank_tables_are_refused_naming_the_field(tmp_path, content, message):
    path = _write_json(tmp_path / "hccl.json", content)
    with pytest.raises(rank_table.RankTableError, match=f"^{re.escape(path)}: {message}"):
        rank_table.read_rank_table(path)


def test_rank_table_errors_end_the_script_with_one_line(tmp_path):
    path = _write_json(tmp_path / "hccl.json", _table(("10.0.0.1", [(0, 0), (1, 0)])))
    result = subprocess.run([sys.executable, RANK_TABLE_SCRIPT, path], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == f"error: {path}: server_list[0].device[1].rank_id 0 is already used by " \
                            "server_list[0].device[0].rank_id\n"


# ---- what the launchers start (stand-in interpreter) ----

@pytest.mark.parametrize("script,target", [("run_standalone_train_ascend.sh", "Ascend"),
                                           ("run_standalone_train_gpu.sh", "GPU"),
                                           ("run_standalone_train_cpu.sh", "CPU")])
def test_standalone_launcher_runs_train_py_from_the_repository_root(stub, tmp_path, script, target):
    env, records = stub
    env["RANK_SIZE"] = "8"  # left over from an earlier distributed run in the same shell
    result = _launch(script, 3, "--num_epochs=1", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    record = _records(records)["single"]
    assert record["cwd"] == REPO_ROOT
    assert record["args"] == f"train.py --device_target={target} --device_id=3 --num_epochs=1"
    assert record["RANK_SIZE"] == "unset"
    assert (tmp_path / "train_standalone" / "train.log").read_text() == "output of rank single\n"


@pytest.mark.parametrize("script,status,message", [
    ("run_standalone_train_cpu.sh", 3, None),
    ("run_distribute_train_cpu.sh", 1, "error: train.py failed; see {tmp_path}/train_parallel_logs/worker_<rank>.log"),
])
def test_a_failed_training_fails_the_launcher(stub, tmp_path, script, status, message):
    env, records = stub
    result = _launch(script, 1, cwd=tmp_path, env=dict(env, FAIL_RANK="single", MASTER_PORT="12345"))
    assert result.returncode == status
    assert "single" in _records(records)
    if message:
        assert result.stderr.splitlines()[-1] == message.format(tmp_path=tmp_path)


def test_rank_table_launcher_starts_one_process_per_local_device(stub, tmp_path):
    env, records = stub
    table = _write_json(tmp_path / "hccl_4p.json", TWO_SERVERS)
    # PYTHON relative to the calling folder must survive the launcher's move to the repository root.
    result = _launch("run_distribute_train_ascend.sh", "hccl_4p.json", "--num_epochs=1", cwd=tmp_path,
                     env=dict(env, SERVER_ID="10.0.0.2", PYTHON="./stub_python"))
    assert result.returncode == 0, result.stderr
    started = _records(records)
    assert sorted(started) == ["2", "3"]
    for rank, device in (("2", "3"), ("3", "2")):
        record = started[rank]
        assert (record["RANK_ID"], record["DEVICE_ID"], record["RANK_SIZE"]) == (rank, device, "4")
        assert record["RANK_TABLE_FILE"] == table
        assert record["cwd"] == REPO_ROOT
        assert record["args"] == "train.py --device_target=Ascend --num_epochs=1"
        assert (tmp_path / f"train_parallel{rank}" / "train.log").read_text() == f"output of rank {rank}\n"
    assert sorted(name for name in os.listdir(tmp_path) if name.startswith("train_")) == [
        "train_parallel2", "train_parallel3"]
    assert "all 2 ranks finished" in result.stdout


def test_a_failing_rank_stops_the_others_and_fails_the_launch(stub, tmp_path):
    env, records = stub
    _write_json(tmp_path / "hccl.json", _table(("10.0.0.1", [(0, 0), (1, 1), (2, 2)])))
    started = time.monotonic()
    result = _launch("run_distribute_train_ascend.sh", "hccl.json", cwd=tmp_path,
                     env=dict(env, FAIL_RANK="1", STUB_SLEEP="60"))
    assert result.returncode == 1
    assert time.monotonic() - started < 20
    assert result.stderr.splitlines()[0] == (f"error: rank 1 failed (exit status 3), see {tmp_path}/train_parallel1/"
                                             "train.log; stopping the other ranks")
    unfinished = re.fullmatch(r"error: ranks that did not finish: ([\d ]+) \(of 3 started here\)",
                              result.stderr.splitlines()[-1])
    assert unfinished and sorted(unfinished.group(1).split()) == ["0", "1", "2"]
    for record in _records(records).values():
        _wait_for(lambda: _gone(record["pid"]), 5, f"rank {record['RANK_ID']} to end")


def test_an_invalid_rank_table_starts_nothing(stub, tmp_path):
    env, records = stub
    path = _write_json(tmp_path / "hccl.json", _with_device_field("device_ip", None))
    result = _launch("run_distribute_train_ascend.sh", "hccl.json", cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"error: {path}: server_list[0].device[1].device_ip is missing"]
    assert os.listdir(records) == []


def test_an_unknown_server_id_starts_nothing(stub, tmp_path):
    env, records = stub
    path = _write_json(tmp_path / "hccl.json", TWO_SERVERS)
    result = _launch("run_distribute_train_ascend.sh", "hccl.json", cwd=tmp_path, env=dict(env, SERVER_ID="10.0.0.9"))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"error: {path}: no server has server_id '10.0.0.9' "
                                          "(listed: 10.0.0.1, 10.0.0.2)"]
    assert os.listdir(records) == []
    assert not [name for name in os.listdir(tmp_path) if name.startswith("train_")]


def _wait_for(predicate, seconds, what):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _gone(pid):
    """Whether process ``pid`` has ended: no longer listed, or a zombie its new parent has not reaped yet.

    An orphan is reaped by init (or a container's subreaper) whenever that gets to it; until
    then it stays in /proc in state Z although it runs no more.
    """
    return process_state(pid) in (None, "Z", "X")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopping_the_launcher_stops_every_rank(stub, tmp_path, signum):
    env, records = stub
    _write_json(tmp_path / "hccl.json", _table(("10.0.0.1", [(0, 0), (1, 1)])))
    launcher = subprocess.Popen(["bash", os.path.join(SCRIPTS, "run_distribute_train_ascend.sh"), "hccl.json"],
                                cwd=tmp_path, env=dict(env, STUB_SLEEP="60"), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: len(_records(records)) == 2, 30, "both ranks to start")
        launcher.send_signal(signum)  # the launcher itself: the shell launcher exec'd it
        _, stderr = launcher.communicate(timeout=20)
    finally:
        launcher.kill()
    assert launcher.returncode == 128 + signum
    assert stderr.splitlines()[-1] == f"interrupted by {signal.Signals(signum).name}"
    for record in _records(records).values():
        # Each rank led its own session: the signal reached it only through the launcher.
        _wait_for(lambda: _gone(record["pid"]), 5, f"rank {record['RANK_ID']} to end")


# ---- the process supervision of src/launch/processes.py ----

def _bash_rank(group, rank_id, script, folder):
    group.start(rank_id, ["bash", "-c", script], dict(os.environ), str(folder), str(folder / f"rank{rank_id}.log"))


def test_a_rank_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path, capsys):
    group = RankGroup(grace_seconds=1.0, poll_seconds=0.05)
    with group:
        _bash_rank(group, 0, "trap '' TERM; echo ready > ready; exec sleep 60", tmp_path)
        _bash_rank(group, 1, "until [ -e ready ]; do sleep 0.05; done; echo giving up; exit 4", tmp_path)
        started = time.monotonic()
        assert group.wait() == [1, 0]
    assert 1.0 <= time.monotonic() - started < 10
    assert [rank.process.returncode for rank in group.ranks] == [-signal.SIGKILL, 4]
    assert (tmp_path / "rank1.log").read_text() == "giving up\n"
    assert capsys.readouterr().err == (f"error: rank 1 failed (exit status 4), see {tmp_path}/rank1.log; "
                                       "stopping the other ranks\n")


def test_leaving_a_rank_group_by_an_interrupt_stops_its_ranks_and_their_children(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with RankGroup(grace_seconds=5.0) as group:
            for rank_id in range(2):
                _bash_rank(group, rank_id, f"sleep 60 & echo $! > child{rank_id}; wait", tmp_path)
            _wait_for(lambda: all((tmp_path / f"child{rank}").exists() for rank in range(2)), 10, "the children")
            assert [os.getsid(rank.process.pid) for rank in group.ranks] == [rank.process.pid for rank in group.ranks]
            raise KeyboardInterrupt
    assert [rank.process.returncode for rank in group.ranks] == [-signal.SIGTERM] * 2
    for rank_id in range(2):
        child = (tmp_path / f"child{rank_id}").read_text().strip()
        _wait_for(lambda: _gone(child), 5, f"the child of rank {rank_id}")


def test_a_foreground_run_copies_its_output_and_reports_signals_as_the_shell_does(tmp_path, capfd):
    log = tmp_path / "run.log"
    status = run_in_foreground(["bash", "-c", "echo out; echo err >&2; kill -KILL $$"], dict(os.environ),
                               str(tmp_path), log_path=str(log))
    assert status == 128 + signal.SIGKILL
    assert sorted(log.read_text().splitlines()) == ["err", "out"]
    assert sorted(capfd.readouterr().out.splitlines()) == ["err", "out"]


@pytest.mark.parametrize("script,target", [("run_distribute_train_gpu.sh", "GPU"),
                                           ("run_distribute_train_cpu.sh", "CPU")])
def test_msrun_launcher_command_and_worker_interpreter(stub, tmp_path, script, target):
    env, records = stub
    result = _launch(script, 4, "--num_epochs=1", cwd=tmp_path, env=dict(env, MASTER_PORT="12345", RANK_SIZE="8"))
    assert result.returncode == 0, result.stderr
    record = _records(records)["single"]
    assert record["cwd"] == REPO_ROOT
    assert record["args"] == (f"-m mindspore.parallel.cluster.run --worker_num=4 --local_worker_num=4 "
                              f"--master_port=12345 --log_dir={tmp_path}/train_parallel_logs --join=True "
                              f"train.py --device_target={target} --num_epochs=1")
    assert record["RANK_SIZE"] == "unset"
    # msrun starts each worker as 'python' from PATH: that must run the launcher's interpreter
    # (through a wrapper removed when the launcher ends).
    assert record["python_runs"] == f'exec {env["PYTHON"]} "$@"'
    assert not os.path.exists(record["python"])


# ---- real tiny runs on the CPU ----

TINY_RUN = ["--class_num=4", "--minibatch_size=4", "--segment_frames=60", "--num_epochs=1", "--augment=false",
            "--num_workers=1", "--log_interval=1", "--base_lrate=1e-4", "--max_lrate=1e-2", "--lr_step_size=4",
            "--conv_impl=native", *TINY_NETWORK_ARGS, "--scale=2", *PLAIN_RECIPE_ARGS]
# The 2-worker runs go on long enough for a rank to be killed mid-run, with a checkpoint every epoch.
LONG_RUN = [*TINY_RUN[:3], "--num_epochs=12", *TINY_RUN[4:], "--save_checkpoint_steps=2"]
LONG_RUN_NEWEST = [f"ecapa-{epoch}_2.ckpt" for epoch in range(3, 13)]  # keep_checkpoint_max 10


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """run_standalone_train_cpu.sh 0 (TINY_RUN) and run_distribute_train_cpu.sh 2 (LONG_RUN), started together.

    8 utterances, global batch 4: 2 steps an epoch on one device as on two. A 'python' that
    fails comes first on PATH, so the msrun workers only train if the launcher put its own
    interpreter before it. The 2-worker run is also the uninterrupted reference of the
    killed-rank test, which trains on the same corpus (runs["corpus"]).
    """
    root = tmp_path_factory.mktemp("runs")
    corpus = root / "corpus"
    write_tone_corpus(corpus, num_speakers=4, utterances=2)
    wrong = root / "wrong_bin"
    wrong.mkdir()
    (wrong / "python").write_text("#!/bin/sh\necho 'not the launcher interpreter' >&2\nexit 9\n")
    (wrong / "python").chmod(0o755)
    env = dict(os.environ, PYTHON=sys.executable, PATH=f"{wrong}{os.pathsep}{os.environ['PATH']}")
    data = [f"--train_list={corpus}/train.txt", f"--train_path={corpus}/train/wav"]
    runs = {}
    for name, script, argument, settings in (("standalone", "run_standalone_train_cpu.sh", "0", TINY_RUN),
                                             ("distributed", "run_distribute_train_cpu.sh", "2", LONG_RUN)):
        folder = root / name
        folder.mkdir()
        command = ["bash", os.path.join(SCRIPTS, script), argument, *data, *settings,
                   f"--ckpt_save_dir={folder}/ckpt"]
        runs[name] = (folder, subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE,
                                               stderr=subprocess.STDOUT, text=True))
    if two_machines.available():
        runs.update(two_machines.start(root, [*data, *LONG_RUN], env))
    results = {"corpus": corpus}
    for name, (folder, process) in runs.items():
        output, _ = process.communicate(timeout=600)
        results[name] = (folder, process.returncode, output)
    return results


def _finished(log):
    match = re.search(r"finished at step (\d+); weights fingerprint (\w+)", log)
    assert match, log[-3000:]
    return int(match.group(1)), match.group(2)


RECORDS = ["metrics.jsonl", "tensorboard", "training_curves.png"]  # what a run records beside its checkpoints


def _saved_as_one_model(folder):
    """True when ``folder`` holds what one LONG_RUN saves: its newest checkpoints, the best one, the pointers,
    and the records of rank 0 alone (one event file)."""
    best = (folder / "best").read_text().split()[0]
    return (sorted(os.listdir(folder)) == sorted({"best", "last", best, *LONG_RUN_NEWEST, *RECORDS})
            and len(os.listdir(folder / "tensorboard")) == 1)


def _lr_at_step_2(log):
    return re.search(r"epoch 1 step 2/2 \(global 2\) .* lr (\S+)", log).group(1)


def test_standalone_cpu_run_logs_and_saves(tiny_runs):
    folder, returncode, output = tiny_runs["standalone"]
    assert returncode == 0, output[-3000:]
    log = (folder / "train_standalone" / "train.log").read_text()
    assert "device CPU (rank 0 of 1)" in log
    assert _finished(log)[0] == 2
    assert sorted(os.listdir(folder / "ckpt")) == ["best", "ecapa-1_2.ckpt", "last", *RECORDS]


def test_two_worker_cpu_run_ends_with_one_model_on_the_single_device_schedule(tiny_runs):
    folder, returncode, output = tiny_runs["distributed"]
    logs = [(folder / "train_parallel_logs" / f"worker_{rank}.log").read_text() for rank in range(2)]
    assert returncode == 0, output[-2000:] + logs[0][-2000:] + logs[1][-2000:]
    assert "rank 1 of 2" in logs[1]
    (steps_0, fingerprint_0), (steps_1, fingerprint_1) = _finished(logs[0]), _finished(logs[1])
    assert steps_0 == steps_1 == 24 and fingerprint_0 == fingerprint_1
    assert _saved_as_one_model(folder / "ckpt")
    # Same steps per epoch and learning-rate curve as the single-device run: (1e-2 - 1e-4) / 4 + 1e-4.
    standalone_log = (tiny_runs["standalone"][0] / "train_standalone" / "train.log").read_text()
    assert _lr_at_step_2(logs[0]) == _lr_at_step_2(standalone_log) == "2.575e-03"


@pytest.mark.skipif(not two_machines.available(), reason=two_machines.UNAVAILABLE)
def test_two_machines_train_the_same_model_as_one_machine_with_two_workers(tiny_runs):
    """Two msrun launches, one per "machine" (the second in its own network namespace)."""
    logs = []
    for rank in range(2):
        folder, returncode, output = tiny_runs[f"node{rank}"]
        assert returncode == 0, output[-3000:]
        logs.append((folder / "train_parallel_logs" / f"worker_{rank}.log").read_text())
    assert "rank 1 of 2" in logs[1]
    one_machine = (tiny_runs["distributed"][0] / "train_parallel_logs" / "worker_0.log").read_text()
    assert _finished(logs[0]) == _finished(logs[1]) == _finished(one_machine)
    assert _saved_as_one_model(tiny_runs["node0"][0].parent / "nodes_ckpt")


# ---- a rank killed in a 2-process run ----

def _worker_pid(marker, node_id):
    """The process id of msrun worker ``node_id`` whose environment holds KILL_TEST=marker, or None."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                variables = dict(item.split(b"=", 1) for item in handle.read().split(b"\0") if b"=" in item)
        except OSError:
            continue
        if (variables.get(b"KILL_TEST") == marker.encode() and variables.get(b"MS_ROLE") == b"MS_WORKER"
                and variables.get(b"MS_NODE_ID") == str(node_id).encode()):
            return int(entry)
    return None


def test_a_killed_rank_stops_the_run_and_resume_reaches_the_uninterrupted_weights(tiny_runs, tmp_path):
    """The run of tiny_runs["distributed"] again, a rank killed after epoch 5, then resumed."""
    from src.checkpoint import read_checkpoint

    corpus = tiny_runs["corpus"]
    data = [f"--train_list={corpus}/train.txt", f"--train_path={corpus}/train/wav", *LONG_RUN]
    def launch(name, *extra):
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        command = ["bash", os.path.join(SCRIPTS, "run_distribute_train_cpu.sh"), "2", *data,
                   f"--ckpt_save_dir={tmp_path / name / 'ckpt'}", *extra]
        # The scheduler ends the run when a worker's heartbeat has been missing for MS_NODE_TIMEOUT
        # seconds (30 by default; a worker's own retry window must stay below it).
        env = dict(os.environ, PYTHON=sys.executable, KILL_TEST=str(folder), MS_NODE_TIMEOUT="12",
                   MS_HEARTBEAT_RETRY_TIMEOUT="8")
        return subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)

    killed = launch("killed")
    deadline = time.time() + 300
    while not (tmp_path / "killed" / "ckpt" / "ecapa-5_2.ckpt").exists():
        assert killed.poll() is None and time.time() < deadline, killed.stdout.read()[-3000:]
        time.sleep(0.05)
    os.kill(_worker_pid(str(tmp_path / "killed"), 1), signal.SIGKILL)
    killed_at = time.time()
    output, _ = killed.communicate(timeout=180)
    assert killed.returncode == 1, output[-3000:]
    assert time.time() - killed_at < 60, "the surviving rank did not stop within the heartbeat timeout"
    assert output.rstrip().splitlines()[-1].startswith("error: train.py failed; see ")
    assert not (tmp_path / "killed" / "ckpt" / "ecapa-12_2.ckpt").exists()

    resumed = launch("killed", "--resume=auto")
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output[-3000:]
    log = (tmp_path / "killed" / "train_parallel_logs" / "worker_0.log").read_text()
    assert re.search(r"resumed from .*ecapa-\d+_2\.ckpt at step \d+", log)
    straight_folder, returncode, output = tiny_runs["distributed"]
    assert returncode == 0, output[-3000:]
    expected = read_checkpoint(str(straight_folder / "ckpt" / "ecapa-12_2.ckpt"))
    actual = read_checkpoint(str(tmp_path / "killed" / "ckpt" / "ecapa-12_2.ckpt"))
    names = [name for name in expected if name.startswith(("embedding_network.", "head.", "moment"))]
    assert len(names) > 20
    for name in names:
        np.testing.assert_allclose(actual[name].asnumpy(), expected[name].asnumpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=name)
