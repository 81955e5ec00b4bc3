"""The three ways the launchers start train.py, and two of them eval.py (README, "Training").

- :func:`run_standalone`: one train.py on one device; its output goes to the screen and to
  ./train_standalone/train.log.
- :func:`run_rank_table`: one train.py per device this server has in an HCCL rank table,
  with RANK_TABLE_FILE, RANK_SIZE, RANK_ID and DEVICE_ID set; each logs to
  ./train_parallel<RANK_ID>/train.log, and a failing rank stops the others.
- :func:`run_msrun`: DEVICE_NUM workers started by MindSpore's msrun (run as
  ``PYTHON -m mindspore.parallel.cluster.run``), logs in ./train_parallel_logs/.

In every mode train.py runs from the repository root (relative paths in settings are
relative to it) under the interpreter PYTHON names, the run folders are made in the folder
the launcher was called from (:attr:`Launcher.run_base`), and the launcher variables a
previous run may have left in the environment (:data:`LAUNCHER_VARIABLES`) are dropped, so
train.py never takes one kind of run for another. With ``Launcher.script`` = eval.py the rank-table
and msrun modes run a distributed evaluation instead, with run folders named eval_*. Each
``run_*`` function returns the
launcher's exit status; bad arguments raise :class:`LaunchError`.
"""
import os
import re
import shlex
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass

from src.errors import InputError
from src.fileio import check_writable_folder, write_text
from src.launch.processes import RankGroup, run_in_foreground
from src.launch.rank_table import local_ranks, local_server, rank_size, read_rank_table

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGETS = ("Ascend", "GPU", "CPU")
MSRUN_TARGETS = ("GPU", "CPU")
LAUNCHER_VARIABLES = ("RANK_TABLE_FILE", "RANK_SIZE", "RANK_ID", "DEVICE_ID", "MS_WORKER_NUM", "MS_ROLE",
                      "MS_SCHED_HOST", "MS_SCHED_PORT", "MS_NODE_ID")
SETTINGS_USAGE = ("--key=value", "any setting of src/config.py, e.g. --config=configs/demo.yaml")
_NON_NEGATIVE = re.compile(r"[0-9]+")
_POSITIVE = re.compile(r"[1-9][0-9]*")


class LaunchError(InputError):
    """A launch that cannot start: bad arguments, interpreter or MASTER_PORT."""


@dataclass(frozen=True)
class Parameter:
    """The launcher argument that comes before the settings, and its meaning for the usage."""
    name: str
    meaning: str


DEVICE_ID = Parameter("DEVICE_ID", "device index, an integer >= 0 (ignored on CPU)")
RANK_TABLE_FILE = Parameter("RANK_TABLE_FILE", "HCCL rank table (JSON, version 1.0) of all servers of the run")


def device_num(target):
    """The DEVICE_NUM parameter of an msrun launch on ``target``."""
    return Parameter("DEVICE_NUM", f"number of {target} worker processes (one per device), >= 1")


@dataclass(frozen=True)
class Launcher:
    """How a launch was called.

    ``command`` is what the usage shows before the arguments (``bash run_standalone_train_cpu.sh``),
    ``run_base`` the folder the run folders are made in, ``python`` the PYTHON setting (a
    command on PATH or a path, relative ones to ``run_base``).
    """
    command: str
    run_base: str
    python: str = "python"
    script: str = "train.py"

    @property
    def kind(self):
        """'train' or 'eval': the prefix of the run folders."""
        return os.path.splitext(self.script)[0]

    def usage_error(self, parameter, message):
        """A LaunchError with ``message``, then the usage of a launcher taking ``parameter``."""
        lines = [message, f"usage: {self.command} {parameter.name} [--key=value ...]"]
        lines += [f"  {name:<15}  {meaning}" for name, meaning in ((parameter.name, parameter.meaning),
                                                                   SETTINGS_USAGE)]
        return LaunchError("\n".join(lines))

    def split(self, parameter, arguments):
        """(the first of ``arguments``, the settings after it); a usage error if there is none."""
        if not arguments:
            raise self.usage_error(parameter, f"{parameter.name} is missing")
        return arguments[0], list(arguments[1:])

    def check_number(self, parameter, value, pattern, requirement):
        """``value`` when the whole of it matches ``pattern``, else a usage error stating ``requirement``."""
        if not pattern.fullmatch(value):
            raise self.usage_error(parameter, f"{parameter.name} must be {requirement}, got '{value}'")
        return value

    def log_file(self, folder):
        """The path of ``<kind>.log`` in the run folder ``folder`` of :attr:`run_base`, checked writable."""
        return os.path.join(check_writable_folder(os.path.join(self.run_base, folder)), f"{self.kind}.log")

    def interpreter(self):
        """The absolute path of the interpreter :attr:`python` names; LaunchError if there is none."""
        found = shutil.which(os.path.join(self.run_base, self.python) if os.sep in self.python else self.python)
        if found is None:
            raise LaunchError(f"PYTHON '{self.python}' not found; set PYTHON to the interpreter that has MindSpore")
        return os.path.abspath(found)


