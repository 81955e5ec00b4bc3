"""export.py: MindIR and ONNX export of a tiny network, the parity checks, formats and conv formulations."""
import contextlib
import io
import os
import re
import shutil
import signal
import sys
import time

import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn

import export
from fixtures import TINY_NETWORK, TINY_NETWORK_ARGS, randomise, speaker_wave, tiny_network
from src.checkpoint import EMBEDDING_PREFIX, CheckpointError, save_checkpoint
from src.config import ConfigError, load_config
from src.data.features import log_mel
from src.inference.exporter import (ExportError, ExportMismatchError, check_mindir, check_onnx,
                                    export_network, export_path, onnx_conv_impl)
from src.inference.folding import fold_batch_norm
from src.model import build_embedding_network
from src.cli import run_main
from src.fileio import OutputError
from src.inference.model_file import (ModelFileError, load_graph_cell, mindir_shapes, model_card_path, model_shapes,
                                      onnx_session, read_model_card)


TINY_ARGS = [*TINY_NETWORK_ARGS, "--device_target=CPU"]
EMB_SIZE = TINY_NETWORK["emb_size"]
LENGTH = 40
SHAPE = (1, LENGTH, 80)


def random_network(impl="shifted", seed=0):
    """A tiny network in inference mode whose every parameter (BN statistics too) is random."""
    network = tiny_network(impl=impl)
    rng = np.random.default_rng(seed)
    for name, parameter in network.parameters_dict().items():
        values = 0.3 * rng.standard_normal(parameter.shape)
        if name.endswith("moving_variance"):
            values = 0.5 + np.abs(values)
        parameter.set_data(Tensor(values.astype(np.float32)))
    network.set_train(False)
    return network


def mindir_operators(path):
    """Operator names (e.g. 'Conv2D') used by a MindIR file."""
    from mindspore.train import mind_ir_pb2

    model = mind_ir_pb2.ModelProto()
    with open(path, "rb") as handle:
        model.ParseFromString(handle.read())
    return {node.op_type.split("::")[-1].split(":")[0] for node in model.graph.node}


@pytest.fixture(scope="module")
def reference():
    return random_network()


@pytest.fixture(scope="module")
def training_checkpoint(tmp_path_factory, reference):
    """A training-style checkpoint: prefixed embedding parameters plus a head parameter."""
    entries = [{"name": EMBEDDING_PREFIX + name, "data": parameter}
               for name, parameter in reference.parameters_dict().items()]
    entries.append({"name": "head.weight", "data": Tensor(np.ones((3, EMB_SIZE), np.float32))})
    path = tmp_path_factory.mktemp("ckpt") / "ecapa-1_10.ckpt"
    save_checkpoint(entries, str(path))
    return path


def run_export(monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", ["export.py", *TINY_ARGS, f"--length={LENGTH}", *map(str, args)])
    export.main()


@pytest.fixture(scope="module")
def shifted_export(tmp_path_factory, training_checkpoint):
    """(path, printed output) of export.py run on the training checkpoint with conv_impl auto (CPU)."""
    folder = tmp_path_factory.mktemp("export")
    capture = io.StringIO()
    with pytest.MonkeyPatch.context() as monkeypatch, contextlib.redirect_stdout(capture):
        run_export(monkeypatch, "--checkpoint_path", training_checkpoint, "--file_name", folder / "model")
    return folder / "model.mindir", capture.getvalue()


def test_export_writes_a_mindir_that_reproduces_the_checkpoint(shifted_export, reference):
    path, printed = shifted_export

    assert mindir_shapes(path) == (SHAPE, (1, EMB_SIZE))
    assert f"exported {path}:" in printed and "conv_impl shifted, batch norm folded" in printed
    assert re.search(r"check: MINDIR output vs checkpoint network on the random input and the tone features: "
                     r"max abs difference \S+ and \S+ \(tolerance 0\.0001 x largest output\)", printed)
    operators = mindir_operators(path)
    assert "Conv2D" not in operators and "Rsqrt" not in operators  # shifted convolutions, batch norm folded
    features = np.random.default_rng(5).standard_normal(SHAPE).astype(np.float32)
    expected = reference(Tensor(features)).asnumpy()
    found = load_graph_cell(path)(Tensor(features)).asnumpy()
    np.testing.assert_allclose(found, expected, rtol=1e-5, atol=1e-6)
    assert np.abs(expected).max() > 0.1  # a real output, not all zeros


def test_native_export_uses_conv2d_and_matches_the_shifted_network(monkeypatch, tmp_path,
                                                                   training_checkpoint, reference):
    run_export(monkeypatch, "--checkpoint_path", training_checkpoint, "--file_name", tmp_path / "native",
               "--conv_impl", "native")

    assert "Conv2D" in mindir_operators(tmp_path / "native.mindir")
    assert max(check_mindir(tmp_path / "native.mindir", reference, SHAPE, seed=3).values()) < 1e-5


def test_model_path_setting_is_the_default_checkpoint(monkeypatch, tmp_path):
    missing = tmp_path / "from_model_path.ckpt"
    with pytest.raises(CheckpointError, match="from_model_path.ckpt"):
        run_export(monkeypatch, "--model_path", missing, "--file_name", tmp_path / "m")


def test_check_fails_for_a_mindir_of_other_weights(tmp_path, reference):
    path = export_network(random_network(seed=1), SHAPE, str(tmp_path / "other"), "MINDIR")
    with pytest.raises(ExportMismatchError, match=r"other\.mindir: output differs from the network's by up to"):
        check_mindir(path, reference, SHAPE)


def test_a_mismatching_export_is_not_written_and_reported_in_one_line(monkeypatch, tmp_path, training_checkpoint,
                                                                     capsys):
    other = random_network(seed=1)
    monkeypatch.setattr(export, "check_mindir", lambda path, network, shape: check_mindir(path, other, shape))
    with pytest.raises(SystemExit) as stop:
        run_main(run_export, monkeypatch, "--checkpoint_path", training_checkpoint, "--file_name", tmp_path / "m")
    assert stop.value.code == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"error: {tmp_path / 'm.mindir'}: output differs from the network's by up to")
    assert error.endswith("(not written)") and list(tmp_path.iterdir()) == []


