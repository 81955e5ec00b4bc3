"""Writing the feature folder of the fixed-length path (layout in :mod:`src.inference.fixed_length`)."""
import os
import shutil
import sys

from tqdm import tqdm

from src.data.audio import read_audio
from src.data.speech_content import warn_if_insufficient
from src.fileio import write_lines
from src.inference.binary_io import BIN_SUFFIX, write_float_file
from src.inference.fixed_length import (FEATURE_DIR, TRIAL_LIST, UTTERANCE_LIST, bin_file_names,
                                        fixed_length_features, format_utterance_list)


def _clear_feature_dir(feature_dir):
    """Create ``feature_dir``, removing .bin files an earlier run left there."""
    os.makedirs(feature_dir, exist_ok=True)
    for name in os.listdir(feature_dir):
        if name.endswith(BIN_SUFFIX):
            os.remove(os.path.join(feature_dir, name))


def write_feature_folder(trial_list, utterances, eval_path, out_dir, length):
    """Fill ``out_dir`` with feat/*.bin, utt_list.txt and a copy of ``trial_list``.

    utterances: paths relative to ``eval_path``; each becomes one float32 (1, length, 80)
    feature file. Unreadable audio raises AudioError naming the file; audio too short or with
    too little speech is used with a warning naming it. Returns the feature folder.
    """
    names = bin_file_names(utterances)
    feature_dir = os.path.join(out_dir, FEATURE_DIR)
    _clear_feature_dir(feature_dir)
    for utterance in tqdm(utterances, desc="features", unit="utt", disable=not sys.stderr.isatty()):
        path = os.path.join(eval_path, utterance)
        wave = read_audio(path)
        warn_if_insufficient(path, wave)
        write_float_file(os.path.join(feature_dir, names[utterance]), fixed_length_features(wave, length))
    write_lines(os.path.join(out_dir, UTTERANCE_LIST), format_utterance_list(names))
    trial_copy = os.path.join(out_dir, TRIAL_LIST)
    if not (os.path.exists(trial_copy) and os.path.samefile(trial_list, trial_copy)):
        shutil.copyfile(trial_list, trial_copy)
    return feature_dir
