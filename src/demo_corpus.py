"""The built-in synthetic speaker corpus used by the demo.

Generates speech-like audio for invented speakers in the VoxCeleb layout, so the whole
pipeline (training, evaluation, export) can be tried without downloading anything::

    <out_dir>/train/wav/<spk>/<video>/<nnnnn>.wav    <out_dir>/train.txt
    <out_dir>/eval/wav/<spk>/<video>/<nnnnn>.wav     <out_dir>/eval.txt  (veri_test2 format)

Each speaker is a source-filter voice: a glottal pulse train (with jitter, shimmer and
aspiration noise) shaped by a speaker-specific spectral tilt and passed through formant
resonators for a small set of vowel, nasal and fricative phones. Speakers differ in pitch
and intonation range, vocal-tract length (all formants scaled), per-vowel formant offsets
("accent"), formant bandwidths, a pharyngeal anti-resonance, spectral tilt, breathiness,
jitter/shimmer, consonant strength and speaking rate. Utterances are
sequences of random words with pitch contours and pauses. Every speaker is recorded in
several sessions ("videos") whose channels differ (microphone tilt and resonance,
bandwidth, background noise, level), so telling speakers apart needs more than a
long-term spectrum.

Everything is drawn from ``numpy.random.Generator`` streams keyed by the seed, the
speaker index and the utterance index: the same arguments give byte-identical files.

The command line is ``python scripts/make_demo_corpus.py --out_dir DIR``.
"""
import os
import shutil
import string
import time
from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, lfilter, sosfilt

from src.data.audio import SAMPLE_RATE, write_audio
from src.errors import InputError
from src.fileio import write_lines

# Random streams: the first key after the seed says what a generator is used for.
_SPEAKER_STREAM, _SESSION_STREAM, _UTTERANCE_STREAM, _TRIAL_STREAM = range(4)

# Vowels of a neutral adult vocal tract: formant frequencies F1..F4 in Hz.
_VOWEL_FORMANTS = np.array([
    [280.0, 2250.0, 2900.0, 3700.0],   # i
    [450.0, 1950.0, 2600.0, 3600.0],   # e
    [750.0, 1250.0, 2500.0, 3500.0],   # a
    [480.0, 900.0, 2450.0, 3400.0],    # o
    [320.0, 850.0, 2300.0, 3300.0],    # u
    [520.0, 1500.0, 2500.0, 3500.0],   # schwa
])
_FORMANT_BANDWIDTHS = np.array([70.0, 100.0, 140.0, 200.0])  # Hz, scaled per speaker
_NASAL_FORMANTS = np.array([250.0, 1100.0, 2300.0, 3300.0])
_NASAL_ZERO_HZ = 1400.0
_FRICATIVE_BANDS = np.array([[4200.0, 7400.0], [2300.0, 4600.0], [1200.0, 7000.0]])  # s, sh, f
_FRICATIVE_LEVELS = np.array([0.30, 0.35, 0.12])  # RMS relative to a vowel
_NASAL_LEVEL = 0.35
_VOWEL, _NASAL, _FRICATIVE = range(3)
_TAPER = 160  # samples (10 ms) of cross-fade on each side of a phone


class CorpusSettingsError(InputError):
    """Corpus settings that cannot be honoured (a size out of range, an occupied folder)."""


@dataclass(frozen=True)
class Speaker:
    """Voice parameters of one synthetic speaker (frequencies in Hz, durations in s)."""
    f0_median: float          # median pitch
    f0_range: float           # depth of the word pitch accents, semitones
    tract_scale: float        # multiplies every formant (shorter tract -> higher)
    vowel_formants: np.ndarray  # (6, 4) this speaker's vowel formants
    bandwidth_scale: float    # multiplies the formant bandwidths
    glottal_pole: float       # pole radius of the glottal pulse filter (higher -> darker)
    tilt_pole: float          # extra one-pole low-pass on the voice (higher -> less treble)
    consonant_db: float       # loudness of nasals and fricatives relative to vowels
    breathiness: float        # aspiration noise relative to the voiced source
    jitter: float             # relative period perturbation (std)
    shimmer: float            # relative pulse amplitude perturbation (std)
    phone_seconds: float      # mean vowel duration (speaking rate)
    fricative_scale: float    # multiplies the fricative bands
    pharynx_zero_hz: float    # anti-resonance of the lower pharynx, in every voiced phone
    pharynx_zero_bandwidth: float  # its bandwidth in Hz