def launch_environment(**variables):
    """This process's environment without :data:`LAUNCHER_VARIABLES`, plus ``variables``."""
    environment = {name: value for name, value in os.environ.items() if name not in LAUNCHER_VARIABLES}
    environment.update(variables)
    return environment


def run_standalone(launcher, target, arguments):
    """``arguments`` = DEVICE_ID [--key=value ...]: train.py on one device; return its exit status."""
    device_id, settings = launcher.split(DEVICE_ID, arguments)
    launcher.check_number(DEVICE_ID, device_id, _NON_NEGATIVE, "a non-negative integer")
    python = launcher.interpreter()
    log_path = launcher.log_file("train_standalone")
    print(f"train.py on {target} {device_id}; log in {log_path}", flush=True)
    command = [python, "train.py", f"--device_target={target}", f"--device_id={device_id}", *settings]
    return run_in_foreground(command, launch_environment(), REPO_ROOT, log_path=log_path)


def run_rank_table(launcher, arguments, server_id=""):
    """``arguments`` = RANK_TABLE_FILE [--key=value ...]: one train.py per device of this server.

    ``server_id`` (SERVER_ID) picks this server in a table of several (default: the one
    whose server_id is an address of this host). Returns 0 when every rank finished, else 1
    after naming the ranks that did not.
    """
    table, settings = launcher.split(RANK_TABLE_FILE, arguments)
    if not os.path.isfile(os.path.join(launcher.run_base, table)):
        raise launcher.usage_error(RANK_TABLE_FILE, f"RANK_TABLE_FILE '{table}' is not a file")
    table = os.path.abspath(os.path.join(launcher.run_base, table))
    servers = read_rank_table(table)
    size = rank_size(servers)
    ranks = local_ranks(local_server(servers, table, server_id))
    command = [launcher.interpreter(), launcher.script, "--device_target=Ascend", *settings]
    log_paths = {rank_id: launcher.log_file(f"{launcher.kind}_parallel{rank_id}") for rank_id, _ in ranks}
    with RankGroup() as group:
        for rank_id, device_id in ranks:
            log_path = log_paths[rank_id]
            print(f"rank {rank_id} of {size} on Ascend {device_id}; log in {log_path}", flush=True)
            environment = launch_environment(RANK_TABLE_FILE=table, RANK_SIZE=str(size), RANK_ID=str(rank_id),
                                             DEVICE_ID=str(device_id))
            group.start(rank_id, command, environment, REPO_ROOT, log_path)
        failed = group.wait()
    if failed:
        print(f"error: ranks that did not finish: {' '.join(map(str, failed))} (of {len(ranks)} started here)",
              file=sys.stderr)
        return 1
    print(f"all {len(ranks)} ranks finished")
    return 0


def scheduler_port(master_port=""):
    """The msrun scheduler port: ``master_port`` (MASTER_PORT) when set, else a free port of 127.0.0.1."""
    if master_port:
        if not _NON_NEGATIVE.fullmatch(master_port) or not 1 <= int(master_port) <= 65535:
            raise LaunchError(f"MASTER_PORT must be a port number, got '{master_port}'")
        return int(master_port)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_python_wrapper(folder, interpreter):
    """An executable ``folder/python`` that runs ``interpreter`` with its arguments; returns its path.

    msrun starts every worker as the ``python`` found on PATH. A wrapper rather than a
    symbolic link, since a link would lose the interpreter's virtual environment.
    """
    path = write_text(os.path.join(folder, "python"), f'#!/bin/bash\nexec {shlex.quote(interpreter)} "$@"\n')
    os.chmod(path, 0o755)
    return path