def test_missing_checkpoint_is_a_config_error(monkeypatch, tmp_path):
    with pytest.raises(ConfigError, match="checkpoint_path: no checkpoint given"):
        run_export(monkeypatch, "--file_name", tmp_path / "none")


def test_air_is_refused_off_ascend(monkeypatch, tmp_path, training_checkpoint):
    with pytest.raises(ExportError, match="AIR files can only be exported on an Ascend device, this run is on CPU"):
        run_export(monkeypatch, "--checkpoint_path", training_checkpoint, "--file_name", tmp_path / "m",
                   "--file_format", "AIR")
    assert list(tmp_path.iterdir()) == []


def test_export_path_adds_the_extension_once():
    assert export_path("out/ecapatdnn", "MINDIR") == "out/ecapatdnn.mindir"
    assert export_path("out/model.mindir", "MINDIR") == "out/model.mindir"
    assert export_path("model", "ONNX") == "model.onnx"


def test_onnx_refuses_native_and_otherwise_uses_shifted():
    with pytest.raises(ExportError, match="conv_impl: ONNX export needs 'shifted'"):
        onnx_conv_impl("native")
    assert onnx_conv_impl("auto") == onnx_conv_impl("shifted") == "shifted"


def test_the_unfolded_network_is_refused_as_onnx_in_one_line(tmp_path, reference):
    # Batch norm's run-time reciprocal square root has no ONNX converter in MindSpore 2.10,
    # which is why export.py writes the folded graph.
    with pytest.raises(ExportError, match="cannot export this network as ONNX: .*Rsqrt") as raised:
        export_network(reference, SHAPE, str(tmp_path / "model"), "ONNX")
    assert "\n" not in str(raised.value)


@pytest.fixture(scope="module")
def onnx_export(tmp_path_factory, training_checkpoint):
    """(path, printed output) of export.py --file_format ONNX on the training checkpoint."""
    folder = tmp_path_factory.mktemp("onnx")
    capture = io.StringIO()
    with pytest.MonkeyPatch.context() as monkeypatch, contextlib.redirect_stdout(capture):
        run_export(monkeypatch, "--checkpoint_path", training_checkpoint, "--file_name", folder / "model",
                   "--file_format", "ONNX")
    return folder / "model.onnx", capture.getvalue()


def test_onnx_export_runs_in_onnxruntime_like_the_checkpoint(onnx_export, reference):
    path, printed = onnx_export
    assert re.search(r"check: ONNX output vs checkpoint network on the random input and the tone features: "
                     r"max abs difference \S+ and \S+ ", printed)
    assert model_shapes(path) == (SHAPE, (1, EMB_SIZE))
    session = onnx_session(path)
    assert [(value.name, value.shape) for value in session.get_inputs()] == [("features", list(SHAPE))]
    assert [(value.name, value.shape) for value in session.get_outputs()] == [("embedding", [1, EMB_SIZE])]

    tone = log_mel(speaker_wave(2, 2.0, np.random.default_rng(8)))[np.newaxis, :LENGTH].astype(np.float32)
    random_input = np.random.default_rng(9).standard_normal(SHAPE).astype(np.float32)
    for features in (random_input, tone):
        expected = reference(Tensor(features)).asnumpy()
        found = session.run(None, {"features": features})[0]
        assert np.abs(found - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())
        assert np.abs(expected).max() > 0.1


