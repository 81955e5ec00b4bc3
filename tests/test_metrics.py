"""EER / minDCF / actDCF / Cllr against hand-computed cases, brute force and scikit-learn."""
import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_curve

from src.evaluation.metrics import (act_dcf_from_llrs, bayes_threshold, compute_cllr, compute_eer,
                                    compute_min_cllr, compute_min_dcf, compute_roc, evaluate,
                                    min_dcf_from_roc, pav_llrs)


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
    assert set(result.act_dcf) == {0.01, 0.05}
    for p_target, value in result.act_dcf.items():
        assert value == act_dcf_from_llrs(scores, labels, p_target)
    assert result.cllr == compute_cllr(scores, labels)
    assert result.min_cllr == compute_min_cllr(scores, labels)


def test_bayes_threshold():
    assert bayes_threshold(0.01) == pytest.approx(np.log(99), abs=1e-12)
    assert bayes_threshold(0.5) == 0.0
    # A miss ten times as costly as a false alarm lowers the threshold by log 10.
    assert bayes_threshold(0.05, c_miss=10) == pytest.approx(np.log(19 / 10), abs=1e-12)


def test_perfectly_separated_confident_llrs():
    llrs, labels = np.array([-20.0, -20.0, 20.0, 20.0]), [0, 0, 1, 1]
    assert compute_cllr(llrs, labels) == pytest.approx(np.log2(1 + np.exp(-20.0)), rel=1e-9)
    assert compute_min_cllr(llrs, labels) == 0.0
    assert act_dcf_from_llrs(llrs, labels, 0.01) == (0.0, pytest.approx(np.log(99)))


def test_fully_overlapping_llrs_of_zero():
    # LLR 0 says nothing: Cllr is exactly 1 bit, and no recalibration can improve on it.
    llrs, labels = np.zeros(6), [0, 1, 0, 1, 1, 0]
    assert compute_cllr(llrs, labels) == 1.0
    assert compute_min_cllr(llrs, labels) == 1.0
    # p = 0.01: threshold log 99 > 0 rejects all, cost p * 1 / p = 1. p = 0.5: threshold 0
    # accepts all (llr >= threshold), cost 0.5 * 1 / 0.5 = 1.
    assert act_dcf_from_llrs(llrs, labels, 0.01)[0] == 1.0
    assert act_dcf_from_llrs(llrs, labels, 0.5)[0] == 1.0


def test_hand_computed_cllr_and_min_cllr():
    # One target at log 3 and one non-target at -log 3 cost log2(1 + 1/3) each.
    assert compute_cllr([np.log(3), -np.log(3)], [1, 0]) == pytest.approx(np.log2(4 / 3), abs=1e-15)
    # Sorted labels 0 | 1 0 0: PAV pools the last three (target fraction 1/3); with prior
    # log odds log(1/3) their LLR is logit(1/3) - log(1/3) = log 1.5, the first gets -inf.
    # Targets: log2(1 + 1/1.5); non-targets: (0 + 2 log2(2.5)) / 3.
    expected = 0.5 * (np.log2(5 / 3) + 2 * np.log2(2.5) / 3)
    np.testing.assert_allclose(pav_llrs([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 0]),
                               [-np.inf, np.log(1.5), np.log(1.5), np.log(1.5)], rtol=1e-12)
    assert compute_min_cllr([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 0]) == pytest.approx(expected, abs=1e-12)


def test_hand_computed_act_dcf():
    # p = 0.05: threshold log 19 = 2.944 accepts the target at 3 and the non-target at 4:
    # miss 1/2, false alarm 1/2, cost (0.05 * 0.5 + 0.95 * 0.5) / 0.05 = 10.
    llrs, labels = [-1.0, 4.0, 3.0, 1.0], [0, 0, 1, 1]
    value, threshold = act_dcf_from_llrs(llrs, labels, 0.05)
    assert threshold == pytest.approx(np.log(19), abs=1e-12)
    assert value == pytest.approx(10.0, abs=1e-12)


def test_gaussian_llrs_are_calibrated():
    # Targets N(+1, 1), non-targets N(-1, 1): the true LLR of score s is 2 s. Its Cllr is
    # the integral E[log2(1 + exp(-2 s))] over s ~ N(1, 1) (both classes give the same),
    # and thresholding it at the Bayes threshold is (nearly) the best operating point.
    rng = np.random.default_rng(8)
    labels = rng.random(400000) < 0.5
    llrs = 2 * (rng.normal(size=labels.size) + np.where(labels, 1.0, -1.0))
    grid = np.linspace(-9, 11, 200001)
    density = np.exp(-0.5 * (grid - 1) ** 2) / np.sqrt(2 * np.pi)
    expected = np.sum(np.log2(1 + np.exp(-2 * grid)) * density) * (grid[1] - grid[0])
    result = evaluate(llrs, labels)
    assert result.cllr == pytest.approx(expected, abs=0.005)
    assert 0 < result.cllr - result.min_cllr < 0.005
    for p_target in (0.01, 0.05):
        assert result.act_dcf[p_target][0] == pytest.approx(result.min_dcf[p_target][0], rel=0.05)
    # Over-confident LLRs (x3) keep their ranking, so minCllr and minDCF stay, but Cllr and
    # actDCF grow.
    scaled = evaluate(3 * llrs, labels)
    assert scaled.min_cllr == pytest.approx(result.min_cllr, abs=1e-12)
    assert scaled.cllr > result.cllr + 0.1
    assert scaled.act_dcf[0.01][0] > result.act_dcf[0.01][0] + 0.05


@pytest.mark.parametrize("seed, decimals", [(9, None), (10, 1)])
def test_pav_agrees_with_sklearn_isotonic_regression(seed, decimals):
    scores, labels = random_trials(seed, num_trials=1500, decimals=decimals)
    posterior = IsotonicRegression().fit(scores, labels.astype(float)).predict(scores)
    with np.errstate(divide="ignore"):
        expected = np.log(posterior) - np.log1p(-posterior) - np.log(labels.sum() / (~labels).sum())
    np.testing.assert_allclose(pav_llrs(scores, labels), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_min_cllr_and_min_dcf_bound_the_actual_values(seed):
    scores, labels = random_trials(seed, num_trials=800, decimals=seed % 2 or None)
    for scale, shift in ((1.0, 0.0), (3.0, -2.0), (0.2, 1.0)):
        result = evaluate(scale * scores + shift, labels)
        assert result.min_cllr <= min(result.cllr, 1.0) + 1e-12
        for p_target in (0.01, 0.05):
            assert result.act_dcf[p_target][0] >= result.min_dcf[p_target][0]
        # No affine recalibration beats the monotone optimum.
        for a in (0.5, 1.0, 2.0):
            for b in (-1.0, 0.0, 1.0):
                assert result.min_cllr <= compute_cllr(a * scores + b, labels) + 1e-12


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
