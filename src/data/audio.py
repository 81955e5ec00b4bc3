"""Reading, writing and cropping of mono 16 kHz speech audio.

Every waveform in the project is a 1-D float32 numpy array of samples in [-1, 1]
at ``SAMPLE_RATE`` Hz. Problems with a file raise :class:`AudioError`, whose
message names the file and what is wrong with it.
"""
import logging
import os
import struct

import numpy as np
import soundfile

from src.errors import InputError
from src.fileio import atomic_write

SAMPLE_RATE = 16000
# A 'data' chunk size that means "unknown length" (streamed WAV), not a promise.
_UNKNOWN_DATA_SIZES = (0, 0xFFFFFFFF)

logger = logging.getLogger(__name__)
_reported_truncations = set()


class AudioError(InputError):
    """A file that cannot be used as project audio (missing, unreadable, wrong format)."""


def _wav_shortfall(path):
    """(frames declared, frames present) of a WAV file whose data chunk is cut short, else None.

    Only RIFF/WAVE files with a known data size are checked: the size of the 'data'
    chunk in the header is compared with the bytes that follow it in the file.
    """
    with open(path, "rb") as handle:
        header = handle.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:] != b"WAVE":
            return None
        block_align = 0
        while True:
            chunk = handle.read(8)
            if len(chunk) < 8:
                return None
            chunk_id, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if chunk_id == b"data":
                present = os.fstat(handle.fileno()).st_size - handle.tell()
                if not block_align or size in _UNKNOWN_DATA_SIZES or size <= present:
                    return None
                return size // block_align, present // block_align
            body = handle.read(size + size % 2)
            if chunk_id == b"fmt " and len(body) >= 14:
                block_align = struct.unpack("<H", body[12:14])[0]


def _warn_if_truncated(path, file_rate):
    """Log once per file when a WAV holds fewer samples than its header declares."""
    shortfall = _wav_shortfall(path) if path not in _reported_truncations else None
    if shortfall:
        _reported_truncations.add(path)
        declared, present = shortfall
        logger.warning("%s: truncated file: its header declares %d samples (%.2f s) but it holds %d "
                       "(%.2f s); using those", path, declared, declared / file_rate, present,
                       present / file_rate)


def _require_finite(path, samples):
    """AudioError naming ``path`` when ``samples`` hold NaN or infinite values."""
    non_finite = samples.size - np.count_nonzero(np.isfinite(samples))
    if non_finite:
        raise AudioError(f"{path}: has {non_finite} non-finite samples (NaN or inf)")


def read_audio(path, sample_rate=SAMPLE_RATE, allow_resample=False):
    """Read a mono audio file as float32 samples (S,) at ``sample_rate`` Hz.

    Multi-channel audio, an empty file, NaN or infinite samples and (unless
    ``allow_resample``) a different sample rate are errors; with ``allow_resample``
    other rates are converted by polyphase resampling. A WAV file cut short (fewer
    samples than its header declares) is used as it is, with a warning the first time.
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
    _require_finite(path, wave)
    _warn_if_truncated(path, file_rate)
    if file_rate != sample_rate:
        if not allow_resample:
            raise AudioError(f"{path}: sample rate is {file_rate} Hz, expected {sample_rate} Hz")
        wave = resample(wave, file_rate, sample_rate)
    return np.ascontiguousarray(wave, dtype=np.float32)


def read_audio_crop(path, num_samples, rng, allow_resample=False):
    """``crop_or_pad(read_audio(path, allow_resample=allow_resample), num_samples, rng)``, reading
    only the crop when the file is a 16 kHz mono WAV of at least ``num_samples`` samples
    (one open of the file); otherwise the whole file is read. Either way the result and the
    draw from ``rng`` are the same: libsndfile counts the samples a truncated WAV holds, as a
    whole read finds them. Only the crop is checked for non-finite samples.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AudioError(f"{path}: audio file not found")
    try:
        with soundfile.SoundFile(path) as audio:
            if (audio.format != "WAV" or audio.channels != 1 or audio.samplerate != SAMPLE_RATE
                    or audio.frames < num_samples):
                return crop_or_pad(read_audio(path, allow_resample=allow_resample), num_samples, rng)
            start = int(rng.integers(0, audio.frames - num_samples + 1))
            audio.seek(start)
            crop = audio.read(num_samples, dtype="float32")
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise AudioError(f"{path}: cannot read audio ({error})") from None
    if crop.size != num_samples:
        raise AudioError(f"{path}: read {crop.size} of the {num_samples} samples asked for at sample {start}")
    _require_finite(path, crop)
    return crop


def resample(wave, from_rate, to_rate):
    """Resample a 1-D waveform from ``from_rate`` Hz to ``to_rate`` Hz (polyphase filter)."""
    from math import gcd

    from scipy.signal import resample_poly

    common = gcd(int(from_rate), int(to_rate))
    return resample_poly(wave, to_rate // common, from_rate // common).astype(np.float32)


def write_audio(path, wave, sample_rate=SAMPLE_RATE):
    """Write a 1-D float waveform as 16-bit PCM WAV, atomically (see src/fileio.py).

    Samples outside [-1, 1] are clipped. Parent folders are created.
    """
    with atomic_write(path) as temporary:
        soundfile.write(temporary, np.clip(np.asarray(wave, dtype=np.float32), -1.0, 1.0),
                        sample_rate, subtype="PCM_16", format="WAV")


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
