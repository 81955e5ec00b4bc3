"""Full-length embedding extraction, its cache, cohort choice and the evaluation workflow."""

import os
import signal

import numpy as np
import pytest
from mindspore import Tensor

from eval_support import embed_file, write_corpus, write_train_list, write_trials
from fixtures import TINY_NETWORK_ARGS, speaker_wave, tiny_network, tiny_network_copy
from src.config import ConfigError, load_config
from src.data.audio import AudioError, read_audio, write_audio
from src.data.features import log_mel
from src.data.lists import ListFormatError, TrainList
from src.evaluation.embeddings import (EmbeddingCache, EmbeddingError, EmbeddingExtractor,
                                       extract_embeddings, model_fingerprint, require_audio_files)
from src.evaluation.evaluate import (EvaluationError, prepare_inputs, run_evaluation,
                                     select_cohort)
from src.evaluation.report import read_scores
from src.interrupts import Interrupted
from src.model import build_embedding_network


@pytest.fixture(scope="module")
def network():
    return tiny_network()


@pytest.fixture(scope="module")
def extractor(network):
    network.set_train(True)  # as a network coming from training would be
    return EmbeddingExtractor(network)


def test_one_graph_serves_every_length_and_equals_a_plain_call(network, extractor):
    rng = np.random.default_rng(3)
    reference = tiny_network_copy(network)
    lengths = (1, 57, 263)
    for frames in lengths:
        feats = rng.standard_normal((frames, 80)).astype(np.float32)
        expected = reference(Tensor(feats[np.newaxis])).asnumpy()[0]
        np.testing.assert_allclose(extractor.embed_features(feats), expected, rtol=1e-5, atol=1e-6)
    # The plain network compiled once per length; the extractor once in all.
    assert len(reference.compile_cache) == len(lengths)
    assert len(extractor.network.compile_cache) == 1
    assert not network.training


def test_embedding_does_not_depend_on_other_utterances(extractor):
    rng = np.random.default_rng(4)
    feats = rng.standard_normal((90, 80)).astype(np.float32)
    first = extractor.embed_features(feats)
    extractor.embed_features(10 * rng.standard_normal((40, 80)).astype(np.float32))
    np.testing.assert_array_equal(extractor.embed_features(feats), first)


def test_wrong_feature_shape_is_rejected(extractor):
    with pytest.raises(ValueError, match=r"\(T, 80\)"):
        extractor.embed_features(np.zeros((50, 40), dtype=np.float32))


@pytest.fixture
def audio_folder(tmp_path):
    rng = np.random.default_rng(5)
    names = ["a/1.wav", "a/2.wav", "b/1.wav"]
    for speaker, name in enumerate(names):
        write_audio(tmp_path / "wav" / name, speaker_wave(speaker, 0.3 + 0.2 * speaker, rng))
    return tmp_path / "wav", names


def test_extraction_embeds_whole_files(extractor, audio_folder):
    root, names = audio_folder
    table, stats = extract_embeddings(extractor, names + names[:1], str(root))
    assert table.names == names
    for name in names:
        wave = read_audio(root / name)
        np.testing.assert_array_equal(table.matrix[table.index[name]],
                                      extractor.embed_features(log_mel(wave)))
    assert stats.extracted == 3 and stats.cached == 0
    expected_audio = sum(read_audio(root / name).size for name in names) / 16000
    assert stats.audio_seconds == pytest.approx(expected_audio)
    assert 0 < stats.network_seconds <= stats.total_seconds


class UnusableExtractor:
    """Stands in for a network that must not be called."""
    n_mels = 80

    def compile(self):
        raise AssertionError("the network was compiled although every embedding was cached")

    def embed_features(self, feats):
        raise AssertionError("the network was called although every embedding was cached")

    def features(self, wave, source):
        return log_mel(wave)


def test_second_run_takes_everything_from_the_cache(extractor, audio_folder, tmp_path):
    root, names = audio_folder
    cache_file = tmp_path / "out" / "embeddings.npz"
    first, _ = extract_embeddings(extractor, names, str(root), EmbeddingCache(cache_file, "model A"))
    assert cache_file.is_file()

    again, stats = extract_embeddings(UnusableExtractor(), names, str(root),
                                      EmbeddingCache(cache_file, "model A"))
    assert (stats.extracted, stats.cached) == (0, 3)
    np.testing.assert_array_equal(again.matrix, first.matrix)
    assert "all 3 embeddings taken from the cache" in stats.describe()