@dataclass(frozen=True)
class Session:
    """Recording conditions of one session ("video") of a speaker."""
    pitch_shift: float        # semitones added to the speaker's pitch
    rate_scale: float         # multiplies phone durations
    tilt: float               # first-order channel coefficient: y[n] = x[n] + tilt * x[n-1]
    resonance_hz: float       # centre of a microphone/room resonance
    resonance_db: float       # its gain (negative = notch)
    bandwidth_hz: float       # low-pass edge of the channel
    snr_db: float             # speech-to-background-noise ratio
    noise_pole: float         # one-pole low-pass colouring the background noise (0 = white)
    gain_db: float            # recording level


def speaker_id(index):
    """VoxCeleb-like id of the ``index``-th speaker of the corpus (0-based): ``id9xxxx``."""
    return f"id9{index + 1:04d}"


def draw_speaker(seed, index):
    """Voice of the ``index``-th speaker of a corpus generated with ``seed``."""
    rng = np.random.default_rng([seed, _SPEAKER_STREAM, index])
    low_voice = rng.random() < 0.5
    f0_median = float(np.exp(rng.uniform(np.log(95.0), np.log(145.0)) if low_voice
                             else rng.uniform(np.log(170.0), np.log(250.0))))
    tract_scale = float(rng.uniform(0.82, 1.0) if low_voice else rng.uniform(1.0, 1.2))
    accent = np.exp(rng.normal(0.0, 0.09, size=_VOWEL_FORMANTS.shape))
    # F3 and F4 depend more on the speaker than on the vowel: shift them together.
    accent[:, 2:] *= np.exp(rng.normal(0.0, 0.10, size=2))
    return Speaker(
        f0_median=f0_median,
        f0_range=float(rng.uniform(1.0, 4.0)),
        tract_scale=tract_scale,
        vowel_formants=_VOWEL_FORMANTS * tract_scale * accent,
        bandwidth_scale=float(rng.uniform(0.8, 1.6)),
        glottal_pole=float(rng.uniform(0.85, 0.98)),
        tilt_pole=float(rng.uniform(0.0, 0.75)),
        consonant_db=float(rng.uniform(-5.0, 5.0)),
        breathiness=float(rng.uniform(0.02, 0.35)),
        jitter=float(rng.uniform(0.003, 0.02)),
        shimmer=float(rng.uniform(0.02, 0.10)),
        phone_seconds=float(rng.uniform(0.08, 0.15)),
        fricative_scale=float(tract_scale * np.exp(rng.normal(0.0, 0.06))),
        pharynx_zero_hz=float(rng.uniform(3200.0, 5800.0)),
        pharynx_zero_bandwidth=float(rng.uniform(300.0, 900.0)),
    )


def draw_session(seed, speaker_index, session_index):
    """Recording conditions of one session of one speaker."""
    rng = np.random.default_rng([seed, _SESSION_STREAM, speaker_index, session_index])
    return Session(
        pitch_shift=float(rng.uniform(-1.0, 1.0)),
        rate_scale=float(rng.uniform(0.9, 1.1)),
        tilt=float(rng.uniform(-0.25, 0.25)),
        resonance_hz=float(np.exp(rng.uniform(np.log(300.0), np.log(4000.0)))),
        resonance_db=float(rng.uniform(-3.0, 3.0)),
        bandwidth_hz=float(rng.uniform(6000.0, 7800.0)),
        snr_db=float(rng.uniform(28.0, 40.0)),
        noise_pole=float(rng.uniform(0.5, 0.97)),
        gain_db=float(rng.uniform(-2.0, 2.0)),
    )


def _resonator(freq_hz, bandwidth_hz):
    """Second-order section (6,) of a resonance with unit gain at 0 Hz."""
    radius = np.exp(-np.pi * bandwidth_hz / SAMPLE_RATE)
    a1 = -2.0 * radius * np.cos(2.0 * np.pi * freq_hz / SAMPLE_RATE)
    a2 = radius * radius
    return np.array([1.0 + a1 + a2, 0.0, 0.0, 1.0, a1, a2])


def _antiresonator(freq_hz, bandwidth_hz):
    """Second-order section (6,) of a spectral zero with unit gain at 0 Hz."""
    _, _, _, _, b1, b2 = _resonator(freq_hz, bandwidth_hz)
    dc_gain = 1.0 + b1 + b2
    return np.array([1.0 / dc_gain, b1 / dc_gain, b2 / dc_gain, 1.0, 0.0, 0.0])


