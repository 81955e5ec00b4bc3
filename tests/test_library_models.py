"""SpeechBrain's and WeSpeaker's ECAPA-TDNN imported, used and exported back.

The tiny models in tests/data (made by tests/data/make_library_models.py with the libraries'
own classes) and the embeddings the libraries computed for the clips of front_ends.npz are
the references: this project's network, from the waveform with the library's front end,
must give the same embeddings.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from mindspore import Tensor, nn

from eval_support import write_corpus, write_train_list, write_trials
from fixtures import REPO_ROOT, load_program
from src.checkpoint import load_embedding_weights, read_checkpoint
from src.config import ConfigError, load_config
from src.data.audio import read_audio
from src.data.front_ends import FRONT_ENDS, front_end_of
from src.errors import InputError
from src.evaluation.embeddings import EmbeddingExtractor
from src.inference.fixed_length import bin_file_name, fixed_length_features
from src.inference.model_file import ModelFileError, read_model_card
from src.interop.library_checkpoints import export_model, import_model
from src.interop.torch_file import read_torch_file, write_torch_file
from src.model import build_embedding_network, build_head
from src.model.speaker_loss import SpeakerLoss

DATA = os.path.join(REPO_ROOT, "tests", "data")
CLIPS = np.load(os.path.join(DATA, "front_ends.npz"))
EMBEDDINGS = np.load(os.path.join(DATA, "library_models.npz"))
SOURCES = {"speechbrain": os.path.join(DATA, "speechbrain_tiny"), "wespeaker": os.path.join(DATA, "wespeaker_tiny")}
MODEL_FILES = {"speechbrain": "embedding_model.ckpt", "wespeaker": "avg_model.pt"}
LENGTH = 60  # frames of the exported fixed-length models


@pytest.fixture(scope="module", params=sorted(SOURCES))
def imported(request, tmp_path_factory):
    """(library, folder, its settings) of the library's tiny model imported into folder/model.ckpt."""
    folder = tmp_path_factory.mktemp(request.param)
    values, yaml_path, classes = import_model(request.param, SOURCES[request.param], str(folder / "model.ckpt"))
    assert classes == 5 and yaml_path == str(folder / "model.yaml")
    return request.param, folder, load_config(["--config", yaml_path])[0]


def imported_network(settings):
    network = build_embedding_network(settings, "shifted")
    load_embedding_weights(settings.model_path, network)
    network.set_train(False)
    return network


def test_imported_models_embed_the_waveforms_as_their_library(imported):
    library, _, settings = imported
    extractor = EmbeddingExtractor(imported_network(settings), front_end=front_end_of(settings))
    for clip in range(3):
        expected = EMBEDDINGS[f"{library}_{clip}"]
        found = extractor.embed_wave(CLIPS[f"clip_{clip}"].astype(np.float32) / 32768.0)
        cosine = found @ expected / np.linalg.norm(found) / np.linalg.norm(expected)
        assert cosine >= 0.99999, (library, clip, cosine)
        assert np.abs(found - expected).max() <= 1e-3 * np.abs(expected).max()


def test_settings_follow_the_library(imported):
    library, _, settings = imported
    expected = {"speechbrain": ("ecapa_tdnn", "speechbrain", "reflect", 1e-12, 4, 48),
                "wespeaker": ("wespeaker_ecapa_tdnn", "kaldi", "zeros", 1e-7, 8, 48)}[library]
    assert (settings.model, settings.features, settings.padding, settings.variance_floor, settings.scale,
            settings.mfa_channels) == expected
    assert (settings.channels, settings.emb_size, settings.embedding_norm) == (16, 8, False)


def test_export_and_import_again_is_bit_exact_with_the_librarys_names(imported, tmp_path):
    library, folder, settings = imported
    written, removed = export_model(library, settings.model_path, settings, str(tmp_path / "out"), with_head=True)
    assert removed == []
    original = read_torch_file(os.path.join(SOURCES[library], MODEL_FILES[library]))
    exported = read_torch_file(written[0])
    assert sorted(exported) == sorted(original)
    for name, value in original.items():
        assert exported[name].shape == value.shape and exported[name].dtype == value.dtype, name
        if not name.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(exported[name], value, err_msg=name)
    if library == "speechbrain":
        head = read_torch_file(written[1])
        np.testing.assert_array_equal(head["weight"], read_torch_file(os.path.join(SOURCES[library],
                                                                                   "classifier.ckpt"))["weight"])
    again = tmp_path / "again.ckpt"
    import_model(library, str(tmp_path / "out"), str(again))
    first, second = read_checkpoint(settings.model_path), read_checkpoint(str(again))
    assert sorted(first) == sorted(second)
    for name in first:
        np.testing.assert_array_equal(first[name].asnumpy(), second[name].asnumpy(), err_msg=name)


