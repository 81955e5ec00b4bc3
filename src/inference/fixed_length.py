"""The fixed-length model input and the file names of the fixed-length inference path.

Where the fixed length is imposed
---------------------------------
An exported model takes exactly ``length`` frames. Every utterance is brought to that
length in the waveform domain, before any feature is computed:

1. the waveform is repeated end to end while it is shorter than
   ``samples_for_frames(length)`` samples (the padding training uses);
2. the first ``samples_for_frames(length)`` samples are kept (a deterministic crop from
   the start);
3. ``log_mel`` turns exactly these samples into (length, 80) features.

Cropping the waveform rather than the features of the whole utterance means that the
per-utterance mean normalisation inside ``log_mel`` is computed over the audio the model
actually sees, as for a training crop; and a full-length extraction of the cropped
waveform yields the very same features. :func:`fixed_length_features` is the one
definition of this input: preprocess.py writes it to disk and any in-process comparison
with the fixed-length path must call it too.

Files
-----
preprocess.py fills an output folder with::

    feat/<name>.bin    float32 (1, length, 80) features of one utterance, C order
    utt_list.txt       '<name>.bin <utterance>' per line, sorted by file name
    eval.txt           a copy of the trial list, so the folder is self-contained

``<name>`` is the utterance path relative to ``eval_path`` without its extension, with
every '/' replaced by '_' (``id10270/5r0dWxy17C8/00001.wav`` ->
``id10270_5r0dWxy17C8_00001.bin``). An embedding file keeps the name of its feature file.
"""
import os

import numpy as np

from src.data.audio import repeat_pad
from src.data.features import log_mel, samples_for_frames
from src.config import ConfigError
from src.errors import InputError
from src.inference.binary_io import BIN_SUFFIX

# Fewest frames of a fixed-length input: export.py and preprocess.py both refuse less.
MIN_LENGTH = 2
FEATURE_DIR = "feat"
UTTERANCE_LIST = "utt_list.txt"
TRIAL_LIST = "eval.txt"


def check_fixed_length(length):
    """Raise a ConfigError naming the ``length`` setting when it is below MIN_LENGTH frames."""
    if length < MIN_LENGTH:
        raise ConfigError(f"length: {length} frames is too short for a fixed-length input "
                          f"(at least {MIN_LENGTH})")


def fixed_length_wave(wave, length):
    """The first ``samples_for_frames(length)`` samples of ``wave`` (S,), repeat-padded if short.

    length: frames, at least MIN_LENGTH. Returns float32 (samples_for_frames(length),).
    """
    if length < MIN_LENGTH:
        raise ValueError(f"a fixed length needs at least {MIN_LENGTH} frames, got {length}")
    num_samples = samples_for_frames(length)
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1 or wave.size == 0:
        raise ValueError(f"expected a non-empty 1-D waveform, got shape {wave.shape}")
    return repeat_pad(wave, num_samples)[:num_samples]


def fixed_length_features(wave, length):
    """Model input of an utterance: float32 (1, length, 80), C-contiguous (see the module docstring)."""
    features = log_mel(fixed_length_wave(wave, length))
    return np.ascontiguousarray(features[np.newaxis], dtype=np.float32)


def bin_file_name(utterance):
    """``<utterance without extension, '/' -> '_'>.bin``, the feature and result file name."""
    stem, _ = os.path.splitext(utterance)
    return stem.replace("/", "_") + BIN_SUFFIX


def bin_file_names(utterances):
    """``{utterance: file name}`` for every utterance; InputError if two map to the same name."""
    names = {}
    owners = {}
    for utterance in utterances:
        name = bin_file_name(utterance)
        if name in owners and owners[name] != utterance:
            raise InputError(f"utterances {owners[name]!r} and {utterance!r} both map to the file "
                             f"name {name!r}; rename one of them")
        owners[name] = utterance
        names[utterance] = name
    return names


def format_utterance_list(names):
    """Lines (without newline) of utt_list.txt for ``{utterance: file name}``, sorted by file name."""
    return [f"{name} {utterance}" for utterance, name in sorted(names.items(), key=lambda item: item[1])]
