"""Tests of src.data.augment on tiny generated MUSAN / RIR trees.

The MUSAN stand-ins are pure tones at whole-number frequencies, one frequency per file,
1 s long, so any crop of their repetition is still a pure tone and, over a 1 s segment,
falls on exactly one FFT bin (bin index = frequency in Hz). The spectrum of what an
augmentation added therefore tells which files were mixed in and at what power.
"""
import logging
import math
import pickle
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile
from scipy.signal import correlate, resample_poly

from src.data.audio import AudioError, crop_or_pad, read_audio, read_audio_crop, write_audio
from src.data.speed_perturb import CONTEXT, SpeedPerturb
from src.data.augment import KINDS, Augmenter, scaled_noise
from src.errors import InputError

RATE = 16000
NOISE_TONES = (250, 375)
SPEECH_TONES = tuple(1000 + 125 * i for i in range(10))
MUSIC_TONES = (4000,)
TONE_AMPLITUDE = 0.5
ECHO_DELAY = 40
DIRECT, ECHO = 0.6, -0.3


def tone(frequency, seconds=1.0, amplitude=TONE_AMPLITUDE):
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def two_tap_rir(peak_at, length=400):
    rir = np.zeros(length, dtype=np.float32)
    rir[peak_at] = DIRECT
    rir[peak_at + ECHO_DELAY] = ECHO
    return rir


def make_musan(root, categories=("noise", "speech", "music")):
    tones = {"noise": NOISE_TONES, "speech": SPEECH_TONES, "music": MUSIC_TONES}
    for category in categories:
        for index, frequency in enumerate(tones[category]):
            write_audio(root / category / f"src{index}" / "000.wav", tone(frequency))
    return str(root)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """Full material: tone MUSAN, and one two-tap RIR (peak at 13) three folders deep."""
    root = tmp_path_factory.mktemp("material")
    musan = make_musan(root / "musan_split")
    write_audio(root / "rirs" / "simulated" / "small" / "room1" / "rir1.wav", two_tap_rir(13))
    return musan, str(root / "rirs")


@pytest.fixture(scope="module")
def no_music(tmp_path_factory):
    root = tmp_path_factory.mktemp("no_music")
    return make_musan(root / "musan_split", ("noise", "speech"))


def speech(seed=0, length=RATE):
    return (0.1 * np.random.default_rng(seed).standard_normal(length)).astype(np.float32)


def power(x):
    return float(np.mean(np.square(x, dtype=np.float64)))


def tone_powers(added):
    """{frequency: power} of the tones present in ``added`` (S = RATE samples)."""
    spectrum = np.abs(np.fft.rfft(added.astype(np.float64))) / (len(added) / 2)
    present = np.flatnonzero(spectrum > 1e-3 * spectrum.max())
    return {int(k): spectrum[k] ** 2 / 2 for k in present}


def detect_kind(wave, out):
    """Which augmentation produced ``out`` from ``wave``, judged from what was added."""
    added = out.astype(np.float64) - wave
    if np.max(np.abs(added)) < 1e-6:
        return "clean"
    tones = set(tone_powers(added))
    for kind, family in (("noise", NOISE_TONES), ("babble", SPEECH_TONES), ("music", MUSIC_TONES)):
        if tones <= set(family):
            return kind
    return "reverb" if len(tones) > 100 else "unknown"


# --- mixing at a given SNR -------------------------------------------------------------

@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 7.3, 20.0])
def test_scaled_noise_reaches_requested_snr(snr_db):
    wave = speech(1)
    noise = np.random.default_rng(2).uniform(-1, 1, RATE).astype(np.float32)
    scaled = scaled_noise(wave, noise, snr_db)
    assert scaled.dtype == np.float32 and scaled.shape == wave.shape
    measured = 10 * math.log10(power(wave) / power(scaled))
    assert measured == pytest.approx(snr_db, abs=1e-3)


def test_silent_speech_or_noise_adds_nothing():
    wave, noise = speech(1), speech(2)
    silence = np.zeros(RATE, dtype=np.float32)
    np.testing.assert_array_equal(scaled_noise(wave, silence, 5.0), silence)
    np.testing.assert_array_equal(scaled_noise(silence, noise, 5.0), silence)


