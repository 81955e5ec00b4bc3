"""Zero-padded batches with a frame mask, and static-shape bucket graphs for extraction."""
import numpy as np
import pytest
from mindspore import Tensor, nn

from fixtures import tiny_network, tiny_network_copy
from src.evaluation.embeddings import (BUCKET_MIN_FRAMES, BUCKET_RATIO, EmbeddingExtractor, bucket_frames,
                                       extract_embeddings)
from src.data.audio import write_audio
from src.model.masked import with_frame_mask


def trained_like(network, seed=0):
    """``network`` with random, non-trivial batch-norm statistics (padding shows up through them)."""
    rng = np.random.default_rng(seed)
    for parameter in network.get_parameters():
        if parameter.name.endswith("moving_mean"):
            parameter.set_data(Tensor(0.5 * rng.standard_normal(parameter.shape).astype(np.float32)))
        elif parameter.name.endswith("moving_variance"):
            parameter.set_data(Tensor((0.5 + rng.random(parameter.shape)).astype(np.float32)))
    network.set_train(False)
    return network


@pytest.fixture(scope="module")
def network():
    return trained_like(tiny_network())


def test_masked_padded_batch_equals_each_unpadded_utterance(network):
    rng = np.random.default_rng(1)
    lengths = (23, 61)  # shorter than the k=5 and dilated receptive fields at both ends
    padded_length = 80
    feats = [rng.standard_normal((frames, 80)).astype(np.float32) for frames in lengths]
    batch = np.zeros((2, padded_length, 80), np.float32)
    mask = np.zeros((2, padded_length, 1), np.float32)
    for row, (frames, utterance) in enumerate(zip(lengths, feats)):
        batch[row, :frames] = utterance
        mask[row, :frames] = 1.0
    batch[0, lengths[0]:] = 7.0  # whatever sits in the padding is ignored
    masked = with_frame_mask(tiny_network_copy(network))
    assert sorted(masked.parameters_dict()) == sorted(network.parameters_dict())
    padded = masked(Tensor(batch), Tensor(mask)).asnumpy()
    plain = tiny_network_copy(network)
    for row, utterance in enumerate(feats):
        expected = plain(Tensor(utterance[np.newaxis])).asnumpy()[0]
        np.testing.assert_allclose(padded[row], expected, rtol=1e-5, atol=1e-6)
    # Without the mask the padding changes the embedding: the mask is what makes it exact.
    unmasked = masked(Tensor(batch[1:]), Tensor(np.ones((1, padded_length, 1), np.float32))).asnumpy()[0]
    assert np.abs(unmasked - padded[1]).max() > 1e-3


def test_bucket_lengths_cover_every_length_with_bounded_padding():
    previous = 0
    for frames in range(1, 5000, 7):
        length = bucket_frames(frames)
        assert length >= frames and length >= previous
        assert length == BUCKET_MIN_FRAMES or length <= frames * BUCKET_RATIO + 8
        previous = length
    assert bucket_frames(1) == bucket_frames(BUCKET_MIN_FRAMES) == BUCKET_MIN_FRAMES
    assert len({bucket_frames(frames) for frames in range(50, 3001)}) == 20  # 0.5-30 s: 20 graphs


def test_bucket_extractor_equals_the_dynamic_graph_and_compiles_once_per_bucket(network):
    rng = np.random.default_rng(2)
    dynamic = EmbeddingExtractor(tiny_network_copy(network))
    buckets = EmbeddingExtractor(tiny_network_copy(network), graphs="buckets")
    assert buckets.graphs == "buckets" and buckets.compile() == 0.0
    lengths = (37, 100, 101, 119, 37, 163)
    for frames in lengths:
        feats = rng.standard_normal((frames, 80)).astype(np.float32)
        np.testing.assert_allclose(buckets.embed_features(feats), dynamic.embed_features(feats),
                                   rtol=1e-5, atol=1e-6)
    assert buckets.buckets == {100, 120, 176} and len(buckets.buckets) == 3
    assert len(buckets.masked.compile_cache) == 3 and buckets.bucket_compile_seconds > 0


def test_extraction_counts_bucket_compilation_apart_from_the_network_time(network, tmp_path):
    rng = np.random.default_rng(3)
    names = []
    for index, seconds in enumerate((0.8, 1.3, 1.35)):
        names.append(f"u{index}.wav")
        write_audio(tmp_path / names[-1], (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32))
    extractor = EmbeddingExtractor(tiny_network_copy(network), graphs="buckets")
    _, stats = extract_embeddings(extractor, names, str(tmp_path))
    assert stats.extracted == 3 and len(extractor.buckets) == 2  # 81 frames -> 100; 131, 136 -> 144
    assert stats.compile_seconds == pytest.approx(extractor.bucket_compile_seconds)
    assert 0 < stats.network_seconds < stats.total_seconds - stats.compile_seconds


def test_a_network_without_a_frame_mask_keeps_the_dynamic_graph():
    class Plain(nn.Cell):
        def construct(self, features):
            return features.sum(axis=1)

    extractor = EmbeddingExtractor(Plain(), graphs="buckets")
    assert extractor.graphs == "dynamic"
    np.testing.assert_allclose(extractor.embed_features(np.ones((30, 80), np.float32)), np.full(80, 30.0))
    with pytest.raises(ValueError, match="graphs must be one of"):
        EmbeddingExtractor(Plain(), graphs="static")
