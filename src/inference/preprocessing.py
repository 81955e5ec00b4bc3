"""Writing the feature folder of the fixed-length path (layout in :mod:`src.inference.fixed_length`)."""
import os
import shutil
import sys

from tqdm import tqdm

from src.data.audio import read_audio
from src.data.front_ends import FRONT_ENDS
from src.data.speech_content import warn_if_insufficient
from src.errors import InputError
from src.fileio import write_lines
from src.inference.binary_io import BIN_SUFFIX, write_float_file
from src.inference.fixed_length import (FEATURE_DIR, TRIAL_LIST, UTTERANCE_LIST, WINDOW_LIST, bin_file_names,
                                        fixed_length_features, format_utterance_list, format_window_list,
                                        window_features, window_file_name, window_hop)


def _clear_feature_dir(feature_dir):
    """Create ``feature_dir``, removing .bin files an earlier run left there."""
    os.makedirs(feature_dir, exist_ok=True)
    for name in os.listdir(feature_dir):
        if name.endswith(BIN_SUFFIX):
            os.remove(os.path.join(feature_dir, name))


def _remove_stale(path):
    if os.path.isfile(path):
        os.remove(path)


def write_feature_folder(trial_list, utterances, eval_path, out_dir, length, windows="first", hop=0,
                         front_end=FRONT_ENDS["zoo"]):
    """Fill ``out_dir`` with feat/*.bin, the list of those files and a copy of ``trial_list``.

    utterances: paths relative to ``eval_path``. ``windows`` 'first': each utterance becomes
    one float32 (1, length, 80) feature file and the list is utt_list.txt; 'all': one file
    per window (``hop`` frames apart, 0 = length // 2) and the list is windows.txt (layout in
    :mod:`src.inference.fixed_length`), with the features of ``front_end``
    (src/data/front_ends.py). The list is written last: a folder without it is unfinished.
    Unreadable audio raises AudioError naming the file;
    audio too short or with too little speech is used with a warning naming it. Returns the
    feature folder.
    """
    names = bin_file_names(utterances)
    feature_dir = os.path.join(out_dir, FEATURE_DIR)
    # The list files mark a finished folder: removed first and written last, so that an interrupted run
    # leaves a folder the inference scripts do not take for preprocessed features.
    for name in (UTTERANCE_LIST, WINDOW_LIST):
        _remove_stale(os.path.join(out_dir, name))
    _clear_feature_dir(feature_dir)
    hop = window_hop(length, hop)
    listed = []
    for utterance in tqdm(utterances, desc="features", unit="utt", disable=not sys.stderr.isatty()):
        path = os.path.join(eval_path, utterance)
        wave = read_audio(path)
        warn_if_insufficient(path, wave)
        if windows == "first":
            inputs = {names[utterance]: fixed_length_features(wave, length, front_end)}
        else:
            inputs = {window_file_name(utterance, index): features
                      for index, features in enumerate(window_features(wave, length, hop, front_end))}
        for name, features in inputs.items():
            write_float_file(os.path.join(feature_dir, name), features)
            listed.append((name, utterance))
    if windows == "all" and len({name for name, _ in listed}) != len(listed):
        raise InputError(f"two utterances of {trial_list} give the same window file name; rename one")
    trial_copy = os.path.join(out_dir, TRIAL_LIST)
    if not (os.path.exists(trial_copy) and os.path.samefile(trial_list, trial_copy)):
        shutil.copyfile(trial_list, trial_copy)
    if windows == "first":
        write_lines(os.path.join(out_dir, UTTERANCE_LIST), format_utterance_list(names))
    else:
        write_lines(os.path.join(out_dir, WINDOW_LIST), format_window_list(listed))
    return feature_dir
