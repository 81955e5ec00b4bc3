"""Device selection and MindSpore context set-up shared by every entry script."""
import contextlib
import os

import mindspore as ms

from src.config import ConfigError
from src.model.layers import conv_impl_for_device
from src.train.distributed import launcher_device_id

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


def conv_impl(config, device):
    """The convolution formulation to build: the configured one, or the device's faster one."""
    return conv_impl_for_device(device) if config.conv_impl == "auto" else config.conv_impl


def amp_level(config, device):
    """Mixed-precision level: the configured one, or O2 on Ascend/GPU and O0 (float32) on CPU."""
    if config.amp_level != "auto":
        return config.amp_level
    return "O0" if device == "CPU" else "O2"
