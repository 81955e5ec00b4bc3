"""Verification error rates from trial scores: exact ROC, EER, minimum and actual DCF, Cllr.

Conventions used throughout:

- ``scores`` is a 1-D float array (N,), higher meaning "more likely the same speaker";
  ``labels`` is a 1-D array (N,) of booleans or 0/1 (1 = target trial).
- A threshold ``t`` accepts every trial whose score is ``>= t``. Trials with equal scores
  are therefore always accepted or rejected together.
- Error rates are fractions in [0, 1]: FNR (miss rate) is the fraction of target trials
  rejected, FPR (false-alarm rate) the fraction of non-target trials accepted.

EER definition. The ROC has one operating point per distinct threshold; FNR never decreases
and FPR never increases from one point to the next. The EER is where the straight segment
joining two adjacent operating points meets the line FNR = FPR (the error rate of a decision
that picks one of the two adjacent thresholds at random in the right proportion). When an
operating point lies on that line the EER is exactly its error rate. The definition is
symmetric: negating every score and swapping targets with non-targets gives the same EER.

minDCF definition (NIST SRE / VoxCeleb challenge): the detection cost
``C(t) = c_miss * p_target * FNR(t) + c_fa * (1 - p_target) * FPR(t)``, divided by the cost
of the best decision that ignores the scores, ``min(c_miss * p_target, c_fa * (1 - p_target))``,
minimised over all operating points.

actDCF and Cllr judge scores as log-likelihood ratios (natural log, LLR = log p(score |
target) / p(score | non-target)); applied to raw scores they measure what a user gets by
reading raw scores as LLRs. The actual DCF is the normalised cost of the Bayes decision,
accepting ``llr >= bayes_threshold(p_target, c_miss, c_fa) = log(c_fa (1 - p_target) /
(c_miss p_target))``; it is one of the ROC's operating points, so actDCF >= minDCF.
Cllr (Brummer) is the mean of the two classes' logarithmic costs, in bits::

    Cllr = 0.5 * (mean_targets log2(1 + exp(-llr)) + mean_nontargets log2(1 + exp(llr)))

It is 1 for scores that are all 0 (no information, no harm) and 0 for perfect, confident
LLRs. minCllr is the Cllr after the best monotone recalibration of the scores: the pool
adjacent violators (PAV) fit of the target posterior, tied scores pooled, turned into
LLRs by removing the list's prior log odds; it equals the Cllr of the ROC convex hull and
satisfies minCllr <= min(Cllr, 1).
"""
from dataclasses import dataclass

import numpy as np

DEFAULT_P_TARGETS = (0.01, 0.05)


@dataclass(frozen=True)
class Roc:
    """All distinct operating points of a scored trial list, by increasing threshold.

    thresholds: (P,) float64; point ``i`` accepts trials with score >= ``thresholds[i]``.
        ``thresholds[0]`` is the lowest score (accept every trial), ``thresholds[-1]`` is
        +inf (reject every trial); the others are the distinct scores in increasing order.
    fnr: (P,) float64 miss rate, non-decreasing from 0 to 1.
    fpr: (P,) float64 false-alarm rate, non-increasing from 1 to 0.
    """
    thresholds: np.ndarray
    fnr: np.ndarray
    fpr: np.ndarray
    num_targets: int
    num_nontargets: int


@dataclass(frozen=True)
class VerificationResult:
    """EER and minDCF values of one trial list.

    eer: fraction in [0, 1]; eer_threshold: the score of the trials whose decision flips
        at the EER crossing (see :func:`eer_from_roc`).
    min_dcf: ``{p_target: (min_dcf, threshold)}``.
    act_dcf: ``{p_target: (act_dcf, bayes threshold)}``, scores read as LLRs.
    cllr, min_cllr: in bits, scores read as LLRs.
    """
    eer: float
    eer_threshold: float
    min_dcf: dict
    roc: Roc
    act_dcf: dict
    cllr: float
    min_cllr: float


