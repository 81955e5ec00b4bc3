"""Score calibration: the prior-weighted logistic fit, its features, files and thresholds; the
automatic calibration list; postprocess.py with a calibration file."""
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from src.data.lists import TrainList, Trial, read_trial_list
from src.data.audio import write_audio
from src.evaluation.calibration_step import CalibrationInputs, calibration_scores, prepare_calibration, trial_qualities
from src.evaluation.calibration import (MIN_FALSE_ACCEPTS, Calibration, CalibrationError, check_applicable,
                                        fa_rate_threshold, fit_calibration, fit_logistic, load_calibration,
                                        save_calibration, trial_features)
from src.evaluation.calibration_list import build_calibration_trials
from src.evaluation.metrics import evaluate
from src.evaluation.scoring import EmbeddingTable
from src.inference.fixed_length import bin_file_name

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def gaussian_trials(seed, num_targets, num_nontargets, mean=1.0):
    """Scores N(+mean, 1) for targets and N(-mean, 1) for non-targets: true LLR 2 mean s."""
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.ones(num_targets, bool), np.zeros(num_nontargets, bool)])
    scores = rng.normal(size=labels.size) + np.where(labels, mean, -mean)
    return scores, labels


def test_fit_recovers_the_true_llr_whatever_the_class_proportions():
    # 4x more non-targets: the prior weighting removes the list's log odds from the bias.
    scores, labels = gaussian_trials(0, 20000, 80000, mean=1.5)
    for prior in (0.5, 0.1):
        weights, bias = fit_logistic(scores[:, np.newaxis], labels, prior)
        assert weights[0] == pytest.approx(3.0, rel=0.03)
        assert bias == pytest.approx(0.0, abs=0.05)


def test_fit_equals_sklearn_weighted_logistic_regression():
    rng = np.random.default_rng(1)
    labels = rng.random(3000) < 0.3
    features = np.stack([rng.normal(size=labels.size) + 1.2 * labels,
                         rng.uniform(0, 3, size=labels.size) + 0.3 * labels], axis=1) * [5.0, 0.2]
    prior = 0.2
    weights, bias = fit_logistic(features, labels, prior, ridge=0.0)
    sample_weight = np.where(labels, prior / labels.sum(), (1 - prior) / (~labels).sum())
    reference = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10000)
    reference.fit(features, labels, sample_weight=sample_weight * labels.size)
    np.testing.assert_allclose(weights, reference.coef_[0], rtol=1e-4)
    # sklearn's intercept includes the prior log odds that the LLR leaves out.
    assert bias == pytest.approx(reference.intercept_[0] - np.log(prior / (1 - prior)), abs=1e-4)


def test_fit_stays_finite_on_separated_trials():
    weights, bias = fit_logistic(np.array([[-2.0], [-1.0], [1.0], [2.0]]), [0, 0, 1, 1], 0.5)
    assert np.isfinite(weights).all() and np.isfinite(bias) and weights[0] > 1


def test_quality_features_are_symmetric_in_the_sides():
    durations, norms = np.array([[2.0, 8.0], [8.0, 2.0]]), np.array([[10.0, 12.0], [12.0, 10.0]])
    features = trial_features(("score", "min_log_duration", "max_log_duration", "mean_embedding_norm"),
                              [0.5, 0.5], durations, norms)
    np.testing.assert_allclose(features, [[0.5, np.log(2), np.log(8), 11.0]] * 2)
    with pytest.raises(ValueError, match="need the durations"):
        trial_features(("score", "min_log_duration"), [0.5])


