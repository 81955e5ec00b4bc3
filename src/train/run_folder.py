"""The checkpoints of one training run: folder checks, saving, rotation, pointers, resuming.

Files are ``ckpt_save_dir/<prefix>-<epoch>_<step>.ckpt`` (epoch from 1, step within the
epoch; the prefix is the model's, ``ecapa`` for ECAPA-TDNN). Each holds every parameter of
the training step cell (network, margin head, optimizer moments and step counter, loss
scale) plus ``trained_steps``, the number of steps trained, which fixes the data position
on resume, and the settings that give that number its meaning (:data:`STEP_SETTINGS`).
Pointer files ``last`` (the newest checkpoint) and ``best`` name a checkpoint file. ``best``
is the end-of-epoch checkpoint with the lowest validation EER when the run validates
('<name> <eer> valid_eer'), otherwise the one with the lowest epoch-mean training loss
('<name> <loss>') among the epochs trained wholly at the final margin: the loss rises with
the margin, so an epoch of the warm-up would win for its smaller margin alone. A run that
ends before its warm-up does has no ``best``.

:func:`initialise_from` starts a fresh run from another run's network and head weights.

A folder holds the checkpoints of one run: a fresh run refuses a folder that already holds
checkpoints (unless ``overwrite_checkpoints`` deletes them), ``resume: auto`` continues the
checkpoint ``last`` names, and rotation deletes only files of the run's own name pattern.
"""
import logging
import os
import re

import mindspore as ms
from mindspore import Parameter, Tensor

from src.checkpoint import EMBEDDING_PREFIX, CheckpointError, read_checkpoint, save_checkpoint
from src.fileio import check_writable_folder, remove_stale_temporaries, write_text

LOGGER = logging.getLogger(__name__)

SCHEDULE_ENTRY = "learning_rate"
LAST_POINTER = "last"
BEST_POINTER = "best"
CHECKPOINT_SUFFIX = ".ckpt"
# What the best pointer compares: the epoch's mean training loss, or the validation EER.
BEST_BY_LOSS = "train_loss"
BEST_BY_EER = "valid_eer"
HEAD_PREFIX = "head."
# Set from the margin schedule before every step, so neither resumed nor initialised from.
MARGIN_ENTRY = "head.margin"
# Settings that change what a step count means (which data and which LR a step has).
STEP_SETTINGS = ("minibatch_size", "num_epochs", "group_size", "steps_per_epoch")
_STEP_SETTING_ADVICE = {
    "minibatch_size": "minibatch_size",
    "num_epochs": "num_epochs",
    "group_size": "the number of devices",
    "steps_per_epoch": "the train_list (its utterance count)",
}


def _read_pointer(path):
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return handle.read().split() or None


def checkpoint_files(folder):
    """Visible ``*.ckpt`` file names in ``folder`` of any run, sorted; [] for a missing folder."""
    if not os.path.isdir(folder):
        return []
    return sorted(name for name in os.listdir(folder)
                  if name.endswith(CHECKPOINT_SUFFIX) and not name.startswith(".")
                  and os.path.isfile(os.path.join(folder, name)))


class CheckpointManager:
    """Saves the checkpoints of one run into ``folder``, keeping the newest ``keep_max``.

    Only files named ``<prefix>-<epoch>_<step>.ckpt`` are listed and rotated; the files
    ``last`` and ``best`` name are never rotated away. ``best_by`` is BEST_BY_LOSS or
    BEST_BY_EER (a run with validation).
    """

    def __init__(self, folder, keep_max, prefix="ecapa", best_by=BEST_BY_LOSS):
        self.folder = folder
        self.keep_max = keep_max
        self.prefix = prefix
        self.best_by = best_by
        self.pattern = re.compile(rf"^{re.escape(prefix)}-(\d+)_(\d+)\.ckpt$")
        os.makedirs(folder, exist_ok=True)

    def checkpoints(self):
        """This run's checkpoint file names in the folder, oldest (fewest steps) first."""
        found = []
        for name in os.listdir(self.folder):
            match = self.pattern.match(name)
            if match:
                found.append(((int(match.group(1)), int(match.group(2))), name))
        return [name for _, name in sorted(found)]

    def save(self, cell, epoch, step_in_epoch, global_step, epoch_loss=None, run_settings=None,
             valid_eer=None):
        """Save ``cell`` as <prefix>-<epoch>_<step_in_epoch>.ckpt; update pointers; rotate.

        ``run_settings`` ({name: int}, see STEP_SETTINGS) are stored beside the weights.
        ``epoch_loss`` / ``valid_eer`` (a fraction) are given for end-of-epoch / validated
        checkpoints; the one ``best_by`` names decides the best pointer.
        """
        name = f"{self.prefix}-{epoch}_{step_in_epoch}{CHECKPOINT_SUFFIX}"
        extra = {"trained_steps": global_step, "epoch": epoch, **(run_settings or {})}
        save_checkpoint(cell, os.path.join(self.folder, name), append_dict=extra)
        write_text(os.path.join(self.folder, LAST_POINTER), name + "\n")
        best = _read_pointer(os.path.join(self.folder, BEST_POINTER))
        value = valid_eer if self.best_by == BEST_BY_EER else epoch_loss
        if value is not None and (best is None or _pointer_metric(best) != self.best_by or value < float(best[1])):
            label = f" {BEST_BY_EER}" if self.best_by == BEST_BY_EER else ""
            write_text(os.path.join(self.folder, BEST_POINTER), f"{name} {value:.6f}{label}\n")
            best = [name]
        protected = {name, best[0] if best else None}
        for old in self.checkpoints()[:-self.keep_max]:
            if old not in protected:
                os.remove(os.path.join(self.folder, old))
        return os.path.join(self.folder, name)