def test_export_refuses_settings_of_another_network(imported, tmp_path):
    library, _, settings = imported
    with pytest.raises(InputError, match=f"the settings do not describe {library}'s network: .*features is 'zoo'"):
        export_model(library, settings.model_path, load_config([])[0], str(tmp_path / "out"))


@pytest.mark.parametrize("damage, message", [
    ("drop", "lacks 'blocks.2.tdnn1.conv.conv.weight'"),
    ("reshape", "'blocks.2.tdnn1.conv.conv.weight' has shape (16, 4, 4), expected (16, 16, 1)"),
    ("extra", "holds 1 parameters this model does not have, e.g. 'blocks.9.conv.weight'"),
])
def test_damaged_speechbrain_files_stop_with_the_parameter_named(damage, message, tmp_path):
    state = read_torch_file(os.path.join(SOURCES["speechbrain"], "embedding_model.ckpt"))
    name = "blocks.2.tdnn1.conv.conv.weight"
    if damage == "drop":
        del state[name]
    elif damage == "reshape":
        state[name] = state[name].reshape(16, 4, 4)
    else:
        state["blocks.9.conv.weight"] = np.zeros(3, np.float32)
    write_torch_file(tmp_path / "embedding_model.ckpt", state)
    with pytest.raises(InputError) as raised:
        import_model("speechbrain", str(tmp_path), str(tmp_path / "model.ckpt"))
    assert message in str(raised.value) and str(tmp_path / "embedding_model.ckpt") in str(raised.value)
    assert not (tmp_path / "model.ckpt").exists()


def test_the_import_program_reports_the_wrong_library_in_one_line(tmp_path):
    completed = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "scripts", "import_checkpoint.py"),
                                "speechbrain", SOURCES["wespeaker"], "--output", str(tmp_path / "x.ckpt")],
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 1 and "Traceback" not in completed.stderr
    assert completed.stderr.strip().splitlines()[-1] == (
        f"error: {SOURCES['wespeaker']}/embedding_model.ckpt: not found (expected speechbrain's "
        "embedding_model.ckpt, or its folder)")
    wrong = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "scripts", "import_checkpoint.py"),
                            "speechbrain", os.path.join(SOURCES["wespeaker"], "avg_model.pt"),
                            "--output", str(tmp_path / "x.ckpt")], capture_output=True, text=True, timeout=300)
    assert wrong.returncode == 1
    assert wrong.stderr.strip().splitlines()[-1].endswith(
        "avg_model.pt: lacks 'blocks.0.conv.conv.weight'; is it speechbrain's ECAPA-TDNN?")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("library_corpus")
    rng = np.random.default_rng(12)
    write_trials(root / "eval.txt", write_corpus(root / "eval", 3, 3, rng))
    write_train_list(root / "train.txt", write_corpus(root / "train", 4, 2, rng, prefix="t"))
    return root


@pytest.mark.parametrize("score_norm", ["none", "asnorm"])
def test_imported_models_evaluate_with_eval_py(imported, corpus, score_norm, capsys):
    library, folder, settings = imported
    load_program("eval.py").main(["--config", str(folder / "model.yaml"), "--eval_list", str(corpus / "eval.txt"),
                                 "--eval_path", str(corpus / "eval"), "--train_list", str(corpus / "train.txt"),
                                 "--train_path", str(corpus / "train"), "--score_norm", score_norm, "--top_n", "4",
                                 "--eval_output_dir", str(folder / f"eval_{score_norm}")])
    printed = capsys.readouterr().out
    assert "EER" in printed and (score_norm == "none" or "asnorm" in printed.lower()), printed


