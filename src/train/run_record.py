"""What a training run records for people and scripts to follow it, in its checkpoint folder.

Rank 0 writes, beside the checkpoints:

- ``metrics.jsonl``: one JSON object a line, ``kind`` 'step' (each logged step: loss,
  accuracy, learning rate, margin, gradient norm, loss scale, skipped steps, samples/s and
  the share of time spent waiting for data), 'validation' (EER and minDCF at each p_target)
  or 'epoch' (mean loss and accuracy, seconds); every record has the global ``step`` and
  ``epoch``. Format in docs/training.md.
- ``tensorboard/``: TensorBoard event files of the same figures (tags ``train/...``,
  ``valid/...``, ``epoch/...``), the settings as text and as hparams (setting ``tensorboard``).
- ``training_curves.png``: the picture of src/train/curves.py, redrawn at each epoch end.

A resumed run continues the same curves: the records after its checkpoint's step (logged by
the run it resumes before that was stopped) are dropped from metrics.jsonl, and TensorBoard
is told to purge them (``purge_step``), so no step appears twice or out of order.
"""
import json
import os
import shutil

from src.config import ConfigError
from src.fileio import write_lines
from src.train.curves import draw_training_curves

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
CURVES_FILE = "training_curves.png"


def read_records(path):
    """The records of a metrics.jsonl (a last line cut short by a killed run is left out)."""
    if not os.path.isfile(path):
        return []
    records = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                records.append(json.loads(line))
            except ValueError:
                break
    return records


def _short_folder(folder):
    """The last two parts of ``folder`` ('demo/ckpt'), naming the run in the picture's title."""
    return "/".join(os.path.abspath(folder).split(os.sep)[-2:])


def _hparams(settings):
    """The settings TensorBoard's hparams can show: numbers, strings and booleans."""
    return {key: value for key, value in settings.items() if isinstance(value, (bool, int, float, str))}


class RunRecord:
    """The records of the run in ``folder`` from global step ``start_step`` on (0: a fresh run).

    ``settings``: the run's settings (dict), written to TensorBoard by a fresh run;
    ``tensorboard``: whether to write event files.
    """

    def __init__(self, folder, start_step, settings, tensorboard=True):
        self.folder = folder
        self.metrics_path = os.path.join(folder, METRICS_FILE)
        self.records = [record for record in read_records(self.metrics_path) if record["step"] <= start_step]
        write_lines(self.metrics_path, [json.dumps(record) for record in self.records])
        self.writer = None
        events = os.path.join(folder, TENSORBOARD_DIR)
        if start_step == 0:  # a fresh run: events of an earlier start that saved nothing go
            shutil.rmtree(events, ignore_errors=True)
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter
                from tensorboardX.summary import hparams
            except ImportError:
                raise ConfigError("tensorboard: the tensorboardX package is not installed (pip install -r "
                                  "requirements.txt), or set tensorboard false") from None

            self.writer = SummaryWriter(events, purge_step=start_step + 1)
            if start_step == 0:
                text = "\n".join(f"    {key}: {value}" for key, value in settings.items())
                self.writer.add_text("settings", text, 0)
                for summary in hparams(_hparams(settings), {"valid/eer": 0.0, "epoch/loss": 0.0}):
                    self.writer.file_writer.add_summary(summary)

    def _add(self, kind, step, epoch, values, prefix):
        record = {"kind": kind, "step": step, "epoch": epoch, **values}
        self.records.append(record)
        with open(self.metrics_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for name, value in values.items():
                if isinstance(value, dict):
                    for key, item in value.items():
                        self.writer.add_scalar(f"{prefix}/{name}_{key}", item, step)
                else:
                    self.writer.add_scalar(f"{prefix}/{name}", value, step)

    def step(self, step, epoch, **values):
        """Record a logged step: ``values`` of loss, accuracy (%), learning_rate, ... (module docstring)."""
        self._add("step", step, epoch, values, "train")

    def validation(self, step, epoch, eer, min_dcf):
        """Record a validation: ``eer`` (a fraction) and ``min_dcf`` {p_target: value}."""
        self._add("validation", step, epoch, {"eer": eer, "min_dcf": {f"{p:g}": value for p, value in min_dcf.items()}},
                  "valid")

    def flush(self):
        """Put the events written so far on disk (at each checkpoint: a resumed run continues from there)."""
        if self.writer is not None:
            self.writer.flush()

    def epoch(self, step, epoch, **values):
        """Record an epoch's end (mean loss, accuracy, seconds) and redraw the curves."""
        self._add("epoch", step, epoch, values, "epoch")
        self.flush()
        draw_training_curves(self.records, os.path.join(self.folder, CURVES_FILE),
                             title=f"{_short_folder(self.folder)}: epoch {epoch}")

    def close(self):
        """Flush and close the event file."""
        if self.writer is not None:
            self.writer.close()
