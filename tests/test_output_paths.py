"""Every output location is checked before the work starts; a bad one is one error line.

Each entry point is given an output path that is an existing file, or lies below one
(so it cannot be created), and must stop at once with one ``error:`` line naming the
option, before any extraction, training or export.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from eval_support import write_corpus, write_train_list, write_trials
from fixtures import REPO_ROOT, TINY_NETWORK_ARGS, tiny_network
from src.checkpoint import save_checkpoint
from src.fileio import OutputError, check_writable_file, check_writable_folder


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    rng = np.random.default_rng(2)
    evaluation = write_corpus(root / "eval", 2, 2, rng)
    write_trials(root / "eval.txt", evaluation)
    write_train_list(root / "train.txt", write_corpus(root / "train", 2, 2, rng, prefix="t"))
    (root / "audio.txt").write_text("\n".join(f"eval/{name}" for names in evaluation for name in names) + "\n")
    save_checkpoint(tiny_network(), str(root / "weights.ckpt"))
    (root / "a_file").write_text("in the way")
    return root


def run(script, *arguments, cwd):
    return subprocess.run([sys.executable, os.path.join(REPO_ROOT, script), *map(str, arguments)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def assert_one_error(completed, *fragments):
    errors = [line for line in completed.stderr.splitlines() if line.startswith("error: ")]
    assert completed.returncode == 1 and len(errors) == 1, completed.stderr[-3000:]
    assert "Traceback" not in completed.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


EVAL = ["--model_path=weights.ckpt", "--eval_list=eval.txt", "--eval_path=eval", *TINY_NETWORK_ARGS]


@pytest.mark.parametrize("script, arguments, fragments", [
    ("train.py", ["--train_list=train.txt", "--train_path=train", "--class_num=2", "--ckpt_save_dir=a_file",
                  "--minibatch_size=2", "--augment=false", *TINY_NETWORK_ARGS],
     ["ckpt_save_dir: a_file exists and is not a folder"]),
    ("train.py", ["--train_list=train.txt", "--train_path=train", "--class_num=2",
                  "--ckpt_save_dir=a_file/ckpt", "--minibatch_size=2", "--augment=false", *TINY_NETWORK_ARGS],
     ["ckpt_save_dir: cannot create the folder", "a_file/ckpt"]),
    ("eval.py", [*EVAL, "--eval_output_dir=a_file"], ["eval_output_dir: a_file exists and is not a folder"]),
    ("eval.py", [*EVAL, "--eval_output_dir=a_file/out"], ["eval_output_dir: cannot create the folder"]),
    ("eval.py", ["--model_path=weights.ckpt", *TINY_NETWORK_ARGS, "--extract", "audio.txt", "a_file"],
     ["--extract OUTDIR: a_file exists and is not a folder"]),
    ("preprocess.py", ["--eval_list=eval.txt", "--eval_path=eval", "--output_path=a_file/prep", "--length=50"],
     ["--output_path: cannot create the folder"]),
    ("export.py", ["--checkpoint_path=weights.ckpt", "--file_name=a_file/model", *TINY_NETWORK_ARGS],
     ["file_name: ", "a_file exists and is not a folder"]),
    ("export.py", ["--checkpoint_path=weights.ckpt", "--length=1", *TINY_NETWORK_ARGS],
     ["length: 1 frames is too short for a fixed-length input (at least 2)"]),
    ("preprocess.py", ["--eval_list=eval.txt", "--eval_path=eval", "--length=1"],
     ["length: 1 frames is too short for a fixed-length input (at least 2)"]),
    ("postprocess.py", ["--eval_list=eval.txt", "--result_path=eval", "--log_file=eval"],
     ["--log_file: eval is a folder, expected a file name"]),
], ids=lambda item: item if isinstance(item, str) else None)
def test_bad_output_location_stops_before_the_work(workspace, script, arguments, fragments):
    assert_one_error(run(script, *arguments, cwd=workspace), *fragments)
    assert (workspace / "a_file").read_text() == "in the way"


def test_writability_checks(tmp_path, monkeypatch):
    assert check_writable_folder(str(tmp_path / "new" / "deeper")) == str(tmp_path / "new" / "deeper")
    assert check_writable_file(str(tmp_path / "new" / "out.txt")) == str(tmp_path / "new" / "out.txt")
    assert not (tmp_path / "new" / "out.txt").exists()

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    # Root ignores permission bits, so a read-only folder is simulated.
    monkeypatch.setattr("tempfile.TemporaryFile", refuse)
    with pytest.raises(OutputError, match=r"^eval_output_dir: cannot write in the folder .* \(Permission denied\)$"):
        check_writable_folder(str(tmp_path), "eval_output_dir")
