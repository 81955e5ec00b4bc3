"""DET and histogram figures are written as valid PNG files, without a display."""
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from src.evaluation.metrics import compute_roc, evaluate
from src.evaluation.plots import plot_det_curve, plot_score_histograms

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def png_size(path):
    """(width, height) in pixels from a PNG file's header; fails if it is not a PNG."""
    with open(path, "rb") as handle:
        header = handle.read(24)
    assert header[:8] == PNG_SIGNATURE
    assert header[12:16] == b"IHDR"
    return struct.unpack(">II", header[16:24])


@pytest.fixture
def trials():
    rng = np.random.default_rng(0)
    labels = rng.random(3000) < 0.3
    return rng.normal(size=3000) + 2.0 * labels, labels


def test_det_curve_png(trials, tmp_path):
    path = tmp_path / "nested" / "det.png"
    assert plot_det_curve(compute_roc(*trials), path) == str(path)
    assert os.path.getsize(path) > 1000
    assert png_size(path) == (660, 660)  # 5.5 in x 120 dpi


def test_score_histograms_png(trials, tmp_path):
    result = evaluate(*trials)
    path = plot_score_histograms(*trials, result.eer_threshold, tmp_path / "hist.png")
    assert os.path.getsize(path) > 1000
    assert png_size(path) == (840, 540)  # 7 x 4.5 in x 120 dpi


@pytest.mark.parametrize("scores, labels", [
    ([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]),  # EER 0: zero rates fall outside the probit axes
    ([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]),  # EER 100%
    ([0.5, 0.5, 0.5], [1, 0, 1]),  # a single tie group
])
def test_extreme_results_still_plot(scores, labels, tmp_path):
    result = evaluate(scores, labels)
    png_size(plot_det_curve(result.roc, tmp_path / "det.png"))
    png_size(plot_score_histograms(scores, labels, result.eer_threshold, tmp_path / "hist.png"))


def test_plots_work_headless_without_pyplot(tmp_path):
    """No display, an interactive default backend: plotting must neither need nor load pyplot."""
    script = (
        "import sys\n"
        "from src.evaluation.metrics import evaluate\n"
        "from src.evaluation.plots import plot_det_curve, plot_score_histograms\n"
        "result = evaluate([0.1, 0.4, 0.35, 0.8, 0.6], [0, 0, 1, 1, 0])\n"
        f"plot_det_curve(result.roc, {str(tmp_path / 'det.png')!r})\n"
        f"plot_score_histograms([0.1, 0.4, 0.35, 0.8, 0.6], [0, 0, 1, 1, 0], 0.5, "
        f"{str(tmp_path / 'hist.png')!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    env = {key: value for key, value in os.environ.items() if key not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["MPLBACKEND"] = "TkAgg"
    subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env, check=True, timeout=120)
    assert png_size(tmp_path / "det.png") == (660, 660)
    assert png_size(tmp_path / "hist.png") == (840, 540)
