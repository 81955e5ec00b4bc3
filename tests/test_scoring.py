"""Cosine and AS-norm scoring against a direct per-trial numpy computation."""
import numpy as np
import pytest

from src.data.lists import Trial, read_trial_list, trial_utterances, warn_about_repeated_trials
from src.evaluation import scoring
from src.evaluation.scoring import (EmbeddingTable, mean_embedding, score_trials,
                                    trial_labels)

DIM = 8


@pytest.fixture
def data():
    """12 utterance embeddings (dict), 40 trials over them, a 30-row cohort and its mean."""
    rng = np.random.default_rng(0)
    embeddings = {f"spk{k % 4}/v/{k}.wav": rng.normal(size=DIM) + 0.5 for k in range(12)}
    names = sorted(embeddings)
    trials = [Trial(target=bool(rng.integers(2)), utt_a=names[a], utt_b=names[b])
              for a, b in rng.integers(0, len(names), size=(40, 2))]
    cohort = rng.normal(size=(30, DIM)) + 0.5
    return embeddings, trials, cohort, cohort.mean(axis=0)


def unit(vector, mean):
    shifted = np.asarray(vector, dtype=np.float64) - (0 if mean is None else mean)
    return shifted / np.sqrt(np.sum(shifted ** 2))


def naive_scores(embeddings, trials, mean=None, cohort=None, top_n=None):
    """One trial at a time; AS-norm statistics recomputed from scratch for each side."""
    results = []
    for trial in trials:
        a, b = unit(embeddings[trial.utt_a], mean), unit(embeddings[trial.utt_b], mean)
        score = float(a @ b)
        if cohort is not None:
            normalised = []
            for side in (a, b):
                cohort_scores = sorted((unit(row, mean) @ side for row in cohort), reverse=True)
                top = np.array(cohort_scores[:top_n])
                normalised.append((score - top.mean()) / top.std(ddof=1))
            score = (normalised[0] + normalised[1]) / 2
        results.append(score)
    return np.array(results)


@pytest.mark.parametrize("with_mean", [False, True])
def test_cosine_matches_naive(data, with_mean):
    embeddings, trials, _, mean = data
    mean = mean if with_mean else None
    np.testing.assert_allclose(score_trials(embeddings, trials, mean=mean),
                               naive_scores(embeddings, trials, mean), atol=1e-6)


@pytest.mark.parametrize("top_n", [2, 5, 30])
def test_as_norm_matches_naive(data, top_n):
    embeddings, trials, cohort, mean = data
    np.testing.assert_allclose(
        score_trials(embeddings, trials, mean=mean, cohort=cohort, top_n=top_n),
        naive_scores(embeddings, trials, mean, cohort, top_n), rtol=1e-5, atol=1e-5)


def test_mean_subtraction_changes_scores(data):
    embeddings, trials, _, mean = data
    assert not np.allclose(score_trials(embeddings, trials), score_trials(embeddings, trials, mean=mean))


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 1000])
def test_chunk_size_does_not_change_results(data, chunk_size):
    embeddings, trials, cohort, mean = data
    reference = score_trials(embeddings, trials, mean=mean, cohort=cohort, top_n=5)
    chunked = score_trials(embeddings, trials, mean=mean, cohort=cohort, top_n=5, chunk_size=chunk_size)
    np.testing.assert_allclose(chunked, reference, rtol=1e-6, atol=1e-6)


def test_default_blocks_bound_working_arrays(data, monkeypatch):
    """With a 64-value block budget no (utterances x cohort) or (trials x D) block exceeds it."""
    embeddings, trials, cohort, mean = data
    reference = score_trials(embeddings, trials, mean=mean, cohort=cohort, top_n=5)
    shapes = {"partition": [], "einsum": []}

    def spy(name, function):
        def wrapper(*args, **kwargs):
            shapes[name].append(next(arg for arg in args if isinstance(arg, np.ndarray)).shape)
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(scoring, "BLOCK_ELEMENTS", 64)
    monkeypatch.setattr(np, "partition", spy("partition", np.partition))
    monkeypatch.setattr(np, "einsum", spy("einsum", np.einsum))
    small = score_trials(embeddings, trials, mean=mean, cohort=cohort, top_n=5)
    np.testing.assert_allclose(small, reference, rtol=1e-6, atol=1e-6)
    assert max(shapes["partition"]) == (2, 30)  # 2 utterances x 30 cohort scores per block
    assert len(shapes["partition"]) == 6  # 12 utterances
    assert max(shapes["einsum"]) == (8, DIM)  # 8 trials x 8 values per block
    assert len(shapes["einsum"]) == 5  # 40 trials