def test_noise_snr_through_call_is_uniform_over_range(tree):
    musan, _ = tree
    augmenter = Augmenter(musan, "", {"noise": 1})
    rng = np.random.default_rng(5)
    wave = speech(3)
    snrs = np.array([10 * math.log10(power(wave) / power(augmenter(wave, rng).astype(np.float64) - wave))
                     for _ in range(300)])
    assert snrs.min() >= -1e-3 and snrs.max() <= 15 + 1e-3
    assert snrs.min() < 1.0 and snrs.max() > 14.0
    assert abs(snrs.mean() - 7.5) < 1.0
    counts, _ = np.histogram(snrs, bins=3, range=(0, 15))
    assert counts.min() > 70


def test_custom_snr_range_is_respected(tree):
    musan, _ = tree
    augmenter = Augmenter(musan, "", {"music": 1}, music_snr=(4.0, 4.0))
    wave = speech(4)
    out = augmenter(wave, np.random.default_rng(0))
    added = out.astype(np.float64) - wave
    assert set(tone_powers(added)) == set(MUSIC_TONES)
    assert 10 * math.log10(power(wave) / power(added)) == pytest.approx(4.0, abs=1e-3)


# --- babble ------------------------------------------------------------------------------

def test_babble_talker_count_and_each_talker_snr(tree):
    musan, _ = tree
    augmenter = Augmenter(musan, "", {"babble": 1})
    rng = np.random.default_rng(11)
    wave = speech(5)
    counts = []
    for _ in range(60):
        talkers = tone_powers(augmenter(wave, rng).astype(np.float64) - wave)
        assert set(talkers) <= set(SPEECH_TONES)
        for talker_power in talkers.values():
            assert 13 - 0.01 <= 10 * math.log10(power(wave) / talker_power) <= 20 + 0.01
        counts.append(len(talkers))
    assert min(counts) == 3 and max(counts) == 8


def test_babble_count_setting(tree):
    musan, _ = tree
    augmenter = Augmenter(musan, "", {"babble": 1}, babble_count=(2, 2))
    wave = speech(6)
    rng = np.random.default_rng(0)
    for _ in range(10):
        assert len(tone_powers(augmenter(wave, rng).astype(np.float64) - wave)) == 2


# --- noise files shorter / longer than the segment ---------------------------------------

def test_long_noise_is_randomly_cropped_and_short_noise_repeated(tmp_path):
    long_noise = np.random.default_rng(7).uniform(-0.5, 0.5, 3 * RATE).astype(np.float32)
    write_audio(tmp_path / "long" / "noise" / "a" / "000.wav", long_noise)
    long_noise = read_audio(tmp_path / "long" / "noise" / "a" / "000.wav")  # as stored in 16 bits
    wave = speech(8)
    augmenter = Augmenter(str(tmp_path / "long"), "", {"noise": 1})
    starts = set()
    for seed in range(4):
        added = augmenter(wave, np.random.default_rng(seed)).astype(np.float64) - wave
        start = int(np.argmax(correlate(long_noise, added, mode="valid", method="fft")))
        window = long_noise[start:start + RATE]
        gain = np.dot(added, window) / np.dot(window, window)
        np.testing.assert_allclose(added, gain * window, atol=1e-6)
        starts.add(start)
    assert len(starts) == 4

    short = 4800
    write_audio(tmp_path / "short" / "noise" / "a" / "000.wav",
                np.random.default_rng(9).uniform(-0.5, 0.5, short))
    augmenter = Augmenter(str(tmp_path / "short"), "", {"noise": 1})
    added = augmenter(wave, np.random.default_rng(0)).astype(np.float64) - wave
    np.testing.assert_allclose(added[short:], added[:-short], atol=1e-6)
    assert np.std(added) > 1e-3


# --- reverberation -----------------------------------------------------------------------

def test_delayed_delta_rir_returns_input(tmp_path):
    rir = np.zeros(300, dtype=np.float32)
    rir[57] = 0.25
    write_audio(tmp_path / "room" / "rir.wav", rir)
    augmenter = Augmenter("", str(tmp_path), {"reverb": 1})
    wave = speech(9, 5000)
    out = augmenter(wave, np.random.default_rng(0))
    np.testing.assert_allclose(out, wave, atol=1e-6)  # unit-energy delta: scale 1


