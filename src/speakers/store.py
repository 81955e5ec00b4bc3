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
from src.fileio import atomic_write, remove_stale_temporaries
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


# The per-speaker arrays of a store and their dtypes in memory.
PER_SPEAKER = {"unit_sums": np.float64, "norm_sums": np.float64, "counts": np.int64, "seconds": np.float64}


class SpeakerStore:
    """Enrolled speakers of the model with ``fingerprint`` (see the module docstring).

    ``unit_sums`` (K, D), ``norm_sums``, ``counts`` and ``seconds`` (K,) are views of buffers
    that grow by doubling, so enrolling K new speakers one by one costs O(K) copies, not O(K^2).
    """

    def __init__(self, fingerprint, dim):
        self.fingerprint = fingerprint
        self.speakers, self.recordings = [], []
        self._rows = {}  # speaker -> row
        self._buffers = {name: np.zeros((0, dim) if name == "unit_sums" else 0, dtype)
                         for name, dtype in PER_SPEAKER.items()}

    unit_sums = property(lambda self: self._buffers["unit_sums"][:len(self.speakers)])
    norm_sums = property(lambda self: self._buffers["norm_sums"][:len(self.speakers)])
    counts = property(lambda self: self._buffers["counts"][:len(self.speakers)])
    seconds = property(lambda self: self._buffers["seconds"][:len(self.speakers)])

    def __len__(self):
        return len(self.speakers)

    @classmethod
    def from_arrays(cls, fingerprint, speakers, recordings, **arrays):
        """A store of K ``speakers`` with their ``recordings`` (K lists of paths) and the per-speaker
        ``arrays`` (unit_sums (K, D), norm_sums, counts, seconds (K,))."""
        store = cls(fingerprint, 0)
        store.speakers, store.recordings = list(speakers), list(recordings)
        store._rows = {speaker: row for row, speaker in enumerate(store.speakers)}
        store._buffers = {name: np.array(arrays[name], dtype) for name, dtype in PER_SPEAKER.items()}
        return store

    @classmethod
    def load(cls, path):
        """The store in the file ``path``; StoreError for a missing, damaged or foreign file."""
        if not os.path.isfile(path):
            raise StoreError(f"{path}: speaker store not found (enroll a speaker to create it)")
        try:
            with np.load(path, allow_pickle=False) as arrays:
                if "format" not in arrays or str(arrays["format"]) != FORMAT:
                    raise StoreError(f"{path}: not a speaker store of this project")
                store = cls.from_arrays(str(arrays["fingerprint"]), [str(name) for name in arrays["speakers"]],
                                        json.loads(str(arrays["recordings"])),
                                        **{name: arrays[name] for name in PER_SPEAKER})
        except (OSError, ValueError, KeyError, IndexError, zipfile.BadZipFile, EOFError) as error:
            if isinstance(error, StoreError):
                raise
            raise StoreError(f"{path}: damaged speaker store ({type(error).__name__}: {error})") from None
        sizes = {len(store.speakers), len(store.recordings), *(len(buffer) for buffer in store._buffers.values())}
        if len(sizes) != 1 or store._buffers["unit_sums"].ndim != 2:
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
        if speaker not in self._rows:
            close = difflib.get_close_matches(speaker, self.speakers, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise StoreError(f"{path}: speaker {speaker!r} is not enrolled{hint}; "
                             f"{len(self.speakers)} speakers are")
        return self._rows[speaker]

    def _add_speaker(self, speaker):
        """Append an empty row for ``speaker``, doubling the buffers when they are full; return it."""
        row = len(self.speakers)
        if row == len(self._buffers["counts"]):
            for name, buffer in self._buffers.items():
                grown = np.zeros((max(16, 2 * row), *buffer.shape[1:]), buffer.dtype)
                grown[:row] = buffer[:row]
                self._buffers[name] = grown
        self.speakers.append(speaker)
        self.recordings.append([])
        self._rows[speaker] = row
        return row

    def enroll(self, speaker, recordings, embeddings, seconds):
        """Add recordings (paths, n) with their embeddings (n, D) and durations (n,) to ``speaker``.

        A new speaker is created. A recording already enrolled for this speaker is a StoreError.
        """
        embeddings = np.asarray(embeddings)
        if not self.speakers:
            self._buffers["unit_sums"] = np.zeros((len(self._buffers["counts"]), embeddings.shape[1]))
        elif embeddings.shape[1] != self.unit_sums.shape[1]:
            raise StoreError(f"embeddings of {embeddings.shape[1]} values for a store of {self.unit_sums.shape[1]}")
        self.check_new(speaker, recordings)
        row = self._rows[speaker] if speaker in self._rows else self._add_speaker(speaker)
        unit_sum, norms = unit_sum_and_norms(embeddings)
        self.unit_sums[row] += unit_sum
        self.norm_sums[row] += norms.sum()
        self.counts[row] += len(recordings)
        self.seconds[row] += float(np.sum(seconds))
        self.recordings[row].extend(recordings)

    def check_new(self, speaker, recordings):
        """StoreError when one of ``recordings`` (paths) is already enrolled for ``speaker``."""
        if speaker in self._rows:
            repeated = sorted(set(recordings) & set(self.recordings[self._rows[speaker]]))
            if repeated:
                raise StoreError(f"{repeated[0]} is already enrolled for speaker {speaker!r}")

    def remove(self, speaker, path):
        """Remove an enrolled speaker (StoreError when it is not enrolled)."""
        row = self.index(speaker, path)
        keep = np.arange(len(self)) != row
        arrays = {name: getattr(self, name)[keep] for name in PER_SPEAKER}
        del self.speakers[row], self.recordings[row]
        self._rows = {name: index for index, name in enumerate(self.speakers)}
        self._buffers = arrays

    def embeddings(self, rows=None):
        """Model embeddings (K, D) float32 of every speaker, or of the speakers of ``rows`` (index
        array) in that order (src/speakers/models.py)."""
        rows = slice(None) if rows is None else rows
        return model_from_sums(self.unit_sums[rows], self.norm_sums[rows], self.counts[rows])

    def save(self, path):
        """Write the store to ``path`` atomically, first removing what a killed earlier write of it left
        (call it holding :func:`store_lock`, as every change does)."""
        remove_stale_temporaries(os.path.dirname(os.path.abspath(path)), of=os.path.basename(path))
        with atomic_write(path, needed_bytes=self.unit_sums.nbytes + 4096, suffix=".npz") as temporary:
            with open(temporary, "wb") as handle:
                np.savez(handle, format=np.array(FORMAT), fingerprint=np.array(self.fingerprint),
                         speakers=np.array(self.speakers, dtype=str), unit_sums=self.unit_sums.astype(np.float32),
                         norm_sums=self.norm_sums, counts=self.counts, seconds=self.seconds,
                         recordings=np.array(json.dumps(self.recordings)))
        return path
