"""Training checkpoints: atomic saves, rotation, 'last'/'best' pointers and resuming.

Files are ``ckpt_save_dir/ecapa-<epoch>_<step>.ckpt`` (epoch from 1, step within the
epoch). Each holds every parameter of the training step cell (network, AAM head,
optimizer moments and step counter, loss scale) plus ``trained_steps``, the number of
steps trained, which fixes the data position on resume. Pointer files ``last`` and
``best`` (lowest epoch-mean training loss) name a checkpoint file.
"""
import os
import re

import mindspore as ms

from src.model.weights import CheckpointError, read_checkpoint, save_checkpoint_atomic

NAME_PATTERN = re.compile(r"^ecapa-(\d+)_(\d+)\.ckpt$")
SCHEDULE_ENTRY = "learning_rate"


def _write_pointer(path, text):
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    os.replace(temporary, path)


def _read_pointer(path):
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return handle.read().split()


class CheckpointManager:
    """Saves checkpoints of one training run into ``folder``, keeping the newest ``keep_max``."""

    def __init__(self, folder, keep_max):
        self.folder = folder
        self.keep_max = keep_max
        os.makedirs(folder, exist_ok=True)

    def checkpoints(self):
        """Checkpoint file names in the folder, oldest (fewest steps) first."""
        found = []
        for name in os.listdir(self.folder):
            match = NAME_PATTERN.match(name)
            if match:
                found.append(((int(match.group(1)), int(match.group(2))), name))
        return [name for _, name in sorted(found)]

    def save(self, cell, epoch, step_in_epoch, global_step, epoch_loss=None):
        """Save ``cell`` as ecapa-<epoch>_<step_in_epoch>.ckpt; update pointers; rotate."""
        name = f"ecapa-{epoch}_{step_in_epoch}.ckpt"
        save_checkpoint_atomic(cell, os.path.join(self.folder, name),
                               append_dict={"trained_steps": global_step, "epoch": epoch})
        _write_pointer(os.path.join(self.folder, "last"), name)
        best = _read_pointer(os.path.join(self.folder, "best"))
        if epoch_loss is not None and (best is None or epoch_loss < float(best[1])):
            _write_pointer(os.path.join(self.folder, "best"), f"{name} {epoch_loss:.6f}")
            best = [name]
        protected = {name, best[0] if best else None}
        for old in self.checkpoints()[:-self.keep_max]:
            if old not in protected:
                os.remove(os.path.join(self.folder, old))
        return os.path.join(self.folder, name)

    def latest(self):
        """Path of the newest checkpoint, or None."""
        names = self.checkpoints()
        return os.path.join(self.folder, names[-1]) if names else None


def resume_path(resume, folder):
    """The checkpoint to resume from: None for '', the newest in ``folder`` for 'auto'."""
    if not resume:
        return None
    if resume == "auto":
        return CheckpointManager(folder, 1).latest() if os.path.isdir(folder) else None
    if not os.path.isfile(resume):
        raise CheckpointError(f"resume: checkpoint {resume!r} not found")
    return resume


class TrainingState:
    """A training checkpoint read once: its path, entries and the steps it had trained."""

    def __init__(self, path):
        self.path = path
        self.entries = read_checkpoint(path)
        if "trained_steps" not in self.entries:
            raise CheckpointError(f"{path}: has no training state (is it an exported-weights checkpoint?)")
        self.trained_steps = int(self.entries["trained_steps"].asnumpy())

    def restore(self, cell):
        """Load the state into the step cell (network, head, optimizer, loss scale).

        The learning-rate schedule itself is rebuilt from the settings; its position is the
        optimizer's step counter, which the checkpoint restores.
        """
        skipped = ("trained_steps", "epoch", SCHEDULE_ENTRY)
        entries = {name: value for name, value in self.entries.items() if name not in skipped}
        expected = {name for name in cell.parameters_dict() if name != SCHEDULE_ENTRY}
        missing = sorted(expected - set(entries))
        if missing:
            raise CheckpointError(f"{self.path}: lacks {len(missing)} training parameters, e.g. {missing[0]!r}; "
                                  "was it written with other network or class_num settings?")
        for name, parameter in cell.parameters_dict().items():
            if name in entries and tuple(entries[name].shape) != tuple(parameter.shape):
                raise CheckpointError(f"{self.path}: parameter {name!r} has shape {tuple(entries[name].shape)}, "
                                      f"expected {tuple(parameter.shape)}")
        ms.load_param_into_net(cell, entries, strict_load=False)