def validate_trials(scores, labels):
    """Check scores (N,) and labels (N,); return them as float64 and bool arrays.

    Raises ValueError for empty input, mismatched shapes, NaN or infinite scores, labels
    other than 0/1, or a list that lacks target or non-target trials.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 1 or labels.ndim != 1:
        raise ValueError(f"scores and labels must be 1-D, got shapes {scores.shape} and {labels.shape}")
    if scores.size != labels.size:
        raise ValueError(f"got {scores.size} scores but {labels.size} labels")
    if scores.size == 0:
        raise ValueError("no trials to evaluate: scores and labels are empty")
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        raise ValueError(f"{bad.size} scores are NaN or infinite (first at trial index {bad[0]}, "
                         f"value {scores[bad[0]]})")
    if labels.dtype != bool:
        invalid = np.flatnonzero((labels != 0) & (labels != 1))
        if invalid.size:
            raise ValueError(f"labels must be 0/1 or boolean; trial index {invalid[0]} has label "
                             f"{labels[invalid[0]]!r}")
        labels = labels == 1
    num_targets = int(np.count_nonzero(labels))
    if num_targets == 0 or num_targets == labels.size:
        kind = "non-target" if num_targets == 0 else "target"
        raise ValueError(f"all {labels.size} trials are {kind} trials; EER and minDCF need both "
                         "target and non-target trials")
    return scores, labels


def compute_roc(scores, labels):
    """Exact ROC of ``scores`` (N,) with ``labels`` (N,): one sort, tied scores grouped.

    Returns a :class:`Roc` with one point per distinct score plus the reject-all point.
    """
    scores, labels = validate_trials(scores, labels)
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    targets_so_far = np.cumsum(labels[order])
    # Last index of every group of equal scores.
    group_ends = np.append(np.flatnonzero(np.diff(sorted_scores) > 0), scores.size - 1)
    targets_rejected = np.concatenate(([0], targets_so_far[group_ends]))
    nontargets_rejected = np.concatenate(([0], group_ends + 1)) - targets_rejected
    num_targets = int(targets_so_far[-1])
    num_nontargets = scores.size - num_targets
    group_scores = sorted_scores[np.concatenate(([0], group_ends[:-1] + 1))]
    return Roc(thresholds=np.append(group_scores, np.inf),
               fnr=targets_rejected / num_targets,
               fpr=(num_nontargets - nontargets_rejected) / num_nontargets,
               num_targets=num_targets,
               num_nontargets=num_nontargets)


def eer_from_roc(roc):
    """EER of a :class:`Roc` as ``(eer, threshold)`` (see the module docstring).

    ``threshold`` is the score of the tie group rejected between the two operating points
    that bracket the crossing: accepting scores ``>= threshold`` gives FNR <= EER <= FPR,
    accepting only scores ``> threshold`` gives FNR >= EER >= FPR.
    """
    # The first point has FNR = 0 < FPR = 1 and the last FNR = 1 > FPR = 0, so the
    # first point with FNR >= FPR has index >= 1.
    after = int(np.argmax(roc.fnr >= roc.fpr))
    before = after - 1
    gap_before = roc.fpr[before] - roc.fnr[before]  # > 0
    gap_after = roc.fnr[after] - roc.fpr[after]  # >= 0
    weight = gap_before / (gap_before + gap_after)
    eer = roc.fnr[before] + weight * (roc.fnr[after] - roc.fnr[before])
    return float(eer), float(roc.thresholds[before])


def _check_costs(p_target, c_miss, c_fa):
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must lie strictly between 0 and 1, got {p_target}")
    if c_miss <= 0 or c_fa <= 0:
        raise ValueError(f"c_miss and c_fa must be positive, got {c_miss} and {c_fa}")


def min_dcf_from_roc(roc, p_target, c_miss=1.0, c_fa=1.0):
    """Normalised minimum detection cost of a :class:`Roc` as ``(min_dcf, threshold)``.

    ``threshold`` is that of the cheapest operating point (+inf when rejecting every
    trial is cheapest); the lowest such threshold is returned on ties.
    """
    _check_costs(p_target, c_miss, c_fa)
    cost = c_miss * p_target * roc.fnr + c_fa * (1.0 - p_target) * roc.fpr
    best = int(np.argmin(cost))
    default_cost = min(c_miss * p_target, c_fa * (1.0 - p_target))
    return float(cost[best] / default_cost), float(roc.thresholds[best])


def bayes_threshold(p_target, c_miss=1.0, c_fa=1.0):
    """LLR at or above which the Bayes decision accepts: ``log(c_fa (1 - p) / (c_miss p))``."""
    _check_costs(p_target, c_miss, c_fa)
    return float(np.log(c_fa * (1.0 - p_target) / (c_miss * p_target)))


def act_dcf_from_llrs(llrs, labels, p_target, c_miss=1.0, c_fa=1.0):
    """Normalised actual DCF of LLRs (N,) with labels (N,) as ``(act_dcf, bayes threshold)``."""
    llrs, labels = validate_trials(llrs, labels)
    threshold = bayes_threshold(p_target, c_miss, c_fa)
    accepted = llrs >= threshold
    miss = np.count_nonzero(~accepted & labels) / np.count_nonzero(labels)
    false_alarm = np.count_nonzero(accepted & ~labels) / np.count_nonzero(~labels)
    cost = c_miss * p_target * miss + c_fa * (1.0 - p_target) * false_alarm
    return float(cost / min(c_miss * p_target, c_fa * (1.0 - p_target))), threshold


def _cllr(llrs, labels):
    """Cllr in bits of validated LLRs (N,) float64 (may hold +-inf) and labels (N,) bool."""
    with np.errstate(invalid="ignore"):
        target_cost = np.logaddexp(0.0, -llrs[labels]).mean()
        nontarget_cost = np.logaddexp(0.0, llrs[~labels]).mean()
    return float(0.5 * (target_cost + nontarget_cost) / np.log(2.0))


def compute_cllr(llrs, labels):
    """Cllr in bits of LLRs (N,) with labels (N,) (see the module docstring)."""
    return _cllr(*validate_trials(llrs, labels))


def pav_llrs(scores, labels):
    """Optimal monotone LLRs (N,) float64 of ``scores`` (N,): the PAV fit, in trial order.

    Tied scores are pooled first. Values are +inf (-inf) where the fitted target posterior
    is 1 (0), i.e. in score ranges holding only targets (non-targets).
    """
    scores, labels = validate_trials(scores, labels)
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    starts = np.concatenate(([0], np.flatnonzero(np.diff(sorted_scores) > 0) + 1))
    counts = np.diff(np.append(starts, scores.size)).astype(np.float64)
    targets = np.add.reduceat(labels[order].astype(np.float64), starts)
    # Blocks of (target count, trial count, number of tie groups); merged while the target
    # fraction of a block is not above that of the block before it.
    block_targets, block_counts, block_groups = [], [], []
    for group_targets, group_count in zip(targets.tolist(), counts.tolist()):
        merged_targets, merged_count, merged_groups = group_targets, group_count, 1
        while block_counts and block_targets[-1] * merged_count >= merged_targets * block_counts[-1]:
            merged_targets += block_targets.pop()
            merged_count += block_counts.pop()
            merged_groups += block_groups.pop()
        block_targets.append(merged_targets)
        block_counts.append(merged_count)
        block_groups.append(merged_groups)
    posterior = np.repeat(np.array(block_targets) / np.array(block_counts), block_groups)
    num_targets = np.count_nonzero(labels)
    prior_log_odds = np.log(num_targets / (labels.size - num_targets))
    with np.errstate(divide="ignore"):
        group_llrs = np.log(posterior) - np.log1p(-posterior) - prior_log_odds
    llrs = np.empty(scores.size)
    llrs[order] = np.repeat(group_llrs, counts.astype(np.int64))
    return llrs


def compute_min_cllr(scores, labels):
    """minCllr in bits of ``scores`` (N,) with labels (N,): the Cllr of :func:`pav_llrs`."""
    scores, labels = validate_trials(scores, labels)
    return _cllr(pav_llrs(scores, labels), labels)


def compute_eer(scores, labels):
    """EER of ``scores`` (N,) with ``labels`` (N,) as ``(eer fraction, threshold)``."""
    return eer_from_roc(compute_roc(scores, labels))


def compute_min_dcf(scores, labels, p_target, c_miss=1.0, c_fa=1.0):
    """Normalised minDCF of ``scores`` (N,) with ``labels`` (N,) as ``(min_dcf, threshold)``."""
    return min_dcf_from_roc(compute_roc(scores, labels), p_target, c_miss, c_fa)


def evaluate(scores, labels, p_targets=DEFAULT_P_TARGETS, c_miss=1.0, c_fa=1.0):
    """EER, minDCF and actDCF at every ``p_targets`` value, Cllr and minCllr of one trial list.

    One ROC computation serves EER and minDCF; actDCF and Cllr read the scores as LLRs.
    """
    scores, labels = validate_trials(scores, labels)
    roc = compute_roc(scores, labels)
    eer, eer_threshold = eer_from_roc(roc)
    min_dcf = {p: min_dcf_from_roc(roc, p, c_miss, c_fa) for p in p_targets}
    act_dcf = {p: act_dcf_from_llrs(scores, labels, p, c_miss, c_fa) for p in p_targets}
    return VerificationResult(eer=eer, eer_threshold=eer_threshold, min_dcf=min_dcf, roc=roc,
                              act_dcf=act_dcf, cllr=_cllr(scores, labels),
                              min_cllr=_cllr(pav_llrs(scores, labels), labels))
