"""The model registry: a second network added from outside trains, evaluates and exports.

The toy model below lives only in this file. It is registered through
src.model.registry and then driven by the unchanged train.py, eval.py and export.py.
"""
import os
import re

import numpy as np
import pytest
from mindspore import nn, ops

from eval_support import write_corpus, write_train_list, write_trials
from fixtures import PLAIN_RECIPE_ARGS, load_program
from src.checkpoint import read_checkpoint
from src.config import load_config
from src.evaluation.embeddings import model_fingerprint
from src.model import MODELS, build_embedding_network, network_description, register_model
from src.model.layers import ChannelBatchNorm, TimeConv1d


class TwoLayerTDNN(nn.Cell):
    """Two TDNN layers, mean pooling and a projection: (N, T, F) -> (N, emb_size)."""

    def __init__(self, in_channels, channels, emb_size, impl):
        super().__init__()
        self.frame1 = TimeConv1d(in_channels, channels, 3, impl=impl)
        self.frame2 = TimeConv1d(channels, channels, 1, impl=impl)
        self.norm = ChannelBatchNorm(channels)
        self.relu = nn.ReLU()
        self.projection = nn.Dense(channels, emb_size)

    def construct(self, features):
        frames = self.norm(self.relu(self.frame2(self.relu(self.frame1(features)))))
        return self.projection(ops.mean(frames, 1))


def _build_toy(settings, impl):
    return TwoLayerTDNN(settings.in_channels, settings.channels, settings.emb_size, impl)


@pytest.fixture
def toy_model():
    """Register 'toy_tdnn' for one test."""
    register_model("toy_tdnn", checkpoint_prefix="toy")(_build_toy)
    yield "toy_tdnn"
    MODELS.pop("toy_tdnn")


def _load_script(name):
    return load_program(f"{name}.py", f"{name}_script")


def test_description_holds_the_settings_the_builder_read_and_the_parameters(toy_model):
    config, _ = load_config([f"--model={toy_model}", "--channels=12", "--emb_size=5"])
    description = network_description(build_embedding_network(config, "shifted"))
    assert description["settings"] == {"model": "toy_tdnn", "in_channels": 80, "channels": 12, "emb_size": 5}
    assert ("projection.weight", [5, 12]) in description["parameters"]
    # A setting the toy model ignores does not change the identity of its embeddings.
    other, _ = load_config([f"--model={toy_model}", "--channels=12", "--emb_size=5", "--scale=2"])
    assert network_description(build_embedding_network(other, "shifted")) == description


def test_fingerprint_tells_models_apart(toy_model, tmp_path):
    model_file = tmp_path / "weights.ckpt"
    model_file.write_bytes(b"\x00" * 16)
    toy, _ = load_config([f"--model={toy_model}", "--channels=16", "--emb_size=8"])
    ecapa, _ = load_config(["--channels=16", "--mfa_channels=24", "--attention_channels=8",
                            "--se_channels=4", "--scale=4", "--emb_size=8"])
    assert (model_fingerprint(model_file, build_embedding_network(toy, "shifted"))
            != model_fingerprint(model_file, build_embedding_network(ecapa, "shifted")))


def test_a_registered_toy_model_trains_evaluates_and_exports(toy_model, tmp_path, capsys):
    rng = np.random.default_rng(5)
    data = tmp_path / "data"
    training = write_corpus(data / "train", 4, 4, rng, prefix="t")
    evaluation = write_corpus(data / "eval", 3, 3, rng)
    write_train_list(data / "train.txt", training)
    write_trials(data / "eval.txt", evaluation)
    settings = [f"--model={toy_model}", "--channels=16", "--emb_size=8", "--seed=3"]

    _load_script("train").main([
        *settings, f"--train_list={data}/train.txt", f"--train_path={data}/train", "--class_num=4",
        "--minibatch_size=4", "--segment_frames=40", "--num_epochs=2", "--augment=false",
        "--num_workers=1", "--log_interval=1", f"--ckpt_save_dir={tmp_path}/ckpt", *PLAIN_RECIPE_ARGS])
    checkpoints = sorted(name for name in os.listdir(tmp_path / "ckpt") if name.endswith(".ckpt"))
    assert checkpoints == ["toy-1_4.ckpt", "toy-2_4.ckpt"]
    entries = read_checkpoint(str(tmp_path / "ckpt" / "toy-2_4.ckpt"))
    assert "embedding_network.projection.weight" in entries and "head.weight" in entries

    checkpoint = str(tmp_path / "ckpt" / "toy-2_4.ckpt")
    _load_script("eval").main([*settings, f"--model_path={checkpoint}", f"--eval_list={data}/eval.txt",
                               f"--eval_path={data}/eval", f"--eval_output_dir={tmp_path}/results"])
    printed = capsys.readouterr().out
    assert re.search(r"^EER = \d+\.\d\d%$", printed, re.MULTILINE), printed
    assert len((tmp_path / "results" / "scores.txt").read_text().splitlines()) == 3 * 9 - 3

    _load_script("export").main([*settings, f"--checkpoint_path={checkpoint}", "--length=50",
                                 f"--file_name={tmp_path}/toy"])
    printed = capsys.readouterr().out
    assert (tmp_path / "toy.mindir").is_file()
    assert re.search(r"check: MINDIR output vs checkpoint network .* max abs difference", printed), printed
