"""The calibration step of an evaluation: calibration trials, their scores, the fit and its files.

With ``score_calibration`` linear or qmf, eval.py fits a calibration
(src/evaluation/calibration.py) on a calibration trial list scored exactly like the
evaluation trials (cosine, mean subtraction, AS-norm as configured) and applies it to the
evaluation scores. The list is ``cal_list`` (paths relative to ``cal_path``, default
``train_path``) or, when that is empty, built from ``train_list``
(src/evaluation/calibration_list.py: ``cal_trials`` trials, seed ``seed``) and written
to ``eval_output_dir/calibration_trials.txt`` (trial-list format, paths relative to
``train_path``). The fit goes to ``eval_output_dir/calibration.json``.

Training utterances and AS-norm: the utterances of the automatic list belong to training
speakers, whose utterances also make up the cohort when it comes from the same list.
Evaluation speakers are absent from the cohort, so for a like-for-like normalisation the
AS-norm statistics of a calibration utterance leave out the cohort utterances of its own
speaker. The scores are still optimistic: the network was trained on these utterances,
so its training speakers' scores are better separated than unseen speakers' are. A
``cal_list`` of held-out speakers avoids that.
"""
import logging
import os
from dataclasses import dataclass

import numpy as np

from src.config import ConfigError
from src.data.lists import read_train_list, read_trial_list, trial_utterances, warn_about_repeated_trials
from src.evaluation.calibration import (CalibrationError, check_applicable, fit_calibration, load_calibration,
                                        save_calibration)
from src.evaluation.calibration_list import build_calibration_trials, build_enrollment_trials
from src.evaluation.embeddings import audio_durations, require_audio_files
from src.evaluation.metrics import evaluate
from src.evaluation.scoring import (as_table, cohort_statistics, paired_cosine, score_trials, trial_labels,
                                    unit_rows)
from src.fileio import file_fingerprint, write_lines
from src.speakers.lists import enrolled_utterances, write_speaker_trials
from src.speakers.models import model_row
from src.speakers.trials import model_trials, probe_utterances

LOGGER = logging.getLogger(__name__)

CALIBRATION_FILE = "calibration.json"
CALIBRATION_TRIALS_FILE = "calibration_trials.txt"
CALIBRATION_ENROLLMENT_FILE = "calibration_enrollment.txt"
SEEN_UTTERANCES_WARNING = ("warning: the calibration list holds training utterances, which the network has "
                           "seen; its LLRs are likely overconfident on unseen speakers (give a cal_list of "
                           "held-out speakers)")


@dataclass(frozen=True)
class CalibrationInputs:
    """Checked calibration trials: ``trials`` (list of Trial), ``root`` (folder of their
    paths), ``list_path`` (the given cal_list, or None for the automatic list),
    ``speakers`` ({utterance or model row: speaker id} of the automatic list, None for a
    cal_list) and ``enrolled`` ({speaker: utterances} when the trials are against enrolled
    speakers, whose model rows are named in ``utt_a``; see src/speakers/trials.py)."""
    trials: list
    root: str
    list_path: object
    speakers: object
    enrolled: object = None

    def utterances(self):
        """The audio utterances of the trials (and of the enrolled speakers), each once."""
        if self.enrolled is None:
            return trial_utterances(self.trials)
        return list(dict.fromkeys([*probe_utterances(self.trials), *enrolled_utterances(self.enrolled)]))


def _require_both_classes(trials, source):
    targets = int(trial_labels(trials).sum())
    if targets in (0, len(trials)):
        raise CalibrationError(f"{source}: all {len(trials)} trials are "
                               f"{'non-target' if targets == 0 else 'target'} trials; a calibration "
                               "needs both kinds")