def test_two_tap_rir_gives_echo_at_its_offset(tree):
    _, rirs = tree
    augmenter = Augmenter("", rirs, {"reverb": 1})
    wave = speech(10, 3000)
    out = augmenter(wave, np.random.default_rng(0)).astype(np.float64)
    gain = 1 / math.hypot(DIRECT, ECHO)
    expected = gain * DIRECT * wave.astype(np.float64)
    expected[ECHO_DELAY:] += gain * ECHO * wave[:-ECHO_DELAY]
    np.testing.assert_allclose(out, expected, atol=2e-4)  # taps stored in 16 bits


def test_peak_is_largest_magnitude_and_earlier_taps_lead(tmp_path):
    rir = np.zeros(100, dtype=np.float32)
    rir[10], rir[30] = 0.2, -0.9  # the negative tap is the direct path
    write_audio(tmp_path / "room" / "rir.wav", rir)
    wave = speech(16, 2000)
    out = Augmenter("", str(tmp_path), {"reverb": 1})(wave, np.random.default_rng(0))
    gain = 1 / math.hypot(0.2, 0.9)
    expected = gain * -0.9 * wave.astype(np.float64)
    expected[:-20] += gain * 0.2 * wave[20:]
    np.testing.assert_allclose(out, expected, atol=2e-4)


def test_all_zero_rir_is_an_error_naming_the_file(tmp_path):
    write_audio(tmp_path / "room" / "silent.wav", np.zeros(100))
    augmenter = Augmenter("", str(tmp_path), {"reverb": 1})
    with pytest.raises(AudioError, match="silent.wav.*all zeros"):
        augmenter(speech(0), np.random.default_rng(0))


def test_rir_cache_keeps_decoded_rirs_but_is_not_pickled(tmp_path):
    path = tmp_path / "room" / "rir.wav"
    write_audio(path, two_tap_rir(5))
    augmenter = Augmenter("", str(tmp_path), {"reverb": 1}, rir_cache_size=4)
    wave = speech(11, 2000)
    first = augmenter(wave, np.random.default_rng(0))
    copy = pickle.loads(pickle.dumps(augmenter))
    path.unlink()
    np.testing.assert_array_equal(augmenter(wave, np.random.default_rng(0)), first)
    with pytest.raises(AudioError, match="rir.wav"):
        copy(wave, np.random.default_rng(0))


def test_rir_cache_evicts_least_recently_used(tmp_path):
    delta = np.zeros(50, dtype=np.float32)
    delta[3] = 0.5
    write_audio(tmp_path / "a" / "delta.wav", delta)
    write_audio(tmp_path / "b" / "echo.wav", two_tap_rir(3))
    augmenter = Augmenter("", str(tmp_path), {"reverb": 1}, rir_cache_size=1)
    rng = np.random.default_rng(1)
    wave = speech(17, 1000)

    def which():
        try:
            out = augmenter(wave, rng)
        except AudioError:
            return "unreadable"
        return "delta" if np.allclose(out, wave, atol=1e-6) else "echo"

    used = [which() for _ in range(10)]
    assert set(used) == {"delta", "echo"}
    for path in tmp_path.rglob("*.wav"):
        path.unlink()
    assert set(which() for _ in range(20)) == {used[-1], "unreadable"}


def test_rir_list_is_used_instead_of_scanning_the_folder(tmp_path):
    delta = np.zeros(50, dtype=np.float32)
    delta[3] = 0.5
    write_audio(tmp_path / "a" / "delta.wav", delta)
    write_audio(tmp_path / "b" / "echo.wav", two_tap_rir(3))  # present but not listed
    (tmp_path / "rir_list.txt").write_text("a/delta.wav\n\n")
    augmenter = Augmenter("", str(tmp_path), {"reverb": 1})
    assert augmenter.files["reverb"] == (str(tmp_path / "a" / "delta.wav"),)
    rng = np.random.default_rng(2)
    wave = speech(18, 1000)
    for _ in range(10):
        np.testing.assert_allclose(augmenter(wave, rng), wave, atol=1e-6)


def test_rir_list_entry_without_a_file_is_an_error_naming_the_line(tmp_path):
    write_audio(tmp_path / "a" / "delta.wav", two_tap_rir(3))
    (tmp_path / "rir_list.txt").write_text("a/delta.wav\nb/gone.wav\n")
    with pytest.raises(InputError, match=r"rir_list\.txt:2: b/gone\.wav not found in "):
        Augmenter("", str(tmp_path), {"reverb": 1})


