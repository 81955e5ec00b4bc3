"""Checkpoint averaging: the element-wise mean of the network and head weights of checkpoints.

Every entry of the embedding network (weights and batch-norm moving statistics) and of the
margin head is averaged over the checkpoints; optimizer state and bookkeeping entries are
left out. The result loads wherever a training checkpoint's network does: eval.py,
export.py and ``init_from``.
"""
import os
import re

import numpy as np
from mindspore import Tensor

from src.checkpoint import EMBEDDING_PREFIX, CheckpointError, read_checkpoint, save_checkpoint
from src.train.run_folder import HEAD_PREFIX

_RUN_CHECKPOINT = re.compile(r"^(.+)-(\d+)_(\d+)\.ckpt$")


def newest_checkpoints(folder, count):
    """Paths of the ``count`` newest ``<prefix>-<epoch>_<step>.ckpt`` files of a run folder, oldest first.

    Fewer are returned when the folder holds fewer. Raises CheckpointError for a folder
    without such files or with files of several prefixes (several runs).
    """
    found = {}
    for name in os.listdir(folder) if os.path.isdir(folder) else []:
        match = _RUN_CHECKPOINT.match(name)
        if match:
            found.setdefault(match.group(1), []).append(((int(match.group(2)), int(match.group(3))), name))
    if not found:
        raise CheckpointError(f"{folder}: holds no training checkpoints (<prefix>-<epoch>_<step>.ckpt)")
    if len(found) > 1:
        raise CheckpointError(f"{folder}: holds checkpoints of several runs ({', '.join(sorted(found))}); "
                              "name the checkpoints to average")
    names = [name for _, name in sorted(next(iter(found.values())))]
    return [os.path.join(folder, name) for name in names[-count:]]


def _weights(path):
    """The network and head entries of checkpoint ``path`` as {name: ndarray}."""
    entries = {name: value.asnumpy() for name, value in read_checkpoint(path).items()
               if name.startswith((EMBEDDING_PREFIX, HEAD_PREFIX))}
    if not entries:
        raise CheckpointError(f"{path}: has no {EMBEDDING_PREFIX}/{HEAD_PREFIX} entries; is it a training "
                              "checkpoint?")
    return entries


def average_weights(paths):
    """{name: ndarray} mean of the network and head entries of the checkpoints ``paths``.

    Sums are accumulated in float64 and the mean is cast back to each entry's dtype. Every
    checkpoint must hold the same entries with the same shapes (CheckpointError otherwise).
    """
    first = _weights(paths[0])
    sums = {name: value.astype(np.float64) for name, value in first.items()}
    for path in paths[1:]:
        entries = _weights(path)
        if entries.keys() != sums.keys():
            odd = sorted(entries.keys() ^ sums.keys())[0]
            raise CheckpointError(f"{path}: its entries differ from those of {paths[0]} (e.g. {odd!r})")
        for name, value in entries.items():
            if value.shape != sums[name].shape:
                raise CheckpointError(f"{path}: {name!r} has shape {value.shape}, {paths[0]} has "
                                      f"{sums[name].shape}")
            sums[name] += value
    return {name: (total / len(paths)).astype(first[name].dtype) for name, total in sums.items()}


def save_average(paths, output):
    """Average the checkpoints ``paths`` into checkpoint file ``output``; return ``output``."""
    averaged = average_weights(paths)
    save_checkpoint([{"name": name, "data": Tensor(value)} for name, value in averaged.items()], output,
                    append_dict={"averaged_checkpoints": len(paths)})
    return output