@dataclass(frozen=True)
class Nodes:
    """Where this machine stands in an msrun job over several machines (all '' on one machine).

    local_workers (LOCAL_WORKER_NUM): workers started here, default all of DEVICE_NUM;
    node_rank (NODE_RANK): this machine's index, 0 for the one running the scheduler;
    master_addr (MASTER_ADDR): the scheduler's address, default 127.0.0.1.
    """
    local_workers: str = ""
    node_rank: str = ""
    master_addr: str = ""

    @classmethod
    def from_environment(cls, environment):
        return cls(environment.get("LOCAL_WORKER_NUM", ""), environment.get("NODE_RANK", ""),
                   environment.get("MASTER_ADDR", ""))

    def msrun_options(self, workers, master_port):
        """msrun's options for ``workers`` workers in all; LaunchError for inconsistent values."""
        local = self.local_workers or workers
        if not _POSITIVE.fullmatch(local) or int(local) > int(workers):
            raise LaunchError(f"LOCAL_WORKER_NUM must be an integer from 1 to DEVICE_NUM ({workers}), got '{local}'")
        options = [f"--worker_num={workers}", f"--local_worker_num={local}"]
        several = int(local) < int(workers)
        if several and not master_port:
            raise LaunchError("MASTER_PORT must be set when the workers run on several machines "
                              "(LOCAL_WORKER_NUM < DEVICE_NUM): every machine needs the scheduler's port")
        if self.node_rank:
            if not _NON_NEGATIVE.fullmatch(self.node_rank):
                raise LaunchError(f"NODE_RANK must be a non-negative integer, got '{self.node_rank}'")
            options.append(f"--node_rank={self.node_rank}")
        elif several:
            raise LaunchError("NODE_RANK must be set when the workers run on several machines (0 on the "
                              "machine of MASTER_ADDR, then 1, 2, ...)")
        if self.master_addr:
            options.append(f"--master_addr={self.master_addr}")
        return options


def run_msrun(launcher, target, arguments, master_port="", nodes=Nodes()):
    """``arguments`` = DEVICE_NUM [--key=value ...]: DEVICE_NUM workers in all, joined.

    On one machine all DEVICE_NUM workers run here. Over several, each machine runs the
    launcher with the same DEVICE_NUM, settings, MASTER_ADDR and MASTER_PORT, and its own
    ``nodes`` (LOCAL_WORKER_NUM, NODE_RANK). The scheduler listens on ``master_port``
    (MASTER_PORT; default on one machine: a free port). The workers run the launcher's
    interpreter: a wrapper named ``python`` comes first on their PATH while msrun runs.
    Returns 0, or 1 when training failed.
    """
    parameter = device_num(target)
    workers, settings = launcher.split(parameter, arguments)
    launcher.check_number(parameter, workers, _POSITIVE, "an integer >= 1")
    node_options = nodes.msrun_options(workers, master_port)
    port = scheduler_port(master_port)
    python = launcher.interpreter()
    log_dir = os.path.join(launcher.run_base, f"{launcher.kind}_parallel_logs")
    command = [python, "-m", "mindspore.parallel.cluster.run", *node_options, f"--master_port={port}",
               f"--log_dir={log_dir}", "--join=True", launcher.script, f"--device_target={target}", *settings]
    with tempfile.TemporaryDirectory(prefix="launch_") as wrapper_folder:
        write_python_wrapper(wrapper_folder, python)
        environment = launch_environment(PATH=os.pathsep.join([wrapper_folder, os.environ.get("PATH", os.defpath)]))
        print(f"msrun: {workers} {target} workers, scheduler on port {port}; logs in {log_dir}", flush=True)
        status = run_in_foreground(command, environment, REPO_ROOT)
    if status:
        print(f"error: {launcher.script} failed; see {log_dir}/worker_<rank>.log", file=sys.stderr)
        return 1
    return 0
