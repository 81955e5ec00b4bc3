"""Score files and the printed result summary.

Score file: one trial a line, ``<utt_a> <utt_b> <score> <label>`` with label 1 (target) or
0 (non-target). Scores are written with Python's shortest exact float representation, so
reading a file back reproduces the scores, and therefore the metrics, exactly.

Summary lines (``EER`` in percent, DCFs normalised, Cllr in bits; actDCF and Cllr read the
scores as log-likelihood ratios, see src/evaluation/metrics.py)::

    EER = 1.23%
    minDCF(p=0.01) = 0.1234
    minDCF(p=0.05) = 0.0987
    actDCF(p=0.01) = 0.1402
    actDCF(p=0.05) = 0.1050
    Cllr = 0.2345
    minCllr = 0.2101

When the scores are not calibrated LLRs, :data:`UNCALIBRATED_NOTE` says what the actDCF and
Cllr lines then mean.

``metrics.json`` (:func:`write_metrics_json`) holds the same figures for scripts: ``eer``
(a fraction) and its threshold, ``min_dcf`` {p_target: {value, threshold}}, with a
calibration also ``act_dcf`` (same form), ``cllr`` and ``min_cllr`` (bits), the trial
counts, the model file and its SHA-256, the scoring, the calibration (or null) and the time.
"""
import json
import math
import os
import time

import numpy as np

from src.data.lists import ListFormatError, Trial
from src.fileio import text_lines, write_lines, write_text


def write_scores(path, trials, scores):
    """Write ``trials`` with their ``scores`` (num_trials,) to ``path``, atomically."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(trials),):
        raise ValueError(f"expected {len(trials)} scores as a 1-D array, got shape {scores.shape}")
    write_lines(path, (f"{trial.utt_a} {trial.utt_b} {score!r} {int(trial.target)}"
                       for trial, score in zip(trials, scores.tolist())))
    return path


def read_scores(path):
    """Read a score file; return ``(trials, scores)``: a list of Trial and (num_trials,) float64.

    Malformed lines raise ListFormatError naming the file and line number.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ListFormatError(f"{path}: score file not found")
    trials, scores = [], []
    for number, line in text_lines(path):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 4 or fields[3] not in ("0", "1"):
            raise ListFormatError(
                f"{path}:{number}: expected '<utt_a> <utt_b> <score> <1|0>', got {line.strip()!r}")
        try:
            score = float(fields[2])
        except ValueError:
            score = math.nan
        if not math.isfinite(score):
            raise ListFormatError(f"{path}:{number}: score {fields[2]!r} is not a finite number")
        trials.append(Trial(target=fields[3] == "1", utt_a=fields[0], utt_b=fields[1]))
        scores.append(score)
    if not trials:
        raise ListFormatError(f"{path}: score file is empty")
    return trials, np.array(scores, dtype=np.float64)


UNCALIBRATED_NOTE = ("actDCF and Cllr read the raw scores as LLRs: they are what deciding by "
                     "raw score >= Bayes threshold gives (uncalibrated)")


def format_summary(result):
    """Summary lines of a metrics.VerificationResult: EER first, then minDCF and actDCF per
    p_target, Cllr and minCllr."""
    lines = [f"EER = {100 * result.eer:.2f}%"]
    for name, values in (("minDCF", result.min_dcf), ("actDCF", result.act_dcf)):
        lines += [f"{name}(p={p_target:g}) = {value:.4f}" for p_target, (value, _) in sorted(values.items())]
    return lines + [f"Cllr = {result.cllr:.4f}", f"minCllr = {result.min_cllr:.4f}"]


def append_summary(path, result):
    """Append the summary lines of ``result`` to the text file ``path`` (e.g. ``acc.log``)."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a", encoding="utf-8") as log:
        log.writelines(line + "\n" for line in format_summary(result))
    return path


def _by_p_target(values):
    return {f"{p_target:g}": {"value": value, "threshold": threshold}
            for p_target, (value, threshold) in sorted(values.items())}


def write_metrics_json(path, result, calibration_kind, **details):
    """Write ``result`` (a metrics.VerificationResult) as metrics.json (module docstring), atomically.

    ``calibration_kind``: the calibration that made the scores LLRs, or None (then actDCF and Cllr,
    meaningless for raw scores, are left out); ``details``: trials, target_trials, model_path, ...
    """
    metrics = {"eer": result.eer, "eer_threshold": result.eer_threshold, "min_dcf": _by_p_target(result.min_dcf)}
    if calibration_kind is not None:
        metrics.update(act_dcf=_by_p_target(result.act_dcf), cllr=result.cllr, min_cllr=result.min_cllr)
    document = {**metrics, **details, "calibration": calibration_kind, "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    return write_text(path, json.dumps(document, indent=1) + "\n")
