"""Training-time augmentation: MUSAN noise, babble and music, and room reverberation.

Each call picks one of five kinds by relative weight and applies it to a 16 kHz
float32 segment (S,):

- ``clean``  the segment unchanged;
- ``reverb`` convolution with a random room impulse response (RIR) scaled to unit
  energy, shifted so the RIR's peak (the direct path) lands on output sample 0;
- ``noise``  one MUSAN noise chunk at an SNR uniform in ``noise_snr`` dB (0-15);
- ``babble`` ``babble_count`` (3-8) MUSAN speech chunks, each at an SNR uniform in
  ``babble_snr`` dB (13-20), summed;
- ``music``  one MUSAN music chunk at an SNR uniform in ``music_snr`` dB (5-15).

Material layout: ``<musan_path>/{noise,speech,music}/<name>/<chunk>.wav`` and
``<rir_path>/.../<room>/<rir>.wav`` (any depth). Both folders are scanned once, at
construction, into sorted file lists, except that the RIRs named in
``<rir_path>/rir_list.txt`` (one path relative to ``rir_path`` a line, written by
scripts/split_musan.py) are used instead of a scan when that file exists, which saves
walking a large RIR tree at every start. Audio is read when used, resampled to 16 kHz if
needed (RIRs through a small LRU cache), so an :class:`Augmenter` holds no open files
and pickles cheaply into ``mindspore.dataset`` worker processes. Chunks shorter than
the segment are repeated, longer ones cropped at random. A kind with weight > 0 whose
material is missing is reported once with ``logging.warning`` and dropped; the
remaining weights are renormalised (only ``clean`` left: the augmenter is a no-op).
Outputs are not clipped: added noise or reverberation may take samples beyond [-1, 1].
"""
import logging
import math
import os
from collections import OrderedDict

import numpy as np
from scipy.signal import fftconvolve

from src.config import parse_range, parse_talker_range
from src.data.audio import AudioError, read_audio, read_audio_crop
from src.errors import InputError
from src.fileio import list_files, text_lines

logger = logging.getLogger(__name__)

KINDS = ("clean", "reverb", "noise", "babble", "music")
MUSAN_FOLDERS = {"noise": "noise", "babble": "speech", "music": "music"}
RIR_LIST_NAME = "rir_list.txt"
WAV_SUFFIX = ".wav"


