"""A simple measure of whether a waveform holds enough speech to describe a speaker.

The waveform (S,) float32 at ``SAMPLE_RATE`` Hz is cut into consecutive, non-overlapping
frames of ``FRAME_SECONDS`` (the last one may be shorter). A frame is *active* when its
RMS level, in dB relative to full scale (an RMS of 1.0 is 0 dBFS), is both

- at least ``ABSOLUTE_FLOOR_DBFS`` (quieter frames are silence, dither or hum), and
- at most ``RELATIVE_RANGE_DB`` below the loudest frame of the waveform (so the pauses
  of a loud recording do not count as speech).

Audio is *usable* when it lasts at least ``MIN_DURATION_SECONDS`` and its active frames
add up to at least ``MIN_ACTIVE_SECONDS``. The measure is energy only: it cannot tell
speech from loud noise, it catches silence, near-silence and clips too short to carry a
voice. With these values every utterance of the real-speech sets used for development
(quiet speakers included) is usable, while digital silence, noise at -70 dBFS and a
0.05 s clip are not.
"""
import logging
from dataclasses import dataclass

import numpy as np

from src.data.audio import SAMPLE_RATE, AudioError

FRAME_SECONDS = 0.025          # s, length of one analysis frame (400 samples at 16 kHz)
ABSOLUTE_FLOOR_DBFS = -60.0    # dBFS, RMS level below which a frame is silent
RELATIVE_RANGE_DB = 40.0       # dB, how far below the loudest frame an active frame may be
MIN_DURATION_SECONDS = 0.5     # s, shortest usable audio
MIN_ACTIVE_SECONDS = 0.25      # s, least active speech in usable audio

FRAME_SAMPLES = int(round(FRAME_SECONDS * SAMPLE_RATE))
logger = logging.getLogger(__name__)
RULE = (f"active = {1000 * FRAME_SECONDS:g} ms frames above {ABSOLUTE_FLOOR_DBFS:g} dBFS and "
        f"within {RELATIVE_RANGE_DB:g} dB of the loudest frame")


class SpeechContentError(AudioError):
    """Audio that is readable but too short or too silent for the task at hand."""


@dataclass(frozen=True)
class SpeechContent:
    """Duration and active speech of a waveform, both in seconds."""
    duration_seconds: float
    active_seconds: float

    @property
    def has_speech(self):
        """True when at least one frame is active (the audio is not silence)."""
        return self.active_seconds > 0

    def problem(self):
        """Why the audio is too short or holds too little speech, or None when it is usable."""
        if self.duration_seconds < MIN_DURATION_SECONDS:
            return (f"is {self.duration_seconds:.2f} s long, shorter than the minimum of "
                    f"{MIN_DURATION_SECONDS:g} s")
        if self.active_seconds < MIN_ACTIVE_SECONDS:
            return (f"has {self.active_seconds:.2f} s of active speech in {self.duration_seconds:.2f} s, "
                    f"less than the minimum of {MIN_ACTIVE_SECONDS:g} s ({RULE})")
        return None


def frame_levels_dbfs(wave):
    """RMS level in dBFS (F,) float64 of each ``FRAME_SAMPLES`` frame of ``wave`` (S,); -inf for zeros."""
    wave = np.asarray(wave, dtype=np.float64)
    starts = np.arange(0, wave.size, FRAME_SAMPLES)
    if starts.size == 0:
        return np.zeros(0)
    counts = np.diff(np.append(starts, wave.size))
    mean_square = np.add.reduceat(wave * wave, starts) / counts
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(mean_square)


def measure(wave):
    """:class:`SpeechContent` of a 16 kHz waveform (S,)."""
    levels = frame_levels_dbfs(wave)
    active = 0.0
    if levels.size:
        active_frames = (levels >= ABSOLUTE_FLOOR_DBFS) & (levels >= levels.max() - RELATIVE_RANGE_DB)
        starts = np.arange(levels.size) * FRAME_SAMPLES
        lengths = np.minimum(FRAME_SAMPLES, len(wave) - starts)
        active = float(lengths[active_frames].sum()) / SAMPLE_RATE
    return SpeechContent(duration_seconds=len(wave) / SAMPLE_RATE, active_seconds=active)


def warn_if_insufficient(path, wave):
    """Log one warning naming ``path`` when ``wave`` (S,) is not usable; return True in that case."""
    problem = measure(wave).problem()
    if problem:
        logger.warning("%s: %s; used anyway", path, problem)
    return problem is not None
