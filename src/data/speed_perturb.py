"""Speed perturbation of training crops: the audio played faster or slower, pitch included.

A factor f plays the audio f times as fast: f * S original samples become S samples, by
polyphase resampling (``scipy.signal.resample_poly``) with up / down = 1 / f in lowest
terms (0.9 -> 10 / 9, 1.1 -> 10 / 11). Only the stretch of the file that the crop needs is
resampled, with CONTEXT extra samples on each side so that the filter's edge effects fall
outside the crop.

Each speed of a speaker is a class of its own, as in WeSpeaker and 3D-Speaker (a voice
played 10 % faster is a new voice to the network): the label of a sample of speaker
``label`` at the factor with index k of :func:`src.config.parse_speed_factors` (k = 0 is
the original speed, then the other factors in the order listed) is
``label + k * num_speakers``. The head therefore has ``num_speakers * len(factors)``
classes, and its first ``num_speakers`` rows are the speakers at their own speed.
"""
import math
from fractions import Fraction

import numpy as np
from scipy.signal import firwin, resample_poly

from src.config import parse_speed_factors
from src.data.audio import crop_or_pad

# Original samples resampled beyond each end of the crop (resample_poly's filter reaches
# about 10 input samples at these ratios).
CONTEXT = 32
# Largest denominator of a factor's ratio (0.93 -> 93 / 100).
MAX_DENOMINATOR = 100


def speed_class(label, speed_index, num_speakers):
    """The class of speaker ``label`` (0..num_speakers-1) at speed ``speed_index``."""
    return label + speed_index * num_speakers


class SpeedPerturb:
    """Draws a speed per sample and crops at that speed.

    factors: speed factors, 1.0 first (see :func:`src.config.parse_speed_factors`).
    probability: share of samples played at one of the other factors, drawn uniformly.
    """

    def __init__(self, factors, probability):
        if factors[0] != 1.0:
            raise ValueError("the first speed factor must be 1.0")
        self.factors = tuple(factors)
        self.probability = probability
        self.ratios = [Fraction(factor).limit_denominator(MAX_DENOMINATOR) for factor in self.factors]
        # resample_poly's own low-pass filter of each ratio, designed once instead of per call.
        self.filters = [None] + [lowpass_filter(ratio) for ratio in self.ratios[1:]]

    @classmethod
    def from_config(cls, config):
        """The perturbation of the ``speed_perturb`` settings, or None when it is off."""
        factors = parse_speed_factors(config.speed_perturb)
        return cls(factors, config.speed_perturb_prob) if len(factors) > 1 else None

    @property
    def num_speeds(self):
        """Speeds, hence classes per speaker."""
        return len(self.factors)

    def draw(self, rng):
        """Index of the speed of one sample (0 = original), from a numpy Generator."""
        if rng.random() >= self.probability:
            return 0
        return 1 + int(rng.integers(len(self.factors) - 1))

    def source_samples(self, num_samples, speed_index):
        """Original samples that give ``num_samples`` at speed ``speed_index``, with the context."""
        if speed_index == 0:
            return num_samples
        ratio = self.ratios[speed_index]
        return math.ceil(num_samples * ratio.numerator / ratio.denominator) + 2 * CONTEXT

    def stretch(self, piece, num_samples, speed_index):
        """``num_samples`` float32 samples of ``piece`` (:meth:`source_samples` long) at speed ``speed_index``."""
        if speed_index == 0:
            return piece
        ratio = self.ratios[speed_index]
        up, down = ratio.denominator, ratio.numerator
        stretched = resample_poly(piece, up, down, window=self.filters[speed_index])
        start = CONTEXT * up // down
        return stretched[start:start + num_samples].astype(np.float32)

    def crop(self, wave, num_samples, speed_index, rng):
        """``num_samples`` float32 samples of ``wave`` (S,) at speed ``speed_index``, from a random offset.

        The offset is drawn from ``rng`` as :func:`src.data.audio.crop_or_pad` draws it
        (short audio is repeated first).
        """
        piece = crop_or_pad(wave, self.source_samples(num_samples, speed_index), rng)
        return self.stretch(piece, num_samples, speed_index)


def lowpass_filter(ratio):
    """The float32 FIR filter ``scipy.signal.resample_poly`` designs for ``ratio`` (its default
    Kaiser window, beta 5)."""
    max_rate = max(ratio.numerator, ratio.denominator)
    return firwin(20 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0)).astype(np.float32)
