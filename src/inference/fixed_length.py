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

Whole-utterance windows
-----------------------
With the setting ``windows: all`` an utterance becomes several inputs: waveform windows of
``samples_for_frames(length)`` samples whose starts are ``hop`` frames (``hop * 160``
samples) apart, the last one aligned to the end of the utterance
(:func:`window_starts`); each window is turned into features on its own, like the single
crop above, and audio no longer than one window gives the one repeat-padded input of
``windows: first``. Scoring averages the L2-normalised embeddings of an utterance's windows
(see :mod:`src.inference.results`).

Files
-----
preprocess.py fills an output folder with::

    feat/<name>.bin    float32 (1, length, 80) features of one utterance, C order
    utt_list.txt       '<name>.bin <utterance>' per line, sorted by file name
    eval.txt           a copy of the trial list, so the folder is self-contained

or, with ``windows: all``, with ``feat/<name>.w<k>.bin`` (window k = 0, 1, ... of the
utterance, k written with at least 4 digits), ``windows.txt`` ('<window file> <utterance>'
per line, sorted by file name; no utt_list.txt) and ``eval.txt``.

``<name>`` is the utterance path relative to ``eval_path`` without its extension, with
every '/' replaced by '_' (``id10270/5r0dWxy17C8/00001.wav`` ->
``id10270_5r0dWxy17C8_00001.bin``). An embedding file keeps the name of its feature file.
"""
import os

import numpy as np

from src.data.audio import repeat_pad
from src.data.features import HOP_LENGTH
from src.data.front_ends import FRONT_ENDS
from src.config import ConfigError
from src.errors import InputError
from src.fileio import text_lines
from src.inference.binary_io import BIN_SUFFIX

# Fewest frames of a fixed-length input: export.py and preprocess.py both refuse less.
MIN_LENGTH = 2
FEATURE_DIR = "feat"
UTTERANCE_LIST = "utt_list.txt"
WINDOW_LIST = "windows.txt"
TRIAL_LIST = "eval.txt"
WINDOW_MODES = ("first", "all")


def check_fixed_length(length):
    """Raise a ConfigError naming the ``length`` setting when it is below MIN_LENGTH frames."""
    if length < MIN_LENGTH:
        raise ConfigError(f"length: {length} frames is too short for a fixed-length input "
                          f"(at least {MIN_LENGTH})")


def fixed_length_wave(wave, length, front_end=FRONT_ENDS["zoo"]):
    """The first ``front_end.samples_for_frames(length)`` samples of ``wave`` (S,), repeat-padded if
    short: the samples giving ``length`` frames. length: at least MIN_LENGTH. Returns float32.
    """
    if length < MIN_LENGTH:
        raise ValueError(f"a fixed length needs at least {MIN_LENGTH} frames, got {length}")
    num_samples = front_end.samples_for_frames(length)
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1 or wave.size == 0:
        raise ValueError(f"expected a non-empty 1-D waveform, got shape {wave.shape}")
    return repeat_pad(wave, num_samples)[:num_samples]


def fixed_length_features(wave, length, front_end=FRONT_ENDS["zoo"]):
    """Model input of an utterance: float32 (1, length, 80), C-contiguous (see the module docstring);
    ``front_end`` (src/data/front_ends.py) computes the features."""
    features = front_end(fixed_length_wave(wave, length, front_end))
    return np.ascontiguousarray(features[np.newaxis], dtype=np.float32)


def window_hop(length, hop):
    """Frames between window starts: ``hop``, or ``length // 2`` (at least 1) when ``hop`` is 0."""
    return hop if hop > 0 else max(1, length // 2)


def window_starts(num_samples, length, hop, front_end=FRONT_ENDS["zoo"]):
    """First sample of every window of an utterance of ``num_samples`` samples.

    Windows hold ``samples_for_frames(length)`` samples and start every ``hop`` frames
    (``hop * HOP_LENGTH`` samples); the last one ends at the end of the utterance. An
    utterance no longer than one window has the single start 0 (it is repeat-padded).
    E.g. length 3 (320 samples), hop 1 (160 samples), 700 samples -> [0, 160, 320, 380].
    """
    window = front_end.samples_for_frames(length)
    if num_samples <= window:
        return [0]
    last = num_samples - window
    return list(range(0, last, hop * HOP_LENGTH)) + [last]


def window_features(wave, length, hop, front_end=FRONT_ENDS["zoo"]):
    """Model inputs of every window of ``wave`` (S,): a list of float32 (1, length, 80) arrays."""
    wave = np.asarray(wave, dtype=np.float32)
    window = front_end.samples_for_frames(length)
    starts = window_starts(wave.size, length, hop, front_end)
    if starts == [0]:
        return [fixed_length_features(wave, length, front_end)]
    return [np.ascontiguousarray(front_end(wave[start:start + window])[np.newaxis], dtype=np.float32)
            for start in starts]


def window_file_name(utterance, index):
    """``<bin_file_name stem>.w<index, 4 digits or more>.bin``, the file of window ``index``."""
    return f"{bin_file_name(utterance)[:-len(BIN_SUFFIX)]}.w{index:04d}{BIN_SUFFIX}"


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
    return format_window_list((name, utterance) for utterance, name in names.items())


def format_window_list(pairs):
    """Lines (without newline) of windows.txt for ``(file name, utterance)`` pairs, sorted by file name."""
    return [f"{name} {utterance}" for name, utterance in sorted(pairs)]


def read_window_list(path):
    """``[(file name, utterance), ...]`` of a windows.txt; InputError naming ``file:line`` if malformed."""
    pairs = []
    seen = set()
    for number, line in text_lines(path):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[0].endswith(BIN_SUFFIX):
            raise InputError(f"{path}:{number}: expected '<window file>.bin <utterance>', got {line.strip()!r}")
        if fields[0] in seen:
            raise InputError(f"{path}:{number}: window file {fields[0]} is listed twice")
        seen.add(fields[0])
        pairs.append((fields[0], fields[1]))
    if not pairs:
        raise InputError(f"{path}: lists no window")
    return pairs
