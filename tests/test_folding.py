"""Batch-norm folding: the folded copy computes the trained network's function, exactly where claimed."""
import contextlib
import io
import sys

import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn

import export
from fixtures import TINY_NETWORK_ARGS, randomise, speaker_wave
from src.checkpoint import save_checkpoint
from src.config import load_config
from src.data.features import log_mel
from src.model.layers import ChannelAffine
from src.inference.folding import (fold_batch_norm, fold_norm_dense_norm, fold_tdnn_block,
                                   has_folding)
from src.model import MODELS, build_embedding_network, register_model
from src.model.layers import ChannelBatchNorm, TDNNBlock

TOLERANCE = 1e-4


def settings(*extra):
    return load_config([*TINY_NETWORK_ARGS, *extra])[0]


def relative_difference(found, expected):
    return float(np.abs(found - expected).max() / max(1.0, np.abs(expected).max()))


@pytest.fixture(scope="module")
def tone_features():
    wave = speaker_wave(1, 1.5, np.random.default_rng(4))
    return log_mel(wave)[np.newaxis].astype(np.float32)


SPEECHBRAIN_NETWORK = ("--padding", "reflect", "--embedding_norm", "false", "--variance_floor", "1e-12")


WESPEAKER_NETWORK = ("--model", "wespeaker_ecapa_tdnn", "--embedding_norm", "true")


@pytest.mark.parametrize("impl,network_settings", [("shifted", ()), ("native", ()), ("shifted", SPEECHBRAIN_NETWORK),
                                                   ("shifted", WESPEAKER_NETWORK)])
def test_folded_copy_matches_the_network_and_leaves_it_unchanged(impl, network_settings, tone_features):
    config = settings(*network_settings)
    network = randomise(build_embedding_network(config, impl))
    before = {name: parameter.asnumpy().copy() for name, parameter in network.parameters_dict().items()}
    folded = fold_batch_norm(network, config, impl)

    # One batch, one graph per network: two random inputs and the tone's first 60 frames.
    random_input = np.random.default_rng(1).standard_normal((2, 60, 80)).astype(np.float32)
    features = Tensor(np.concatenate([random_input, tone_features[:, :60]]))
    expected = network(features).asnumpy()
    assert np.abs(expected).max(axis=1).min() > 0.1
    found = folded(features).asnumpy()
    assert max(relative_difference(row, expected_row) for row, expected_row in zip(found, expected)) <= TOLERANCE
    assert not [cell for _, cell in folded.cells_and_names() if isinstance(cell, ChannelBatchNorm)]
    assert all(np.array_equal(parameter.asnumpy(), before[name])
               for name, parameter in network.parameters_dict().items())
    names = [parameter.name for parameter in folded.get_parameters()]
    assert len(names) == len(set(names)) and "layer1.norm.shift" in names


@pytest.mark.parametrize("negative_gamma", [False, True])
def test_tdnn_block_fold_is_exact_for_either_sign_of_the_scale(negative_gamma):
    # Two blocks of equal parameters: a cell called once keeps its compiled graph.
    block, reference = (randomise(TDNNBlock(6, 5, kernel_size=3, dilation=2), seed=2,
                                  negative_gamma=negative_gamma) for _ in range(2))
    features = Tensor(np.random.default_rng(3).standard_normal((1, 12, 6)).astype(np.float32))
    expected = reference(features).asnumpy()

    fold_tdnn_block(block)
    assert isinstance(block.norm, ChannelAffine)
    assert block.norm.has_scale == negative_gamma  # a sign flip only where some scale is negative
    np.testing.assert_allclose(block(features).asnumpy(), expected, rtol=1e-5, atol=1e-6)


def test_norm_dense_norm_merges_into_the_dense_layer():
    before, after, dense = ChannelBatchNorm(6), ChannelBatchNorm(4), nn.Dense(6, 4)
    for cell in (before, after, dense):
        randomise(cell, seed=5)
    x = np.random.default_rng(6).standard_normal((3, 6))
    scale_in, shift_in, scale_out, shift_out = (
        value for norm in (before, after)
        for value in ((norm.gamma.asnumpy() / np.sqrt(norm.moving_variance.asnumpy() + norm.eps)),)
        for value in (value, norm.beta.asnumpy() - norm.moving_mean.asnumpy() * value))
    expected = scale_out * ((scale_in * x + shift_in) @ dense.weight.asnumpy().T + dense.bias.asnumpy()) + shift_out

    fold_norm_dense_norm(before, dense, after)
    x = Tensor(x.astype(np.float32))
    np.testing.assert_allclose(dense(x).asnumpy(), expected, rtol=1e-5, atol=1e-6)


class _NormedLinear(nn.Cell):
    """A model the folding rules do not know: mean over time, batch norm, dense layer."""

    def __init__(self, in_channels, emb_size):
        super().__init__()
        self.norm = ChannelBatchNorm(in_channels)
        self.dense = nn.Dense(in_channels, emb_size)

    def construct(self, features):
        return self.dense(self.norm(features.mean(axis=1)))


@pytest.fixture
def unknown_model():
    name = "normed_linear_without_folding"
    register_model(name)(lambda config, impl: _NormedLinear(config.in_channels, config.emb_size))
    yield name
    del MODELS[name]


def test_a_model_without_a_folding_rule_is_exported_unfolded(unknown_model, tmp_path, monkeypatch):
    config = settings(f"--model={unknown_model}")
    network = randomise(build_embedding_network(config, "shifted"))
    assert not has_folding(config) and fold_batch_norm(network, config, "shifted") is None
    save_checkpoint(network, str(tmp_path / "weights.ckpt"))

    monkeypatch.setattr(sys, "argv", ["export.py", *TINY_NETWORK_ARGS, f"--model={unknown_model}", "--length=20",
                                      "--device_target=CPU", f"--checkpoint_path={tmp_path / 'weights.ckpt'}",
                                      f"--file_name={tmp_path / 'plain'}"])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        export.main()
    assert f"model {unknown_model} has no batch-norm folding rule: exporting it unfolded" in printed.getvalue()
    assert "batch norm kept" in printed.getvalue()
    assert (tmp_path / "plain.mindir").is_file()
    ms.set_context(mode=ms.GRAPH_MODE)
