"""Full-length speaker embeddings of audio files, with an optional on-disk cache.

Every utterance is embedded whole: its log-mel features (1, T, 80) go through the
network in inference mode (moving batch-norm statistics), one utterance per call.

In GRAPH_MODE a graph is compiled for the input shapes of the first call, and a call
with another shape compiles a new graph (seconds for the full-size network). Utterance
lengths vary, so :class:`EmbeddingExtractor` declares the time axis dynamic
(``set_inputs`` with shape ``(1, None, n_mels)``): the network compiles once and then
accepts any number of frames. The result equals a plain call on the same (1, T, 80)
input; nothing is padded, cropped or batched. A dynamic-shape call carries a per-call
overhead that a static-shape graph does not, which matters for short utterances.

With ``buckets`` (the ``extraction_graphs: buckets`` setting) a network with a frame-mask
variant (src/model/masked.py, as ECAPA-TDNN has) runs static-shape graphs instead: the
features are zero-padded at the end to the next length of a geometric ladder of buckets
(:func:`bucket_frames`, at most :data:`BUCKET_RATIO` longer than the utterance) and the
network is told which frames are real, so the embedding equals the unpadded one up to float
rounding. Each bucket compiles once, at its first utterance; the
choice depends on the utterance's length alone, so every process of a distributed
evaluation embeds an utterance identically. On CPU (C=1024, batch norm folded) the buckets
take 0.82x the dynamic graph's time at 2 s and 1.07-1.16x at 5-30 s, where their padding
costs more than the overhead they save (benchmarks/bench_extract.py).

The cache (:class:`EmbeddingCache`) is an ``.npz`` file keyed by absolute audio path. It
is tied to a fingerprint of the model file's content and of the network and feature
settings, so another checkpoint or another network size never reuses stale vectors; an
entry is also dropped when its audio file's size or modification time changed.
"""
import json
import logging
import math
import os
import shutil
import sys
import time
import zipfile
import zlib
from dataclasses import dataclass, field

import mindspore as ms
import numpy as np
import soundfile
from mindspore import Tensor

from src.data import features
from src.data.audio import SAMPLE_RATE, AudioError, read_audio
from src.data.front_ends import FRONT_ENDS
from src.data.speech_content import warn_if_insufficient
from src.errors import InputError
from src.fileio import atomic_write, file_fingerprint
from src.evaluation.scoring import EmbeddingTable
from src.model import network_description
from src.model.layers import min_frames
from src.model.masked import supports_frame_mask, with_frame_mask

CACHE_FILE_NAME = "embeddings.npz"
CACHE_FORMAT_VERSION = 2
FEATURE_CONSTANTS = ("N_FFT", "WIN_LENGTH", "HOP_LENGTH", "N_MELS", "F_MIN", "F_MAX",
                     "PRE_EMPHASIS", "LOG_FLOOR")
# Length of the input that compiles the graph before the first utterance.
WARM_UP_FRAMES = 200
# Static-shape buckets: lengths BUCKET_MIN_FRAMES * BUCKET_RATIO ** k, rounded up to a
# multiple of BUCKET_ALIGN frames; padding adds at most BUCKET_RATIO - 1 of the length.
BUCKET_MIN_FRAMES = 100
BUCKET_RATIO = 1.2
BUCKET_ALIGN = 8
EXTRACTION_GRAPHS = ("dynamic", "buckets")
# Without a terminal, progress is logged about this many times per extraction.
PROGRESS_LOG_STEPS = 10
# Utterances with too little speech named in the extraction summary.
SHOWN_LOW_SPEECH = 3

logger = logging.getLogger(__name__)


class EmbeddingError(InputError):
    """An embedding that is unusable (NaN or infinite), pointing at a broken checkpoint."""


def finite_embedding(vector, source):
    """Return ``vector`` (D,) if all its values are finite, else raise EmbeddingError naming ``source``."""
    if not np.isfinite(vector).all():
        raise EmbeddingError(f"{source}: the embedding has NaN or infinite values; "
                             "is the checkpoint broken (diverged training)?")
    return vector


def bucket_frames(frames):
    """The static length (frames) an utterance of ``frames`` frames is padded to: >= frames."""
    length = BUCKET_MIN_FRAMES
    while length < frames:
        length = math.ceil(length * BUCKET_RATIO / BUCKET_ALIGN) * BUCKET_ALIGN
    return length


