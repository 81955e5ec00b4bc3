"""Score calibration: a logistic-regression map from a trial's score to a log-likelihood ratio.

A calibration turns the score of a trial (cosine, possibly AS-normalised) and, for the
``qmf`` kind, quality measures of its two sides into a natural-log LLR that can be
thresholded at the Bayes threshold of any operating point (src/evaluation/metrics.py)::

    llr = bias + sum_i weights[i] * feature[i]

Features (the names stored in the calibration file):

- ``score``: the trial score (both kinds);
- ``min_log_duration``, ``max_log_duration``: the smaller and the larger of the natural
  logs of the two sides' audio durations in seconds (min and max make the feature
  independent of which side is listed first);
- ``mean_embedding_norm``: the mean of the two sides' raw embedding L2 norms (before any
  mean subtraction or length normalisation).

``linear`` uses ``score`` alone, ``qmf`` (quality measure functions) all four.

Fitting is prior-weighted logistic regression (Brummer's FoCal): with target prior ``P``,
``Nt`` target and ``Nn`` non-target trials and ``logit P = log(P / (1 - P))``, minimise::

    P / Nt * sum_targets log(1 + exp(-(llr + logit P)))
        + (1 - P) / Nn * sum_nontargets log(1 + exp(llr + logit P))

so the class proportions of the calibration list do not matter, only ``P``. Features are
standardised for the optimiser and a ridge of :data:`RIDGE` on the standardised weights
keeps the fit finite on a perfectly separated list; the stored weights apply to the raw
features.

The calibration file is a small JSON document (see :meth:`Calibration.to_dict`): kind,
feature names, weights, bias, the prior, the scoring and model it was fitted for, what it
was fitted on, and LLR thresholds that give chosen false-accept rates on the calibration list.
"""
import json
import math
import os
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from src.errors import InputError
from src.fileio import write_text

FORMAT = "ecapa-tdnn score calibration"
FORMAT_VERSION = 1
KINDS = {"linear": ("score",),
         "qmf": ("score", "min_log_duration", "max_log_duration", "mean_embedding_norm")}
QUALITY_FEATURES = ("min_log_duration", "max_log_duration", "mean_embedding_norm")
RIDGE = 1e-4
# False-accept rates whose calibration-list thresholds are stored in every calibration file.
STORED_FA_RATES = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1)
# A false-accept rate is stored only if the list holds enough non-targets to expect this
# many false accepts at that rate.
MIN_FALSE_ACCEPTS = 10


class CalibrationError(InputError):
    """A calibration file that is missing or malformed, or does not fit the scores at hand."""


def trial_features(names, scores, durations=None, norms=None):
    """Feature matrix (N, F) float64 of N trials for the feature ``names``.

    scores: (N,) trial scores; durations: (N, 2) seconds of the two sides; norms: (N, 2)
    raw embedding norms of the two sides. durations and norms are needed only by the
    quality features.
    """
    scores = np.asarray(scores, dtype=np.float64)
    columns = {"score": lambda: scores}
    # Element-wise over the two columns: numpy's reductions over an axis of 2 are ten times slower.
    if durations is not None:
        log_durations = np.log(np.asarray(durations, dtype=np.float64))
        columns["min_log_duration"] = lambda: np.minimum(log_durations[:, 0], log_durations[:, 1])
        columns["max_log_duration"] = lambda: np.maximum(log_durations[:, 0], log_durations[:, 1])
    if norms is not None:
        norms = np.asarray(norms, dtype=np.float64)
        columns["mean_embedding_norm"] = lambda: 0.5 * (norms[:, 0] + norms[:, 1])
    missing = [name for name in names if name not in columns]
    if missing:
        raise ValueError(f"features {', '.join(missing)} need the durations and embedding norms of the trials")
    return np.stack([columns[name]() for name in names], axis=1)


