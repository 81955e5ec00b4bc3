"""Recipe features of training: class_num auto, margin schedule, validation, init_from, averaging."""
import os
import subprocess
import sys
from types import SimpleNamespace

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

from fixtures import REPO_ROOT, TINY_NETWORK, tiny_network, write_tone_corpus
from src.checkpoint import load_embedding_weights, read_checkpoint, save_checkpoint
from src.config import ConfigError, load_config
from src.model.aam_softmax import AAMSoftmax
from src.model.speaker_loss import SpeakerLoss
from src.train.averaging import average_weights, newest_checkpoints, save_average
from src.train.run_folder import BEST_BY_EER, CheckpointError, CheckpointManager, initialise_from
from src.train.margin_schedule import MarginSchedule
from src.train.step import TrainStep
from src.train.validation import Validator


# ---- settings ----

def test_class_num_accepts_auto_or_a_positive_integer():
    assert load_config([])[0].class_num == "auto"
    assert load_config(["--class_num=12"])[0].class_num == 12
    with pytest.raises(ConfigError, match=r"^class_num \(from command line\): expected an integer, got 'many'$"):
        load_config(["--class_num=many"])
    with pytest.raises(ConfigError, match=r"^class_num: 0 must be > 0$"):
        load_config(["--class_num=0"])


@pytest.mark.parametrize("value,message", [
    ("0.9,1.1", "must include 1.0"), ("0.9,x", "comma-separated"), ("1.0,3.0", "between 0.5 and 2"),
])
def test_bad_speed_factors_are_refused(value, message):
    with pytest.raises(ConfigError, match=message):
        load_config([f"--speed_perturb={value}"])


# ---- margin schedule and head ----

def test_margin_rises_exponentially_between_the_warm_up_epochs():
    schedule = MarginSchedule(0.0, 0.2, start_epoch=2, end_epoch=4, steps_per_epoch=10)
    margins = [schedule(step) for step in range(60)]
    assert margins[:20] == [0.0] * 20 and margins[40:] == [0.2] * 20
    rising = margins[20:41]
    assert all(a < b for a, b in zip(rising, rising[1:]))
    assert rising[2] == pytest.approx(0.2 * (1 - 0.001 ** 0.1) / 0.999)  # about half the rise at 10 %
    fixed = MarginSchedule(0.0, 0.3, 0, 0, 10)
    assert fixed.fixed and {fixed(step) for step in (0, 5, 500)} == {0.3}
    assert [schedule.final_from(step) for step in (0, 39, 40, 59)] == [False, False, True, True]
    assert fixed.final_from(0)


def test_head_margin_changes_between_calls_without_recompiling(rng):
    head = AAMSoftmax(4, 3, margin=0.0, scale=10.0)
    embeddings = Tensor(rng.standard_normal((5, 4)).astype(np.float32))
    labels = Tensor(np.array([0, 1, 2, 0, 1], np.int32))

    class Logits(nn.Cell):
        def __init__(self):
            super().__init__()
            self.head = head

        def construct(self, x, y):
            return self.head(x, y)[0]

    cell = Logits()
    plain, cosine = cell(embeddings, labels).asnumpy(), head(embeddings, labels)[1].asnumpy()
    head.set_margin(0.3)
    margined = cell(embeddings, labels).asnumpy()
    rows = np.arange(5)
    theta = np.arccos(cosine[rows, labels.asnumpy()])
    # Past pi the head uses its monotonic fallback cos(theta) - m sin(m) (the weights are random).
    target = np.where(theta + 0.3 < np.pi, np.cos(theta + 0.3), np.cos(theta) - 0.3 * np.sin(0.3))
    np.testing.assert_allclose(plain, 10.0 * cosine, atol=1e-4)
    np.testing.assert_allclose(margined[rows, labels.asnumpy()], 10.0 * target, atol=2e-3)
    assert len(cell.compile_cache) == 1


# ---- validation ----

def _trial_list(root, list_path):
    utterances = [line.split()[1] for line in open(list_path).read().splitlines()]
    lines = [f"{int(a.split('/')[0] == b.split('/')[0])} {a} {b}"
             for index, a in enumerate(utterances) for b in utterances[index + 1:]]
    path = os.path.join(root, "valid.txt")
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def _step(seed):
    ms.set_seed(seed)
    loss_net = SpeakerLoss(tiny_network(), AAMSoftmax(TINY_NETWORK["emb_size"], 3))
    step = TrainStep(loss_net, nn.Adam(loss_net.trainable_params(), learning_rate=1e-2))
    step.set_train(True)
    return step


def test_validation_leaves_the_training_trajectory_and_compiles_once(tmp_path, rng):
    list_path = write_tone_corpus(tmp_path, num_speakers=3, utterances=2)
    config = SimpleNamespace(valid_list=_trial_list(tmp_path, list_path), valid_path=str(tmp_path / "train" / "wav"),
                             valid_interval=1, num_epochs=3, in_channels=80, features="zoo")
    batches = [(Tensor(rng.standard_normal((3, 40, 80)).astype(np.float32)), Tensor(np.arange(3, dtype=np.int32)))
               for _ in range(3)]
    plain, validated = _step(5), _step(5)
    validator = Validator(config, validated.loss_net.embedding_network)
    eers = []
    for features, labels in batches:
        plain(features, labels)
        validated(features, labels)
        result, _ = validator.run(validated)
        eers.append(result.eer)
    assert validated.training and validated.loss_net.embedding_network.training
    assert len(validated.compile_cache) == 1 and len(validator.extractor.network.compile_cache) == 1
    assert all(0.0 <= eer <= 1.0 for eer in eers) and len(validator.trials) == 15
    for expected, actual in zip(plain.loss_net.get_parameters(), validated.loss_net.get_parameters()):
        np.testing.assert_array_equal(actual.asnumpy(), expected.asnumpy(), err_msg=expected.name)
    assert validator.due(1) and validator.due(3)