def test_cache_of_another_model_or_changed_audio_is_not_reused(extractor, audio_folder, tmp_path):
    root, names = audio_folder
    cache_file = tmp_path / "embeddings.npz"
    extract_embeddings(extractor, names, str(root), EmbeddingCache(cache_file, "model A"))
    assert EmbeddingCache(cache_file, "model B").entries == {}

    write_audio(root / names[1], speaker_wave(7, 0.8, np.random.default_rng(6)))
    table, stats = extract_embeddings(extractor, names, str(root), EmbeddingCache(cache_file, "model A"))
    assert (stats.extracted, stats.cached) == (1, 2)
    np.testing.assert_array_equal(table.matrix[1], embed_file(extractor, root / names[1]))


def test_embeddings_made_before_an_error_stay_cached(extractor, audio_folder, tmp_path):
    root, names = audio_folder
    (root / "broken.wav").write_bytes(b"RIFF but not audio")
    cache_file = tmp_path / "embeddings.npz"
    with pytest.raises(AudioError, match=r"broken.wav: cannot read audio"):
        extract_embeddings(extractor, names + ["broken.wav"], str(root),
                           EmbeddingCache(cache_file, "model A"))
    kept = EmbeddingCache(cache_file, "model A")
    assert sorted(kept.entries) == sorted(str(root / name) for name in names)


class BrokenExtractor(UnusableExtractor):
    """Stands in for a diverged network: every embedding is NaN."""

    def compile(self):
        return 0.0

    def embed_features(self, feats):
        return np.full(8, np.nan, dtype=np.float32)


def test_non_finite_embeddings_are_reported_and_not_cached(audio_folder, tmp_path):
    root, names = audio_folder
    cache_file = tmp_path / "embeddings.npz"
    with pytest.raises(EmbeddingError, match=r"a/1.wav: the embedding has NaN or infinite values"):
        extract_embeddings(BrokenExtractor(), names, str(root), EmbeddingCache(cache_file, "model A"))
    assert not cache_file.exists()


def test_unreadable_cache_is_ignored(tmp_path):
    cache_file = tmp_path / "embeddings.npz"
    cache_file.write_bytes(b"not an npz file")
    assert EmbeddingCache(cache_file, "model A").entries == {}


def test_a_damaged_cache_is_reported_once_and_rebuilt(extractor, audio_folder, tmp_path, caplog):
    root, names = audio_folder
    cache_file = tmp_path / "embeddings.npz"
    complete, _ = extract_embeddings(extractor, names, str(root), EmbeddingCache(cache_file, "model A"))
    content = cache_file.read_bytes()
    for length in (0, 1, 30, len(content) // 2, len(content) - 1):
        cache_file.write_bytes(content[:length])
        caplog.clear()
        table, stats = extract_embeddings(extractor, names, str(root), EmbeddingCache(cache_file, "model A"))
        warnings = [record.getMessage() for record in caplog.records if record.name == "src.evaluation.embeddings"]
        assert len(warnings) == 1 and "damaged embedding cache" in warnings[0] and "rebuilt" in warnings[0], length
        assert (stats.extracted, stats.cached) == (3, 0)
        np.testing.assert_array_equal(table.matrix, complete.matrix)
        assert cache_file.read_bytes() == content, length
        assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]


class SignalledExtractor:
    """Embeds with ``extractor``; while embedding utterance ``at`` it is stopped as a signal stops a
    program (src/interrupts.py raises Interrupted where the program is). A real signal to the
    test process could meet a handler MindSpore installed, so the test raises it itself; the
    signal handling is tested in subprocesses (tests/test_train.py, test_run_recipe.py)."""

    def __init__(self, extractor, signum, at):
        self.extractor, self.signum, self.at, self.calls = extractor, signum, at, 0
        self.n_mels = extractor.n_mels

    def compile(self):
        return self.extractor.compile()

    def features(self, wave, source):
        return self.extractor.features(wave, source)

    def embed_features(self, feats):
        self.calls += 1
        if self.calls == self.at:
            raise Interrupted(self.signum)
        return self.extractor.embed_features(feats)


