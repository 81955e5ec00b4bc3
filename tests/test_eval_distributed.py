"""Distributed evaluation: two msrun processes split the utterances and give a single process's scores."""
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from eval_support import write_corpus, write_train_list, write_trials
from fixtures import REPO_ROOT, TINY_NETWORK, tiny_network
from src.checkpoint import save_checkpoint
from src.data.features import log_mel
from src.evaluation.embeddings import EmbeddingTable
from src.evaluation.sharding import ShardError, Shards

SCRIPTS = os.path.join(REPO_ROOT, "scripts")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One corpus and checkpoint; eval.py alone and run_distribute_eval_cpu.sh 2, AS-norm scoring."""
    root = tmp_path_factory.mktemp("distributed_eval")
    rng = np.random.default_rng(4)
    write_trials(root / "eval.txt", write_corpus(root / "eval", 3, 3, rng))
    write_train_list(root / "train.txt", write_corpus(root / "train", 4, 3, rng, prefix="t"))
    save_checkpoint(tiny_network(), str(root / "weights.ckpt"))
    settings = dict(TINY_NETWORK, eval_list=str(root / "eval.txt"), eval_path=str(root / "eval"),
                    train_list=str(root / "train.txt"), train_path=str(root / "train"), score_norm="asnorm",
                    top_n=5, device_target="CPU")
    (root / "settings.yaml").write_text(yaml.safe_dump(settings))
    env = dict(os.environ, PYTHON=sys.executable)
    single = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "eval.py"), f"--config={root}/settings.yaml",
                             f"--model_path={root}/weights.ckpt", f"--eval_output_dir={root}/single"],
                            cwd=root, env=env, capture_output=True, text=True, timeout=300)
    (root / "work").mkdir()
    distributed = subprocess.run(["bash", os.path.join(SCRIPTS, "run_distribute_eval_cpu.sh"), "2",
                                  "../weights.ckpt", f"--config={root}/settings.yaml",
                                  f"--eval_output_dir={root}/distributed"],
                                 cwd=root / "work", env=env, capture_output=True, text=True, timeout=600)
    return root, single, distributed


def test_two_processes_give_the_scores_of_one(runs):
    root, single, distributed = runs
    assert single.returncode == 0, single.stderr[-3000:]
    assert distributed.returncode == 0, distributed.stdout[-3000:] + distributed.stderr[-3000:]
    single_scores = (root / "single" / "scores.txt").read_text()
    assert len(single_scores.splitlines()) == 24
    assert (root / "distributed" / "scores.txt").read_text() == single_scores
    logs = root / "work" / "eval_parallel_logs"
    rank_1 = (logs / "worker_1.log").read_text()
    assert "trial utterances (rank 1 of 2)" in rank_1 and "rank 0 scores the trials" in rank_1
    rank_0 = (logs / "worker_0.log").read_text()
    assert "EER = " in rank_0
    assert os.listdir(root / "distributed" / ".shards") == []


def test_the_gathered_cache_holds_every_utterance(runs):
    root, _, distributed = runs
    assert distributed.returncode == 0
    with np.load(root / "distributed" / "embeddings.npz") as cache, np.load(root / "single" / "embeddings.npz") as one:
        assert sorted(cache["paths"].tolist()) == sorted(one["paths"].tolist())
        assert len(cache["paths"]) == 9 + 12


class _Extractor:
    """Stands in for EmbeddingExtractor: the embedding of a file is its name's length, repeated."""
    n_mels = 80

    def compile(self):
        return 0.0

    def embed_features(self, features):
        return np.full(3, features.shape[0], np.float32)

    def features(self, wave, source):
        return log_mel(wave)


def test_shards_split_round_robin_and_rank_0_joins_them_in_order(tmp_path):
    from src.data.audio import write_audio

    names = [f"u{index}.wav" for index in range(5)]
    for index, name in enumerate(names):
        write_audio(tmp_path / name, np.full(1600 * (index + 1), 0.1, np.float32))
    table_1, _ = Shards(1, 2, str(tmp_path), "model").extract(_Extractor(), names, str(tmp_path))
    assert table_1.names == ["u1.wav", "u3.wav"]
    table, _ = Shards(0, 2, str(tmp_path), "model").extract(_Extractor(), names + ["u0.wav"], str(tmp_path))
    assert isinstance(table, EmbeddingTable) and table.names == names
    assert table.matrix[:, 0].tolist() == [11.0, 21.0, 31.0, 41.0, 51.0]  # frames of 0.1 s .. 0.5 s
    assert os.listdir(tmp_path / ".shards") == []


def test_a_missing_shard_is_an_error_after_the_wait(tmp_path):
    from src.data.audio import write_audio

    write_audio(tmp_path / "a.wav", np.full(1600, 0.1, np.float32))
    write_audio(tmp_path / "b.wav", np.full(1600, 0.1, np.float32))
    with pytest.raises(ShardError, match=r"rank 1 wrote no embeddings to .* within 0\.3 s; did it fail"):
        Shards(0, 2, str(tmp_path), "model", wait_seconds=0.3).extract(_Extractor(), ["a.wav", "b.wav"],
                                                                     str(tmp_path))


@pytest.mark.parametrize("arguments, message", [
    (["2"], "error: DEVICE_NUM and CKPT are needed, got only 1 of them"),
    (["2", "missing.ckpt"], "error: CKPT 'missing.ckpt' is not a file"),
])
def test_bad_arguments_of_the_distributed_eval_launcher_are_one_error_line(tmp_path, arguments, message):
    completed = subprocess.run(["bash", os.path.join(SCRIPTS, "run_distribute_eval_cpu.sh"), *arguments],
                               cwd=tmp_path, env=dict(os.environ, PYTHON=sys.executable), capture_output=True,
                               text=True, timeout=60)
    assert completed.returncode == 1
    assert completed.stderr.splitlines()[0] == message
    assert not [name for name in os.listdir(tmp_path) if name.startswith("eval_parallel")]
