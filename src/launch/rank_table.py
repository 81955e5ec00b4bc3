"""HCCL rank tables (version 1.0): reading, checking, and the ranks of this server.

The table, as the Ascend tools write it:

    {"version": "1.0", "server_count": "1", "status": "completed",
     "server_list": [{"server_id": "10.0.0.1",
                      "device": [{"device_id": "0", "device_ip": "192.168.100.101", "rank_id": "0"},
                                 {"device_id": "1", "device_ip": "192.168.101.101", "rank_id": "1"}],
                      "host_nic_ip": "reserve"}]}

Numbers may be JSON strings (as the tools write them) or integers. The rank ids of all
servers together must be 0 .. RANK_SIZE-1, each once, where RANK_SIZE is the number of
devices of all servers; device ids are unique within a server. Every problem is a
:class:`RankTableError` whose message names the file and the field at fault.
"""
import ipaddress
import json
import socket
import subprocess
from dataclasses import dataclass

from src.errors import InputError

SUPPORTED_VERSION = "1.0"


class RankTableError(InputError):
    """A rank table that is unreadable or not a valid version 1.0 HCCL table."""


@dataclass(frozen=True)
class Device:
    """One accelerator of a server: its global rank, local device index and NIC address."""
    rank_id: int
    device_id: int
    device_ip: str


@dataclass(frozen=True)
class Server:
    """One machine of the cluster and its devices, in file order."""
    server_id: str
    devices: tuple


def _field(mapping, key, where, path):
    """``mapping[key]``, or a RankTableError naming ``where.key``."""
    if not isinstance(mapping, dict):
        raise RankTableError(f"{path}: {where} must be a JSON object")
    if key not in mapping:
        raise RankTableError(f"{path}: {where}.{key} is missing")
    return mapping[key]


def _count(value, name, path):
    """A non-negative integer given as a JSON integer or a string of digits."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise RankTableError(f"{path}: {name} must be a non-negative integer, got {value!r}")


def _device(entry, where, path):
    """The :class:`Device` of the table entry ``entry`` found at ``where``."""
    device_ip = _field(entry, "device_ip", where, path)
    try:
        ipaddress.ip_address(device_ip)
    except ValueError:
        raise RankTableError(f"{path}: {where}.device_ip must be an IP address, got {device_ip!r}") from None
    return Device(rank_id=_count(_field(entry, "rank_id", where, path), f"{where}.rank_id", path),
                  device_id=_count(_field(entry, "device_id", where, path), f"{where}.device_id", path),
                  device_ip=device_ip)


def _server(entry, where, path):
    """The :class:`Server` of the table entry ``entry`` found at ``where``; device ids unique."""
    server_id = _field(entry, "server_id", where, path)
    if not isinstance(server_id, str) or not server_id:
        raise RankTableError(f"{path}: {where}.server_id must be a non-empty string, got {server_id!r}")
    entries = _field(entry, "device", where, path)
    if not isinstance(entries, list) or not entries:
        raise RankTableError(f"{path}: {where}.device must be a non-empty list")
    devices = tuple(_device(item, f"{where}.device[{index}]", path) for index, item in enumerate(entries))
    seen = set()
    for index, device in enumerate(devices):
        if device.device_id in seen:
            raise RankTableError(f"{path}: {where}.device[{index}].device_id {device.device_id} "
                                 f"is listed twice for server {server_id}")
        seen.add(device.device_id)
    return Server(server_id, devices)


def _check_ranks(servers, path):
    """Every rank id once, together covering 0 .. RANK_SIZE-1."""
    where_rank = {}
    for server_index, server in enumerate(servers):
        for device_index, device in enumerate(server.devices):
            where = f"server_list[{server_index}].device[{device_index}].rank_id"
            if device.rank_id in where_rank:
                raise RankTableError(f"{path}: {where} {device.rank_id} is already used by "
                                     f"{where_rank[device.rank_id]}")
            where_rank[device.rank_id] = where
    size = len(where_rank)
    missing = sorted(set(range(size)) - set(where_rank))
    if missing:
        raise RankTableError(f"{path}: rank_id values must be 0..{size - 1} for {size} devices; "
                             f"{missing[0]} is missing")


def parse_rank_table(text, path):
    """The servers of a version 1.0 rank table given as JSON ``text`` (read from ``path``)."""
    try:
        table = json.loads(text)
    except json.JSONDecodeError as error:
        raise RankTableError(f"{path}: not valid JSON (line {error.lineno} column {error.colno}: "
                             f"{error.msg})") from None
    version = _field(table, "version", "the rank table", path)
    if version != SUPPORTED_VERSION:
        raise RankTableError(f"{path}: version {version!r} is not supported (expected {SUPPORTED_VERSION!r}, "
                             "with server_list[].device[])")
    status = table.get("status", "completed")
    if status != "completed":
        raise RankTableError(f"{path}: status is {status!r}, not 'completed': the table is unfinished")
    entries = _field(table, "server_list", "the rank table", path)
    if not isinstance(entries, list) or not entries:
        raise RankTableError(f"{path}: server_list must be a non-empty list")
    servers = [_server(entry, f"server_list[{index}]", path) for index, entry in enumerate(entries)]
    if "server_count" in table:
        declared = _count(table["server_count"], "server_count", path)
        if declared != len(servers):
            raise RankTableError(f"{path}: server_count is {declared} but server_list has {len(servers)} servers")
    ids = [server.server_id for server in servers]
    for index, server_id in enumerate(ids):
        if server_id in ids[:index]:
            raise RankTableError(f"{path}: server_list[{index}].server_id {server_id!r} is listed twice")
    _check_ranks(servers, path)
    return servers


def read_rank_table(path):
    """The servers of the rank table file at ``path``; RankTableError if it is not valid."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise RankTableError(f"{path}: rank table file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise RankTableError(f"{path}: cannot be read ({error})") from None
    return parse_rank_table(text, path)


