"""The speaker store: enrolled speakers of one model in one .npz file.

Per speaker it keeps the sum of its recordings' unit-length embeddings, the sum of their
lengths, their count, their total duration (seconds) and the recordings' paths, so that
enrolling more recordings updates the model exactly (src/speakers/models.py). The file also
holds the fingerprint of the model and front end the embeddings came from
(src/evaluation/embeddings.py ``model_fingerprint``): a store is refused by another model.

Arrays of the file: ``format`` and ``fingerprint`` (0-d str), ``speakers`` (K,) str,
``unit_sums`` (K, D) float32 (float64 in memory; float32 keeps a model to 1e-7 and halves the
file: 77 MB for 100,000 speakers of 192 values), ``norm_sums`` (K,) float64, ``counts`` (K,)
int64, ``seconds`` (K,) float64 and ``recordings`` (0-d str, JSON: K lists of paths). Saved
atomically: a killed write leaves the previous store; changes hold :func:`store_lock`.
"""
import contextlib
import difflib
import fcntl
import json
import logging
import os
import zipfile

import numpy as np

from src.errors import InputError
from src.fileio import atomic_write
from src.speakers.models import model_from_sums, unit_sum_and_norms

FORMAT = "ecapa-tdnn speaker store 1"

logger = logging.getLogger(__name__)


class StoreError(InputError):
    """A store that is missing, damaged, of another model, or asked for a speaker it lacks."""


def _model_difference(stored, current):
    """What differs between two model fingerprints (JSON, see model_fingerprint), in words."""
    try:
        stored, current = json.loads(stored), json.loads(current)
    except ValueError:
        return "another model"
    if stored.get("model_sha256") != current.get("model_sha256"):
        return (f"another model file (SHA-256 {str(stored.get('model_sha256'))[:12]}..., this model "
                f"{str(current.get('model_sha256'))[:12]}...)")
    if stored.get("network") != current.get("network"):
        return "the same weights in another network description (model settings differ)"
    return "other features (front end or feature settings differ)"


@contextlib.contextmanager
def store_lock(path):
    """Hold the lock of the store ``path`` (a hidden file beside it) while a change is read, made
    and written: a second program changing the same store waits, so neither change is lost.
    The lock goes with the process that holds it, however it ends."""
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f".{name}.lock"), "a", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("%s: another program is changing the store; waiting for it", path)
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


