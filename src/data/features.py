"""The log-mel filterbank front end shared by training, evaluation and inference.

One function, :func:`log_mel`, turns 16 kHz audio into the network input so that
training, eval.py, preprocess.py and every runner compute identical features:
pre-emphasis 0.97, 512-point FFT (float32) of 400-sample (25 ms) Hamming windows every 160
samples (10 ms), centred frames (n_fft // 2 samples of reflect padding at both ends),
power spectrum, 80 mel bands (Slaney scale and area normalisation, 20-7600 Hz),
``log(x + 1e-6)`` and subtraction of the per-utterance mean of each band.

The features of a waveform are the same bits whatever the number of threads: the mel
projection is a sparse product (scipy, one thread) rather than a BLAS matrix product,
whose summation order changes with the thread count. So a distributed evaluation, whose
processes run with other thread counts, embeds exactly what a single process does.
"""
import functools

import librosa
import numpy as np
import scipy.fft
import scipy.signal
import scipy.sparse

from src.data.audio import SAMPLE_RATE

N_FFT = 512
WIN_LENGTH = 400
HOP_LENGTH = 160
N_MELS = 80
F_MIN = 20.0
F_MAX = 7600.0
PRE_EMPHASIS = 0.97
LOG_FLOOR = 1e-6


@functools.lru_cache(maxsize=4)
def mel_matrix(n_mels=N_MELS):
    """Mel filterbank (n_mels, N_FFT // 2 + 1), a sparse CSR matrix, mapping a power spectrum to mel bands."""
    return scipy.sparse.csr_matrix(librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=n_mels,
                                                       fmin=F_MIN, fmax=F_MAX).astype(np.float32))


@functools.lru_cache(maxsize=1)
def fft_window():
    """The periodic Hamming window of WIN_LENGTH samples centred in N_FFT zeros: float32 (N_FFT,)."""
    window = np.zeros(N_FFT, np.float32)
    start = (N_FFT - WIN_LENGTH) // 2
    window[start:start + WIN_LENGTH] = scipy.signal.get_window("hamming", WIN_LENGTH, fftbins=True)
    return window


def power_spectrum(signal):
    """|STFT|^2 of ``signal`` float32 (S,): float32 (1 + S // HOP_LENGTH, N_FFT // 2 + 1).

    Frames are centred (N_FFT // 2 samples of reflection at both ends, zeros for audio too
    short to reflect), windowed by :func:`fft_window` and transformed in float32.
    """
    padded = np.pad(signal, N_FFT // 2, mode="reflect" if signal.size > N_FFT // 2 else "constant")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP_LENGTH]
    spectrum = scipy.fft.rfft(frames * fft_window(), axis=1)
    return spectrum.real ** 2 + spectrum.imag ** 2


def samples_for_frames(frames):
    """Smallest non-empty number of samples that yields exactly ``frames`` (>= 1) frames."""
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    return max(1, (frames - 1) * HOP_LENGTH)


def log_mel(wave, n_mels=N_MELS):
    """Mean-normalised log-mel features of a waveform.

    wave: float (S,) samples at 16 kHz, any length >= 1.
    Returns float32 (T, n_mels) with T = 1 + S // 160; each band has zero mean over T.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1 or wave.size == 0:
        raise ValueError(f"log_mel expects a non-empty 1-D waveform, got shape {wave.shape}")
    emphasised = np.append(wave[0], wave[1:] - PRE_EMPHASIS * wave[:-1])
    features = np.log(mel_matrix(n_mels) @ power_spectrum(emphasised).T + LOG_FLOOR).T
    features -= features.mean(axis=0, keepdims=True)
    return np.ascontiguousarray(features, dtype=np.float32)