def test_qmf_learns_a_duration_effect_that_linear_cannot():
    # Short trials have less separated scores: the LLR of score s is 2 m s with m = 0.5
    # for 1 s trials and m = 2 for 8 s ones. qmf can only express a duration-dependent
    # offset, but it still fits better than the score alone.
    rng = np.random.default_rng(2)
    labels = rng.random(20000) < 0.5
    seconds = np.where(rng.random(labels.size) < 0.5, 1.0, 8.0)
    separation = np.where(seconds == 1.0, 0.5, 2.0)
    scores = rng.normal(size=labels.size) + np.where(labels, separation, -separation) + np.log(seconds)
    durations, norms = np.stack([seconds, seconds], axis=1), np.full((labels.size, 2), 10.0)
    record = dict(scoring="cosine", model_sha256="x", fitted_on={})
    linear, linear_llrs = fit_calibration("linear", labels, 0.5, scores, **record)
    qmf, qmf_llrs = fit_calibration("qmf", labels, 0.5, scores, durations, norms, **record)
    assert qmf.features[1:] == ("min_log_duration", "max_log_duration", "mean_embedding_norm")
    assert evaluate(qmf_llrs, labels).cllr < evaluate(linear_llrs, labels).cllr - 0.05
    np.testing.assert_allclose(qmf.llrs(scores, durations, norms), qmf_llrs)


