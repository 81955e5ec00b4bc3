"""The picture of a training run's curves, ``training_curves.png`` in its checkpoint folder.

Drawn from the records of src/train/run_record.py with matplotlib's Agg canvas (no display):
loss and accuracy, learning rate and margin against the global step, and the validation EER
when the run validates. Written atomically, so a viewer never opens a half-written file.
"""
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from src.fileio import atomic_write

PANEL_HEIGHT_INCHES = 2.6


def _series(records, kind, key):
    """(steps, values) of ``key`` over the records of ``kind`` that hold it."""
    chosen = [(record["step"], record[key]) for record in records if record["kind"] == kind and key in record]
    return (np.array([step for step, _ in chosen]), np.array([value for _, value in chosen], float))


def _twin(axes, records, left, right, labels, colours=("tab:blue", "tab:orange")):
    """Plot step series ``left`` on ``axes`` and ``right`` on a twin axis; returns the twin."""
    other = axes.twinx()
    for target, key, label, colour in ((axes, left, labels[0], colours[0]), (other, right, labels[1], colours[1])):
        steps, values = _series(records, "step", key)
        target.plot(steps, values, color=colour, linewidth=1.2, label=label)
        target.set_ylabel(label, color=colour)
        target.tick_params(axis="y", colors=colour)
    return other


def draw_training_curves(records, path, title="training"):
    """Save the curves of ``records`` (dicts with 'kind' step/epoch/validation and 'step') as PNG at
    ``path``; returns the number of panels drawn (2, or 3 with validation)."""
    validated = any(record["kind"] == "validation" for record in records)
    panels = 3 if validated else 2
    figure = Figure(figsize=(8, PANEL_HEIGHT_INCHES * panels), dpi=100)
    loss_axes, rate_axes, *rest = figure.subplots(panels, 1, sharex=True)
    accuracy_axes = _twin(loss_axes, records, "loss", "accuracy", ("loss", "accuracy (%)"))
    epoch_steps, epoch_losses = _series(records, "epoch", "loss")
    loss_axes.plot(epoch_steps, epoch_losses, "o", color="tab:blue", markersize=4, label="epoch mean loss")
    loss_axes.set_title(title)
    accuracy_axes.set_ylim(0, 100)
    handles = loss_axes.get_lines() + accuracy_axes.get_lines()
    loss_axes.legend(handles, [line.get_label() for line in handles], loc="center right", fontsize="small")
    margin_axes = _twin(rate_axes, records, "learning_rate", "margin", ("learning rate", "margin"),
                        ("tab:green", "tab:red"))
    if np.all(_series(records, "step", "learning_rate")[1] > 0):
        rate_axes.set_yscale("log")
    margin_axes.set_ylim(bottom=0)
    if validated:
        axes = rest[0]
        steps, eers = _series(records, "validation", "eer")
        axes.plot(steps, 100 * eers, "o-", color="tab:purple", markersize=4)
        axes.set_ylabel("validation EER (%)", color="tab:purple")
    (rest[0] if validated else rate_axes).set_xlabel("global step")
    for axes in figure.axes:
        axes.grid(True, linewidth=0.5, alpha=0.4)
    figure.tight_layout()
    FigureCanvasAgg(figure)
    with atomic_write(path, suffix=".png") as temporary:
        figure.savefig(temporary, format="png")
    return panels
