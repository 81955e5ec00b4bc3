"""PNG figures of verification results: DET curve and score histograms.

Figures are drawn with matplotlib's Agg canvas directly (no pyplot, no display), so they
work on headless machines and leave the caller's matplotlib backend untouched.
"""
import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.special import ndtri

from src.evaluation.metrics import eer_from_roc, validate_trials

# Error rates (fractions) that may carry a tick on the probit axes of a DET plot.
DET_TICKS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05,
             0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.98, 0.99)


def _save(figure, path):
    """Render ``figure`` to a PNG file at ``path`` (parent folders created); return the path."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, format="png")
    return path


def _det_range(roc, eer):
    """Lowest and highest error rate shown on the DET axes, both taken from DET_TICKS.

    The low end is about the resolution of the smaller trial class (never below 0.01%);
    the high end is 40%, or higher when the EER point would not fit.
    """
    resolution = 0.5 / min(roc.num_targets, roc.num_nontargets)
    low = max(tick for tick in DET_TICKS if tick <= max(resolution, DET_TICKS[0]))
    high = min((tick for tick in DET_TICKS if tick >= max(0.4, 1.5 * eer)), default=DET_TICKS[-1])
    return low, high


def plot_det_curve(roc, path, title="DET curve"):
    """Save the DET curve of ``roc`` (a metrics.Roc) as PNG at ``path``; return the path.

    Both axes are probit-scaled error rates in percent (false-alarm rate on x, miss rate
    on y); the EER point is marked and labelled.
    """
    eer, _ = eer_from_roc(roc)
    low, high = _det_range(roc, eer)
    # Rates outside the shown range are clipped just past it so the curve leaves the frame.
    margin = ndtri(low) - 1.0, ndtri(high) + 1.0
    x = np.clip(ndtri(roc.fpr), *margin)
    y = np.clip(ndtri(roc.fnr), *margin)
    ticks = [tick for tick in DET_TICKS if low <= tick <= high]
    positions = ndtri(np.array(ticks))
    labels = [f"{100 * tick:g}" for tick in ticks]

    figure = Figure(figsize=(5.5, 5.5), dpi=120)
    axes = figure.add_subplot()
    axes.plot(x, y, color="tab:blue", linewidth=1.5, label="system")
    axes.plot(positions[[0, -1]], positions[[0, -1]], color="grey", linewidth=0.8,
              linestyle="--", label="FNR = FPR")
    eer_position = ndtri(np.clip(eer, low, high))
    axes.plot([eer_position], [eer_position], marker="o", color="tab:red", linestyle="none",
              label="EER")
    axes.annotate(f"EER = {100 * eer:.2f}%", (eer_position, eer_position),
                  xytext=(10, 6), textcoords="offset points", color="tab:red")
    axes.set_xlim(positions[0], positions[-1])
    axes.set_ylim(positions[0], positions[-1])
    axes.set_xticks(positions, labels, rotation=45)
    axes.set_yticks(positions, labels)
    axes.set_xlabel("False alarm rate (%)")
    axes.set_ylabel("Miss rate (%)")
    axes.set_title(title)
    axes.grid(True, linewidth=0.5, alpha=0.5)
    axes.legend(loc="upper right")
    figure.tight_layout()
    return _save(figure, path)


def plot_score_histograms(scores, labels, threshold, path, title="Score distributions", bins=80):
    """Save target / non-target score histograms as PNG at ``path``; return the path.

    scores: (N,) floats; labels: (N,) bool or 0/1; threshold: score marked with a
    vertical line (normally the EER threshold). Each histogram is a density so the two
    classes are comparable whatever their sizes.
    """
    scores, labels = validate_trials(scores, labels)
    edges = np.histogram_bin_edges(scores, bins=bins)
    figure = Figure(figsize=(7, 4.5), dpi=120)
    axes = figure.add_subplot()
    axes.hist(scores[~labels], bins=edges, density=True, alpha=0.6, color="tab:orange",
              label=f"non-target ({np.count_nonzero(~labels)})")
    axes.hist(scores[labels], bins=edges, density=True, alpha=0.6, color="tab:blue",
              label=f"target ({np.count_nonzero(labels)})")
    axes.axvline(threshold, color="tab:red", linestyle="--", label=f"EER threshold = {threshold:.4g}")
    axes.set_xlabel("Score")
    axes.set_ylabel("Density")
    axes.set_title(title)
    axes.legend(loc="upper left")
    figure.tight_layout()
    return _save(figure, path)