def prepare_calibration(config):
    """The checked calibration trials of a fit, or None when ``score_calibration`` is none."""
    if config.score_calibration == "none":
        return None
    if config.calibration_file:
        raise ConfigError("calibration_file: set either score_calibration (fit a new calibration) or "
                          "calibration_file (apply a saved one), not both")
    if config.cal_list and config.enroll_list:
        raise ConfigError("cal_list: an evaluation against enrolled speakers (enroll_list) fits its calibration "
                          "on enrolled-speaker trials built from train_list; leave cal_list empty")
    if config.cal_list:
        if not os.path.isfile(config.cal_list):
            raise ConfigError(f"cal_list: file {config.cal_list!r} not found")
        trials = read_trial_list(config.cal_list)
        warn_about_repeated_trials(trials, config.cal_list)
        if os.path.isfile(config.eval_list) and os.path.samefile(config.cal_list, config.eval_list):
            LOGGER.warning("cal_list is the eval_list: a calibration fitted on the trials it is measured on "
                           "makes actDCF and Cllr look better than on new trials; give a list of other speakers")
        _require_both_classes(trials, config.cal_list)
        root = config.cal_path or config.train_path
        require_audio_files(trial_utterances(trials), root, f"cal_list {config.cal_list}")
        return CalibrationInputs(trials=trials, root=root, list_path=config.cal_list, speakers=None)
    if not os.path.isfile(config.train_list):
        raise ConfigError(f"train_list: file {config.train_list!r} not found (the source of the "
                          "automatic calibration list; or give cal_list)")
    train = read_train_list(config.train_list)
    if config.enroll_list:
        return _enrollment_calibration(config, train)
    try:
        trials = build_calibration_trials(train, config.cal_trials, config.seed)
    except ValueError as error:
        raise CalibrationError(f"train_list {config.train_list}: cannot build a calibration list: {error}; "
                               "give a cal_list") from None
    speakers = {utterance: train.speakers[label] for utterance, label in zip(train.utterances, train.labels)}
    require_audio_files(trial_utterances(trials), config.train_path, f"train_list {config.train_list}")
    return CalibrationInputs(trials=trials, root=config.train_path, list_path=None, speakers=speakers)


def _enrollment_calibration(config, train):
    """Calibration trials against speakers enrolled from cal_enroll_utterances training utterances."""
    try:
        enrolled, trials = build_enrollment_trials(train, config.cal_enroll_utterances, config.cal_trials,
                                                   config.seed)
    except ValueError as error:
        raise CalibrationError(f"train_list {config.train_list}: cannot build enrolled-speaker calibration "
                               f"trials: {error}; lower cal_enroll_utterances") from None
    speakers = {utterance: train.speakers[label] for utterance, label in zip(train.utterances, train.labels)}
    speakers.update({model_row(speaker): speaker for speaker in enrolled})
    inputs = CalibrationInputs(trials=model_trials(trials), root=config.train_path, list_path=None,
                               speakers=speakers, enrolled=enrolled)
    require_audio_files(inputs.utterances(), config.train_path, f"train_list {config.train_list}")
    return inputs


def asnorm_without_own_speaker(table, trials, speakers, mean, cohort_table, cohort_speakers, top_n):
    """AS-norm scores (N,) of trials between utterances of cohort speakers.

    As src/evaluation/scoring.py, except that each utterance's statistics use only the
    cohort utterances of other speakers. speakers: {utterance: speaker}; cohort_speakers:
    (C,) speaker of each cohort row; mean: optional (D,) vector subtracted first.
    """
    rows = table.rows([trial.utt_a for trial in trials] + [trial.utt_b for trial in trials])
    rows_a, rows_b = rows[:len(trials)], rows[len(trials):]
    units, cohort_units = unit_rows(table, mean), unit_rows(cohort_table, mean)
    raw = paired_cosine(units, rows_a, rows_b)
    own = np.array([speakers[name] for name in table.names])
    cohort_speakers = np.asarray(cohort_speakers)
    means, stds = np.empty(len(table)), np.empty(len(table))
    for speaker in np.unique(own):
        mine = own == speaker
        means[mine], stds[mine] = cohort_statistics(units[mine], cohort_units[cohort_speakers != speaker], top_n)
    if (stds == 0).any():
        raise ValueError(f"the top {top_n} cohort scores of an utterance are all equal; AS-norm is undefined")
    return 0.5 * ((raw - means[rows_a]) / stds[rows_a] + (raw - means[rows_b]) / stds[rows_b])


def calibration_scores(inputs, table, mean, cohort_table, cohort_speakers, top_n):
    """Scores (N,) of the calibration trials; ``cohort_table`` is None unless AS-norm is on."""
    if cohort_table is not None and inputs.speakers is not None:
        return asnorm_without_own_speaker(table, inputs.trials, inputs.speakers, mean, cohort_table,
                                          cohort_speakers, top_n)
    return score_trials(table, inputs.trials, mean=mean, cohort=cohort_table, top_n=top_n)


