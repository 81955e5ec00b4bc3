"""EER / minDCF against hand-computed cases, brute force and scikit-learn's ROC."""
import numpy as np
import pytest
from sklearn.metrics import roc_curve

from src.evaluation.metrics import (compute_eer, compute_min_dcf, compute_roc, evaluate,
                                    min_dcf_from_roc)


def random_trials(seed, num_trials=2000, target_fraction=0.4, decimals=None):
    """Overlapping Gaussian target / non-target scores; rounding creates ties."""
    rng = np.random.default_rng(seed)
    labels = rng.random(num_trials) < target_fraction
    scores = rng.normal(size=num_trials) + 1.5 * labels
    if decimals is not None:
        scores = np.round(scores, decimals)
    return scores, labels


def brute_force_min_dcf(scores, labels, p_target, c_miss=1.0, c_fa=1.0):
    """Minimum over every threshold (each distinct score and +inf) of the normalised cost."""
    best = np.inf
    for threshold in np.append(np.unique(scores), np.inf):
        accepted = scores >= threshold
        miss = np.mean(~accepted[labels])
        false_alarm = np.mean(accepted[~labels])
        cost = c_miss * p_target * miss + c_fa * (1 - p_target) * false_alarm
        best = min(best, cost / min(c_miss * p_target, c_fa * (1 - p_target)))
    return best


def test_perfect_separation_has_zero_error():
    scores, labels = [0.1, 0.2, 0.3, 0.7, 0.8, 0.9], [0, 0, 0, 1, 1, 1]
    assert compute_eer(scores, labels)[0] == 0.0
    assert compute_min_dcf(scores, labels, 0.01)[0] == 0.0


def test_fully_inverted_scores_have_eer_100_percent():
    assert compute_eer([0.7, 0.8, 0.9, 0.1, 0.2], [0, 0, 0, 1, 1])[0] == 1.0


def test_all_scores_tied_gives_eer_one_half():
    assert compute_eer([0.3, 0.3, 0.3, 0.3], [1, 0, 0, 1])[0] == 0.5


def test_tied_target_and_nontarget_move_together():
    # Sorted: non 0.1 | {tar, non} 0.5 | tar 0.9. Operating points (FNR, FPR):
    # (0, 1) -> (0, 1/2) -> (1/2, 0) -> (1, 0); the diagonal meets the middle segment at 1/4.
    roc = compute_roc([0.1, 0.5, 0.5, 0.9], [0, 1, 0, 1])
    np.testing.assert_array_equal(roc.thresholds, [0.1, 0.5, 0.9, np.inf])
    np.testing.assert_array_equal(roc.fnr, [0, 0, 0.5, 1])
    np.testing.assert_array_equal(roc.fpr, [1, 0.5, 0, 0])
    assert compute_eer([0.1, 0.5, 0.5, 0.9], [0, 1, 0, 1]) == (0.25, 0.5)


def test_four_trials_crossing_on_a_flat_segment():
    # One target among four. Points (FNR, FPR): (0, 1), (0, 2/3), (1, 2/3), (1, 1/3), (1, 0).
    # FPR stays 2/3 while FNR jumps 0 -> 1, so the crossing is at 2/3; threshold 0.2 flips.
    eer, threshold = compute_eer([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 0])
    assert eer == pytest.approx(2 / 3, abs=1e-15)
    assert threshold == 0.2


def test_hand_computed_min_dcf():
    # Costs at the four points above for p=0.01, divided by 0.01: 99, 49.5, 0.5, 1.
    assert compute_min_dcf([0.1, 0.5, 0.5, 0.9], [0, 1, 0, 1], 0.01) == (0.5, 0.9)
    # With c_miss=10 and p=0.5 the default cost is 0.5: 1, 0.5, 5, 10 -> 0.5 at threshold 0.5.
    assert compute_min_dcf([0.1, 0.5, 0.5, 0.9], [0, 1, 0, 1], 0.5, c_miss=10) == (0.5, 0.5)


