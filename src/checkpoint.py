"""Checkpoint files: atomic saving, reading, loading the embedding network, fingerprints.

Used by training (which writes checkpoints) and by evaluation and export (which read them).

A training checkpoint holds the parameters of the whole training cell: the embedding
network under ``embedding_network.``, the AAM head under ``head.`` and the optimizer
state, plus bookkeeping values. An exported-weights checkpoint holds only the embedding
network's parameters without prefix. :func:`load_embedding_weights` accepts both.
"""
import hashlib
import logging
import os

import mindspore as ms
from mindspore import log as ms_log
import numpy as np

from src.errors import InputError
from src.fileio import atomic_write

EMBEDDING_PREFIX = "embedding_network."


class CheckpointError(InputError):
    """A checkpoint that is missing, unreadable or does not fit the network."""


def _parameter_bytes(parameters):
    """Bytes of the values a checkpoint of ``parameters`` holds (its size, near enough)."""
    if isinstance(parameters, list):
        return sum(int(np.asarray(entry["data"]).nbytes) for entry in parameters)
    return sum(int(parameter.size) * parameter.itemsize for parameter in parameters.get_parameters())


class _DropSaveFailure(logging.Filter):
    """Drops MindSpore's CRITICAL line about a failed save: the error raised in its place names the file."""

    def filter(self, record):
        return not (record.levelno == logging.CRITICAL and "Failed to save the checkpoint" in record.getMessage())


def save_checkpoint(parameters, path, append_dict=None):
    """Write a checkpoint atomically (see src/fileio.py): a crash keeps any earlier file at ``path``.

    ``parameters`` is a Cell or a list of {"name", "data"} dicts (mindspore.save_checkpoint).
    A full disk raises DiskFullError saying how much space the checkpoint needs, and leaves
    no partial file (neither this writer's nor MindSpore's own ``.tmp``).
    """
    # MindSpore adds '.ckpt' to a name without it, so the temporary name keeps that suffix.
    with atomic_write(path, needed_bytes=_parameter_bytes(parameters), suffix=".ckpt") as temporary:
        mindspore_temporary = temporary[:-len(".ckpt")] + ".tmp"  # what MindSpore writes before its rename
        quiet = _DropSaveFailure()
        ms_log._get_logger().addFilter(quiet)
        try:
            ms.save_checkpoint(parameters, temporary, append_dict=append_dict)
        finally:
            ms_log._get_logger().removeFilter(quiet)
            if os.path.exists(mindspore_temporary):
                os.remove(mindspore_temporary)
    return path


def _pointed_checkpoint(path):
    """The checkpoint name a training folder's pointer file (``last``, ``best``: one short text line
    starting with it) holds, or None for any other file."""
    if os.path.getsize(path) > 1024:
        return None
    with open(path, "rb") as handle:
        words = handle.read().split()
    name = words[0].decode("utf-8", "replace") if words else ""
    return name if name.endswith(".ckpt") and "/" not in name else None


def read_checkpoint(path):
    """All entries of a checkpoint file as {name: Parameter}; CheckpointError if unreadable."""
    if path and os.path.isdir(path):
        raise CheckpointError(f"{path} is a folder, expected a checkpoint file (.ckpt); in a training "
                              "folder the file 'last' names the newest checkpoint")
    if not path or not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} not found")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path}: the file is empty (0 bytes), expected a MindSpore checkpoint")
    named = _pointed_checkpoint(path)
    if named:
        raise CheckpointError(f"{path}: is the pointer file of a training folder, not a checkpoint; it names "
                              f"{named}: pass {os.path.join(os.path.dirname(path), named)}")
    try:
        return ms.load_checkpoint(path)
    except (ValueError, RuntimeError, TypeError) as error:
        raise CheckpointError(f"{path}: not a readable MindSpore checkpoint ({error})") from None


def embedding_parameters(checkpoint):
    """The embedding network's entries of a training or exported checkpoint, without prefix."""
    prefixed = {name[len(EMBEDDING_PREFIX):]: value for name, value in checkpoint.items()
                if name.startswith(EMBEDDING_PREFIX)}
    return prefixed or dict(checkpoint)


def load_embedding_weights(path, network, entries=None):
    """Load the embedding network's weights from ``path`` into ``network``.

    ``entries``: the file's contents when the caller has read them already (read_checkpoint).
    Raises CheckpointError naming the file and the first offending parameter when a
    parameter is missing or has another shape (e.g. a checkpoint of other channel sizes).
    """
    available = embedding_parameters(read_checkpoint(path) if entries is None else entries)
    expected = network.parameters_dict()
    missing = [name for name in expected if name not in available]
    if missing:
        raise CheckpointError(f"{path}: lacks {len(missing)} of the network's {len(expected)} parameters, "
                              f"e.g. {missing[0]!r}; is it a checkpoint of this model?")
    for name, parameter in expected.items():
        found = tuple(available[name].shape)
        if found != tuple(parameter.shape):
            raise CheckpointError(f"{path}: parameter {name!r} has shape {found}, the network expects "
                                  f"{tuple(parameter.shape)}; check channels/emb_size/scale settings")
    ms.load_param_into_net(network, {name: available[name] for name in expected}, strict_load=True)


def weights_fingerprint(cell):
    """SHA-1 of the cell's trainable parameters (names and float values) as 12 hex digits.

    Equal fingerprints mean bit-identical weights, e.g. across data-parallel ranks.
    """
    digest = hashlib.sha1()
    for parameter in sorted(cell.trainable_params(), key=lambda p: p.name):
        digest.update(parameter.name.encode())
        digest.update(parameter.asnumpy().tobytes())
    return digest.hexdigest()[:12]