def test_a_signal_during_extraction_stops_it_and_keeps_the_cache_valid(extractor, audio_folder, tmp_path):
    root, names = audio_folder
    cache_file = tmp_path / "embeddings.npz"
    with pytest.raises(Interrupted) as stopped:
        extract_embeddings(SignalledExtractor(extractor, signal.SIGTERM, 2), names, str(root),
                           EmbeddingCache(cache_file, "model A"))
    assert stopped.value.status == 143 and str(stopped.value) == "interrupted by SIGTERM"
    assert sorted(EmbeddingCache(cache_file, "model A").entries) == [str(root / names[0])]
    table, stats = extract_embeddings(extractor, names, str(root), EmbeddingCache(cache_file, "model A"))
    assert (stats.extracted, stats.cached) == (2, 1)


def test_fingerprint_follows_model_content_and_settings(tmp_path):
    model = tmp_path / "model.ckpt"
    model.write_bytes(b"\x01" * 64)
    config, _ = load_config(TINY_NETWORK_ARGS)
    network = build_embedding_network(config, "shifted")
    original = model_fingerprint(model, network)
    assert model_fingerprint(model, build_embedding_network(config, "native")) == original
    other_size, _ = load_config(TINY_NETWORK_ARGS + ["--emb_size=16"])
    assert model_fingerprint(model, build_embedding_network(other_size, "shifted")) != original
    model.write_bytes(b"\x02" * 64)  # same size, other weights
    assert model_fingerprint(model, network) != original


def test_missing_audio_files_are_listed(tmp_path):
    write_audio(tmp_path / "ok.wav", np.zeros(800, dtype=np.float32))
    names = ["ok.wav", "gone1.wav", "gone2.wav", "gone3.wav"]
    with pytest.raises(AudioError, match=r"^list.txt: 3 of 4 audio files not found under .*, "
                                         r"first: gone1.wav, gone2.wav$"):
        require_audio_files(names, str(tmp_path), "list.txt", shown=2)
    require_audio_files(names[:1], str(tmp_path), "list.txt")


def test_cohort_is_spread_round_robin_over_sorted_speakers():
    train = TrainList(utterances=["b/1", "c/1", "b/2", "a/1", "b/3", "c/2"],
                      labels=[1, 2, 1, 0, 1, 2], speakers=["a", "b", "c"])
    assert select_cohort(train, 5) == ["a/1", "b/1", "c/1", "b/2", "c/2"]
    assert select_cohort(train, 100) == ["a/1", "b/1", "c/1", "b/2", "c/2", "b/3"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Eval and train folders of synthetic speakers, their lists and a (dummy) model file."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(7)
    evaluation = write_corpus(root / "eval", 3, 3, rng)
    training = write_corpus(root / "train", 4, 2, rng, prefix="t")
    write_trials(root / "eval.txt", evaluation)
    write_train_list(root / "train.txt", training)
    (root / "model.ckpt").write_bytes(b"weights")
    return root


def corpus_config(root, *extra):
    config, _ = load_config(TINY_NETWORK_ARGS + [
        f"--eval_list={root / 'eval.txt'}", f"--eval_path={root / 'eval'}",
        f"--train_list={root / 'train.txt'}", f"--train_path={root / 'train'}",
        f"--model_path={root / 'model.ckpt'}", *extra])
    return config


def unit(matrix, mean):
    centred = matrix - mean
    return centred / np.linalg.norm(centred, axis=1, keepdims=True)


def test_asnorm_scores_match_an_independent_computation(extractor, corpus, tmp_path):
    config = corpus_config(corpus, f"--eval_output_dir={tmp_path / 'out'}", "--score_norm=asnorm",
                           "--mean_subtraction=true", "--cohort_size=6", "--top_n=3")
    inputs = prepare_inputs(config)
    # Round robin over t0..t3 with two utterances each, six chosen.
    assert inputs.cohort == ["t0/v1/00000.wav", "t1/v1/00000.wav", "t2/v1/00000.wav",
                             "t3/v1/00000.wav", "t0/v1/00001.wav", "t1/v1/00001.wav"]
    lines = run_evaluation(config, extractor, inputs)

    def embed(folder, name):
        return embed_file(extractor, corpus / folder / name).astype(np.float64)

    cohort = np.stack([embed("train", name) for name in inputs.cohort])
    mean = cohort.mean(axis=0)
    cohort_units = unit(cohort, mean)
    trials, scores = read_scores(tmp_path / "out" / "scores.txt")
    assert trials == inputs.trials
    for trial, found in zip(trials, scores):
        a, b = (unit(embed("eval", name)[np.newaxis], mean)[0] for name in (trial.utt_a, trial.utt_b))
        top_a, top_b = (np.sort(cohort_units @ side)[-3:] for side in (a, b))
        raw = a @ b
        expected = 0.5 * ((raw - top_a.mean()) / top_a.std(ddof=1) + (raw - top_b.mean()) / top_b.std(ddof=1))
        assert found == pytest.approx(expected, rel=1e-4, abs=1e-4)
    assert lines[0].startswith("EER = ")
    for name in ("det.png", "score_hist.png", "eval.log", "embeddings.npz"):
        assert (tmp_path / "out" / name).is_file()
    assert "AS-norm (cohort 6, top_n 3)" in (tmp_path / "out" / "eval.log").read_text()


def test_plain_cosine_scores(extractor, corpus, tmp_path):
    config = corpus_config(corpus, f"--eval_output_dir={tmp_path}", "--embedding_cache=false")
    inputs = prepare_inputs(config)
    assert inputs.cohort == []
    run_evaluation(config, extractor, inputs)
    assert not (tmp_path / "embeddings.npz").exists()
    trials, scores = read_scores(tmp_path / "scores.txt")
    trial = trials[4]
    a, b = (embed_file(extractor, corpus / "eval" / name) for name in (trial.utt_a, trial.utt_b))
    assert scores[4] == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b), rel=1e-5)