def trial_qualities(trials, table, root, known_seconds=None):
    """Quality measures of N trials: durations (N, 2) seconds and raw embedding norms (N, 2).

    table: EmbeddingTable of the trial utterances (raw embeddings); root: their audio folder;
    known_seconds: {name: seconds} of sides that are not audio files (enrolled speaker models).
    """
    known_seconds = known_seconds or {}
    names = [name for name in trial_utterances(trials) if name not in known_seconds]
    seconds = dict(zip(names, audio_durations(names, root)), **known_seconds)
    norms = np.linalg.norm(table.matrix.astype(np.float64), axis=1)
    sides = [(trial.utt_a, trial.utt_b) for trial in trials]
    durations = np.array([(seconds[a], seconds[b]) for a, b in sides])
    rows = table.rows([name for pair in sides for name in pair]).reshape(-1, 2)
    return durations, norms[rows]


def apply_calibration(calibration, trials, scores, table, root, known_seconds=None):
    """LLRs (N,) of N trials with ``scores`` (N,) under ``calibration`` (arguments as trial_qualities)."""
    if not calibration.needs_qualities:
        return calibration.llrs(scores)
    return calibration.llrs(scores, *trial_qualities(trials, table, root, known_seconds))


def fit_and_save(config, inputs, table, scores, scoring, known_seconds=None):
    """Fit the configured calibration to the scored calibration trials and write its files.

    scores: (N,) scores of ``inputs.trials``; table: their embeddings (and the enrolled
    speakers' model rows, whose durations are ``known_seconds``); scoring: the description
    of the scores. Returns ``(calibration, log lines)``.
    """
    output_dir = config.eval_output_dir
    qualities = (trial_qualities(inputs.trials, table, inputs.root, known_seconds)
                 if config.score_calibration == "qmf" else ())
    list_path = inputs.list_path
    if list_path is None:
        list_path = os.path.join(output_dir, CALIBRATION_TRIALS_FILE)
        source = f"built from train_list {config.train_list} (seed {config.seed}, cal_trials {config.cal_trials})"
        if inputs.enrolled is None:
            write_lines(list_path, (f"{int(trial.target)} {trial.utt_a} {trial.utt_b}" for trial in inputs.trials))
        else:
            write_speaker_trials(list_path, os.path.join(output_dir, CALIBRATION_ENROLLMENT_FILE), inputs.enrolled,
                                 inputs.trials)
            source += f", speakers enrolled from {config.cal_enroll_utterances} utterances"
    else:
        source = "cal_list"
    labels = trial_labels(inputs.trials)
    fa_rates = (config.target_fa_rate,) if config.target_fa_rate > 0 else ()
    calibration, llrs = fit_calibration(
        config.score_calibration, labels, config.cal_prior, scores, *qualities, fa_rates=fa_rates,
        scoring=scoring, model_sha256=file_fingerprint(config.model_path),
        fitted_on={"trial_list": os.path.abspath(list_path), "audio_root": os.path.abspath(inputs.root),
                   "source": source, "model_path": os.path.abspath(config.model_path)})
    path = save_calibration(os.path.join(output_dir, CALIBRATION_FILE), calibration)
    fitted = evaluate(llrs, labels)
    lines = [SEEN_UTTERANCES_WARNING] if inputs.list_path is None else []
    lines += [f"calibration: {calibration.kind} fitted on {labels.size} trials ({int(labels.sum())} target) "
             f"of {list_path} ({source}), prior {calibration.prior:g}; written to {path}",
             f"calibration list after the fit: EER = {100 * fitted.eer:.2f}%, Cllr = {fitted.cllr:.4f}, "
             f"minCllr = {fitted.min_cllr:.4f}"]
    return calibration, lines


def calibrate_cosine_scores(path, trials, scores, embeddings, root):
    """``(calibration, LLRs (N,))`` of plain cosine ``scores`` (N,) under the calibration file ``path``.

    For scores computed outside eval.py (postprocess.py): embeddings is a dict or
    EmbeddingTable of the trial utterances, root the folder of their audio (for durations).
    """
    calibration = load_calibration(path)
    check_applicable(calibration, path, "cosine")
    return calibration, apply_calibration(calibration, trials, scores, as_table(embeddings), root)