class EmbeddingExtractor:
    """Embeds one utterance at a time with ``network``, without recompiling per length.

    network: a Cell mapping (1, T, n_mels) float32 features to (1, D) embeddings. It is
        switched to inference mode and its time axis is declared dynamic.
    graphs: 'dynamic' (one graph for every length) or 'buckets' (static graphs of padded
        lengths, see the module docstring; 'dynamic' for a network without a frame mask).
    """

    def __init__(self, network, n_mels=features.N_MELS, graphs="dynamic", front_end=FRONT_ENDS["zoo"]):
        if graphs not in EXTRACTION_GRAPHS:
            raise ValueError(f"graphs must be one of {EXTRACTION_GRAPHS}, got {graphs!r}")
        self.network = network
        self.n_mels = n_mels
        self.front_end = front_end
        self.compiled = False
        network.set_train(False)
        network.set_inputs(Tensor(shape=[1, None, n_mels], dtype=ms.float32))
        self.min_frames = min_frames(network)
        self.masked = with_frame_mask(network) if graphs == "buckets" and supports_frame_mask(network) else None
        self.buckets = set()  # lengths (frames) whose static graph is compiled
        self.bucket_compile_seconds = 0.0

    @property
    def graphs(self):
        """'buckets' when static bucket graphs are used, else 'dynamic'."""
        return "buckets" if self.masked is not None else "dynamic"

    def compile(self):
        """Compile the dynamic graph (by embedding WARM_UP_FRAMES of silence) unless done or static
        buckets are used (they compile at their first utterance); return seconds spent."""
        if self.compiled or self.masked is not None:
            return 0.0
        start = time.perf_counter()
        self.embed_features(np.zeros((WARM_UP_FRAMES, self.n_mels), dtype=np.float32))
        self.compiled = True
        return time.perf_counter() - start

    def embed_features(self, feats):
        """Embedding (D,) float32 of log-mel features (T, n_mels)."""
        feats = np.asarray(feats, dtype=np.float32)
        if feats.ndim != 2 or feats.shape[1] != self.n_mels or feats.shape[0] < self.min_frames:
            raise ValueError(f"expected features of shape (T, {self.n_mels}) with T >= {self.min_frames}, "
                             f"got {feats.shape}")
        if self.masked is None:
            return self.network(Tensor(feats[np.newaxis])).asnumpy()[0]
        frames = feats.shape[0]
        length = bucket_frames(frames)
        if length not in self.buckets:
            start = time.perf_counter()
            self._embed_padded(np.zeros((1, self.n_mels), np.float32), length)
            self.bucket_compile_seconds += time.perf_counter() - start
            self.buckets.add(length)
        return self._embed_padded(feats, length)

    def _embed_padded(self, feats, length):
        """Embedding (D,) of features (T, n_mels) zero-padded to ``length`` frames, with their mask."""
        padded = np.zeros((1, length, self.n_mels), np.float32)
        padded[0, :feats.shape[0]] = feats
        mask = np.zeros((1, length, 1), np.float32)
        mask[0, :feats.shape[0]] = 1.0
        return self.masked(Tensor(padded), Tensor(mask)).asnumpy()[0]

    def embed_wave(self, wave):
        """Embedding (D,) float32 of a 16 kHz waveform (S,)."""
        return self.embed_features(self.features(wave))

    def features(self, wave, source="the waveform"):
        """The front end's features (T, n_mels) of a 16 kHz waveform (S,); AudioError naming ``source``
        for audio too short for it."""
        try:
            feats = self.front_end(wave, self.n_mels)
        except ValueError as error:
            raise AudioError(f"{source}: {error} ({wave.size / SAMPLE_RATE:.3f} s of audio)") from None
        if feats.shape[0] < self.min_frames:
            raise AudioError(f"{source}: {feats.shape[0]} frames, fewer than the {self.min_frames} this "
                             f"network's reflection padding needs ({wave.size / SAMPLE_RATE:.3f} s of audio)")
        return feats