# --- shapes, choice and weights ----------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_keeps_length_and_returns_float32(tree, kind):
    musan, rirs = tree
    augmenter = Augmenter(musan, rirs, {kind: 1})
    wave = np.random.default_rng(1).uniform(-0.3, 0.3, 12345)  # float64 in
    out = augmenter(wave, np.random.default_rng(2))
    assert out.dtype == np.float32 and out.shape == (12345,)
    assert out is not wave


@pytest.mark.parametrize("kind", KINDS)
def test_weight_on_one_kind_always_gives_that_kind(tree, kind):
    musan, rirs = tree
    augmenter = Augmenter(musan, rirs, {kind: 2.5})
    rng = np.random.default_rng(3)
    wave = speech(12)
    for _ in range(15):
        assert detect_kind(wave, augmenter(wave, rng)) == kind


def test_from_config_reads_paths_and_weights(tree):
    musan, rirs = tree
    config = SimpleNamespace(musan_path=musan, rir_path=rirs, aug_clean=0.0, aug_reverb=1.0,
                             aug_noise=3.0, aug_babble=0.0, aug_music=0.0, noise_snr="0,15",
                             babble_snr="13,20", babble_talkers="3,8", music_snr="5,15")
    augmenter = Augmenter.from_config(config)
    assert augmenter.probabilities == {"reverb": 0.25, "noise": 0.75}
    assert augmenter.snr_ranges == {"noise": (0.0, 15.0), "babble": (13.0, 20.0), "music": (5.0, 15.0)}
    assert augmenter.babble_count == (3, 8)


def test_snr_and_talker_ranges_come_from_the_settings(tree):
    from src.config import load_config

    musan, rirs = tree
    config, _ = load_config([f"--musan_path={musan}", f"--rir_path={rirs}", "--noise_snr=5,20",
                             "--babble_snr=15,20", "--babble_talkers=1,3", "--music_snr=10,10"])
    augmenter = Augmenter.from_config(config)
    assert augmenter.snr_ranges == {"noise": (5.0, 20.0), "babble": (15.0, 20.0), "music": (10.0, 10.0)}
    assert augmenter.babble_count == (1, 3)
    rng = np.random.default_rng(8)
    wave = speech(12)
    for _ in range(10):
        mixed = augmenter.apply(wave, "noise", rng)
        snr = 10 * np.log10(np.mean(wave.astype(np.float64) ** 2) / np.mean((mixed - wave).astype(np.float64) ** 2))
        assert 5.0 - 1e-6 <= snr <= 20.0 + 1e-6


def test_choice_frequencies_follow_weights(tree):
    musan, rirs = tree
    weights = {"clean": 1, "reverb": 2, "noise": 3, "babble": 0, "music": 4}
    augmenter = Augmenter(musan, rirs, weights)
    rng = np.random.default_rng(4)
    draws = 20000
    chosen = [augmenter.choose(rng) for _ in range(draws)]
    for kind, weight in weights.items():
        expected = weight / 10
        tolerance = 4 * math.sqrt(expected * (1 - expected) / draws) + 1e-9
        assert abs(chosen.count(kind) / draws - expected) <= tolerance, kind


def test_missing_category_is_warned_once_and_skipped(tree, no_music, caplog):
    _, rirs = tree
    with caplog.at_level(logging.WARNING, logger="src.data.augment"):
        augmenter = Augmenter(no_music, rirs)
        rng = np.random.default_rng(0)
        wave = speech(13)
        kinds = [detect_kind(wave, augmenter(wave, rng)) for _ in range(80)]
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1
    assert "music" in warnings[0] and no_music in warnings[0]
    assert augmenter.probabilities == {kind: 0.25 for kind in ("clean", "reverb", "noise", "babble")}
    assert "music" not in kinds and set(kinds) == {"clean", "reverb", "noise", "babble"}
    with pytest.raises(ValueError, match="'music' is not available"):
        augmenter.apply(wave, "music", rng)


def test_unset_or_missing_paths_are_warned_by_name(tree, tmp_path, caplog):
    musan, _ = tree
    missing = str(tmp_path / "no_such_rirs")
    with caplog.at_level(logging.WARNING, logger="src.data.augment"):
        augmenter = Augmenter(musan, missing, {"reverb": 1, "noise": 1})
    (warning,) = [record.getMessage() for record in caplog.records]
    assert "rir_path" in warning and missing in warning and "reverb" in warning
    assert augmenter.probabilities == {"noise": 1.0}
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="src.data.augment"):
        Augmenter("", "", {"noise": 1, "music": 0})
    messages = " ".join(record.getMessage() for record in caplog.records)
    assert "musan_path is not set" in messages and "music" not in messages