def test_table_dict_and_array_inputs_agree(data):
    embeddings, trials, cohort, mean = data
    table = EmbeddingTable(list(embeddings), np.stack(list(embeddings.values())))
    cohort_dict = {f"c{k}": row for k, row in enumerate(cohort)}
    from_dict = score_trials(embeddings, trials, mean=mean, cohort=cohort_dict, top_n=4)
    from_table = score_trials(table, trials, mean=mean, cohort=cohort, top_n=4)
    np.testing.assert_array_equal(from_dict, from_table)


def test_mean_embedding_and_labels(data):
    embeddings, trials, cohort, _ = data
    np.testing.assert_allclose(mean_embedding(cohort), cohort.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(mean_embedding(embeddings), np.mean(list(embeddings.values()), axis=0),
                               atol=1e-6)
    np.testing.assert_array_equal(trial_labels(trials), [trial.target for trial in trials])


@pytest.mark.parametrize("top_n", [1, 31])
def test_top_n_outside_cohort_is_rejected(data, top_n):
    embeddings, trials, cohort, _ = data
    with pytest.raises(ValueError, match=f"top_n must be between 2 and the cohort size 30, got {top_n}"):
        score_trials(embeddings, trials, cohort=cohort, top_n=top_n)


def test_missing_utterance_is_named(data):
    embeddings, trials, _, _ = data
    with pytest.raises(ValueError, match="1 trial utterances have no embedding, e.g. 'ghost.wav'"):
        score_trials(embeddings, trials + [Trial(True, trials[0].utt_a, "ghost.wav")])


def test_bad_embeddings_are_rejected(data):
    embeddings, trials, cohort, mean = data
    name = trials[0].utt_a
    with pytest.raises(ValueError, match=f"embedding of '{name}' has 3 values, expected {DIM}"):
        score_trials({**embeddings, name: np.ones(3)}, trials)
    with pytest.raises(ValueError, match=f"embedding of '{name}' contains NaN"):
        score_trials({**embeddings, name: np.full(DIM, np.nan)}, trials)
    with pytest.raises(ValueError, match=f"embedding of '{name}' has zero length"):
        score_trials({**embeddings, name: mean}, trials, mean=mean)
    with pytest.raises(ValueError, match="cohort embeddings have 4 values"):
        score_trials(embeddings, trials, cohort=cohort[:, :4], top_n=3)
    with pytest.raises(ValueError, match="mean has 3 values"):
        score_trials(embeddings, trials, mean=mean[:3])
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        score_trials(embeddings, trials, chunk_size=0)
    with pytest.raises(ValueError, match="no trials"):
        score_trials(embeddings, [])


def test_identical_top_cohort_scores_are_rejected(data):
    embeddings, trials, cohort, _ = data
    with pytest.raises(ValueError, match="top 3 cohort scores of .* are all equal"):
        score_trials(embeddings, trials, cohort=np.tile(cohort[:1], (5, 1)), top_n=3)


def test_repeated_trials_and_trials_of_an_utterance_with_itself_are_counted_in_warnings(caplog):
    trials = [Trial(True, "a/1.wav", "a/2.wav"), Trial(False, "a/1.wav", "b/1.wav"),
              Trial(True, "a/2.wav", "a/1.wav"), Trial(True, "b/1.wav", "b/1.wav"),
              Trial(False, "a/1.wav", "b/1.wav"), Trial(True, "a/2.wav", "a/2.wav")]
    with caplog.at_level("WARNING"):
        warn_about_repeated_trials(trials, "trials.txt")
    assert [record.getMessage() for record in caplog.records] == [
        "trials.txt: 2 trials repeat an earlier pair (e.g. a/2.wav a/1.wav); each is scored and counted again",
        "trials.txt: 2 trials compare an utterance with itself (e.g. b/1.wav); their score is the highest "
        "possible and says nothing of the system"]
    caplog.clear()
    warn_about_repeated_trials(trials[:2], "trials.txt")
    assert caplog.records == []


def test_one_file_spelt_two_ways_in_a_trial_list_is_one_utterance(tmp_path, caplog):
    path = tmp_path / "trials.txt"
    path.write_text("1 ./a/1.wav a/1.wav\n0 a//1.wav b/./2.wav\n")
    trials = read_trial_list(str(path))
    assert [(trial.utt_a, trial.utt_b) for trial in trials] == [("a/1.wav", "a/1.wav"), ("a/1.wav", "b/2.wav")]
    assert trial_utterances(trials) == ["a/1.wav", "b/2.wav"]
    with caplog.at_level("WARNING"):
        warn_about_repeated_trials(trials, str(path))
    assert "1 trials compare an utterance with itself (e.g. a/1.wav)" in caplog.text