def fit_logistic(features, labels, prior, ridge=RIDGE):
    """Prior-weighted logistic regression (module docstring): ``(weights (F,), bias)``.

    features: (N, F) float; labels: (N,) bool or 0/1 with both classes present; prior in (0, 1).
    """
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    if not 0.0 < prior < 1.0:
        raise ValueError(f"the calibration prior must lie strictly between 0 and 1, got {prior}")
    num_targets = int(labels.sum())
    if num_targets in (0, labels.size):
        raise ValueError("the calibration trials must hold both target and non-target trials")
    centre = features.mean(axis=0)
    spread = features.std(axis=0)
    spread[spread == 0] = 1.0
    standard = (features - centre) / spread
    # Signed per-trial weights: d(loss)/d(z) = trial_weight * (sigmoid(z) - label).
    trial_weight = np.where(labels, prior / num_targets, (1.0 - prior) / (labels.size - num_targets))
    offset = math.log(prior / (1.0 - prior))

    def loss_and_gradient(parameters):
        weights, bias = parameters[:-1], parameters[-1]
        z = standard @ weights + bias + offset
        signed = np.where(labels, -z, z)
        loss = trial_weight @ np.logaddexp(0.0, signed) + 0.5 * ridge * weights @ weights
        slope = trial_weight * (expit(z) - labels)
        return loss, np.append(standard.T @ slope + ridge * weights, slope.sum())

    start = np.zeros(features.shape[1] + 1)
    fitted = minimize(loss_and_gradient, start, jac=True, method="L-BFGS-B",
                      options={"maxiter": 1000, "gtol": 1e-10, "ftol": 1e-14})
    weights = fitted.x[:-1] / spread
    return weights, float(fitted.x[-1] - weights @ centre)


def fa_rate_threshold(nontarget_llrs, fa_rate):
    """Lowest LLR threshold whose false-accept rate on ``nontarget_llrs`` (M,) is <= ``fa_rate``.

    A trial is accepted when its LLR is >= the threshold.
    """
    ordered = np.sort(np.asarray(nontarget_llrs, dtype=np.float64))[::-1]
    allowed = int(math.floor(fa_rate * ordered.size + 1e-9))
    return float(np.nextafter(ordered[allowed], np.inf))


@dataclass(frozen=True)
class Calibration:
    """A fitted calibration (see the module docstring).

    features: feature names (F,); weights: (F,) floats; bias: float; prior: the target
    prior of the fit; scoring: description of the scores it applies to (e.g. 'cosine,
    AS-norm (cohort 800, top_n 100)'); model_sha256: the checkpoint whose scores it was
    fitted on; fitted_on: what it was fitted on (trial list, counts); fa_thresholds:
    ``[{"fa_rate", "llr_threshold", "miss_rate"}]`` measured on the calibration list.
    """
    kind: str
    features: tuple
    weights: tuple
    bias: float
    prior: float
    scoring: str
    model_sha256: str
    fitted_on: dict
    fa_thresholds: list = field(default_factory=list)

    @property
    def needs_qualities(self):
        """True when the LLR needs durations and embedding norms, not only the score."""
        return any(name in QUALITY_FEATURES for name in self.features)

    def llrs(self, scores, durations=None, norms=None):
        """LLRs (N,) float64 of N trials (arguments as for :func:`trial_features`)."""
        return trial_features(self.features, scores, durations, norms) @ np.array(self.weights) + self.bias

    def fa_threshold(self, fa_rate):
        """The stored LLR threshold for false-accept rate ``fa_rate``; CalibrationError if absent."""
        for entry in self.fa_thresholds:
            if math.isclose(entry["fa_rate"], fa_rate, rel_tol=1e-9):
                return entry["llr_threshold"]
        stored = ", ".join(f"{entry['fa_rate']:g}" for entry in self.fa_thresholds) or "none"
        raise CalibrationError(f"target_fa_rate: {fa_rate:g} has no threshold in the calibration file "
                               f"(stored rates: {stored}); refit with --target_fa_rate {fa_rate:g} on a "
                               f"calibration list with at least {math.ceil(MIN_FALSE_ACCEPTS / fa_rate)} "
                               "non-target trials")

    def to_dict(self):
        """The JSON document of this calibration."""
        return {"format": FORMAT, "version": FORMAT_VERSION, "kind": self.kind,
                "features": list(self.features), "weights": list(self.weights), "bias": self.bias,
                "prior": self.prior, "scoring": self.scoring, "model_sha256": self.model_sha256,
                "fitted_on": self.fitted_on, "fa_thresholds": self.fa_thresholds}