def _phone_filters(speaker):
    """Filters of every phone of ``speaker``: a list of (kind, sos (K, 6), level)."""
    bandwidths = _FORMANT_BANDWIDTHS * speaker.bandwidth_scale
    pharynx = _antiresonator(speaker.pharynx_zero_hz, speaker.pharynx_zero_bandwidth)
    phones = [(_VOWEL, np.stack([_resonator(f, b) for f, b in zip(formants, bandwidths)]
                                + [pharynx]), 1.0)
              for formants in speaker.vowel_formants]
    nasal = [_resonator(f, b) for f, b in zip(_NASAL_FORMANTS * speaker.tract_scale, bandwidths)]
    nasal += [_antiresonator(_NASAL_ZERO_HZ * speaker.tract_scale, 150.0), pharynx]
    consonant_gain = 10.0 ** (speaker.consonant_db / 20.0)
    phones.append((_NASAL, np.stack(nasal), _NASAL_LEVEL * consonant_gain))
    nyquist_margin = 0.49 * SAMPLE_RATE
    for band, level in zip(_FRICATIVE_BANDS, _FRICATIVE_LEVELS):
        edges = np.minimum(band * speaker.fricative_scale, nyquist_margin)
        phones.append((_FRICATIVE, butter(2, edges, btype="bandpass", fs=SAMPLE_RATE,
                                          output="sos"), level * consonant_gain))
    return phones


def _plan_utterance(speaker, session, phones, rng, num_samples):
    """Random words from a short initial pause until at least ``num_samples`` samples.

    Returns (segments, accents): segments is a list of (phone index or -1 for a pause,
    start sample, length in samples), the last one may run past ``num_samples`` (the
    recording cuts it); accents is a list of (sample, semitones) pitch targets relative
    to the speaker's median.
    """
    kinds = np.array([kind for kind, _, _ in phones])
    vowels, consonants = np.flatnonzero(kinds == _VOWEL), np.flatnonzero(kinds != _VOWEL)
    unit = speaker.phone_seconds * session.rate_scale * SAMPLE_RATE
    position = int(rng.uniform(0.02, 0.15) * SAMPLE_RATE)
    segments, accents = [], []
    while position < num_samples:
        word = []
        for _ in range(rng.integers(1, 4)):
            if rng.random() < 0.7:
                word.append(rng.choice(consonants))
            word.append(rng.choice(vowels))
            if rng.random() < 0.3:
                word.append(rng.choice(consonants))
        lengths = [int(unit * rng.uniform(0.6, 1.5) * (1.0 if kinds[p] == _VOWEL else 0.7))
                   for p in word]
        start = position
        for phone, length in zip(word, lengths):
            segments.append((phone, position, length))
            position += length
        peak = start + int(rng.uniform(0.2, 0.6) * (position - start))
        accents += [(start, rng.uniform(-0.5, 0.5) * speaker.f0_range),
                    (peak, rng.uniform(0.3, 1.0) * speaker.f0_range),
                    (position, rng.uniform(-1.0, 0.0) * speaker.f0_range)]
        pause_seconds = rng.uniform(0.1, 0.3) if rng.random() < 0.25 else rng.uniform(0.0, 0.04)
        gap = int(pause_seconds * SAMPLE_RATE * session.rate_scale)
        segments.append((-1, position, gap))
        position += gap
    return segments, accents


def _pitch_contour(speaker, session, accents, num_samples, rng):
    """Pitch in Hz for every sample (num_samples,): word accents plus declination."""
    at, semitones = np.array(accents).T
    contour = np.interp(np.arange(num_samples), at, semitones)
    declination = np.linspace(0.5, -0.5, num_samples) * rng.uniform(1.0, 3.0)
    semitones = contour + declination + session.pitch_shift + rng.uniform(-0.5, 0.5)
    return speaker.f0_median * 2.0 ** (semitones / 12.0)


