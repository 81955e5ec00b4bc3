"""Two "machines" on one host for the multi-machine training test: this one and a network namespace.

msrun takes every launch whose MASTER_ADDR is an address of its own host for the machine
that runs the scheduler, so two launches sharing one network stack would both start one
(and the second fails). The second "machine" therefore runs in a network namespace of its
own, joined to this one by a veth pair on a /30 link that exists only inside this host and
is removed when the tests end. Setting it up needs root and iproute2 (as in CI).
"""
import atexit
import functools
import os
import socket
import subprocess

NAMESPACE = "ecapa_test_node1"
HOST_INTERFACE, NAMESPACE_INTERFACE = "ecapa_n0", "ecapa_n1"
HOST_ADDRESS, NAMESPACE_ADDRESS = "10.253.77.1", "10.253.77.2"
UNAVAILABLE = "needs root and iproute2 network namespaces"
SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts")


def _ip(*arguments, check=True):
    return subprocess.run(["ip", *arguments], capture_output=True, text=True, check=check)


def _remove():
    _ip("netns", "del", NAMESPACE, check=False)
    _ip("link", "del", HOST_INTERFACE, check=False)


def _create():
    _remove()
    _ip("netns", "add", NAMESPACE)
    _ip("link", "add", HOST_INTERFACE, "type", "veth", "peer", "name", NAMESPACE_INTERFACE)
    _ip("link", "set", NAMESPACE_INTERFACE, "netns", NAMESPACE)
    _ip("addr", "add", f"{HOST_ADDRESS}/30", "dev", HOST_INTERFACE)
    _ip("link", "set", HOST_INTERFACE, "up")
    inside = ("netns", "exec", NAMESPACE, "ip")
    _ip(*inside, "addr", "add", f"{NAMESPACE_ADDRESS}/30", "dev", NAMESPACE_INTERFACE)
    _ip(*inside, "link", "set", NAMESPACE_INTERFACE, "up")
    _ip(*inside, "link", "set", "lo", "up")
    atexit.register(_remove)


@functools.lru_cache(maxsize=1)
def available():
    """True when the namespace and its link can be made here (made once, removed at exit)."""
    if os.geteuid() != 0:
        return False
    try:
        _create()
    except (OSError, subprocess.CalledProcessError):
        _remove()
        return False
    return True


def _free_port():
    with socket.socket() as probe:
        probe.bind((HOST_ADDRESS, 0))
        return str(probe.getsockname()[1])


def start(root, settings, environment):
    """run_distribute_train_cpu.sh 2 as two machines of one worker each; {name: (folder, Popen)}.

    "node0" runs here and hosts the scheduler, "node1" in the namespace; both save to
    ``root/nodes_ckpt`` (only rank 0 writes).
    """
    nodes = dict(MASTER_ADDR=HOST_ADDRESS, MASTER_PORT=_free_port(), LOCAL_WORKER_NUM="1")
    runs = {}
    for rank, prefix in ((0, []), (1, ["ip", "netns", "exec", NAMESPACE])):
        folder = root / f"node{rank}"
        folder.mkdir()
        command = [*prefix, "bash", os.path.join(SCRIPTS, "run_distribute_train_cpu.sh"), "2", *settings,
                   f"--ckpt_save_dir={root / 'nodes_ckpt'}"]
        runs[f"node{rank}"] = (folder, subprocess.Popen(
            command, cwd=folder, env=dict(environment, NODE_RANK=str(rank), **nodes),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    return runs