def host_addresses():
    """The IP addresses of this host: those its name resolves to and those ``hostname -I`` lists."""
    addresses = set()
    for name in {socket.gethostname(), socket.getfqdn()}:
        try:
            addresses.update(info[4][0] for info in socket.getaddrinfo(name, None))
        except OSError:
            pass
    try:
        listed = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=10, check=False)
        addresses.update(listed.stdout.split())
    except (OSError, subprocess.SubprocessError):
        pass
    return addresses


def local_server(servers, path, server_id="", addresses=None):
    """The server this host plays: the only one, the one named ``server_id``, or the one at ``addresses``.

    ``addresses`` defaults to :func:`host_addresses`.
    """
    known = ", ".join(server.server_id for server in servers)
    if server_id:
        chosen = [server for server in servers if server.server_id == server_id]
        if not chosen:
            raise RankTableError(f"{path}: no server has server_id {server_id!r} (listed: {known})")
        return chosen[0]
    if len(servers) == 1:
        return servers[0]
    addresses = host_addresses() if addresses is None else addresses
    chosen = [server for server in servers if server.server_id in addresses]
    if len(chosen) != 1:
        raise RankTableError(f"{path}: {len(servers)} servers are listed ({known}) and none has a server_id "
                             f"among this host's addresses ({', '.join(sorted(addresses)) or 'none found'}); "
                             "set SERVER_ID to this host's server_id")
    return chosen[0]


def rank_size(servers):
    """Devices of all servers together: the RANK_SIZE of the run."""
    return sum(len(server.devices) for server in servers)


def local_ranks(server):
    """(RANK_ID, DEVICE_ID) pairs of ``server``'s devices, in rank order."""
    return [(device.rank_id, device.device_id) for device in sorted(server.devices, key=lambda item: item.rank_id)]