def scaled_noise(wave, noise, snr_db):
    """Return ``noise`` (S,) scaled so that 10*log10(P(wave) / P(scaled)) equals ``snr_db``.

    P is the mean square over the S samples given. When either signal is all zero the
    ratio is undefined and the result is silence (nothing is added).
    """
    speech_power = float(np.mean(np.square(wave, dtype=np.float64)))
    noise_power = float(np.mean(np.square(noise, dtype=np.float64)))
    if speech_power == 0.0 or noise_power == 0.0:
        return np.zeros(len(wave), dtype=np.float32)
    gain = math.sqrt(speech_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return (noise * gain).astype(np.float32)


def reverberate(wave, rir, peak):
    """Convolve ``wave`` (S,) with ``rir`` (L,) keeping output samples ``peak`` .. ``peak+S-1``.

    ``peak`` is the index of the RIR's direct path, so the direct sound of input sample
    n lands on output sample n. Returns float32 (S,).
    """
    full = fftconvolve(wave, rir)
    return full[peak:peak + len(wave)].astype(np.float32)


def load_rir(path):
    """Read an impulse response (resampled to 16 kHz if needed) scaled to unit energy.

    Returns ``(rir, peak)``: float32 (L,) and the index of its largest magnitude.
    An all-zero file raises AudioError.
    """
    rir = read_audio(path, allow_resample=True)
    energy = float(np.sum(np.square(rir, dtype=np.float64)))
    if energy == 0.0:
        raise AudioError(f"{path}: impulse response is all zeros")
    rir = (rir / math.sqrt(energy)).astype(np.float32)
    return rir, int(np.argmax(np.abs(rir)))


def read_wav_list(folder, list_path):
    """Paths ``os.path.join(folder, entry)`` of the entries of ``list_path``, in list order.

    The list holds one path relative to ``folder`` a line; blank lines are skipped. An
    entry naming no file under ``folder`` is an InputError naming the list file and line.
    Each folder is listed once, so checking 60,000 entries costs a few hundred listings.
    """
    files, listings = [], {}
    for number, line in text_lines(list_path):
        relative = line.strip()
        if not relative:
            continue
        path = os.path.join(folder, relative)
        parent, name = os.path.split(path)
        if parent not in listings:
            listings[parent] = set(os.listdir(parent)) if os.path.isdir(parent) else set()
        if name not in listings[parent]:
            raise InputError(f"{list_path}:{number}: {relative} not found in {folder}; write "
                             "the list again (scripts/split_musan.py --rirs) or delete it")
        files.append(path)
    return tuple(files)


def _check_range(name, bounds, lowest):
    low, high = bounds
    if not (math.isfinite(low) and math.isfinite(high) and lowest <= low <= high):
        raise InputError(f"{name}: range {bounds!r} must be finite with {lowest} <= low <= high")
    return float(low), float(high)


def _check_weights(weights):
    """Weights as a dict over KINDS (absent kinds weigh 0); rejects unknown kinds and negatives."""
    unknown = sorted(set(weights) - set(KINDS))
    if unknown:
        raise InputError(f"augmentation weights: unknown kind(s) {', '.join(unknown)}; "
                         f"expected some of {', '.join(KINDS)}")
    checked = {}
    for kind in KINDS:
        value = float(weights.get(kind, 0.0))
        if not (math.isfinite(value) and value >= 0.0):
            raise InputError(f"augmentation weights: {kind} is {value}, must be a finite number >= 0")
        checked[kind] = value
    return checked


def _scan(setting, root, category, kind, weights, list_name=None):
    """Wav files of ``root``/``category`` for ``kind``; () when its weight is 0.

    The files are those named in the folder's ``list_name`` file when it has one
    (:func:`read_wav_list`), else every wav below the folder, sorted. A weighted kind
    without material is reported here, once, naming the setting and folder.
    """
    if weights[kind] == 0:
        return ()
    if not root:
        logger.warning("%s is not set: '%s' augmentation disabled", setting, kind)
        return ()
    folder = os.path.join(root, category) if category else root
    if not os.path.isdir(folder):
        logger.warning("%s: folder %s not found: '%s' augmentation disabled", setting, folder, kind)
        return ()
    list_path = os.path.join(folder, list_name) if list_name else None
    if list_path and os.path.isfile(list_path):
        files = read_wav_list(folder, list_path)
        source = list_path
    else:
        files = tuple(os.path.join(folder, relative) for relative in list_files(folder, WAV_SUFFIX))
        source = folder
    if not files:
        logger.warning("%s: no .wav files in %s: '%s' augmentation disabled", setting, source, kind)
    return files


class Augmenter:
    """Randomly augments 16 kHz float32 segments (S,) with MUSAN and RIR material.

    ``weights`` maps kinds (see KINDS) to relative weights; kinds left out weigh 0,
    and None means 1 for every kind. ``musan_path`` / ``rir_path`` may be '' for
    "not configured". SNR ranges are (low, high) in dB, ``babble_count`` an inclusive
    (low, high) number of talkers. ``rir_cache_size`` RIRs are kept decoded (0: none).
    """

    def __init__(self, musan_path="", rir_path="", weights=None, noise_snr=(0.0, 15.0),
                 babble_snr=(13.0, 20.0), music_snr=(5.0, 15.0), babble_count=(3, 8),
                 rir_cache_size=64):
        weights = _check_weights(dict.fromkeys(KINDS, 1.0) if weights is None else weights)
        self.snr_ranges = {"noise": _check_range("noise_snr", noise_snr, -math.inf),
                           "babble": _check_range("babble_snr", babble_snr, -math.inf),
                           "music": _check_range("music_snr", music_snr, -math.inf)}
        low, high = _check_range("babble_count", babble_count, 1)
        if low != int(low) or high != int(high):
            raise InputError(f"babble_count: range {babble_count!r} must hold whole numbers")
        self.babble_count = (int(low), int(high))
        if rir_cache_size < 0:
            raise InputError(f"rir_cache_size: {rir_cache_size} must be >= 0")
        self.rir_cache_size = int(rir_cache_size)
        self._rir_cache = OrderedDict()
        self.files = {"clean": (), "reverb": _scan("rir_path", rir_path, "", "reverb", weights,
                                                      RIR_LIST_NAME)}
        for kind, category in MUSAN_FOLDERS.items():
            self.files[kind] = _scan("musan_path", musan_path, category, kind, weights)
        usable = {kind: weight for kind, weight in weights.items()
                  if weight > 0 and (kind == "clean" or self.files[kind])}
        self.enabled = any(kind != "clean" for kind in usable)
        if not self.enabled:
            if any(weights[kind] > 0 for kind in KINDS if kind != "clean"):
                logger.warning("no augmentation material available: segments pass through unchanged")
            usable = {"clean": 1.0}
        total = sum(usable.values())
        self.probabilities = {kind: weight / total for kind, weight in usable.items()}
        self._kinds = tuple(usable)
        self._p = np.array([self.probabilities[kind] for kind in self._kinds])

    @classmethod
    def from_config(cls, config):
        """Build from settings ``musan_path``, ``rir_path``, the ``aug_<kind>`` weights and the
        ranges ``noise_snr``, ``babble_snr``, ``babble_talkers``, ``music_snr``."""
        weights = {kind: getattr(config, f"aug_{kind}") for kind in KINDS}
        return cls(config.musan_path, config.rir_path, weights, noise_snr=parse_range(config.noise_snr),
                   babble_snr=parse_range(config.babble_snr), music_snr=parse_range(config.music_snr),
                   babble_count=parse_talker_range(config.babble_talkers))

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_rir_cache"] = OrderedDict()
        return state

    def choose(self, rng):
        """Draw one kind name from the renormalised weights."""
        return self._kinds[int(rng.choice(len(self._kinds), p=self._p))]

    def __call__(self, wave, rng):
        """Augment ``wave`` float32 (S,) with one kind drawn by weight; returns float32 (S,)."""
        return self.apply(wave, self.choose(rng), rng)

    def apply(self, wave, kind, rng):
        """Apply augmentation ``kind`` to ``wave`` (S,) using ``rng``; returns a new float32 (S,)."""
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim != 1 or wave.size == 0:
            raise ValueError(f"augmentation expects a non-empty 1-D waveform, got shape {wave.shape}")
        if kind == "clean":
            return wave.copy()
        if kind not in self._kinds:
            raise ValueError(f"augmentation kind {kind!r} is not available; "
                             f"available: {', '.join(self._kinds)}")
        files = self.files[kind]
        if kind == "reverb":
            return reverberate(wave, *self._rir(files[int(rng.integers(len(files)))]))
        return wave + self._mixture(wave, files, kind, rng)

    def _mixture(self, wave, files, kind, rng):
        """Sum (S,) of random chunks from ``files``, each scaled to its own SNR against ``wave``.

        Babble draws its talker count from ``babble_count`` (distinct files while there are
        enough); noise and music use one chunk.
        """
        low, high = self.babble_count if kind == "babble" else (1, 1)
        count = int(rng.integers(low, high + 1))
        picks = rng.choice(len(files), size=count, replace=count > len(files))
        added = np.zeros_like(wave)
        for index in picks:
            noise = read_audio_crop(files[index], len(wave), rng, allow_resample=True)
            added += scaled_noise(wave, noise, rng.uniform(*self.snr_ranges[kind]))
        return added

    def _rir(self, path):
        """(rir, peak) for ``path``, through the LRU cache."""
        if path in self._rir_cache:
            self._rir_cache.move_to_end(path)
            return self._rir_cache[path]
        entry = load_rir(path)
        if self.rir_cache_size:
            self._rir_cache[path] = entry
            if len(self._rir_cache) > self.rir_cache_size:
                self._rir_cache.popitem(last=False)
        return entry