@dataclass
class ExtractionStats:
    """What one :func:`extract_embeddings` call did; times are wall-clock seconds.

    extracted / cached: utterances computed / taken from the cache.
    audio_seconds: duration of the extracted audio.
    compile_seconds: graph compilation (0 when the network was already compiled).
    network_seconds: time inside the network, compilation excluded.
    total_seconds: reading, features, network and compilation together.
    low_speech: paths of the extracted utterances too short or with too little speech
        (see src/data/speech_content.py); they are embedded all the same.
    """
    extracted: int = 0
    cached: int = 0
    audio_seconds: float = 0.0
    compile_seconds: float = 0.0
    network_seconds: float = 0.0
    total_seconds: float = 0.0
    low_speech: list = field(default_factory=list)

    def describe(self):
        """One line: counts, audio duration, wall time and real-time factors (wall / audio)."""
        if self.extracted == 0:
            return f"all {self.cached} embeddings taken from the cache"
        total_rtf = self.total_seconds / self.audio_seconds
        compiled = f", incl. {self.compile_seconds:.1f} s graph compilation" if self.compile_seconds else ""
        low_speech = ""
        if self.low_speech:
            shown = ", ".join(self.low_speech[:SHOWN_LOW_SPEECH])
            more = ", ..." if len(self.low_speech) > SHOWN_LOW_SPEECH else ""
            low_speech = (f"; {len(self.low_speech)} too short or with too little speech, "
                          f"used anyway: {shown}{more}")
        return (f"extracted {self.extracted} embeddings ({self.cached} from the cache): "
                f"{self.audio_seconds:.1f} s of audio in {self.total_seconds:.1f} s{compiled}, "
                f"RTF {total_rtf:.4f} ({1 / total_rtf:.1f}x real time); "
                f"network alone RTF {self.network_seconds / self.audio_seconds:.4f}{low_speech}")


def file_stamp(path):
    """'<size>:<mtime_ns>' of a file, used to notice audio that changed since it was cached."""
    status = os.stat(path)
    return f"{status.st_size}:{status.st_mtime_ns}"


def model_fingerprint(model_path, network, front_end="zoo"):
    """Identity of the embeddings a model produces: checkpoint content, network, feature settings.

    ``network`` is the Cell the embeddings come from; its description (model, the settings
    its builder read, parameter names and shapes; see src/model/registry.py) stands for
    everything but the weights, which the checkpoint's SHA-256 covers. ``front_end``: the
    name of the front end (src/data/front_ends.py) the features come from.
    """
    description = {
        "version": CACHE_FORMAT_VERSION,
        "model_sha256": file_fingerprint(model_path),
        "network": network_description(network),
        "features": {name: getattr(features, name) for name in FEATURE_CONSTANTS},
        # Named only when it is not the project's own, so that earlier caches stay valid.
        **({"front_end": front_end} if front_end != "zoo" else {}),
        "sample_rate": SAMPLE_RATE,
    }
    return json.dumps(description, sort_keys=True)


class EmbeddingCache:
    """Embeddings stored in an .npz file for one model fingerprint, keyed by absolute path.

    File arrays: ``fingerprint`` (0-d str), ``paths`` (U,) str, ``stamps`` (U,) str
    (see :func:`file_stamp`), ``embeddings`` (U, D) float32. A file of another
    fingerprint, or a damaged one (truncated, empty), is ignored with one log line and
    replaced, atomically, on :meth:`save`.
    A ``read_only`` cache is read but never written (the non-gathering ranks of a
    distributed evaluation).
    """

    def __init__(self, path, fingerprint, read_only=False):
        self.path = os.fspath(path)
        self.fingerprint = fingerprint
        self.read_only = read_only
        self.entries = {}  # absolute path -> (stamp, (D,) float32)
        self._load()

    def _load(self):
        if not os.path.isfile(self.path):
            return
        try:
            with np.load(self.path, allow_pickle=False) as stored:
                if str(stored["fingerprint"]) != self.fingerprint:
                    logger.info("%s: made with another model or settings; not reused", self.path)
                    return
                self.entries = {path: (stamp, vector) for path, stamp, vector in
                                zip(stored["paths"].tolist(), stored["stamps"].tolist(),
                                    stored["embeddings"])}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as error:
            logger.warning("%s: damaged embedding cache (%s: %s); it is rebuilt", self.path,
                           type(error).__name__, error)
            self.entries = {}

    def get(self, path):
        """Cached (D,) embedding of audio file ``path``, or None if absent or the file changed."""
        key = os.path.abspath(path)
        entry = self.entries.get(key)
        try:
            unchanged = entry is not None and entry[0] == file_stamp(key)
        except OSError:
            return None
        return entry[1] if unchanged else None

    def put(self, path, embedding):
        """Remember ``embedding`` (D,) of audio file ``path`` (written by :meth:`save`)."""
        key = os.path.abspath(path)
        self.entries[key] = (file_stamp(key), np.asarray(embedding, dtype=np.float32))

    def save(self):
        """Write all entries to the cache file atomically (nothing for a read-only cache)."""
        if self.read_only:
            return
        paths = sorted(self.entries)
        with atomic_write(self.path) as temporary:
            with open(temporary, "wb") as out:
                np.savez(out, fingerprint=np.array(self.fingerprint),
                         paths=np.array(paths, dtype=str),
                         stamps=np.array([self.entries[path][0] for path in paths], dtype=str),
                         embeddings=np.stack([self.entries[path][1] for path in paths]))