def _pointer_metric(pointer):
    """What a best pointer's value measures: its third word, BEST_BY_LOSS when there is none."""
    return pointer[2] if len(pointer) > 2 else BEST_BY_LOSS


def last_checkpoint(folder):
    """The checkpoint the ``last`` pointer of ``folder`` names, or None without a pointer.

    A pointer naming a file that is gone raises CheckpointError.
    """
    pointer = _read_pointer(os.path.join(folder, LAST_POINTER))
    if pointer is None:
        return None
    path = os.path.join(folder, pointer[0])
    if not os.path.isfile(path):
        raise CheckpointError(f"resume: {os.path.join(folder, LAST_POINTER)} names {pointer[0]}, "
                              f"which is not in {folder}")
    return path


def _clear_previous_run(folder, names):
    for name in names + [LAST_POINTER, BEST_POINTER]:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            os.remove(path)
    LOGGER.warning("overwrite_checkpoints: deleted %d checkpoints of an earlier run in %s", len(names), folder)


def prepare_checkpoint_folder(folder, resume, overwrite=False):
    """Check ``folder`` before training and return the checkpoint to resume from (or None).

    The folder is created and must be writable; temporary files that killed writers left
    there are removed. ``resume`` is '' (a fresh run: the folder must hold no checkpoint,
    or ``overwrite`` deletes them), 'auto' (the checkpoint ``last`` names; none: a fresh
    start, said in the log) or a checkpoint path. Raises CheckpointError / OutputError.
    """
    check_writable_folder(folder, "ckpt_save_dir")
    stale = remove_stale_temporaries(folder)
    if stale:
        LOGGER.info("removed %d unfinished temporary files of a killed run from %s", len(stale), folder)
    existing = checkpoint_files(folder)
    if resume == "auto":
        path = last_checkpoint(folder)
        if path is None and existing:
            raise CheckpointError(f"resume: {folder} holds checkpoints ({_examples(existing)}) but no "
                                  f"'{LAST_POINTER}' file; resume one with --resume=PATH")
        if path is None:
            LOGGER.info("resume=auto: no checkpoint in %s, starting a fresh run", folder)
        return path
    if resume:
        if not os.path.isfile(resume):
            raise CheckpointError(f"resume: checkpoint {resume!r} not found")
        inside = os.path.samefile(os.path.dirname(os.path.abspath(resume)), folder)
        if inside or not existing:
            return resume
    if existing and overwrite:
        _clear_previous_run(folder, existing)
    elif existing:
        raise CheckpointError(
            f"ckpt_save_dir: {folder} already holds {len(existing)} checkpoints of another run "
            f"({_examples(existing)}); continue that run with --resume=auto, write to another "
            "--ckpt_save_dir, or delete them with --overwrite_checkpoints=true")
    return resume or None


def _examples(names, shown=3):
    more = f", ... ({len(names)} in all)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


