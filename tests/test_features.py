"""log_mel against an independent numpy computation, plus shapes and edge cases."""
import os
import warnings

import librosa
import numpy as np
import pytest

from src.data.features import log_mel, samples_for_frames

SR = 16000
N_FFT = 512
HOP = 160
WIN = 400
# Largest |module - reference| allowed, in log units. The float32 module differs from the
# float64 reference by at most 2.0e-5 on these inputs; a symmetric instead of periodic
# Hamming window already differs by 0.046, no pre-emphasis or zero padding by > 1.
TOLERANCE = 1e-4


def mel_filters():
    """The (80, 257) Slaney mel matrix, 20-7600 Hz: the one librosa call of the reference."""
    return librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=80, fmin=20.0,
                               fmax=7600.0).astype(np.float64)


def reference_mel_energy(wave, pad_mode="reflect"):
    """Mel band power (T, 80) of a 1-D wave, step by step; ``pad_mode`` pads the ends."""
    wave = np.asarray(wave, dtype=np.float64)
    emphasised = np.concatenate([wave[:1], wave[1:] - 0.97 * wave[:-1]])
    padded = np.pad(emphasised, N_FFT // 2, mode=pad_mode)
    frames = 1 + (padded.size - N_FFT) // HOP
    # Periodic Hamming of 400 samples, centred in the 512-sample frame (56 zeros each side).
    n = np.arange(WIN)
    hamming = 0.54 - 0.46 * np.cos(2.0 * np.pi * n / WIN)
    left = (N_FFT - WIN) // 2
    window = np.zeros(N_FFT)
    window[left:left + WIN] = hamming
    power = np.empty((frames, N_FFT // 2 + 1))
    for t in range(frames):
        segment = padded[t * HOP:t * HOP + N_FFT] * window
        power[t] = np.abs(np.fft.rfft(segment)) ** 2
    return power @ mel_filters().T


def reference_log_mel(wave, pad_mode="reflect"):
    """Mean-normalised log-mel (T, 80) from :func:`reference_mel_energy`."""
    features = np.log(reference_mel_energy(wave, pad_mode) + 1e-6)
    return features - features.mean(axis=0, keepdims=True)


def quiet_log_mel(wave):
    """log_mel with librosa's 'n_fft too large' warning for short clips silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return log_mel(wave)


def test_matches_reference_on_random_audio(rng):
    wave = (0.3 * rng.standard_normal(SR)).astype(np.float32)
    features = log_mel(wave)
    expected = reference_log_mel(wave)
    assert features.dtype == np.float32
    assert features.shape == expected.shape == (101, 80)
    assert np.max(np.abs(features - expected)) < TOLERANCE


def sine_after_silence(frequency):
    """0.5 s of silence, then 0.5 s of a sine at ``frequency`` Hz: (16000,) float32."""
    time = np.arange(8000) / SR
    sine = 0.5 * np.sin(2 * np.pi * frequency * time)
    return np.concatenate([np.zeros(8000), sine]).astype(np.float32)


@pytest.mark.parametrize("frequency", [300.0, 1000.0, 3000.0])
def test_matches_reference_on_sine_and_peaks_in_its_band(frequency):
    wave = sine_after_silence(frequency)
    features = log_mel(wave)
    assert np.max(np.abs(features - reference_log_mel(wave))) < TOLERANCE

    # The band whose triangle weights the sine's FFT bin most carries the most energy.
    mel = mel_filters()
    band_of_sine = int(np.argmax(mel[:, int(round(frequency * N_FFT / SR))]))
    assert int(np.argmax(reference_mel_energy(wave)[60:].mean(axis=0))) == band_of_sine
    # In the module's output every band starts from the same silent floor log(1e-6), so
    # the band that rises most when the sine starts is the band holding the sine.
    rise = features[60:].mean(axis=0) - features[:40].mean(axis=0)
    assert int(np.argmax(rise)) == band_of_sine


@pytest.mark.parametrize("samples", [257, 400, 1000, 16000, 16159, 16160, 33333])
def test_frame_count(samples, rng):
    wave = rng.standard_normal(samples).astype(np.float32)
    features = quiet_log_mel(wave)
    assert features.shape == (1 + samples // 160, 80)


@pytest.mark.parametrize("frames", [1, 2, 3, 200, 1199])
def test_samples_for_frames_gives_exactly_that_many(frames, rng):
    samples = samples_for_frames(frames)
    assert 1 + samples // 160 == frames
    assert quiet_log_mel(rng.standard_normal(samples).astype(np.float32)).shape == (frames, 80)
    if frames > 1:
        # One sample fewer would give one frame fewer: the answer is the smallest.
        assert quiet_log_mel(rng.standard_normal(samples - 1).astype(np.float32)).shape == (frames - 1, 80)


def test_samples_for_frames_rejects_zero():
    with pytest.raises(ValueError, match="frames"):
        samples_for_frames(0)


def test_each_band_has_zero_mean(rng):
    features = log_mel(rng.standard_normal(24000).astype(np.float32))
    assert np.max(np.abs(features.mean(axis=0))) < 1e-5
    # Mean subtraction did not also flatten the variation over time.
    assert np.min(features.std(axis=0)) > 0.1


def test_all_zero_audio_gives_zeros():
    # Every band is log(1e-6) in every frame, so mean subtraction leaves zeros (up to the
    # float32 rounding of the mean of 101 equal values, ~2e-6).
    features = log_mel(np.zeros(16000, dtype=np.float32))
    assert features.shape == (101, 80)
    assert np.max(np.abs(features)) < 1e-5


def test_clipped_square_wave_is_finite():
    wave = np.where(np.arange(16000) % 80 < 40, 1.0, -1.0).astype(np.float32)
    features = log_mel(wave)
    assert features.shape == (101, 80)
    assert np.all(np.isfinite(features))
    # A 200 Hz square wave is not silence: the bands differ over time at the edges.
    assert np.max(np.abs(features)) > 0.1


@pytest.mark.parametrize("samples, frames", [(100, 1), (1, 1), (200, 2), (256, 2)])
def test_audio_shorter_than_a_window(samples, frames, rng):
    wave = rng.standard_normal(samples).astype(np.float32)
    features = quiet_log_mel(wave)
    assert features.shape == (frames, 80)
    assert np.all(np.isfinite(features))
    # Too short to reflect n_fft // 2 samples, the clip is zero-padded at both ends.
    assert np.max(np.abs(features - reference_log_mel(wave, "constant"))) < TOLERANCE


@pytest.mark.parametrize("wave", [np.zeros((2, 1600), dtype=np.float32),
                                  np.zeros(0, dtype=np.float32)],
                         ids=["two-dimensional", "empty"])
def test_bad_shapes_raise(wave):
    with pytest.raises(ValueError, match="1-D"):
        log_mel(wave)


def test_features_do_not_depend_on_the_number_of_threads(tmp_path):
    """The same bits with one BLAS thread and with several (distributed runs differ in threads)."""
    import subprocess
    import sys

    program = ("import sys, numpy as np; from src.data.features import log_mel; "
               "wave = np.random.default_rng(0).standard_normal(48000).astype(np.float32) * 0.1; "
               "np.save(sys.argv[1], log_mel(wave))")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    results = []
    for threads in ("1", "2"):
        environment = dict(os.environ, OPENBLAS_NUM_THREADS=threads, OMP_NUM_THREADS=threads)
        path = tmp_path / f"threads{threads}.npy"
        subprocess.run([sys.executable, "-c", program, str(path)], env=environment, cwd=repo, check=True, timeout=120)
        results.append(np.load(path))
    np.testing.assert_array_equal(results[0], results[1])