def test_best_pointer_follows_the_validation_eer_not_the_loss(tmp_path):
    cell = nn.Dense(2, 2)
    manager = CheckpointManager(str(tmp_path), keep_max=1, best_by=BEST_BY_EER)
    manager.save(cell, 1, 5, 5, epoch_loss=3.0, valid_eer=0.30)
    manager.save(cell, 2, 5, 10, epoch_loss=2.0, valid_eer=0.20)
    manager.save(cell, 3, 5, 15, epoch_loss=1.0, valid_eer=0.25)
    manager.save(cell, 4, 5, 20, epoch_loss=0.5)  # not validated: never the best
    assert open(tmp_path / "best").read().split() == ["ecapa-2_5.ckpt", "0.200000", "valid_eer"]
    assert manager.checkpoints() == ["ecapa-2_5.ckpt", "ecapa-4_5.ckpt"]
    # A run that starts validating replaces a best pointer chosen by training loss.
    other = tmp_path / "other"
    CheckpointManager(str(other), keep_max=5).save(cell, 1, 5, 5, epoch_loss=0.1)
    CheckpointManager(str(other), keep_max=5, best_by=BEST_BY_EER).save(cell, 2, 5, 10, epoch_loss=9.0,
                                                                         valid_eer=0.4)
    assert open(other / "best").read().split()[0] == "ecapa-2_5.ckpt"


# ---- init_from ----

def _loss_net(classes, seed):
    ms.set_seed(seed)
    return SpeakerLoss(tiny_network(), AAMSoftmax(TINY_NETWORK["emb_size"], classes))


def test_init_from_takes_network_and_the_first_head_rows(tmp_path):
    source = _loss_net(12, 1)
    moving = next(p for p in source.embedding_network.get_parameters() if "moving_mean" in p.name)
    moving.set_data(Tensor(np.full(moving.shape, 0.25, np.float32)))  # batch-norm statistics come along too
    path = str(tmp_path / "trained.ckpt")
    save_checkpoint(source, path)
    target = _loss_net(4, 2)
    message = initialise_from(path, target)
    assert "first 4 of the 12 rows of head.weight" in message
    for name, parameter in target.parameters_dict().items():
        if name == "head.weight":
            np.testing.assert_array_equal(parameter.asnumpy(), source.head.weight.asnumpy()[:4])
        elif name != "head.margin":
            np.testing.assert_array_equal(parameter.asnumpy(), source.parameters_dict()[name].asnumpy(), name)
    other_speakers = _loss_net(5, 3)
    fresh = other_speakers.head.weight.asnumpy().copy()
    message = initialise_from(path, other_speakers)
    assert "head.weight starts fresh: the checkpoint's head has 12 classes, this run 5" in message
    assert message.startswith(f"initialised {len(source.embedding_network.parameters_dict())} network parameters")
    np.testing.assert_array_equal(other_speakers.head.weight.asnumpy(), fresh)
    np.testing.assert_array_equal(other_speakers.embedding_network.layer1.conv.weight.asnumpy(),
                                  source.embedding_network.layer1.conv.weight.asnumpy())
    with pytest.raises(CheckpointError, match=r"layer1.conv.weight' has shape \(16, 80, 1, 5\), this run "
                                              r"expects \(24, 80, 1, 5\)"):
        initialise_from(path, SpeakerLoss(tiny_network(channels=24), AAMSoftmax(TINY_NETWORK["emb_size"], 12)))


# ---- averaging ----

def test_average_is_the_mean_of_the_weights_and_evaluates(tmp_path):
    folder = tmp_path / "run"
    manager = CheckpointManager(str(folder), keep_max=10)
    nets = [_loss_net(3, seed) for seed in range(4)]
    for epoch, net in enumerate(nets, start=1):
        network = net.embedding_network
        moving = [p for p in network.get_parameters() if "moving_variance" in p.name]
        moving[0].set_data(Tensor(np.full(moving[0].shape, float(epoch), np.float32)))
        manager.save(net, epoch, 2, 2 * epoch)
    paths = newest_checkpoints(str(folder), 3)
    assert [os.path.basename(path) for path in paths] == ["ecapa-2_2.ckpt", "ecapa-3_2.ckpt", "ecapa-4_2.ckpt"]
    output = save_average(paths, str(tmp_path / "avg.ckpt"))
    stored = read_checkpoint(output)
    expected = {name: np.mean([net.parameters_dict()[name].asnumpy() for net in nets[1:]], axis=0)
                for name in nets[0].parameters_dict()}
    assert set(stored) - {"averaged_checkpoints"} == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(stored[name].asnumpy(), value, rtol=1e-6, atol=1e-7, err_msg=name)
    variance = next(name for name in expected if "moving_variance" in name)
    np.testing.assert_allclose(stored[variance].asnumpy(), 3.0)
    network = tiny_network()
    load_embedding_weights(output, network)
    np.testing.assert_allclose(network.parameters_dict()[variance[len("embedding_network."):]].asnumpy(), 3.0)
    assert average_weights(paths[:1]).keys() == expected.keys()


def test_average_script_refuses_a_folder_without_checkpoints(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "scripts", "average_checkpoints.py"),
                             f"--run_dir={tmp_path}", f"--output={tmp_path}/avg.ckpt"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"error: {tmp_path}: holds no training checkpoints " \
                                                     "(<prefix>-<epoch>_<step>.ckpt)"