def test_bad_inputs_are_reported_before_extraction(corpus, tmp_path):
    bad_list = tmp_path / "bad.txt"
    bad_list.write_text("1 spk0/v1/00000.wav spk0/v1/00001.wav\n1 spk0/v1/00000.wav\n")
    with pytest.raises(ListFormatError, match=r"bad.txt:2: expected"):
        prepare_inputs(corpus_config(corpus, f"--eval_list={bad_list}"))

    one_class = tmp_path / "targets.txt"
    one_class.write_text("1 spk0/v1/00000.wav spk0/v1/00001.wav\n")
    with pytest.raises(EvaluationError, match=r"targets.txt: all 1 trials are target trials"):
        prepare_inputs(corpus_config(corpus, f"--eval_list={one_class}"))

    with pytest.raises(ConfigError, match=r"top_n: 300 must be between 2 and the cohort size 8"):
        prepare_inputs(corpus_config(corpus, "--score_norm=asnorm"))

    with pytest.raises(ConfigError, match=r"cohort_list: file .*nothing.txt.* not found"):
        prepare_inputs(corpus_config(corpus, "--mean_subtraction=true",
                                     f"--cohort_list={tmp_path / 'nothing.txt'}"))

    missing = tmp_path / "missing.txt"
    missing.write_text("1 spk0/v1/00000.wav spk0/v1/09999.wav\n0 spk0/v1/00000.wav spk9/x.wav\n")
    with pytest.raises(AudioError, match=r"missing.txt: 2 of 3 audio files not found .*"
                                         r"first: spk0/v1/09999.wav, spk9/x.wav"):
        prepare_inputs(corpus_config(corpus, f"--eval_list={missing}"))


def test_a_network_padding_by_reflection_embeds_without_a_frame_mask_and_refuses_too_few_frames():
    config = load_config([*TINY_NETWORK_ARGS, "--padding", "reflect"])[0]
    network = build_embedding_network(config, "shifted")
    network.set_train(False)
    rng = np.random.default_rng(6)
    expected = {frames: network(Tensor(rng.standard_normal((1, frames, 80)).astype(np.float32))).asnumpy()[0]
                for frames in (5, 48)}
    rng = np.random.default_rng(6)
    extractor = EmbeddingExtractor(network, graphs="buckets")
    assert extractor.graphs == "dynamic" and extractor.min_frames == 5  # layer4: dilation 4, kernel 3
    for frames, embedding in expected.items():
        found = extractor.embed_features(rng.standard_normal((frames, 80)).astype(np.float32))
        np.testing.assert_allclose(found, embedding, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="T >= 5"):
        extractor.embed_features(np.zeros((4, 80), np.float32))
    with pytest.raises(AudioError, match=r"short\.wav: 4 frames, fewer than the 5"):
        extractor.features(np.zeros(int(0.035 * 16000), np.float32), "short.wav")
