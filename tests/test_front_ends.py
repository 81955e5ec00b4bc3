"""SpeechBrain's and WeSpeaker's (Kaldi) front ends against the features the libraries themselves
computed for the same clips (tests/data/make_front_end_references.py)."""
import os

import numpy as np
import pytest

from mindspore import Tensor

from fixtures import REPO_ROOT, tiny_network, training_settings, write_tone_corpus
from src.config import ConfigError, load_config
from src.data.audio import AudioError, write_audio
from src.data.dataset import TrainingSamples, read_training_list
from src.data.front_ends import FRONT_ENDS, front_end_of, kaldi_fbank, speechbrain_fbank
from src.evaluation.embeddings import EmbeddingExtractor, extract_embeddings, model_fingerprint
from src.inference.fixed_length import fixed_length_features, window_features

REFERENCES = np.load(os.path.join(REPO_ROOT, "tests", "data", "front_ends.npz"))
CLIPS = 4


@pytest.mark.parametrize("name, front_end", [("speechbrain", speechbrain_fbank), ("kaldi", kaldi_fbank)])
@pytest.mark.parametrize("clip", range(CLIPS))
def test_features_equal_the_librarys_within_float32_rounding(name, front_end, clip):
    wave = REFERENCES[f"clip_{clip}"].astype(np.float32) / 32768.0
    expected = REFERENCES[f"{name}_{clip}"]
    found = front_end(wave)
    assert found.shape == expected.shape and found.dtype == np.float32
    # Float32 sums in another order, through logarithms of the smallest energies: 1e-4 of the range.
    assert np.abs(found - expected).max() <= 1e-4 * (expected.max() - expected.min())
    np.testing.assert_allclose(found.mean(axis=0), 0, atol=1e-4)


def test_frame_counts_follow_each_librarys_framing():
    assert speechbrain_fbank(np.full(1600, 0.1, np.float32)).shape == (11, 80)   # 1 + S // 160, centred
    assert kaldi_fbank(np.full(1600, 0.1, np.float32)).shape == (8, 80)          # 1 + (S - 400) // 160
    assert kaldi_fbank(np.full(400, 0.1, np.float32)).shape == (1, 80)
    with pytest.raises(ValueError, match="kaldi_fbank needs at least 400 samples, got 399"):
        kaldi_fbank(np.ones(399, np.float32))
    with pytest.raises(ValueError, match="non-empty 1-D waveform"):
        speechbrain_fbank(np.ones((2, 400), np.float32))
    assert set(FRONT_ENDS) == {"zoo", "speechbrain", "kaldi"}


# ---- the features setting: every path computes the configured front end's features ----

def test_the_features_setting_names_a_front_end():
    assert front_end_of(load_config(["--features=kaldi"])[0]) is FRONT_ENDS["kaldi"]
    assert load_config([])[0].features == "zoo"
    with pytest.raises(ConfigError, match="features: 'htk' is not one of zoo, speechbrain, kaldi"):
        load_config(["--features=htk"])


@pytest.mark.parametrize("name", ["zoo", "speechbrain", "kaldi"])
def test_training_crops_give_exactly_the_segment_frames(tmp_path, name):
    list_path = write_tone_corpus(tmp_path, num_speakers=2, utterances=2)
    utterances, labels, _ = read_training_list(training_settings(tmp_path, list_path, class_num=2))
    samples = TrainingSamples(utterances, labels, str(tmp_path / "train" / "wav"), segment_frames=50, seed=0,
                              front_end=FRONT_ENDS[name])
    features, _ = samples[3]
    assert features.shape == (50, 80)
    np.testing.assert_allclose(features.mean(axis=0), 0, atol=1e-4)


def test_extraction_fixed_length_inputs_and_the_cache_follow_the_front_end(tmp_path):
    network = tiny_network()
    network.set_train(False)
    wave = REFERENCES["clip_1"].astype(np.float32) / 32768.0
    extractor = EmbeddingExtractor(network, front_end=FRONT_ENDS["speechbrain"])
    expected = network(Tensor(speechbrain_fbank(wave)[np.newaxis])).asnumpy()[0]
    np.testing.assert_allclose(extractor.embed_wave(wave), expected, rtol=1e-5, atol=1e-6)
    kaldi = FRONT_ENDS["kaldi"]
    inputs = fixed_length_features(wave, 60, kaldi)
    np.testing.assert_array_equal(inputs[0], kaldi_fbank(wave[:kaldi.samples_for_frames(60)]))
    assert [window.shape for window in window_features(wave, 30, 15, kaldi)][:2] == [(1, 30, 80)] * 2
    model = tmp_path / "model.ckpt"
    model.write_bytes(b"weights")
    fingerprints = {name: model_fingerprint(model, network, name) for name in FRONT_ENDS}
    assert len(set(fingerprints.values())) == 3 and fingerprints["zoo"] == model_fingerprint(model, network)
    write_audio(tmp_path / "click.wav", np.full(399, 0.1, np.float32))
    with pytest.raises(AudioError, match=r"click.wav: kaldi_fbank needs at least 400 samples, got 399"):
        extract_embeddings(EmbeddingExtractor(network, front_end=kaldi), ["click.wav"], str(tmp_path))