class SpeakerStore:
    """Enrolled speakers of the model with ``fingerprint`` (see the module docstring)."""

    def __init__(self, fingerprint, dim):
        self.fingerprint = fingerprint
        self.speakers = []
        self.unit_sums = np.zeros((0, dim))
        self.norm_sums = np.zeros(0)
        self.counts = np.zeros(0, dtype=np.int64)
        self.seconds = np.zeros(0)
        self.recordings = []

    def __len__(self):
        return len(self.speakers)

    @classmethod
    def load(cls, path):
        """The store in the file ``path``; StoreError for a missing, damaged or foreign file."""
        if not os.path.isfile(path):
            raise StoreError(f"{path}: speaker store not found (enroll a speaker to create it)")
        try:
            with np.load(path, allow_pickle=False) as arrays:
                if "format" not in arrays or str(arrays["format"]) != FORMAT:
                    raise StoreError(f"{path}: not a speaker store of this project")
                store = cls(str(arrays["fingerprint"]), arrays["unit_sums"].shape[1])
                store.speakers = [str(name) for name in arrays["speakers"]]
                store.unit_sums = arrays["unit_sums"].astype(np.float64)
                store.norm_sums = arrays["norm_sums"].astype(np.float64)
                store.counts = arrays["counts"].astype(np.int64)
                store.seconds = arrays["seconds"].astype(np.float64)
                store.recordings = json.loads(str(arrays["recordings"]))
        except (OSError, ValueError, KeyError, IndexError, zipfile.BadZipFile, EOFError) as error:
            if isinstance(error, StoreError):
                raise
            raise StoreError(f"{path}: damaged speaker store ({type(error).__name__}: {error})") from None
        sizes = {len(store.speakers), len(store.unit_sums), len(store.norm_sums), len(store.counts),
                 len(store.seconds), len(store.recordings)}
        if len(sizes) != 1:
            raise StoreError(f"{path}: damaged speaker store (its arrays hold different numbers of speakers)")
        return store

    def check_model(self, fingerprint, path):
        """StoreError unless the store was made with the model of ``fingerprint``; ``path`` names it."""
        if fingerprint != self.fingerprint:
            raise StoreError(f"{path}: the store was enrolled with {_model_difference(self.fingerprint, fingerprint)}; "
                             "its speakers cannot be scored with this model (enroll them again into a new store)")

    def index(self, speaker, path):
        """Row of ``speaker``; StoreError naming the store (and a close name) when it is not enrolled."""
        if not self.speakers:
            raise StoreError(f"{path}: the store holds no speakers; enroll some first")
        try:
            return self.speakers.index(speaker)
        except ValueError:
            close = difflib.get_close_matches(speaker, self.speakers, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise StoreError(f"{path}: speaker {speaker!r} is not enrolled{hint}; "
                             f"{len(self.speakers)} speakers are") from None

    def enroll(self, speaker, recordings, embeddings, seconds):
        """Add recordings (paths, n) with their embeddings (n, D) and durations (n,) to ``speaker``.

        A new speaker is created. A recording already enrolled for this speaker is a StoreError.
        """
        embeddings = np.asarray(embeddings)
        if not self.speakers:
            self.unit_sums = np.zeros((0, embeddings.shape[1]))
        elif embeddings.shape[1] != self.unit_sums.shape[1]:
            raise StoreError(f"embeddings of {embeddings.shape[1]} values for a store of {self.unit_sums.shape[1]}")
        self.check_new(speaker, recordings)
        if speaker not in self.speakers:
            self.speakers.append(speaker)
            self.unit_sums = np.vstack([self.unit_sums, np.zeros((1, self.unit_sums.shape[1]))])
            self.norm_sums, self.seconds = np.append(self.norm_sums, 0.0), np.append(self.seconds, 0.0)
            self.counts = np.append(self.counts, 0)
            self.recordings.append([])
        row = self.speakers.index(speaker)
        unit_sum, norms = unit_sum_and_norms(embeddings)
        self.unit_sums[row] += unit_sum
        self.norm_sums[row] += norms.sum()
        self.counts[row] += len(recordings)
        self.seconds[row] += float(np.sum(seconds))
        self.recordings[row].extend(recordings)

    def check_new(self, speaker, recordings):
        """StoreError when one of ``recordings`` (paths) is already enrolled for ``speaker``."""
        if speaker in self.speakers:
            repeated = sorted(set(recordings) & set(self.recordings[self.speakers.index(speaker)]))
            if repeated:
                raise StoreError(f"{repeated[0]} is already enrolled for speaker {speaker!r}")

    def remove(self, speaker, path):
        """Remove an enrolled speaker (StoreError when it is not enrolled)."""
        row = self.index(speaker, path)
        keep = np.arange(len(self)) != row
        del self.speakers[row], self.recordings[row]
        self.unit_sums, self.norm_sums = self.unit_sums[keep], self.norm_sums[keep]
        self.counts, self.seconds = self.counts[keep], self.seconds[keep]

    def embeddings(self):
        """The speakers' model embeddings (K, D) float32 (src/speakers/models.py)."""
        return model_from_sums(self.unit_sums, self.norm_sums, self.counts)

    def save(self, path):
        """Write the store to ``path`` atomically."""
        with atomic_write(path, needed_bytes=self.unit_sums.nbytes + 4096, suffix=".npz") as temporary:
            with open(temporary, "wb") as handle:
                np.savez(handle, format=np.array(FORMAT), fingerprint=np.array(self.fingerprint),
                         speakers=np.array(self.speakers, dtype=str), unit_sums=self.unit_sums.astype(np.float32),
                         norm_sums=self.norm_sums, counts=self.counts, seconds=self.seconds,
                         recordings=np.array(json.dumps(self.recordings)))
        return path