def test_no_material_makes_a_no_op(caplog):
    with caplog.at_level(logging.WARNING, logger="src.data.augment"):
        augmenter = Augmenter("", "")
    assert not augmenter.enabled
    assert any("pass through unchanged" in record.getMessage() for record in caplog.records)
    rng = np.random.default_rng(0)
    wave = speech(14)
    for _ in range(5):
        np.testing.assert_array_equal(augmenter(wave, rng), wave)


def test_fixed_seed_is_deterministic_including_after_pickling(tree):
    musan, rirs = tree
    augmenter = Augmenter(musan, rirs)
    wave = speech(15)

    def run(aug, seed):
        rng = np.random.default_rng(seed)
        return [aug(wave, rng) for _ in range(12)]

    first = run(augmenter, 21)
    for again in (run(augmenter, 21), run(pickle.loads(pickle.dumps(augmenter)), 21)):
        for a, b in zip(first, again):
            np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, run(augmenter, 22)))


# --- bad arguments -----------------------------------------------------------------------

@pytest.mark.parametrize("arguments, message", [
    ({"weights": {"echo": 1}}, "unknown kind.*echo"),
    ({"weights": {"noise": -1}}, "noise is -1.0"),
    ({"noise_snr": (15, 0)}, "noise_snr"),
    ({"babble_count": (0, 3)}, "babble_count"),
    ({"babble_count": (2.5, 3)}, "whole numbers"),
])
def test_bad_settings_are_rejected(arguments, message):
    with pytest.raises(InputError, match=message):
        Augmenter("", "", **arguments)


def test_non_1d_wave_is_rejected(tree):
    musan, _ = tree
    with pytest.raises(ValueError, match=r"shape \(2, 10\)"):
        Augmenter(musan, "")(np.zeros((2, 10), dtype=np.float32), np.random.default_rng(0))


@pytest.mark.parametrize("seconds, rate, truncate", [(2.0, 16000, False), (0.5, 16000, False), (2.0, 8000, False),
                                                     (2.0, 16000, True)])
def test_reading_only_the_crop_gives_the_crop_of_the_whole_file(tmp_path, seconds, rate, truncate):
    # Long 16 kHz WAV: only the crop is read; short (repeated), another rate (resampled) and a
    # truncated file are read whole. Every case must give the same samples and rng draws.
    path = tmp_path / "chunk.wav"
    wave = 0.3 * np.random.default_rng(4).standard_normal(int(seconds * rate))
    soundfile.write(path, wave, rate, subtype="PCM_16")
    if truncate:
        path.write_bytes(path.read_bytes()[:-4000])
    for seed in range(5):
        expected_rng, rng = np.random.default_rng(seed), np.random.default_rng(seed)
        expected = crop_or_pad(read_audio(path, allow_resample=True), 16000, expected_rng)
        np.testing.assert_array_equal(read_audio_crop(path, 16000, rng, allow_resample=True), expected)
        assert rng.integers(1 << 30) == expected_rng.integers(1 << 30)


def test_a_crop_with_non_finite_samples_is_refused(tmp_path):
    path = tmp_path / "bad.wav"
    wave = np.zeros(32000, np.float32)
    wave[:] = np.nan
    soundfile.write(path, wave, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"bad.wav: has 8000 non-finite samples"):
        read_audio_crop(path, 8000, np.random.default_rng(0))


def test_speed_perturbation_with_its_filter_designed_once_equals_resample_poly():
    speed = SpeedPerturb((1.0, 0.9, 1.1), 1.0)
    wave = (0.1 * np.random.default_rng(2).standard_normal(40000)).astype(np.float32)
    for index, factor in enumerate(speed.factors):
        ratio = speed.ratios[index]
        piece = wave[:speed.source_samples(32000, index)]
        if index == 0:
            assert speed.stretch(piece, 32000, index) is piece
            continue
        start = CONTEXT * ratio.denominator // ratio.numerator
        expected = resample_poly(piece, ratio.denominator, ratio.numerator)[start:start + 32000].astype(np.float32)
        np.testing.assert_array_equal(speed.stretch(piece, 32000, index), expected)
        assert len(piece) == math.ceil(32000 * factor) + 2 * CONTEXT
