"""The list formats of enrolled speakers (Kaldi/SRE style). Paths are relative to a given folder.

- enrollment list, ``<speaker> <utt> [<utt> ...]`` per line: a speaker may take several lines,
  whose recordings add up (``speaker wav`` lines are the one-recording case);
- speaker trials, ``<speaker> <test utt> <target|nontarget>`` (``1``/``0`` also read): a test
  recording against an enrolled speaker;
- labelled test list (identification), ``<speaker> <utt>`` per line: the speaker who is
  speaking, enrolled or not.

Utterance paths are normalised like trial lists' (``./a/x.wav`` is ``a/x.wav``). Malformed
lines raise :class:`src.data.lists.ListFormatError` naming the file and line.
"""
import posixpath
from dataclasses import dataclass

from src.data.lists import ListFormatError, Trial, content_lines
from src.fileio import write_lines
from src.speakers.models import speaker_of_row

TARGET_LABELS = {"target": True, "1": True, "nontarget": False, "0": False}


def enrolled_utterances(speakers):
    """Every utterance of {speaker: [utterances]}, each once, in order."""
    return list(dict.fromkeys(utterance for utterances in speakers.values() for utterance in utterances))


@dataclass(frozen=True)
class Enrollment:
    """Recordings of each enrolled speaker: ``speakers`` {speaker: [utterances]} in list order."""
    speakers: dict

    def utterances(self):
        """Every enrollment utterance, each once, in list order."""
        return enrolled_utterances(self.speakers)


def read_enrollment_list(path):
    """Parse an enrollment list into an :class:`Enrollment`.

    A recording listed twice for one speaker, or for two speakers, is an error naming both lines.
    """
    speakers, first_line = {}, {}
    for number, fields in content_lines(path):
        if len(fields) < 2:
            raise ListFormatError(f"{path}:{number}: expected '<speaker> <utt> [<utt> ...]', got {fields[0]!r}")
        speaker = fields[0]
        for utterance in map(posixpath.normpath, fields[1:]):
            if utterance in first_line:
                earlier, owner = first_line[utterance]
                whose = "this speaker" if owner == speaker else f"speaker {owner!r}"
                raise ListFormatError(f"{path}:{number}: {utterance} is already enrolled for {whose} "
                                      f"on line {earlier}")
            first_line[utterance] = (number, speaker)
            speakers.setdefault(speaker, []).append(utterance)
    if not speakers:
        raise ListFormatError(f"{path}: list is empty")
    return Enrollment(speakers)


def read_speaker_trials(path, enrollment=None):
    """Parse speaker trials into Trial objects (``utt_a`` the speaker, ``utt_b`` the test utterance).

    With ``enrollment``, a speaker it does not hold is an error naming the line.
    """
    trials = []
    for number, fields in content_lines(path):
        if len(fields) != 3 or fields[2] not in TARGET_LABELS:
            raise ListFormatError(f"{path}:{number}: expected '<speaker> <test utt> <target|nontarget>', "
                                  f"got {' '.join(fields)!r}")
        if enrollment is not None and fields[0] not in enrollment.speakers:
            raise ListFormatError(f"{path}:{number}: speaker {fields[0]!r} is not in the enrollment list")
        trials.append(Trial(target=TARGET_LABELS[fields[2]], utt_a=fields[0], utt_b=posixpath.normpath(fields[1])))
    if not trials:
        raise ListFormatError(f"{path}: list is empty")
    return trials


def read_labelled_list(path):
    """Parse a labelled test list into ``[(speaker, utterance)]``; an utterance listed twice is an error."""
    entries, first_line = [], {}
    for number, fields in content_lines(path):
        if len(fields) != 2:
            raise ListFormatError(f"{path}:{number}: expected '<speaker> <utt>', got {' '.join(fields)!r}")
        utterance = posixpath.normpath(fields[1])
        if utterance in first_line:
            raise ListFormatError(f"{path}:{number}: {utterance} is listed already on line {first_line[utterance]}")
        first_line[utterance] = number
        entries.append((fields[0], utterance))
    if not entries:
        raise ListFormatError(f"{path}: list is empty")
    return entries


def write_speaker_trials(trials_path, enrollment_path, speakers, trials):
    """Write an enrollment list of {speaker: utterances} and trials whose ``utt_a`` is a model row
    (src/speakers/models.py) in the formats above, each atomically."""
    write_lines(enrollment_path, (" ".join([speaker, *utterances]) for speaker, utterances in speakers.items()))
    write_lines(trials_path, (f"{speaker_of_row(trial.utt_a)} {trial.utt_b} "
                              f"{'target' if trial.target else 'nontarget'}" for trial in trials))