def copy_cache(source_folder, target_folder):
    """Start the embedding cache of ``target_folder`` from that of ``source_folder``.

    For several evaluations of one model (other trial lists, scorings or calibrations) in
    their own output folders; the fingerprint inside still decides whether it is used.
    Nothing happens when ``source_folder`` has no cache.
    """
    source = os.path.join(source_folder, CACHE_FILE_NAME)
    if os.path.isfile(source):
        os.makedirs(target_folder, exist_ok=True)
        with atomic_write(os.path.join(target_folder, CACHE_FILE_NAME)) as temporary:
            shutil.copyfile(source, temporary)


def _progress(items, description):
    """Iterate ``items`` with a tqdm bar on a terminal, else with a few log lines."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        yield from tqdm(items, desc=description, unit="utt", dynamic_ncols=True)
        return
    step = max(1, len(items) // PROGRESS_LOG_STEPS)
    for done, item in enumerate(items, start=1):
        yield item
        if done % step == 0 or done == len(items):
            logger.info("%s: %d/%d", description, done, len(items))


def require_audio_files(names, root, source, shown=5):
    """Raise AudioError unless every one of ``names`` (relative to ``root``) is a file.

    The message starts with ``source`` (where the names come from, e.g. the list file),
    counts the missing files and names the first ``shown`` of them.
    """
    missing = [name for name in dict.fromkeys(names) if not os.path.isfile(os.path.join(root, name))]
    if missing:
        where = f" under {root!r}" if root else ""
        raise AudioError(f"{source}: {len(missing)} of {len(set(names))} audio files not found{where}, "
                         f"first: {', '.join(missing[:shown])}")


def audio_durations(names, root=""):
    """Durations in seconds (len(names),) float64 of audio files ``names`` (relative to ``root``).

    Read from the file headers, so they cost no decoding and need no cache entry; they
    equal the length of the audio that :func:`extract_embeddings` embeds. Raises
    AudioError naming an unreadable file.
    """
    durations = np.empty(len(names))
    for index, name in enumerate(names):
        path = os.path.join(root, name)
        try:
            durations[index] = soundfile.info(path).duration
        except RuntimeError as error:
            raise AudioError(f"{path}: cannot read the audio header ({error})") from None
    return durations


def extract_embeddings(extractor, names, root="", cache=None, description="embeddings",
                       allow_resample=False):
    """Embed the audio files ``names`` (relative to ``root``) that the cache does not hold.

    Files must be 16 kHz unless ``allow_resample``. Returns ``(table, stats)``: an
    EmbeddingTable with one row per unique name, in order of first appearance, and
    :class:`ExtractionStats`. Audio too short or with too little speech is embedded with
    one warning per file and listed in ``stats.low_speech``; unreadable audio raises
    AudioError and a non-finite embedding EmbeddingError, each naming the file. New
    embeddings are added to the cache, if given, which is saved at the end, and also
    when an error or an interruption stops the loop, so a second run continues where
    the first stopped.
    """
    names = list(dict.fromkeys(names))
    stats = ExtractionStats()
    vectors = {}
    pending = []
    for name in names:
        vector = cache.get(os.path.join(root, name)) if cache is not None else None
        if vector is None:
            pending.append(name)
        else:
            vectors[name] = vector
    stats.cached = len(vectors)
    start = time.perf_counter()
    if pending:
        stats.compile_seconds = extractor.compile()
    bucket_compile_start = getattr(extractor, "bucket_compile_seconds", 0.0)
    try:
        for name in _progress(pending, description):
            path = os.path.join(root, name)
            wave = read_audio(path, allow_resample=allow_resample)
            if warn_if_insufficient(path, wave):
                stats.low_speech.append(path)
            feats = extractor.features(wave, path)
            call_start = time.perf_counter()
            vectors[name] = finite_embedding(extractor.embed_features(feats), path)
            stats.network_seconds += time.perf_counter() - call_start
            stats.audio_seconds += wave.size / SAMPLE_RATE
            stats.extracted += 1
            if cache is not None:
                cache.put(path, vectors[name])
    except KeyboardInterrupt:
        kept = f"; the cache {cache.path} keeps them for the next run" if cache is not None else ""
        logger.warning("%s: stopped after %d of %d utterances%s", description, stats.extracted, len(pending), kept)
        raise
    finally:
        if cache is not None and stats.extracted:
            cache.save()
    bucket_compile = getattr(extractor, "bucket_compile_seconds", 0.0) - bucket_compile_start
    stats.compile_seconds += bucket_compile
    stats.network_seconds -= bucket_compile
    stats.total_seconds = time.perf_counter() - start
    return EmbeddingTable(names, np.stack([vectors[name] for name in names])), stats