def test_roc_matches_direct_counts_with_ties():
    scores, labels = random_trials(1, num_trials=500, decimals=1)
    roc = compute_roc(scores, labels)
    np.testing.assert_array_equal(roc.thresholds[:-1], np.unique(scores))
    for threshold, fnr, fpr in zip(roc.thresholds, roc.fnr, roc.fpr):
        assert fnr == np.mean(scores[labels] < threshold)
        assert fpr == np.mean(scores[~labels] >= threshold)


@pytest.mark.parametrize("decimals", [None, 1])
def test_eer_is_symmetric(decimals):
    scores, labels = random_trials(2, decimals=decimals)
    assert compute_eer(-scores, ~labels)[0] == pytest.approx(compute_eer(scores, labels)[0], abs=1e-15)


@pytest.mark.parametrize("seed, decimals", [(3, None), (4, None), (5, 1)])
def test_eer_agrees_with_sklearn_roc(seed, decimals):
    scores, labels = random_trials(seed, decimals=decimals)
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    fnr = 1 - tpr
    eer, threshold = compute_eer(scores, labels)
    # The usual estimate: the sklearn point where FNR and FPR are closest.
    nearest = np.argmin(np.abs(fnr - fpr))
    assert abs(eer - (fnr[nearest] + fpr[nearest]) / 2) <= 1 / len(scores)
    # The same definition evaluated on sklearn's points: FNR - FPR falls strictly along
    # them, so interpolating FPR linearly where it reaches 0 gives the crossing.
    assert eer == pytest.approx(np.interp(0.0, fpr - fnr, fpr), abs=1e-12)
    # The threshold brackets the EER as documented.
    assert np.mean(scores[labels] < threshold) <= eer <= np.mean(scores[~labels] >= threshold)
    assert np.mean(scores[labels] <= threshold) >= eer >= np.mean(scores[~labels] > threshold)


@pytest.mark.parametrize("p_target, c_miss, decimals", [(0.01, 1.0, None), (0.05, 1.0, None),
                                                        (0.05, 1.0, 1), (0.3, 5.0, None)])
def test_min_dcf_equals_brute_force(p_target, c_miss, decimals):
    scores, labels = random_trials(6, num_trials=600, decimals=decimals)
    value, threshold = compute_min_dcf(scores, labels, p_target, c_miss=c_miss)
    assert value == pytest.approx(brute_force_min_dcf(scores, labels, p_target, c_miss), abs=1e-12)
    accepted = scores >= threshold
    cost = c_miss * p_target * np.mean(~accepted[labels]) + (1 - p_target) * np.mean(accepted[~labels])
    assert cost / min(c_miss * p_target, 1 - p_target) == pytest.approx(value, abs=1e-12)


def test_evaluate_matches_single_metrics():
    scores, labels = random_trials(7)
    result = evaluate(scores, labels)
    assert (result.eer, result.eer_threshold) == compute_eer(scores, labels)
    assert set(result.min_dcf) == {0.01, 0.05}
    for p_target, value in result.min_dcf.items():
        assert value == compute_min_dcf(scores, labels, p_target)


@pytest.mark.parametrize("scores, labels, message", [
    ([], [], "empty"),
    ([0.1, 0.2], [1, 1], "all 2 trials are target"),
    ([0.1, 0.2], [0, 0], "all 2 trials are non-target"),
    ([0.1, np.nan, 0.3], [0, 1, 1], "1 scores are NaN or infinite .first at trial index 1"),
    ([0.1, 0.2, np.inf], [0, 1, 1], "NaN or infinite"),
    ([0.1, 0.2], [0, 1, 1], "2 scores but 3 labels"),
    ([0.1, 0.2], [0, 2], "trial index 1 has label 2"),
    ([[0.1, 0.2]], [[0, 1]], "must be 1-D"),
])
def test_bad_input_is_rejected(scores, labels, message):
    with pytest.raises(ValueError, match=message):
        compute_eer(scores, labels)


@pytest.mark.parametrize("p_target, c_miss", [(0.0, 1.0), (1.0, 1.0), (0.5, 0.0)])
def test_bad_cost_parameters_are_rejected(p_target, c_miss):
    roc = compute_roc([0.1, 0.9], [0, 1])
    with pytest.raises(ValueError, match="p_target|c_miss"):
        min_dcf_from_roc(roc, p_target, c_miss=c_miss)
