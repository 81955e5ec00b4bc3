"""The front ends of public ECAPA-TDNN models: SpeechBrain's and WeSpeaker's (Kaldi) filterbanks.

A model trained elsewhere expects the features it was trained on. Each function here turns a
16 kHz waveform (S,) of samples in [-1, 1] into float32 (T, n_mels) features as that library
computes them, in numpy (float32 arithmetic, as the libraries run on torch):

- :func:`speechbrain_fbank`, SpeechBrain's ``Fbank(n_mels=80)`` followed by
  ``InputNormalization(norm_type="sentence", std_norm=False)`` as ``spkrec-ecapa-voxceleb``
  uses them: 400-point FFT of 25 ms periodic Hamming windows every 10 ms, centred frames
  (200 zeros at both ends), T = 1 + S // 160; power spectrum; 80 triangular filters evenly
  spaced on the 2595 log10(1 + f / 700) mel scale over 0-8 kHz, each as wide on both sides
  as the distance from its lower neighbour's centre; 10 log10 (floor 1e-10) with values
  more than 80 dB below the utterance's largest clipped; the per-utterance mean of each band
  subtracted.
- :func:`kaldi_fbank`, Kaldi's ``compute-fbank-feats`` as ``torchaudio.compliance.kaldi.fbank``
  computes it with WeSpeaker's settings (80 bins, 25 / 10 ms, symmetric Hamming window,
  dither 0, samples scaled to the 16-bit range), then the per-utterance mean subtracted:
  frames inside the signal only (T = 1 + (S - 400) // 160), each with its mean removed and
  pre-emphasis 0.97, zero-padded to 512 points; power spectrum; 80 triangular filters on the
  1127 ln(1 + f / 700) mel scale over 20-8000 Hz; natural log with the float32 epsilon as floor.

The project's own front end is src/data/features.py (``zoo``). :data:`FRONT_ENDS` holds the
three as :class:`FrontEnd` objects, by the names the ``features`` setting takes.

>>> kaldi_fbank(np.zeros(16000, np.float32) + 0.01).shape           # doctest: +SKIP
(98, 80)
"""
import functools
from dataclasses import dataclass

import numpy as np

from src.data import features
from src.data.audio import SAMPLE_RATE

# SpeechBrain
SB_N_FFT = 400
SB_HOP = 160
SB_AMIN = 1e-10
SB_TOP_DB = 80.0
# Kaldi (WeSpeaker's settings)
KALDI_FRAME = 400
KALDI_HOP = 160
KALDI_N_FFT = 512
KALDI_LOW_HZ = 20.0
KALDI_PREEMPHASIS = 0.97
KALDI_SCALE = 32768.0
FLOAT32_EPS = np.finfo(np.float32).eps


def _hamming(length, periodic):
    """Hamming window (length,) float32: periodic (divides by N, torch's default) or symmetric (N - 1)."""
    denominator = length if periodic else length - 1
    return (0.54 - 0.46 * np.cos(2 * np.pi * np.arange(length) / denominator)).astype(np.float32)


def _frames(signal, frame_length, hop):
    """(T, frame_length) views of ``signal`` every ``hop`` samples, frames inside the signal only."""
    count = 1 + (signal.size - frame_length) // hop
    return np.lib.stride_tricks.as_strided(signal, shape=(count, frame_length),
                                           strides=(hop * signal.itemsize, signal.itemsize))