def test_fa_rate_threshold_is_the_lowest_that_keeps_the_rate():
    nontargets = np.array([0.0, 1.0, 2.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    # 10% of 10 non-targets: one may be accepted, so the threshold lies just above 7.
    threshold = fa_rate_threshold(nontargets, 0.1)
    assert 7.0 < threshold < 7.0 + 1e-12
    # 35%: three allowed, but accepting 5 would need the tie at 2 broken: threshold just above 5.
    assert np.mean(nontargets >= fa_rate_threshold(nontargets, 0.35)) == 0.3
    assert fa_rate_threshold(nontargets, 0.0) > 8.0


def test_fit_stores_measurable_fa_thresholds():
    scores, labels = gaussian_trials(3, 500, 1500)
    record = dict(scoring="cosine", model_sha256="x", fitted_on={"trial_list": "cal.txt"})
    calibration, llrs = fit_calibration("linear", labels, 0.5, scores, fa_rates=(0.03,), **record)
    rates = [entry["fa_rate"] for entry in calibration.fa_thresholds]
    # 1500 non-targets: 0.001 and 0.005 give fewer than MIN_FALSE_ACCEPTS false accepts.
    assert rates == [0.01, 0.02, 0.03, 0.05, 0.1]
    assert all(rate * 1500 >= MIN_FALSE_ACCEPTS for rate in rates)
    for entry in calibration.fa_thresholds:
        accepted = llrs >= entry["llr_threshold"]
        assert np.mean(accepted[~labels]) <= entry["fa_rate"]
        assert entry["miss_rate"] == np.mean(~accepted[labels])
    assert calibration.fa_threshold(0.03) == calibration.fa_thresholds[2]["llr_threshold"]
    with pytest.raises(CalibrationError, match=r"0.001 has no threshold .*stored rates: 0.01, 0.02, 0.03.* "
                                               r"at least 10000 non-target trials"):
        calibration.fa_threshold(0.001)
    assert calibration.fitted_on == {"trial_list": "cal.txt", "trials": 2000, "targets": 500,
                                     "nontargets": 1500}


def test_calibration_file_round_trip_and_errors(tmp_path):
    scores, labels = gaussian_trials(4, 300, 300)
    calibration, _ = fit_calibration("linear", labels, 0.3, scores, scoring="cosine", model_sha256="abc",
                                     fitted_on={"trial_list": "cal.txt"})
    path = save_calibration(tmp_path / "calibration.json", calibration)
    document = json.loads(open(path).read())
    assert document["features"] == ["score"] and document["prior"] == 0.3
    assert load_calibration(path) == calibration

    def broken(change, message):
        bad = dict(document)
        change(bad)
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(CalibrationError, match=message):
            load_calibration(tmp_path / "bad.json")

    broken(lambda d: d.update(weights=[1.0, 2.0]), r"expected 1 finite weights")
    broken(lambda d: d.update(kind="cubic"), r"kind 'cubic' .* is not one of linear")
    broken(lambda d: d.update(version=7), r"version 7")
    broken(lambda d: d.pop("bias"), r"'bias' is missing")
    broken(lambda d: d.update(fa_thresholds=[{"fa_rate": 0.01}]), r"lacks a numeric")
    broken(lambda d: d.pop("format"), r"not a calibration file")
    (tmp_path / "text.json").write_text("weights: 1")
    with pytest.raises(CalibrationError, match="not a JSON file"):
        load_calibration(tmp_path / "text.json")
    with pytest.raises(CalibrationError, match="calibration_file: file .*absent.json.* not found"):
        load_calibration(tmp_path / "absent.json")


def test_a_calibration_applies_only_to_its_scoring_and_model():
    calibration = Calibration(kind="linear", features=("score",), weights=(2.0,), bias=0.0, prior=0.5,
                              scoring="cosine, AS-norm (cohort 8, top_n 4)", model_sha256="abc",
                              fitted_on={"model_path": "a.ckpt"})
    check_applicable(calibration, "c.json", "cosine, AS-norm (cohort 8, top_n 4)", "abc")
    with pytest.raises(CalibrationError, match=r"c.json: fitted on 'cosine, AS-norm .*' scores, but the "
                                               r"settings give 'cosine' scores"):
        check_applicable(calibration, "c.json", "cosine", "abc")
    with pytest.raises(CalibrationError, match=r"another checkpoint \(a.ckpt\)"):
        check_applicable(calibration, "c.json", "cosine, AS-norm (cohort 8, top_n 4)", "def")


def train_list(counts):
    """A TrainList with speakers s0, s1, ... holding ``counts[k]`` utterances each."""
    utterances, labels = [], []
    for speaker, count in enumerate(counts):
        utterances += [f"s{speaker}/u{index}.wav" for index in range(count)]
        labels += [speaker] * count
    return TrainList(utterances=utterances, labels=labels, speakers=[f"s{k}" for k in range(len(counts))])


def test_automatic_list_is_balanced_seeded_and_correct():
    listed = train_list([8] * 10 + [1])
    trials = build_calibration_trials(listed, 300, seed=5)
    assert trials == build_calibration_trials(listed, 300, seed=5)
    assert trials != build_calibration_trials(listed, 300, seed=6)
    targets = [trial for trial in trials if trial.target]
    nontargets = [trial for trial in trials if not trial.target]
    assert len(targets) == len(nontargets) == 150
    speaker = lambda name: name.split("/")[0]  # noqa: E731
    assert all(speaker(t.utt_a) == speaker(t.utt_b) and t.utt_a != t.utt_b for t in targets)
    assert all(speaker(t.utt_a) != speaker(t.utt_b) for t in nontargets)
    pairs = [frozenset((t.utt_a, t.utt_b)) for t in trials]
    assert len(set(pairs)) == len(pairs)
    # 15 target pairs for each of the 10 speakers with two or more utterances.
    per_speaker = [sum(speaker(t.utt_a) == f"s{k}" for t in targets) for k in range(11)]
    assert per_speaker == [15] * 10 + [0]
    # Side a of the non-targets cycles over all 11 speakers.
    sides = [sum(speaker(t.utt_a) == f"s{k}" for t in nontargets) for k in range(11)]
    assert max(sides) - min(sides) <= 1


def test_automatic_list_stops_at_the_available_pairs():
    trials = build_calibration_trials(train_list([2, 2]), 100, seed=0)
    assert sum(t.target for t in trials) == 2  # one pair per speaker
    assert sum(not t.target for t in trials) == 4  # 2 x 2 cross-speaker pairs
    with pytest.raises(ValueError, match="at least two speakers"):
        build_calibration_trials(train_list([5]), 10, seed=0)
    with pytest.raises(ValueError, match="a speaker with two utterances"):
        build_calibration_trials(train_list([1, 1, 1]), 10, seed=0)


def test_calibration_scores_leave_out_the_own_speaker_only_for_the_automatic_list():
    rng = np.random.default_rng(6)
    names = [f"s{k % 3}/u{k}.wav" for k in range(9)]
    table = EmbeddingTable(names, rng.normal(size=(9, 6)) + 0.3)
    trials = [Trial(names[0][:2] == names[b][:2], names[0], names[b]) for b in range(1, 9)]
    speakers = {name: name.split("/")[0] for name in names}
    cohort, cohort_speakers = table, [speakers[name] for name in names]
    automatic = CalibrationInputs(trials=trials, root="", list_path=None, speakers=speakers)
    given = CalibrationInputs(trials=trials, root="", list_path="cal.txt", speakers=None)
    left_out = calibration_scores(automatic, table, None, cohort, cohort_speakers, 3)
    full = calibration_scores(given, table, None, cohort, cohort_speakers, 3)
    assert not np.allclose(left_out, full)
    # Other speakers' cohort utterances only: the three utterances of s0 are never used for s0.
    units = table.matrix / np.linalg.norm(table.matrix, axis=1, keepdims=True)
    for trial, value in zip(trials, left_out):
        a, b = units[names.index(trial.utt_a)], units[names.index(trial.utt_b)]
        normalised = []
        for side, name in ((a, trial.utt_a), (b, trial.utt_b)):
            others = [row for row, other in enumerate(names) if speakers[other] != speakers[name]]
            top = np.sort(units[others] @ side)[-3:]
            normalised.append((a @ b - top.mean()) / top.std(ddof=1))
        assert value == pytest.approx(np.mean(normalised), rel=1e-5)


def test_calibrating_on_the_evaluation_list_is_warned_about(tmp_path, caplog):
    write_audio(tmp_path / "wav" / "s0" / "a.wav", np.zeros(800, np.float32))
    write_audio(tmp_path / "wav" / "s1" / "b.wav", np.zeros(800, np.float32))
    trials = tmp_path / "trials.txt"
    trials.write_text("1 s0/a.wav s0/a.wav\n0 s0/a.wav s1/b.wav\n")
    settings = SimpleNamespace(score_calibration="linear", calibration_file="", cal_list=str(trials),
                               cal_path=str(tmp_path / "wav"), train_path="", eval_list=f"{tmp_path}/./trials.txt",
                               enroll_list="")
    with caplog.at_level("WARNING"):
        prepare_calibration(settings)
    assert "cal_list is the eval_list: a calibration fitted on the trials it is measured on" in caplog.text
    caplog.clear()
    prepare_calibration(SimpleNamespace(**{**vars(settings), "eval_list": str(tmp_path / "other.txt")}))
    assert "cal_list is the eval_list" not in caplog.text


def test_trial_qualities(tmp_path):
    from src.data.audio import write_audio

    for name, seconds in (("a.wav", 1.5), ("b.wav", 0.5)):
        write_audio(tmp_path / name, np.zeros(int(16000 * seconds), np.float32))
    table = EmbeddingTable(["a.wav", "b.wav"], [[3.0, 4.0], [0.0, 2.0]])
    durations, norms = trial_qualities([Trial(False, "b.wav", "a.wav")], table, str(tmp_path))
    np.testing.assert_allclose(durations, [[0.5, 1.5]])
    np.testing.assert_allclose(norms, [[2.0, 5.0]])


def test_postprocess_applies_a_calibration_file(tmp_path):
    rng = np.random.default_rng(7)
    utterances = [f"spk{k % 2}/v/{k}.wav" for k in range(6)]
    (tmp_path / "eval.txt").write_text("".join(f"{int(a[3] == b[3])} {a} {b}\n" for i, a in enumerate(utterances)
                                               for b in utterances[i + 1:]))
    results = tmp_path / "results"
    results.mkdir()
    for utterance in utterances:
        (rng.normal(size=8) + 2 * int(utterance[3])).astype(np.float32).tofile(results / bin_file_name(utterance))
    calibration = Calibration(kind="linear", features=("score",), weights=(4.0,), bias=-1.0, prior=0.5,
                              scoring="cosine", model_sha256="abc", fitted_on={})
    save_calibration(tmp_path / "cal.json", calibration)

    def postprocess(*extra):
        command = [sys.executable, os.path.join(REPO_ROOT, "postprocess.py"), f"--result_path={results}",
                   f"--eval_list={tmp_path / 'eval.txt'}", "--emb_size=8", f"--log_file={tmp_path / 'acc.log'}"]
        return subprocess.run(command + list(extra), capture_output=True, text=True, timeout=300, cwd=tmp_path)

    raw = postprocess(f"--score_file={tmp_path / 'raw.txt'}")
    assert raw.returncode == 0, raw.stderr
    assert "read the raw scores as LLRs" in raw.stdout
    calibrated = postprocess(f"--score_file={tmp_path / 'llr.txt'}",
                             f"--calibration_file={tmp_path / 'cal.json'}")
    assert calibrated.returncode == 0, calibrated.stderr
    assert calibrated.stdout.splitlines()[0].startswith("EER = ")
    assert f"scores are LLRs of the linear calibration {tmp_path / 'cal.json'}" in calibrated.stdout
    raw_scores = [float(line.split()[2]) for line in (tmp_path / "raw.txt").read_text().splitlines()]
    llrs = [float(line.split()[2]) for line in (tmp_path / "llr.txt").read_text().splitlines()]
    np.testing.assert_allclose(llrs, 4.0 * np.array(raw_scores) - 1.0, rtol=1e-12)
    assert len(read_trial_list(tmp_path / "eval.txt")) == len(llrs)

    save_calibration(tmp_path / "asnorm.json",
                     Calibration(**{**calibration.__dict__, "scoring": "cosine, AS-norm"}))
    refused = postprocess(f"--calibration_file={tmp_path / 'asnorm.json'}")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "fitted on 'cosine, AS-norm' scores, but the settings give 'cosine' scores" in refused.stderr


def test_cross_validated_calibration_never_fits_on_a_trials_own_speakers(monkeypatch):
    from benchmarks import calibration_crossval as crossval
    speakers = [f"s{index}" for index in range(8)]
    groups = crossval.speaker_groups(speakers, 4)
    assert groups == {"s0": 0, "s1": 1, "s2": 2, "s3": 3, "s4": 0, "s5": 1, "s6": 2, "s7": 3}
    names = [f"{speaker}/u{take}.wav" for speaker in speakers for take in range(3)]
    trials = [Trial(target=a.split("/")[0] == b.split("/")[0], utt_a=a, utt_b=b)
              for i, a in enumerate(names) for b in names[i + 1:]]
    cells = crossval.trial_cells(trials, groups)
    labels = np.array([trial.target for trial in trials])
    # The score of each trial is its index, so a fit's scores name the trials it was given.
    scores = np.arange(len(trials), dtype=np.float64)
    fitted_cells = []

    def recording_fit(kind, fit_labels, prior, fit_scores, *qualities, **record):
        fitted_cells.append(cells[fit_scores.astype(int)])
        return fit_calibration(kind, fit_labels, prior, fit_scores, *qualities, **record)

    monkeypatch.setattr(crossval, "fit_calibration", recording_fit)
    ones = np.ones((len(trials), 2))
    llrs = crossval.cross_validated_llrs("linear", 0.5, labels, scores, ones, ones, cells)
    measured = {tuple(cell) for cell in cells.tolist()}
    assert len(fitted_cells) == len(measured) == 4 + 6
    # Each fit used every group except those of one measured cell, and each cell had its fit.
    left_out = sorted(tuple(sorted({0, 1, 2, 3} - set(fitted.ravel().tolist()))) for fitted in fitted_cells)
    assert left_out == sorted(tuple(sorted(set(cell))) for cell in measured)
    assert np.isfinite(llrs).all()
    with pytest.raises(crossval.CrossValidationError, match="cannot fill 5 groups"):
        crossval.speaker_groups(speakers, 5)
