"""Reading, writing and cropping of mono 16 kHz speech audio.

Every waveform in the project is a 1-D float32 numpy array of samples in [-1, 1]
at ``SAMPLE_RATE`` Hz. Problems with a file raise :class:`AudioError`, whose
message names the file and what is wrong with it.
"""
import os
import tempfile

import numpy as np
import soundfile

from src.errors import InputError

SAMPLE_RATE = 16000


class AudioError(InputError):
    """A file that cannot be used as project audio (missing, unreadable, wrong format)."""


def read_audio(path, sample_rate=SAMPLE_RATE, allow_resample=False):
    """Read a mono audio file as float32 samples (S,) at ``sample_rate`` Hz.

    Multi-channel audio, an empty file and (unless ``allow_resample``) a different
    sample rate are errors; with ``allow_resample`` other rates are converted by
    polyphase resampling.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AudioError(f"{path}: audio file not found")
    try:
        samples, file_rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise AudioError(f"{path}: cannot read audio ({error})") from None
    if samples.shape[1] != 1:
        raise AudioError(f"{path}: has {samples.shape[1]} channels, expected mono")
    if samples.shape[0] == 0:
        raise AudioError(f"{path}: contains no samples")
    wave = samples[:, 0]
    if file_rate != sample_rate:
        if not allow_resample:
            raise AudioError(f"{path}: sample rate is {file_rate} Hz, expected {sample_rate} Hz")
        wave = resample(wave, file_rate, sample_rate)
    return np.ascontiguousarray(wave, dtype=np.float32)


def resample(wave, from_rate, to_rate):
    """Resample a 1-D waveform from ``from_rate`` Hz to ``to_rate`` Hz (polyphase filter)."""
    from math import gcd

    from scipy.signal import resample_poly

    common = gcd(int(from_rate), int(to_rate))
    return resample_poly(wave, to_rate // common, from_rate // common).astype(np.float32)


def write_audio(path, wave, sample_rate=SAMPLE_RATE):
    """Write a 1-D float waveform as 16-bit PCM WAV, atomically (temporary file, then rename).

    Samples outside [-1, 1] are clipped. Parent folders are created.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".", suffix=".part", dir=folder)
    os.close(handle)
    try:
        soundfile.write(temporary, np.clip(np.asarray(wave, dtype=np.float32), -1.0, 1.0),
                        sample_rate, subtype="PCM_16", format="WAV")
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def repeat_pad(wave, num_samples):
    """Repeat ``wave`` end to end until it holds at least ``num_samples`` samples."""
    if len(wave) >= num_samples:
        return wave
    repeats = -(-num_samples // len(wave))
    return np.tile(wave, repeats)


def crop_or_pad(wave, num_samples, rng=None):
    """Return exactly ``num_samples`` samples of ``wave``.

    Short audio is repeat-padded first. The crop starts at a uniformly random offset
    drawn from ``rng`` (a ``numpy.random.Generator``), or at the start when ``rng`` is None.
    """
    wave = repeat_pad(wave, num_samples)
    start = 0 if rng is None else int(rng.integers(0, len(wave) - num_samples + 1))
    return wave[start:start + num_samples]
