"""Parsing of the two list formats the project reads.

- train list, one utterance a line: ``<speaker> <speaker>/<video>/<n>.wav``
- trial list (VoxCeleb ``veri_test2`` format): ``<1|0> <utt_a> <utt_b>``

Paths in both are relative to the folder given as ``train_path`` / ``eval_path``.
Malformed lines raise :class:`ListFormatError` naming the file and line number.
"""
import logging
import os
import posixpath
from dataclasses import dataclass

from src.errors import InputError
from src.fileio import text_lines

LOGGER = logging.getLogger(__name__)


class ListFormatError(InputError):
    """A list file that is missing, empty or has a malformed line."""


@dataclass(frozen=True)
class TrainList:
    """Utterances of a training list with integer labels.

    ``speakers`` is the sorted list of speaker ids; ``labels[i]`` is the index of
    ``utterances[i]``'s speaker in it.
    """
    utterances: list
    labels: list
    speakers: list


@dataclass(frozen=True)
class Trial:
    """One verification trial: ``target`` is True when both utterances share a speaker."""
    target: bool
    utt_a: str
    utt_b: str


def content_lines(path):
    """Yield (line_number, fields) for each non-blank line of ``path``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ListFormatError(f"{path}: list file not found")
    for number, line in text_lines(path):
        fields = line.split()
        if fields:
            yield number, fields


def read_train_list(path):
    """Parse a train list into a :class:`TrainList` (speaker ids sorted -> labels 0..K-1)."""
    pairs = []
    for number, fields in content_lines(path):
        if len(fields) != 2:
            raise ListFormatError(
                f"{path}:{number}: expected '<speaker> <relative/path.wav>', got {' '.join(fields)!r}")
        speaker, utterance = fields
        if not utterance.startswith(speaker + "/"):
            raise ListFormatError(
                f"{path}:{number}: utterance {utterance!r} is not under speaker folder {speaker!r}")
        if ".." in utterance.split("/") or os.path.isabs(utterance):
            raise ListFormatError(
                f"{path}:{number}: utterance {utterance!r} leaves the train_path folder ('..' in the path)")
        pairs.append((speaker, utterance))
    if not pairs:
        raise ListFormatError(f"{path}: list is empty")
    speakers = sorted({speaker for speaker, _ in pairs})
    index = {speaker: label for label, speaker in enumerate(speakers)}
    return TrainList(utterances=[utt for _, utt in pairs],
                     labels=[index[speaker] for speaker, _ in pairs],
                     speakers=speakers)


def read_trial_list(path):
    """Parse a veri_test2-style trial list into a list of :class:`Trial`.

    Utterance paths are normalised ('./a/x.wav' and 'a//x.wav' are 'a/x.wav'), so that one file
    is one utterance however the list spells it.
    """
    trials = []
    for number, fields in content_lines(path):
        if len(fields) != 3 or fields[0] not in ("0", "1"):
            raise ListFormatError(
                f"{path}:{number}: expected '<1|0> <utt_a> <utt_b>', got {' '.join(fields)!r}")
        trials.append(Trial(target=fields[0] == "1", utt_a=posixpath.normpath(fields[1]),
                            utt_b=posixpath.normpath(fields[2])))
    if not trials:
        raise ListFormatError(f"{path}: list is empty")
    return trials


def warn_about_repeated_trials(trials, source):
    """Log a warning counting the trials that repeat an earlier pair (in either order) and those
    of an utterance against itself; both are scored like any other trial."""
    seen, repeated, own = set(), [], []
    for trial in trials:
        pair = frozenset((trial.utt_a, trial.utt_b))
        if trial.utt_a == trial.utt_b:
            own.append(trial.utt_a)
        elif pair in seen:
            repeated.append(trial)
        seen.add(pair)
    if repeated:
        LOGGER.warning("%s: %d trials repeat an earlier pair (e.g. %s %s); each is scored and counted again",
                       source, len(repeated), repeated[0].utt_a, repeated[0].utt_b)
    if own:
        LOGGER.warning("%s: %d trials compare an utterance with itself (e.g. %s); their score is the "
                       "highest possible and says nothing of the system", source, len(own), own[0])


def trial_utterances(trials):
    """Sorted unique utterance paths referenced by ``trials``."""
    return sorted({trial.utt_a for trial in trials} | {trial.utt_b for trial in trials})