def _glottal_source(speaker, f0, voiced, rng):
    """Voiced excitation (S,): jittered, shimmered pulses, glottal shaping, aspiration."""
    nominal_period = np.floor(np.cumsum(f0) / SAMPLE_RATE).astype(np.int64)
    period_jitter = rng.normal(0.0, speaker.jitter, size=nominal_period[-1] + 2)
    phase = np.cumsum(f0 * (1.0 + period_jitter[nominal_period])) / SAMPLE_RATE
    cycle = np.floor(phase).astype(np.int64)
    pulse_at = np.flatnonzero(np.diff(cycle, prepend=cycle[0]) > 0)
    amplitudes = np.maximum(1.0 + rng.normal(0.0, speaker.shimmer, size=len(pulse_at)), 0.0)
    pulses = np.zeros(len(f0))
    pulses[pulse_at] = amplitudes
    pole = speaker.glottal_pole
    glottal = lfilter([1.0, -1.0], [1.0, -2.0 * pole, pole * pole], pulses * voiced)
    glottal = lfilter([1.0 - speaker.tilt_pole], [1.0, -speaker.tilt_pole], glottal)
    level = np.sqrt(np.mean(glottal[voiced > 0] ** 2))
    aspiration = lfilter([1.0, -0.9], [1.0], rng.normal(size=len(f0)))
    open_phase = 0.6 + 0.4 * np.cos(2.0 * np.pi * phase)
    return glottal + speaker.breathiness * level * aspiration * open_phase * voiced