def fit_calibration(kind, labels, prior, scores, durations=None, norms=None, fa_rates=(), **record):
    """Fit a calibration of ``kind`` ('linear' or 'qmf') to N calibration trials.

    labels: (N,) bool; scores, durations, norms: as for :func:`trial_features`.
    fa_rates: false-accept rates, besides :data:`STORED_FA_RATES`, whose calibration-list
    thresholds are stored (only those the list has enough non-targets for).
    record: ``scoring``, ``model_sha256`` and ``fitted_on`` (the trial counts are added to it).
    Returns ``(calibration, llrs (N,))``: the fit and the calibrated LLRs of the trials.
    """
    names = KINDS[kind]
    labels = np.asarray(labels).astype(bool)
    features = trial_features(names, scores, durations, norms)
    weights, bias = fit_logistic(features, labels, prior)
    llrs = features @ weights + bias
    nontargets = llrs[~labels]
    thresholds = []
    for fa_rate in sorted(set(STORED_FA_RATES) | set(fa_rates)):
        if fa_rate * nontargets.size >= MIN_FALSE_ACCEPTS:
            threshold = fa_rate_threshold(nontargets, fa_rate)
            thresholds.append({"fa_rate": fa_rate, "llr_threshold": threshold,
                               "miss_rate": float(np.mean(llrs[labels] < threshold))})
    fitted_on = dict(record.pop("fitted_on"), trials=int(labels.size), targets=int(labels.sum()),
                     nontargets=int(nontargets.size))
    calibration = Calibration(kind=kind, features=names, weights=tuple(float(w) for w in weights),
                              bias=bias, prior=float(prior), fitted_on=fitted_on,
                              fa_thresholds=thresholds, **record)
    return calibration, llrs


def save_calibration(path, calibration):
    """Write ``calibration`` to ``path`` as indented JSON, atomically."""
    return write_text(path, json.dumps(calibration.to_dict(), indent=2) + "\n")


def _require(document, key, kinds, path):
    value = document.get(key)
    if not isinstance(value, kinds) or isinstance(value, bool):
        raise CalibrationError(f"{path}: '{key}' is missing or has the wrong type; not a calibration file "
                               "written by eval.py?")
    return value


def load_calibration(path):
    """Read a calibration file written by :func:`save_calibration`; CalibrationError if malformed."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CalibrationError(f"calibration_file: file {path!r} not found")
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CalibrationError(f"{path}: not a JSON file ({error})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CalibrationError(f"{path}: not a calibration file (no \"format\": \"{FORMAT}\")")
    if document.get("version") != FORMAT_VERSION:
        raise CalibrationError(f"{path}: calibration format version {document.get('version')!r}, "
                               f"this program reads version {FORMAT_VERSION}")
    kind = _require(document, "kind", str, path)
    features = tuple(_require(document, "features", list, path))
    weights = tuple(_require(document, "weights", list, path))
    if kind not in KINDS or features != KINDS[kind]:
        raise CalibrationError(f"{path}: kind {kind!r} with features {list(features)} is not one of "
                               f"{', '.join(f'{name} {list(names)}' for name, names in KINDS.items())}")
    if len(weights) != len(features) or not all(isinstance(w, (int, float)) and math.isfinite(w)
                                                for w in weights):
        raise CalibrationError(f"{path}: expected {len(features)} finite weights, got {list(weights)}")
    thresholds = _require(document, "fa_thresholds", list, path)
    for entry in thresholds:
        if not (isinstance(entry, dict) and all(isinstance(entry.get(key), (int, float))
                                                for key in ("fa_rate", "llr_threshold"))):
            raise CalibrationError(f"{path}: fa_thresholds entry {entry!r} lacks a numeric "
                                   "fa_rate or llr_threshold")
    return Calibration(kind=kind, features=features, weights=tuple(float(w) for w in weights),
                       bias=float(_require(document, "bias", (int, float), path)),
                       prior=float(_require(document, "prior", (int, float), path)),
                       scoring=_require(document, "scoring", str, path),
                       model_sha256=_require(document, "model_sha256", str, path),
                       fitted_on=_require(document, "fitted_on", dict, path),
                       fa_thresholds=thresholds)


def check_applicable(calibration, path, scoring, model_sha256=None):
    """Raise CalibrationError unless ``calibration`` was fitted for this scoring (and model)."""
    if calibration.scoring != scoring:
        raise CalibrationError(f"{path}: fitted on '{calibration.scoring}' scores, but the settings give "
                               f"'{scoring}' scores; use the score_norm, mean_subtraction, top_n and cohort "
                               "settings of the fit")
    if model_sha256 is not None and calibration.model_sha256 != model_sha256:
        raise CalibrationError(f"{path}: fitted on the scores of another checkpoint "
                               f"({calibration.fitted_on.get('model_path', 'unknown')}); "
                               "refit it for this model_path")
