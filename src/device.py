"""Where and how MindSpore runs: device, launcher, convolution formulation, numeric precision.

Shared by every entry script. Distributed runs are started once per device from an HCCL
rank table on Ascend (RANK_SIZE, RANK_ID, DEVICE_ID in the environment), or by ``msrun``
on GPU and CPU (MS_WORKER_NUM and friends); every process holds a full model copy.
"""
import contextlib
import os

import mindspore as ms

from src.config import ConfigError

DEVICE_PREFERENCE = ("Ascend", "GPU")


@contextlib.contextmanager
def _quiet_native_output():
    """Silence what native libraries print on file descriptors 1 and 2 (device probing is noisy)."""
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w", encoding="utf-8") as devnull:
        try:
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for descriptor in saved:
                os.close(descriptor)


def resolve_device(requested):
    """'auto' -> the first available of Ascend, GPU, else CPU; a named device must be available."""
    from mindspore import hal

    def available(device):
        with _quiet_native_output():
            try:
                return bool(hal.is_available(device))
            except (RuntimeError, ValueError):
                return False

    if requested == "auto":
        return next((device for device in DEVICE_PREFERENCE if available(device)), "CPU")
    if requested != "CPU" and not available(requested):
        raise ConfigError(f"device_target: {requested} is not available in this MindSpore installation")
    return requested


def init_context(config, distributed=False):
    """Set GRAPH_MODE on the configured device and seed everything; returns the device name.

    A standalone run uses ``config.device_id``. A distributed worker uses the DEVICE_ID its
    rank-table launcher exported, or, under msrun, leaves the choice to MindSpore, which
    gives each worker its own local device.
    """
    device = resolve_device(config.device_target)
    ms.set_context(mode=ms.GRAPH_MODE)
    device_id = launcher_device_id() if distributed else config.device_id
    if device == "CPU" or device_id is None:
        ms.set_device(device)
    else:
        ms.set_device(device, device_id)
    if config.num_threads > 0:
        ms.set_context(runtime_num_threads=config.num_threads)
    ms.set_seed(config.seed)
    return device


def launched_distributed():
    """True when this process is one worker of a multi-process launch."""
    return int(os.environ.get("MS_WORKER_NUM", "1")) > 1 or int(os.environ.get("RANK_SIZE", "1")) > 1


def launcher_device_id():
    """The device index a rank-table launcher assigned (DEVICE_ID), or None."""
    value = os.environ.get("DEVICE_ID")
    return int(value) if value is not None else None


def join_process_group():
    """Join the process group of this launch; returns (rank, group_size)."""
    from mindspore.communication import get_group_size, get_rank, init

    init()
    return get_rank(), get_group_size()


def init_data_parallel():
    """Join the process group and switch on data parallelism; returns (rank, group_size)."""
    rank, group_size = join_process_group()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True)
    return rank, group_size


def conv_impl_for_device(device_target):
    """The faster convolution formulation for a device: 'shifted' on CPU, else 'native'."""
    return "shifted" if device_target == "CPU" else "native"


def conv_impl(config, device):
    """The convolution formulation to build: the configured one, or the device's faster one."""
    return conv_impl_for_device(device) if config.conv_impl == "auto" else config.conv_impl


def amp_level(config, device):
    """Mixed-precision level: the configured one, or O2 on Ascend/GPU and O0 (float32) on CPU."""
    if config.amp_level != "auto":
        return config.amp_level
    return "O0" if device == "CPU" else "O2"


def apply_mixed_precision(network, level):
    """Cast ``network`` for mixed-precision ``level`` (O0 leaves it in float32).

    Cells whose class sets ``keeps_float32 = True`` (the batch norms, whose statistics
    need float32) are kept in float32.
    """
    if level == "O0":
        return network
    network = ms.amp.auto_mixed_precision(network, level)
    for _, cell in network.cells_and_names():
        if getattr(cell, "keeps_float32", False):
            cell.to_float(ms.float32)
    return network