def _crossfade_window(length):
    """Gain (length + 2 * _TAPER,) rising and falling over 2 * _TAPER samples (sums to 1)."""
    ramp = np.sin(0.5 * np.pi * (np.arange(2 * _TAPER) + 0.5) / (2 * _TAPER)) ** 2
    window = np.ones(length + 2 * _TAPER)
    edge = min(2 * _TAPER, len(window) // 2)
    window[:edge] = ramp[:edge]
    window[len(window) - edge:] = ramp[:edge][::-1]
    return window


def _apply_channel(session, speech, rng):
    """Session channel (tilt, resonance, band limit) plus coloured background noise."""
    out = lfilter([1.0, session.tilt], [1.0], speech)
    out = sosfilt(_peaking_section(session.resonance_hz, session.resonance_db), out)
    out = sosfilt(butter(4, session.bandwidth_hz, fs=SAMPLE_RATE, output="sos"), out)
    noise = lfilter([1.0], [1.0, -session.noise_pole], rng.normal(size=len(out)))
    speech_rms = np.sqrt(np.mean(out ** 2))
    noise *= speech_rms / np.sqrt(np.mean(noise ** 2)) * 10.0 ** (-session.snr_db / 20.0)
    return out + noise


def _peaking_section(freq_hz, gain_db, quality=1.4):
    """Second-order section (1, 6) boosting or cutting a band around ``freq_hz``."""
    amplitude = 10.0 ** (gain_db / 40.0)
    omega = 2.0 * np.pi * freq_hz / SAMPLE_RATE
    alpha = np.sin(omega) / (2.0 * quality)
    b = [1.0 + alpha * amplitude, -2.0 * np.cos(omega), 1.0 - alpha * amplitude]
    a = [1.0 + alpha / amplitude, -2.0 * np.cos(omega), 1.0 - alpha / amplitude]
    return np.array([b + a]) / a[0]


def synthesize_utterance(speaker, session, rng, seconds):
    """One utterance of ``speaker`` in ``session``: float32 samples (round(seconds * 16000),).

    ``rng`` draws the words, pitch contour and noise. The last word is cut off where the
    recording ends. The result is scaled to -26 dBFS RMS plus the session gain and a
    random +-1 dB, and never peaks above 0.9.
    """
    num_samples = int(round(seconds * SAMPLE_RATE))
    phones = _phone_filters(speaker)
    segments, accents = _plan_utterance(speaker, session, phones, rng, num_samples)
    span = max(num_samples, max(start + length for _, start, length in segments))
    voiced = np.zeros(span)
    for phone, start, length in segments:
        if phone >= 0 and phones[phone][0] != _FRICATIVE:
            voiced[start:start + length] = 1.0
    f0 = _pitch_contour(speaker, session, accents, span, rng)
    source = np.pad(_glottal_source(speaker, f0, voiced, rng), _TAPER)
    speech = np.zeros(span + 2 * _TAPER)
    for phone, start, length in segments:
        if phone < 0:
            continue
        kind, sos, level = phones[phone]
        if kind == _FRICATIVE:
            excitation = rng.normal(size=length + 2 * _TAPER)
        else:
            excitation = source[start:start + length + 2 * _TAPER]
        sound = sosfilt(sos, excitation)
        core = sound[_TAPER:_TAPER + length]
        level *= 10.0 ** (rng.uniform(-2.0, 2.0) / 20.0) / (np.sqrt(np.mean(core ** 2)) + 1e-12)
        speech[start:start + length + 2 * _TAPER] += level * sound * _crossfade_window(length)
    speech = speech[_TAPER:_TAPER + num_samples]
    speech[-_TAPER:] *= np.linspace(1.0, 0.0, _TAPER)
    wave = _apply_channel(session, speech, rng)
    target_db = -26.0 + session.gain_db + rng.uniform(-1.0, 1.0)
    wave *= 10.0 ** (target_db / 20.0) / (np.sqrt(np.mean(wave ** 2)) + 1e-12)
    peak = np.max(np.abs(wave))
    if peak > 0.9:
        wave *= 0.9 / peak
    return wave.astype(np.float32)


def _video_id(seed, speaker_index, session_index):
    """YouTube-like 11-character folder name of a session."""
    rng = np.random.default_rng([seed, _SESSION_STREAM, speaker_index, session_index, 1])
    alphabet = np.array(list(string.ascii_letters + string.digits + "-_"))
    return "".join(rng.choice(alphabet, size=11))


def _write_speaker(root, seed, speaker_index, num_utterances, num_sessions, seconds_range):
    """Write all utterances of one speaker under ``root``; return (relative paths, seconds)."""
    speaker = draw_speaker(seed, speaker_index)
    spk = speaker_id(speaker_index)
    paths, total_seconds = [], 0.0
    by_session = np.array_split(np.arange(num_utterances), min(num_sessions, num_utterances))
    for session_index, utterance_indices in enumerate(by_session):
        session = draw_session(seed, speaker_index, session_index)
        video = _video_id(seed, speaker_index, session_index)
        for number, utterance_index in enumerate(utterance_indices, start=1):
            rng = np.random.default_rng([seed, _UTTERANCE_STREAM, speaker_index, utterance_index])
            seconds = rng.uniform(*seconds_range)
            wave = synthesize_utterance(speaker, session, rng, seconds)
            relative = f"{spk}/{video}/{number:05d}.wav"
            write_audio(os.path.join(root, relative), wave, SAMPLE_RATE)
            paths.append(relative)
            total_seconds += len(wave) / SAMPLE_RATE
    return paths, total_seconds


def make_trials(utterances_by_speaker, seed):
    """Verification trials over held-out utterances: list of (target, utt_a, utt_b).

    Every same-speaker pair is a target trial; as many different-speaker pairs are drawn
    without replacement (all of them if there are fewer). Sorted by (utt_a, utt_b),
    with utt_a < utt_b.
    """
    utterances, owners = [], []
    for owner, paths in enumerate(utterances_by_speaker):
        utterances += sorted(paths)
        owners += [owner] * len(paths)
    owners = np.array(owners)
    first, second = np.triu_indices(len(utterances), k=1)
    same = owners[first] == owners[second]
    targets = np.flatnonzero(same)
    candidates = np.flatnonzero(~same)
    rng = np.random.default_rng([seed, _TRIAL_STREAM])
    chosen = rng.choice(candidates, size=min(len(targets), len(candidates)), replace=False)
    trials = [(bool(same[k]), *sorted((utterances[first[k]], utterances[second[k]])))
              for k in np.concatenate([targets, chosen])]
    return sorted(trials, key=lambda trial: (trial[1], trial[2]))


_MAX_EVAL_UTTERANCES = 4000  # trials are drawn from all pairs of held-out utterances


def _check_settings(num_train_speakers, num_eval_speakers, utterances_per_speaker,
                    eval_utterances_per_speaker, sessions_per_speaker, seed,
                    min_seconds, max_seconds):
    """Raise CorpusSettingsError naming the first setting that is out of range."""
    minimums = {"num_train_speakers": (num_train_speakers, 1),
                "num_eval_speakers": (num_eval_speakers, 2),
                "utterances_per_speaker": (utterances_per_speaker, 1),
                "eval_utterances_per_speaker": (eval_utterances_per_speaker, 2),
                "sessions_per_speaker": (sessions_per_speaker, 1),
                "seed": (seed, 0)}
    for name, (value, minimum) in minimums.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise CorpusSettingsError(f"{name} must be an integer, got {value!r}")
        if value < minimum:
            raise CorpusSettingsError(f"{name} must be >= {minimum}, got {value}")
    if num_train_speakers + num_eval_speakers > 9999:
        raise CorpusSettingsError(f"at most 9999 speakers in total (ids id90001-id99999), got "
                                  f"{num_train_speakers + num_eval_speakers}")
    if num_eval_speakers * eval_utterances_per_speaker > _MAX_EVAL_UTTERANCES:
        raise CorpusSettingsError(f"at most {_MAX_EVAL_UTTERANCES} held-out utterances, got "
                                  f"{num_eval_speakers} x {eval_utterances_per_speaker}")
    if not 1.0 <= min_seconds <= max_seconds:
        raise CorpusSettingsError(f"need 1 <= min_seconds <= max_seconds, got min_seconds="
                                  f"{min_seconds}, max_seconds={max_seconds}")


def _prepare_output(out_dir, overwrite):
    """Create ``out_dir``; refuse (or, with ``overwrite``, remove) an earlier corpus in it."""
    names = ["train", "eval", "train.txt", "eval.txt"]
    existing = [name for name in names if os.path.lexists(os.path.join(out_dir, name))]
    if existing and not overwrite:
        raise CorpusSettingsError(f"{out_dir}: already holds {', '.join(existing)}; "
                                  f"choose another folder or pass overwrite=True (--overwrite)")
    for name in existing:
        path = os.path.join(out_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    os.makedirs(out_dir, exist_ok=True)


def generate_demo_corpus(out_dir, num_train_speakers=40, num_eval_speakers=10,
                         utterances_per_speaker=20, seed=0, eval_utterances_per_speaker=10,
                         sessions_per_speaker=4, min_seconds=2.0, max_seconds=5.0,
                         overwrite=False):
    """Write the synthetic corpus to ``out_dir`` and return a summary dict.

    Train speakers ``id90001...`` get ``utterances_per_speaker`` utterances each; the
    following ``num_eval_speakers`` held-out speakers get ``eval_utterances_per_speaker``.
    Utterance lengths are uniform in [min_seconds, max_seconds]. Summary keys:
    ``train``/``eval`` -> {speakers, utterances, hours}, ``eval`` also {trials,
    target_trials}, and ``seconds`` (generation time).
    """
    _check_settings(num_train_speakers, num_eval_speakers, utterances_per_speaker,
                    eval_utterances_per_speaker, sessions_per_speaker, seed,
                    min_seconds, max_seconds)
    out_dir = os.fspath(out_dir)
    _prepare_output(out_dir, overwrite)
    started = time.perf_counter()
    splits = {"train": (range(num_train_speakers), utterances_per_speaker),
              "eval": (range(num_train_speakers, num_train_speakers + num_eval_speakers),
                       eval_utterances_per_speaker)}
    summary, paths = {}, {}
    for split, (speaker_indices, num_utterances) in splits.items():
        paths[split], seconds = [], 0.0
        for index in speaker_indices:
            written, spoken = _write_speaker(os.path.join(out_dir, split, "wav"), seed, index,
                                             num_utterances, sessions_per_speaker,
                                             (min_seconds, max_seconds))
            paths[split].append(written)
            seconds += spoken
        summary[split] = {"speakers": len(paths[split]),
                          "utterances": sum(len(written) for written in paths[split]),
                          "hours": seconds / 3600.0}
    write_lines(os.path.join(out_dir, "train.txt"),
                sorted(f"{path.split('/')[0]} {path}" for written in paths["train"]
                       for path in written))
    trials = make_trials(paths["eval"], seed)
    write_lines(os.path.join(out_dir, "eval.txt"),
                [f"{int(target)} {utt_a} {utt_b}" for target, utt_a, utt_b in trials])
    summary["eval"].update(trials=len(trials), target_trials=sum(t[0] for t in trials))
    summary["seconds"] = time.perf_counter() - started
    return summary


def format_summary(summary, out_dir):
    """Human-readable multi-line description of a :func:`generate_demo_corpus` summary."""
    train, held_out = summary["train"], summary["eval"]
    return "\n".join([
        f"demo corpus written to {out_dir} in {summary['seconds']:.1f} s",
        f"  train: {train['speakers']} speakers, {train['utterances']} utterances, "
        f"{train['hours']:.2f} h -> train.txt, train/wav",
        f"  eval:  {held_out['speakers']} speakers, {held_out['utterances']} utterances, "
        f"{held_out['hours']:.2f} h, {held_out['trials']} trials "
        f"({held_out['target_trials']} target) -> eval.txt, eval/wav",
    ])