def test_onnx_export_with_a_dynamic_time_axis_is_still_fixed_length(onnx_export, reference, tmp_path):
    # MindSpore 2.10 traces the graph at the example length: dynamic_axes only relabels the
    # input, and the embedding of another length is wrong; export.py therefore writes fixed-length files.
    folded = fold_batch_norm(reference, load_config(TINY_ARGS)[0], "shifted")
    path = str(tmp_path / "dynamic.onnx")
    ms.onnx.export(folded, Tensor(np.zeros(SHAPE, np.float32)), file_name=path, input_names=["features"],
                   output_names=["embedding"], dynamic_axes={"features": {1: "frames"}})
    longer = np.random.default_rng(10).standard_normal((1, LENGTH + 17, 80)).astype(np.float32)
    found = onnx_session(path).run(None, {"features": longer})[0]
    assert np.abs(found - reference(Tensor(longer)).asnumpy()).max() > 1e-3


def test_onnx_check_compares_with_the_network(tmp_path):
    ms.set_seed(1)
    exported, other = nn.Dense(80, 4), nn.Dense(80, 4)
    path = export_network(exported, (2, 80), str(tmp_path / "dense"), "ONNX")

    assert set(check_onnx(path, exported, (2, 80))) == {"random input"}  # no tone for a non-feature input
    assert check_onnx(path, exported, (2, 80))["random input"] < 1e-6
    with pytest.raises(ExportMismatchError, match="dense.onnx: output differs"):
        check_onnx(path, other, (2, 80))


@pytest.mark.parametrize("file_format, impl", [("MINDIR", "shifted"), ("MINDIR", "native"), ("ONNX", "shifted")])
def test_a_network_padding_by_reflection_exports_exactly(file_format, impl, tmp_path):
    config = load_config([*TINY_ARGS, "--padding", "reflect", "--embedding_norm", "false",
                          "--variance_floor", "1e-12"])[0]
    network = randomise(build_embedding_network(config, impl), seed=3)
    path = export_network(fold_batch_norm(network, config, impl), SHAPE, str(tmp_path / "model"), file_format)
    check = check_onnx if file_format == "ONNX" else check_mindir
    assert max(check(path, network, SHAPE, seed=4).values()) < 1e-4  # export.py's own tolerance


def test_a_model_card_path_that_is_a_folder_is_refused_before_exporting(monkeypatch, tmp_path, training_checkpoint):
    (tmp_path / "m.json").mkdir()
    with pytest.raises(OutputError, match=r"file_name \(its model card\): \S+m\.json is a folder"):
        run_export(monkeypatch, "--checkpoint_path", training_checkpoint, "--file_name", tmp_path / "m")
    assert os.listdir(tmp_path) == ["m.json"]


def test_an_export_interrupted_during_its_check_leaves_the_previous_model_and_card(monkeypatch, tmp_path,
                                                                                  training_checkpoint, capsys):
    (tmp_path / "m.mindir").write_bytes(b"the previous model")
    (tmp_path / "m.json").write_text('{"features": "kaldi"}\n')

    def interrupted_check(path, network, shape):
        assert os.path.getsize(path) > 1000  # the new model, under its temporary name
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)

    monkeypatch.setattr(export, "check_mindir", interrupted_check)
    with pytest.raises(SystemExit) as stop:
        run_main(run_export, monkeypatch, "--checkpoint_path", training_checkpoint, "--file_name", tmp_path / "m")
    assert stop.value.code == 143 and capsys.readouterr().err.strip().endswith("interrupted by SIGTERM")
    assert sorted(os.listdir(tmp_path)) == ["m.json", "m.mindir"]
    assert (tmp_path / "m.mindir").read_bytes() == b"the previous model"
    assert (tmp_path / "m.json").read_text() == '{"features": "kaldi"}\n'


def test_a_model_card_beside_another_model_file_is_refused(shifted_export, tmp_path):
    path, _ = shifted_export
    copy = tmp_path / "model.mindir"
    shutil.copy(path, copy)
    shutil.copy(model_card_path(str(path)), tmp_path / "model.json")
    card = read_model_card(str(copy))
    assert card["features"] == "zoo" and len(card["sha256"]["model.mindir"]) == 64
    with open(copy, "ab") as handle:  # a model of another export under the same name
        handle.write(b"\0")
    with pytest.raises(ModelFileError, match=r"model\.json: describes another model file than \S+model\.mindir \(the "
                                             "fingerprints differ: an export interrupted between its two files"):
        read_model_card(str(copy))
