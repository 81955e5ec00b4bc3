"""Data-parallel set-up for runs started by a launcher.

Ascend runs are started once per device from an HCCL rank table (RANK_SIZE, RANK_ID,
DEVICE_ID in the environment); GPU and CPU runs by ``msrun`` (MS_WORKER_NUM and friends).
Either way every process holds a full model copy, trains on its own share of each
global batch, and averages gradients with the others before each update.
"""
import os

import mindspore as ms


def launched_distributed():
    """True when this process is one worker of a multi-process launch."""
    return int(os.environ.get("MS_WORKER_NUM", "1")) > 1 or int(os.environ.get("RANK_SIZE", "1")) > 1


def launcher_device_id():
    """The device index a rank-table launcher assigned (DEVICE_ID), or None."""
    value = os.environ.get("DEVICE_ID")
    return int(value) if value is not None else None


def init_data_parallel():
    """Join the process group and switch on data parallelism; returns (rank, group_size)."""
    from mindspore.communication import get_group_size, get_rank, init

    init()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True)
    return get_rank(), get_group_size()