def test_imported_models_export_and_run_on_the_cpu_twin_of_the_310(imported, corpus):
    library, folder, settings = imported
    export = load_program("export.py")
    # ONNX for the WeSpeaker network only: the SpeechBrain one is this project's network padding
    # by reflection, whose ONNX export test_export.py checks.
    for file_format in ("MINDIR", "ONNX") if library == "wespeaker" else ("MINDIR",):
        export.main(["--config", str(folder / "model.yaml"), "--file_format", file_format, "--length", str(LENGTH),
                     "--file_name", str(folder / "exported")])
    for extension in (".mindir", ".onnx") if library == "wespeaker" else (".mindir",):  # one card for both
        assert read_model_card(str(folder / f"exported{extension}"))["features"] == settings.features
    data = folder / "data"
    (data / "eval").mkdir(parents=True)
    (data / "eval" / "wav").symlink_to(corpus / "eval")
    (data / "eval.txt").write_text((corpus / "eval.txt").read_text())
    work = folder / "work"
    work.mkdir()
    completed = subprocess.run(["bash", os.path.join(REPO_ROOT, "scripts", "run_infer_cpu.sh"),
                                str(folder / "exported.mindir"), str(data)], cwd=work, capture_output=True,
                               text=True, timeout=300, env=dict(os.environ, PYTHON=sys.executable))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert f"front end {settings.features}" in (work / "preprocess.log").read_text()
    network = imported_network(settings)
    utterance = "spk1/v1/00002.wav"
    features = fixed_length_features(read_audio(corpus / "eval" / utterance), LENGTH, front_end_of(settings))
    stored = np.fromfile(work / "result_Files" / bin_file_name(utterance), dtype=np.float32)
    np.testing.assert_allclose(stored, network(Tensor(features)).asnumpy()[0], rtol=1e-4, atol=1e-5)
    assert yaml.safe_load((folder / "model.yaml").read_text())["model_path"] == settings.model_path


def test_preprocess_takes_the_front_end_of_the_model_card(tmp_path, capsys):
    preprocess = load_program("preprocess.py")
    model = str(tmp_path / "model.mindir")
    open(model, "wb").close()
    assert preprocess.model_front_end(load_config([])[0], model) is FRONT_ENDS["zoo"]  # no card
    assert capsys.readouterr().out == (f"warning: {model} has no model card ({tmp_path / 'model.json'}); computing "
                                       "the features setting's front end, zoo\n")
    (tmp_path / "model.json").write_text('{"features": "kaldi"}')
    assert preprocess.model_front_end(load_config([])[0], model) is FRONT_ENDS["kaldi"]
    assert preprocess.model_front_end(load_config(["--features", "kaldi"])[0], model) is FRONT_ENDS["kaldi"]
    with pytest.raises(ConfigError, match=r"features: speechbrain, but \S+model.json says the model takes kaldi"):
        preprocess.model_front_end(load_config(["--features", "speechbrain"])[0], model)
    (tmp_path / "model.json").write_text('{"features": "mfcc"}')
    with pytest.raises(ModelFileError, match=r"model.json: names the front end 'mfcc', which is not one of kaldi, "
                                             "speechbrain, zoo"):
        preprocess.model_front_end(load_config([])[0], model)
    (tmp_path / "model.json").write_text("{")
    with pytest.raises(ModelFileError, match="model.json: not a readable model card"):
        preprocess.model_front_end(load_config([])[0], model)



class LossOnly(nn.Cell):
    """The loss of a SpeakerLoss, without its count of correct samples."""

    def __init__(self, speaker_loss):
        super().__init__()
        self.speaker_loss = speaker_loss

    def construct(self, features, labels):
        return self.speaker_loss(features, labels)[0]


def test_an_imported_model_fine_tunes_with_its_head(imported):
    # A few steps of SpeakerLoss on separable speakers: the imported network and head learn.
    library, _, settings = imported
    network = build_embedding_network(settings, "shifted")
    load_embedding_weights(settings.model_path, network)
    head = build_head(settings, 5)
    head.weight.set_data(read_checkpoint(settings.model_path)["head.weight"])
    loss_net = LossOnly(SpeakerLoss(network, head))
    step = nn.TrainOneStepCell(loss_net, nn.Adam(loss_net.trainable_params(), learning_rate=3e-3))
    step.set_train(True)
    rng = np.random.default_rng(9)
    labels = np.arange(10, dtype=np.int32) % 5
    features = (rng.standard_normal((10, 40, 80)) + 2.0 * labels[:, None, None] / 5).astype(np.float32)
    losses = [float(step(Tensor(features), Tensor(labels)).asnumpy()) for _ in range(12)]
    assert losses[-1] < 0.7 * losses[0], (library, losses)
