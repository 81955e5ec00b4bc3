"""Embedding extraction split over the processes of a distributed evaluation.

Under msrun or a rank-table launcher, eval.py runs once per device. Every process takes its
share of each list of utterances (rank r of N takes names r, r + N, r + 2N, ... of the
unique names) and writes the embeddings to a shard file in ``eval_output_dir/.shards/``;
rank 0 waits for all shards of a list, joins them in list order and goes on to score,
while the other ranks stop after extracting. A shard file is named after a key of what it
holds (the model fingerprint, the audio folder, the names and each audio file's size and
time stamp), so a file that an earlier identical run left behind is as good as a new one,
and one of other audio or another model is never taken.

Each embedding is computed exactly as in a single-process run (one utterance per network
call), so the joined table equals a single process's.
"""
import hashlib
import os
import time

import numpy as np

from src.errors import InputError
from src.evaluation.embeddings import extract_embeddings, file_stamp
from src.evaluation.scoring import EmbeddingTable
from src.fileio import atomic_write

SHARD_FOLDER = ".shards"
POLL_SECONDS = 0.2
# How long rank 0 waits for the other ranks' shards of one list (seconds).
WAIT_SECONDS = 6 * 3600


class ShardError(InputError):
    """Shards that did not arrive in time, or that do not hold what they should."""


class Shards:
    """Rank ``rank`` of ``size`` processes, exchanging embeddings through ``folder``.

    ``fingerprint`` is the model's (src/evaluation/embeddings.py model_fingerprint). The
    other ranks should use a read-only cache: rank 0 alone writes it, with every share.
    """

    def __init__(self, rank, size, folder, fingerprint, wait_seconds=WAIT_SECONDS):
        self.rank = rank
        self.size = size
        self.folder = os.path.join(folder, SHARD_FOLDER)
        self.fingerprint = fingerprint
        self.wait_seconds = wait_seconds

    @property
    def gathers(self):
        """True for the rank that joins the shards and scores (rank 0)."""
        return self.rank == 0

    def _key(self, names, root):
        digest = hashlib.sha256(self.fingerprint.encode())
        digest.update(os.path.abspath(root or ".").encode())
        for name in names:
            digest.update(b"\0" + name.encode() + b"\0" + file_stamp(os.path.join(root, name)).encode())
        return digest.hexdigest()[:20]

    def _path(self, key, rank):
        return os.path.join(self.folder, f"{key}-{rank}of{self.size}.npz")

    def _write(self, key, table):
        with atomic_write(self._path(key, self.rank), suffix=".npz") as temporary:
            np.savez(temporary, names=np.array(table.names, dtype=str), embeddings=table.matrix)

    def _read(self, key, rank, expected):
        path = self._path(key, rank)
        deadline = time.monotonic() + self.wait_seconds
        while not os.path.isfile(path):
            if time.monotonic() > deadline:
                raise ShardError(f"rank {rank} wrote no embeddings to {path} within {self.wait_seconds:g} s; "
                                 "did it fail? (see its log)")
            time.sleep(POLL_SECONDS)
        with np.load(path, allow_pickle=False) as stored:
            names, matrix = stored["names"].tolist(), stored["embeddings"]
        if names != expected:
            raise ShardError(f"{path}: holds other utterances than rank {rank}'s share; delete {self.folder}")
        return matrix

    def extract(self, extractor, names, root="", cache=None, description="embeddings"):
        """This rank's share of :func:`extract_embeddings`; rank 0 returns the whole joined table.

        Returns ``(table, stats)``: on rank 0 an EmbeddingTable of every unique name in order
        of first appearance, elsewhere the table of this rank's share; stats are this rank's.
        """
        names = list(dict.fromkeys(names))
        key = self._key(names, root)
        share = names[self.rank::self.size]
        table, stats = extract_embeddings(extractor, share, root, cache, description=f"{description} "
                                          f"(rank {self.rank} of {self.size})")
        if not self.gathers:
            self._write(key, table)
            return table, stats
        rows = dict(zip(share, table.matrix))
        for rank in range(1, self.size):
            expected = names[rank::self.size]
            received = dict(zip(expected, self._read(key, rank, expected)))
            os.remove(self._path(key, rank))
            if cache is not None:
                for name, vector in received.items():
                    cache.put(os.path.join(root, name), vector)
            rows.update(received)
        if cache is not None and self.size > 1:
            cache.save()
        return EmbeddingTable(names, np.stack([rows[name] for name in names])), stats