class TrainingState:
    """A training checkpoint read once: its path, entries and the steps it had trained."""

    def __init__(self, path):
        self.path = path
        self.entries = read_checkpoint(path)
        if "trained_steps" not in self.entries:
            raise CheckpointError(f"{path}: has no training state (is it an exported-weights checkpoint?)")
        self.trained_steps = int(self.entries["trained_steps"].asnumpy())

    def check_run_settings(self, run_settings):
        """Raise CheckpointError when a setting of STEP_SETTINGS differs from the checkpoint's.

        Checkpoints written before these settings were stored are accepted as they are.
        """
        for key in STEP_SETTINGS:
            if key in self.entries and key in run_settings:
                stored = int(self.entries[key].asnumpy())
                if stored != run_settings[key]:
                    raise CheckpointError(
                        f"resume: {self.path} was trained with {key} {stored}, this run has "
                        f"{run_settings[key]}; its {self.trained_steps} steps would mean other data and "
                        f"learning rates. Resume with the same {_STEP_SETTING_ADVICE[key]}, or start a "
                        "fresh run in another ckpt_save_dir")

    def restore(self, cell):
        """Load the state into the step cell (network, head, optimizer, loss scale).

        The learning-rate schedule itself is rebuilt from the settings; its position is the
        optimizer's step counter, which the checkpoint restores.
        """
        skipped = ("trained_steps", "epoch", SCHEDULE_ENTRY, MARGIN_ENTRY, *STEP_SETTINGS)
        entries = {name: value for name, value in self.entries.items() if name not in skipped}
        expected = {name for name in cell.parameters_dict() if name not in (SCHEDULE_ENTRY, MARGIN_ENTRY)}
        missing = sorted(expected - set(entries))
        if missing:
            raise CheckpointError(f"{self.path}: lacks {len(missing)} training parameters, e.g. {missing[0]!r}; "
                                  "was it written with other network or class_num settings?")
        for name, parameter in cell.parameters_dict().items():
            if name in entries and tuple(entries[name].shape) != tuple(parameter.shape):
                raise CheckpointError(f"{self.path}: parameter {name!r} has shape {tuple(entries[name].shape)}, "
                                      f"expected {tuple(parameter.shape)}")
        ms.load_param_into_net(cell, entries, strict_load=False)


def initialise_from(path, loss_net):
    """Load the embedding network and margin-head weights of checkpoint ``path`` into ``loss_net``.

    ``loss_net`` is a :class:`~src.model.speaker_loss.SpeakerLoss`; optimizer state, step
    count and margin are not taken (the run starts afresh with these weights). A head of
    K classes may come from a checkpoint whose head has a multiple of K rows, such as a run
    with speed perturbation (K speakers x speeds, see src/data/speed_perturb.py): its first
    K rows, the speakers at their own speed, are kept. A checkpoint without a head, or with
    a head of other classes (another set of speakers, e.g. an imported VoxCeleb model
    fine-tuned on one's own), leaves the head at its fresh initialisation, as the returned
    one-line description says. Raises CheckpointError for a missing network parameter or
    another shape.
    """
    entries = read_checkpoint(path)
    wanted = {name: parameter for name, parameter in loss_net.parameters_dict().items()
              if name.startswith(EMBEDDING_PREFIX) or (name.startswith(HEAD_PREFIX) and parameter.requires_grad)}
    loaded, notes = {}, []
    for name, parameter in wanted.items():
        head = name.startswith(HEAD_PREFIX)
        if name not in entries:
            if head:
                notes.append(f"{name} starts fresh: the checkpoint has no margin head")
                continue
            raise CheckpointError(f"init_from: {path} lacks {name!r}; is it a training or averaged checkpoint "
                                  "of this model?")
        value = entries[name]
        expected, found = tuple(parameter.shape), tuple(value.shape)
        other_classes = head and len(found) == 2 and found[1:] == expected[1:] and found[0] != expected[0]
        if other_classes and found[0] % expected[0] == 0:
            value = Parameter(Tensor(value.asnumpy()[:expected[0]]), name=name)
            notes.append(f"first {expected[0]} of the {found[0]} rows of {name}")
        elif other_classes:
            notes.append(f"{name} starts fresh: the checkpoint's head has {found[0]} classes, this run {expected[0]}")
            continue
        elif found != expected:
            raise CheckpointError(f"init_from: {path}: {name!r} has shape {found}, this run expects {expected}; "
                                  "check the network settings")
        loaded[name] = value
    ms.load_param_into_net(loss_net, loaded, strict_load=False)
    kept = f" ({'; '.join(notes)})" if notes else ""
    what = "network and head" if any(name.startswith(HEAD_PREFIX) for name in loaded) else "network"
    return f"initialised {len(loaded)} {what} parameters from {path}{kept}"
