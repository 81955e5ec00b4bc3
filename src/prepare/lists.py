"""Writing the train list from a wav tree and installing an official trial list.

- train list: one line ``<spk> <spk>/<video>/<n>.wav`` per wav under the train
  folder, sorted by path, so the same tree always gives the same file. The
  speakers of a trial list can be left out, which keeps evaluation speakers out
  of training when both come from one corpus (VoxCeleb1).
- eval list: an official VoxCeleb1 trial list (``veri_test2.txt``,
  ``list_test_all2.txt``, ``list_test_hard2.txt``) is used as is, after checking
  that it parses and that every wav it names exists under the eval folder.

The speaker of an utterance path is its first component.
"""
import os
from dataclasses import dataclass

from src.data.lists import read_trial_list, trial_utterances
from src.fileio import list_files, write_lines
from src.prepare.common import WAV_SUFFIX, PrepareError, check_utterance_layout, require_folder


@dataclass(frozen=True)
class TrainListSummary:
    """What a written train list holds and what was left out of it.

    ``excluded_speakers`` are the sorted speaker ids removed because they occur in
    the trial list; ``excluded_utterances`` counts their wavs.
    """
    speakers: int
    utterances: int
    excluded_speakers: tuple
    excluded_utterances: int


@dataclass(frozen=True)
class EvalListSummary:
    """Counts of a trial list and the sorted utterance paths missing under the eval folder."""
    trials: int
    targets: int
    utterances: int
    missing: tuple


def speaker_of(utterance):
    """The speaker id of a relative utterance path: its first component."""
    return utterance.split("/", 1)[0]


def trial_speakers(trials):
    """Sorted speaker ids of the utterances that ``trials`` refer to."""
    return sorted({speaker_of(utterance) for utterance in trial_utterances(trials)})


def build_train_list(wav_root, list_path, exclude_speakers=()):
    """Write ``list_path`` listing every wav under ``wav_root``; return a :class:`TrainListSummary`.

    Utterances of the speakers in ``exclude_speakers`` (e.g. :func:`trial_speakers`
    of the evaluation trials) are left out. Raises :class:`PrepareError` for a
    missing folder, a tree not laid out as ``<speaker>/<video>/<n>.wav``, or an
    empty result.
    """
    require_folder(wav_root, "wav")
    utterances = list_files(wav_root, WAV_SUFFIX)
    if not utterances:
        raise PrepareError(f"{wav_root}: no {WAV_SUFFIX} files found")
    check_utterance_layout(wav_root, utterances, WAV_SUFFIX)
    excluded = set(exclude_speakers)
    kept = [utterance for utterance in utterances if speaker_of(utterance) not in excluded]
    if not kept:
        raise PrepareError(f"{wav_root}: every speaker is excluded; nothing is left to train on")
    write_lines(list_path, [f"{speaker_of(utterance)} {utterance}" for utterance in kept])
    present = {speaker_of(utterance) for utterance in utterances}
    return TrainListSummary(speakers=len({speaker_of(utterance) for utterance in kept}),
                            utterances=len(kept),
                            excluded_speakers=tuple(sorted(excluded & present)),
                            excluded_utterances=len(utterances) - len(kept))


def check_relative(trial_path, utterance):
    """Raise :class:`PrepareError` unless ``utterance`` is a path inside the eval folder."""
    parts = utterance.split("/")
    if os.path.isabs(utterance) or ".." in parts:
        raise PrepareError(
            f"{trial_path}: utterance {utterance!r} is not a relative path inside the eval folder")


def prepare_eval_list(trial_path, wav_root, list_path):
    """Validate a trial list against ``wav_root`` and, if complete, write it to ``list_path``.

    The written list holds one ``<1|0> <utt_a> <utt_b>`` line per trial, in the
    original order. When any referenced wav is missing nothing is written and the
    returned :class:`EvalListSummary` lists them. Raises ``ListFormatError`` for a
    malformed trial list and :class:`PrepareError` for a missing folder or a path
    that leaves the eval folder.
    """
    require_folder(wav_root, "eval wav")
    trials = read_trial_list(trial_path)
    utterances = trial_utterances(trials)
    for utterance in utterances:
        check_relative(trial_path, utterance)
    missing = tuple(utterance for utterance in utterances
                    if not os.path.isfile(os.path.join(wav_root, utterance)))
    if not missing:
        write_lines(list_path, [f"{int(trial.target)} {trial.utt_a} {trial.utt_b}"
                                for trial in trials])
    return EvalListSummary(trials=len(trials), targets=sum(trial.target for trial in trials),
                           utterances=len(utterances), missing=missing)