@functools.lru_cache(maxsize=4)
def speechbrain_filters(n_mels=features.N_MELS):
    """SpeechBrain's triangular filterbank (SB_N_FFT // 2 + 1, n_mels) float32 over 0-8 kHz."""
    def to_mel(hz):
        return 2595 * np.log10(1 + hz / 700)

    mel = np.linspace(to_mel(0.0), to_mel(SAMPLE_RATE / 2), n_mels + 2, dtype=np.float32)
    hz = (700 * (10 ** (mel / np.float32(2595)) - 1)).astype(np.float32)
    band = (hz[1:] - hz[:-1])[:-1]
    central = hz[1:-1]
    frequencies = np.linspace(0, SAMPLE_RATE // 2, SB_N_FFT // 2 + 1, dtype=np.float32)
    slope = (frequencies[np.newaxis, :] - central[:, np.newaxis]) / band[:, np.newaxis]
    return np.maximum(0, np.minimum(slope + 1, 1 - slope)).T.astype(np.float32)


def speechbrain_fbank(wave, n_mels=features.N_MELS):
    """SpeechBrain's sentence-normalised log-mel features (module docstring): (T, n_mels) float32."""
    wave = _checked(wave)
    padded = np.pad(wave, SB_N_FFT // 2)
    frames = _frames(padded, SB_N_FFT, SB_HOP)[:1 + wave.size // SB_HOP]
    spectrum = np.fft.rfft(frames * _hamming(SB_N_FFT, periodic=True), axis=1)
    power = (spectrum.real.astype(np.float32) ** 2 + spectrum.imag.astype(np.float32) ** 2).astype(np.float32)
    decibels = 10 * np.log10(np.maximum(power @ speechbrain_filters(n_mels), np.float32(SB_AMIN)))
    decibels = np.maximum(decibels, decibels.max() - np.float32(SB_TOP_DB))
    return np.ascontiguousarray(decibels - decibels.mean(axis=0, keepdims=True), dtype=np.float32)


@functools.lru_cache(maxsize=4)
def kaldi_filters(n_mels=features.N_MELS):
    """Kaldi's triangular mel filterbank (KALDI_N_FFT // 2 + 1, n_mels) float32 over 20-8000 Hz."""
    def to_mel(hz):
        return 1127.0 * np.log(1.0 + hz / 700.0)

    low, high = to_mel(KALDI_LOW_HZ), to_mel(SAMPLE_RATE / 2)
    delta = (high - low) / (n_mels + 1)
    bin_mels = to_mel(SAMPLE_RATE / KALDI_N_FFT * np.arange(KALDI_N_FFT // 2))
    left = low + delta * np.arange(n_mels)[:, np.newaxis]
    centre, right = left + delta, left + 2 * delta
    rising = (bin_mels - left) / (centre - left)
    falling = (right - bin_mels) / (right - centre)
    filters = np.maximum(0.0, np.minimum(rising, falling))
    # The Nyquist bin has no filter weight.
    return np.pad(filters, ((0, 0), (0, 1))).T.astype(np.float32)


def kaldi_fbank(wave, n_mels=features.N_MELS):
    """Kaldi filterbank features, WeSpeaker's settings, mean-normalised (module docstring): (T, n_mels).

    Audio shorter than one 25 ms frame has no frames; ValueError then.
    """
    wave = _checked(wave)
    if wave.size < KALDI_FRAME:
        raise ValueError(f"kaldi_fbank needs at least {KALDI_FRAME} samples, got {wave.size}")
    frames = _frames(wave * np.float32(KALDI_SCALE), KALDI_FRAME, KALDI_HOP).astype(np.float32)
    frames = frames - frames.mean(axis=1, keepdims=True)
    previous = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
    frames = (frames - np.float32(KALDI_PREEMPHASIS) * previous) * _hamming(KALDI_FRAME, periodic=False)
    spectrum = np.fft.rfft(frames, n=KALDI_N_FFT, axis=1)
    power = (spectrum.real.astype(np.float32) ** 2 + spectrum.imag.astype(np.float32) ** 2).astype(np.float32)
    energies = np.log(np.maximum(power @ kaldi_filters(n_mels), FLOAT32_EPS))
    return np.ascontiguousarray(energies - energies.mean(axis=0, keepdims=True), dtype=np.float32)


def _checked(wave):
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1 or wave.size == 0:
        raise ValueError(f"a front end expects a non-empty 1-D waveform, got shape {wave.shape}")
    return wave


@dataclass(frozen=True)
class FrontEnd:
    """A front end by name: ``front_end(wave (S,), n_mels)`` -> float32 (T, n_mels).

    ``edge_samples``: samples a front end that frames inside the signal only needs beyond the
    hop grid (Kaldi: one 400-sample frame), 0 for centred framing.
    """
    name: str
    compute: object
    edge_samples: int = 0

    def __call__(self, wave, n_mels=features.N_MELS):
        return self.compute(wave, n_mels)

    def samples_for_frames(self, frames):
        """Fewest samples giving exactly ``frames`` (>= 1) frames."""
        return features.samples_for_frames(frames) + self.edge_samples


FRONT_ENDS = {front_end.name: front_end for front_end in (
    FrontEnd("zoo", features.log_mel), FrontEnd("speechbrain", speechbrain_fbank),
    FrontEnd("kaldi", kaldi_fbank, edge_samples=KALDI_FRAME))}


def front_end_of(settings):
    """The FrontEnd the ``features`` setting of ``settings`` names."""
    return FRONT_ENDS[settings.features]
