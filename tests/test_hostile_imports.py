"""The import of library checkpoints and the export back, against crafted files and careless outputs:
one message before anything is written or built, and no file left half-written."""
import os
import resource
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from fixtures import REPO_ROOT
from src.fileio import OutputError
from src.interop import library_checkpoints
from src.interop.library_checkpoints import export_model, import_model, least_parameters
from src.interop.torch_file import read_torch_file, write_torch_file

SPEECHBRAIN = os.path.join(REPO_ROOT, "tests", "data", "speechbrain_tiny")
IMPORT = os.path.join(REPO_ROOT, "scripts", "import_checkpoint.py")


def _speechbrain_state():
    return read_torch_file(os.path.join(SPEECHBRAIN, "embedding_model.ckpt"))


def _run_import(folder, output, limits=()):
    """scripts/import_checkpoint.py on ``folder`` in a child process with the resource ``limits``."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past RLIMIT_FSIZE then fails with EFBIG
        for kind, value in limits:
            resource.setrlimit(kind, (value, value))

    return subprocess.run([sys.executable, IMPORT, "speechbrain", str(folder), "--output", str(output)],
                          capture_output=True, text=True, timeout=300, preexec_fn=limit, cwd=REPO_ROOT)


def test_the_lower_bound_of_parameters_is_below_the_real_count():
    # The tiny model: channels 16, mfa 48, attention 8, se 8, emb 8, 80 mels; its true count bounds ours.
    state = _speechbrain_state()
    values = library_checkpoints.library("speechbrain").settings_of(state)
    real = sum(value.size for name, value in state.items() if not name.endswith("num_batches_tracked"))
    assert least_parameters(values) == 16 * (5 * 80 + 6 * 16 + 6 * values["se_channels"] + 3 * 48) + 48 * (
        values["attention_channels"] + 2 * 8)
    assert least_parameters(values) <= real


def test_zero_element_tensors_declaring_a_huge_network_are_refused_before_building_it(tmp_path):
    # Shapes of 65,536 channels without values: a 16 GiB network if built. Under a 3 GiB address space.
    state = _speechbrain_state()
    state["blocks.0.conv.conv.weight"] = np.zeros((65536, 80, 0), np.float32)
    state["mfa.conv.conv.weight"] = np.zeros((65536, 0, 1), np.float32)
    write_torch_file(tmp_path / "embedding_model.ckpt", state)
    done = _run_import(tmp_path, tmp_path / "out.ckpt", [(resource.RLIMIT_AS, 3 << 30)])
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1].startswith(
        f"error: {tmp_path}/embedding_model.ckpt: its weight shapes describe a network of at least ")
    assert "(channels 65536, mfa_channels 65536), but it holds only" in done.stderr
    assert sorted(os.listdir(tmp_path)) == ["embedding_model.ckpt"]


@pytest.mark.parametrize("pickled, message", [
    (b"\x80\x02K\x05.", "holds a value of type int, not a state dict of named tensors"),
    (b"\x80\x02ccollections\nOrderedDict\n)RX\x19\x00\x00\x00blocks.0.conv.conv.weightK\x03s.",
     "the entry 'blocks.0.conv.conv.weight' is of type int, not a tensor; expected a state dict of named tensors"),
])
def test_a_file_that_is_not_a_state_dict_is_one_line(tmp_path, pickled, message):
    with zipfile.ZipFile(tmp_path / "embedding_model.ckpt", "w") as archive:
        archive.writestr("archive/data.pkl", pickled)
    done = _run_import(tmp_path, tmp_path / "out.ckpt")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == f"error: {tmp_path}/embedding_model.ckpt: {message}"


@pytest.mark.parametrize("output, message", [
    ("model.yaml", r"--output: \S+model.yaml does not end in .ckpt, which MindSpore's checkpoint loader requires"),
    ("model", r"--output: \S+model does not end in .ckpt"),
    ("folder.ckpt", r"--output: \S+folder.ckpt is a folder, expected a file name"),
    ("settings_folder.ckpt", r"--output \(its settings file\): \S+settings_folder.yaml is a folder"),
])
def test_outputs_are_checked_before_anything_is_written(tmp_path, output, message):
    (tmp_path / "folder.ckpt").mkdir()
    (tmp_path / "settings_folder.yaml").mkdir()
    (tmp_path / "model.yaml").write_text("precious: 1\n")
    with pytest.raises(OutputError, match=message):
        import_model("speechbrain", SPEECHBRAIN, str(tmp_path / output))
    assert sorted(os.listdir(tmp_path)) == ["folder.ckpt", "model.yaml", "settings_folder.yaml"]
    assert (tmp_path / "model.yaml").read_text() == "precious: 1\n"


def test_an_import_past_the_file_size_limit_leaves_no_partial_file_and_no_critical_line(tmp_path):
    done = _run_import(SPEECHBRAIN, tmp_path / "out.ckpt", [(resource.RLIMIT_FSIZE, 8192)])
    assert done.returncode == 1 and "Traceback" not in done.stderr and "CRITICAL" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path}/out.ckpt: the file would pass the file-size limit of this process (ulimit -f); the "
        "previous file, if any, is unchanged")
    assert os.listdir(tmp_path) == []


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """(settings, checkpoint with head, checkpoint without head) of SpeechBrain's tiny model."""
    from src.checkpoint import read_checkpoint, save_checkpoint
    from src.config import load_config

    folder = tmp_path_factory.mktemp("imported")
    _, yaml_path, _ = import_model("speechbrain", SPEECHBRAIN, str(folder / "model.ckpt"))
    headless = str(folder / "headless.ckpt")
    entries = read_checkpoint(str(folder / "model.ckpt"))
    save_checkpoint([{"name": name, "data": value} for name, value in entries.items() if name != "head.weight"],
                    headless)
    return load_config(["--config", yaml_path])[0], str(folder / "model.ckpt"), headless


def test_exporting_a_headless_checkpoint_removes_the_head_of_an_earlier_export(imported, tmp_path):
    settings, with_head, headless = imported
    out = tmp_path / "out"
    written, removed = export_model("speechbrain", with_head, settings, str(out))
    assert sorted(os.path.basename(path) for path in written) == ["classifier.ckpt", "embedding_model.ckpt"]
    written, removed = export_model("speechbrain", headless, settings, str(out))
    assert [os.path.basename(path) for path in written] == ["embedding_model.ckpt"]
    assert removed == [str(out / "classifier.ckpt")] and sorted(os.listdir(out)) == ["embedding_model.ckpt"]
    _, _, classes = import_model("speechbrain", str(out), str(tmp_path / "again.ckpt"))
    assert classes == 0


def test_a_failed_export_back_changes_none_of_its_files(imported, tmp_path, monkeypatch):
    settings, with_head, _ = imported
    out = tmp_path / "out"
    out.mkdir()
    (out / "embedding_model.ckpt").write_bytes(b"old network")
    (out / "classifier.ckpt").write_bytes(b"old head")
    real = library_checkpoints.write_torch_archive

    def fail_on_the_head(path, tensors):
        if "classifier" in os.path.basename(path):
            raise OSError(28, "No space left on device")
        real(path, tensors)

    monkeypatch.setattr(library_checkpoints, "write_torch_archive", fail_on_the_head)
    with pytest.raises(OutputError, match="classifier.ckpt: no space left on the device"):
        export_model("speechbrain", with_head, settings, str(out))
    assert sorted(os.listdir(out)) == ["classifier.ckpt", "embedding_model.ckpt"]
    assert (out / "embedding_model.ckpt").read_bytes() == b"old network"
    assert (out / "classifier.ckpt").read_bytes() == b"old head"
