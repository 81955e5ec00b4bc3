"""Evaluation of a trial list: inputs checked, embeddings extracted, trials scored, results written.

Scoring is the cosine similarity of full-length embeddings. Two options use a cohort of
training utterances (``cohort_list``, default ``train_list``, paths relative to
``train_path``): ``mean_subtraction`` removes the cohort's mean embedding before the
cosine, and ``score_norm: asnorm`` applies adaptive symmetric score normalisation
with the ``top_n`` best cohort scores of each utterance (see src/evaluation/scoring.py).

Calibration (after AS-norm): ``score_calibration`` linear or qmf fits a calibration of the
scores to log-likelihood ratios on a calibration list and applies it
(src/evaluation/calibration_step.py); ``calibration_file`` applies a saved one instead. The
metrics of the raw scores are reported beside those of the LLRs.

Files written to ``eval_output_dir``: ``scores.txt`` (see src/evaluation/report.py; LLRs
when calibrated), ``det.png``, ``score_hist.png``, ``embeddings.npz`` (the cache, when
``embedding_cache``), ``calibration.json`` and ``calibration_trials.txt`` (when a
calibration is fitted on the automatic list) and ``eval.log``, to which every run appends
a block with its settings and results.
"""
import functools
import logging
import os
import time
from dataclasses import dataclass

from src.config import ConfigError
from src.data.lists import read_train_list, read_trial_list, trial_utterances, warn_about_repeated_trials
from src.errors import InputError
from src.fileio import file_fingerprint
from src.evaluation.calibration_step import apply_calibration, calibration_scores, fit_and_save, prepare_calibration
from src.evaluation.calibration import check_applicable, load_calibration
from src.evaluation.calibration_list import round_robin
from src.evaluation.embeddings import (CACHE_FILE_NAME, EmbeddingCache, extract_embeddings,
                                       model_fingerprint, require_audio_files)
from src.evaluation.metrics import evaluate
from src.evaluation.plots import plot_det_curve, plot_score_histograms
from src.evaluation.report import UNCALIBRATED_NOTE, format_summary, write_metrics_json, write_scores
from src.evaluation.scoring import EmbeddingTable, mean_embedding, score_trials, trial_labels
from src.speakers.lists import enrolled_utterances, read_enrollment_list, read_speaker_trials
from src.speakers.trials import model_trials, probe_utterances, with_speaker_models

SCORES_FILE = "scores.txt"
DET_FILE = "det.png"
HISTOGRAM_FILE = "score_hist.png"
LOG_FILE = "eval.log"
METRICS_FILE = "metrics.json"

logger = logging.getLogger(__name__)


class EvaluationError(InputError):
    """Trials or embeddings that cannot be scored (one-class trial list, degenerate cohort...)."""


@dataclass(frozen=True)
class EvalInputs:
    """Checked inputs of one evaluation.

    trials: the parsed trial list; utterances: its unique utterances (relative to
    eval_path); cohort: cohort utterances (relative to train_path), empty when unused;
    cohort_speakers: their speaker ids; calibration: the calibration trials of a fit
    (src/evaluation/calibration_step.py) or None; applied: the loaded ``calibration_file``
    (src/evaluation/calibration.py) or None; enrolled: {speaker: utterances relative to
    enroll_path} of an evaluation against enrolled speakers (``enroll_list``), whose trials
    name a speaker in ``utt_a``, else None.
    """
    trials: list
    utterances: list
    cohort: list
    cohort_speakers: list = ()
    calibration: object = None
    applied: object = None
    enrolled: object = None


def uses_cohort(config):
    """True when mean subtraction or AS-norm needs cohort embeddings."""
    return config.mean_subtraction or config.score_norm == "asnorm"


def select_cohort(train_list, cohort_size):
    """Up to ``cohort_size`` utterances of a TrainList, spread evenly over its speakers.

    Speakers are taken in sorted order, round-robin: every speaker's first listed
    utterance, then every speaker's second, and so on. Deterministic.
    """
    per_speaker = [[] for _ in train_list.speakers]
    for utterance, label in zip(train_list.utterances, train_list.labels):
        per_speaker[label].append(utterance)
    return round_robin(per_speaker, cohort_size)


def cohort_utterances(config):
    """``(utterances, speaker ids)`` of the cohort (relative to train_path), from cohort_list or train_list.

    Both lists are empty when neither mean subtraction nor AS-norm is configured.
    """
    if not uses_cohort(config):
        return [], []
    key = "cohort_list" if config.cohort_list else "train_list"
    path = getattr(config, key)
    if not os.path.isfile(path):
        raise ConfigError(f"{key}: file {path!r} not found (the cohort of mean_subtraction/asnorm)")
    train = read_train_list(path)
    cohort = select_cohort(train, config.cohort_size)
    require_audio_files(cohort, config.train_path, f"{key} {path}")
    if config.score_norm == "asnorm" and not 2 <= config.top_n <= len(cohort):
        raise ConfigError(f"top_n: {config.top_n} must be between 2 and the cohort size {len(cohort)}")
    speaker_of = {utterance: train.speakers[label] for utterance, label in zip(train.utterances, train.labels)}
    return cohort, [speaker_of[utterance] for utterance in cohort]


def load_applicable_calibration(config, cohort_size, enrolled=False):
    """The ``calibration_file`` checked against the scoring and model of ``config``, or None."""
    if not config.calibration_file:
        return None
    calibration = load_calibration(config.calibration_file)
    check_applicable(calibration, config.calibration_file, scoring_description(config, cohort_size, enrolled),
                     file_fingerprint(config.model_path))
    return calibration


def prepare_inputs(config):
    """Parse and check the trial list, its audio files and the cohort, before any extraction."""
    if not os.path.isfile(config.eval_list):
        raise ConfigError(f"eval_list: file {config.eval_list!r} not found")
    enrolled = read_enrollment(config) if config.enroll_list else None
    if enrolled is None:
        trials = read_trial_list(config.eval_list)
        warn_about_repeated_trials(trials, config.eval_list)
        utterances = trial_utterances(trials)
    else:
        trials = read_speaker_trials(config.eval_list, enrolled)
        utterances = probe_utterances(trials)
    targets = int(trial_labels(trials).sum())
    if targets in (0, len(trials)):
        raise EvaluationError(f"{config.eval_list}: all {len(trials)} trials are "
                              f"{'non-target' if targets == 0 else 'target'} trials; EER needs both kinds")
    require_audio_files(utterances, config.eval_path, f"eval_list {config.eval_list}")
    cohort, cohort_speakers = cohort_utterances(config)
    calibration = prepare_calibration(config)
    applied = load_applicable_calibration(config, len(cohort), enrolled is not None)
    return EvalInputs(trials=trials, utterances=utterances, cohort=cohort, cohort_speakers=cohort_speakers,
                      calibration=calibration, applied=applied,
                      enrolled=None if enrolled is None else enrolled.speakers)


def enroll_root(config):
    """The folder of the enroll_list paths."""
    return config.enroll_path or config.eval_path


def read_enrollment(config):
    """The checked ``enroll_list`` (an Enrollment; every audio file present)."""
    if not os.path.isfile(config.enroll_list):
        raise ConfigError(f"enroll_list: file {config.enroll_list!r} not found")
    enrollment = read_enrollment_list(config.enroll_list)
    require_audio_files(enrollment.utterances(), enroll_root(config), f"enroll_list {config.enroll_list}")
    return enrollment


def scoring_description(config, cohort_size, enrolled=False):
    """Human-readable name of the scoring, e.g. 'cosine, cohort mean subtracted, AS-norm ...'.

    ``enrolled``: one side of each trial is an enrolled speaker model (src/speakers/models.py),
    whose scores a calibration of single-recording trials does not fit.
    """
    parts = ["cosine" + (" against enrolled speaker models" if enrolled else "")]
    if config.mean_subtraction:
        parts.append(f"mean of {cohort_size} cohort embeddings subtracted")
    if config.score_norm == "asnorm":
        parts.append(f"AS-norm (cohort {cohort_size}, top_n {config.top_n})")
    return ", ".join(parts)


def score(config, trials, trial_table, cohort_table, source):
    """Scores (num_trials,) of ``trials`` under the configured scoring; ``source`` names them in errors."""
    mean = mean_embedding(cohort_table) if config.mean_subtraction else None
    cohort = cohort_table if config.score_norm == "asnorm" else None
    try:
        return score_trials(trial_table, trials, mean=mean, cohort=cohort, top_n=config.top_n)
    except ValueError as error:
        raise EvaluationError(f"{source}: cannot score the trials: {error}") from None


def open_cache(config, extractor, read_only=False):
    """The embedding cache of eval_output_dir for this model, or None when embedding_cache is off."""
    if not config.embedding_cache:
        return None
    return EmbeddingCache(os.path.join(config.eval_output_dir, CACHE_FILE_NAME),
                          model_fingerprint(config.model_path, extractor.network,
                                                            extractor.front_end.name), read_only)


def _subtable(table, names):
    return EmbeddingTable(names, table.matrix[table.rows(names)])


def _training_embeddings(config, extract, inputs, cache, complete=True):
    """Cohort and calibration embeddings ``(cohort table or None, calibration table or None, log lines)``.

    ``extract`` is :func:`extract_embeddings` or a distributed run's ``Shards.extract``;
    ``complete`` is False where it returns only this rank's share (the tables are then None).
    Utterances of both under train_path are extracted once.
    """
    calibration = inputs.calibration
    cal_names = calibration.utterances() if calibration else []
    shared = calibration is not None and calibration.root == config.train_path
    jobs = []
    if inputs.cohort or shared:
        description = "cohort and calibration utterances" if inputs.cohort and shared else (
            "calibration utterances" if shared else "cohort utterances")
        jobs.append((inputs.cohort + (cal_names if shared else []), config.train_path, description))
    if calibration is not None and not shared:
        jobs.append((cal_names, calibration.root, "calibration utterances"))
    tables, lines = [], []
    for names, root, description in jobs:
        table, stats = extract(names, root, cache, description=description)
        logger.info("%s: %s", description, stats.describe())
        lines.append(f"{description}: {stats.describe()}")
        tables.append(table)
    if not complete:
        return None, None, lines
    cohort_table = _subtable(tables[0], inputs.cohort) if inputs.cohort else None
    cal_table = (_subtable(tables[-1], cal_names), {}) if calibration else None
    if calibration is not None and calibration.enrolled is not None:
        cal_table = with_speaker_models(_subtable(cal_table[0], probe_utterances(calibration.trials)),
                                        cal_table[0], calibration.enrolled, calibration.root)
    return cohort_table, cal_table, lines


def _calibrate(config, inputs, trial_table, cohort_table, cal_table, scores, scoring):
    """``(calibration or None, LLRs or raw scores (N,), log lines)`` of the evaluation trials.

    trial_table and cal_table are ``(EmbeddingTable, {model row: seconds})`` pairs (no model
    rows outside an evaluation against enrolled speakers).
    """
    calibration, lines = inputs.applied, []
    if inputs.calibration is not None:
        mean = mean_embedding(cohort_table) if config.mean_subtraction else None
        asnorm_cohort = cohort_table if config.score_norm == "asnorm" else None
        try:
            cal_scores = calibration_scores(inputs.calibration, cal_table[0], mean, asnorm_cohort,
                                            inputs.cohort_speakers, config.top_n)
        except ValueError as error:
            raise EvaluationError(f"calibration trials: cannot score them: {error}") from None
        calibration, lines = fit_and_save(config, inputs.calibration, cal_table[0], cal_scores, scoring,
                                          cal_table[1])
    elif calibration is not None:
        lines = [f"calibration: {calibration.kind} from {config.calibration_file}"]
    if calibration is None:
        return None, scores, lines
    return calibration, apply_calibration(calibration, scored_trials(inputs), scores, trial_table[0],
                                          config.eval_path, trial_table[1]), lines


def scored_trials(inputs):
    """The trials as scored: against enrolled speakers, ``utt_a`` names the speaker's model row."""
    return inputs.trials if inputs.enrolled is None else model_trials(inputs.trials)


def _append_log(path, header, lines):
    with open(path, "a", encoding="utf-8") as log:
        log.write(header + "\n")
        log.writelines(f"  {line}\n" for line in lines)


def calibration_summary(calibration, raw_result):
    """Lines saying what the scores are: LLRs of ``calibration`` (then the raw scores' metrics
    on one line) or, when it is None, uncalibrated raw scores."""
    if calibration is None:
        return [UNCALIBRATED_NOTE]
    raw = ", ".join(format_summary(raw_result))
    return [f"scores are LLRs of the {calibration.kind} calibration",
            f"before calibration (raw scores read as LLRs): {raw}"]


def run_evaluation(config, extractor, inputs, shards=None):
    """Extract, score, calibrate, compute metrics and write every output file; return the summary lines.

    The summary lines are those of :func:`src.evaluation.report.format_summary` (``EER =
    x.xx%`` first) for the final scores, then :func:`calibration_summary`, the calibration
    lines of a fit and the extraction lines. In a distributed run (``shards``, see
    src/evaluation/sharding.py) every rank extracts its share; the ranks other than 0 then
    return their extraction lines only.
    """
    output_dir = config.eval_output_dir
    os.makedirs(output_dir, exist_ok=True)
    cache = open_cache(config, extractor, read_only=shards is not None and not shards.gathers)
    extract = functools.partial(extract_embeddings if shards is None else shards.extract, extractor)
    trial_table, stats = extract(inputs.utterances, config.eval_path, cache, description="trial utterances")
    logger.info("trial utterances: %s", stats.describe())
    extraction_lines = [f"trial utterances: {stats.describe()}"]
    if inputs.enrolled is not None:
        recordings, enroll_stats = extract(enrolled_utterances(inputs.enrolled), enroll_root(config), cache,
                                           description="enrollment utterances")
        logger.info("enrollment utterances: %s", enroll_stats.describe())
        extraction_lines.append(f"enrollment utterances: {enroll_stats.describe()}")
    gathers = shards is None or shards.gathers
    cohort_table, cal_table, training_lines = _training_embeddings(config, extract, inputs, cache, gathers)
    extraction_lines += training_lines
    if not gathers:
        return extraction_lines
    trial_table = ((trial_table, {}) if inputs.enrolled is None else
                   with_speaker_models(trial_table, recordings, inputs.enrolled, enroll_root(config)))

    scoring = scoring_description(config, len(inputs.cohort), inputs.enrolled is not None)
    labels = trial_labels(inputs.trials)
    raw_scores = score(config, scored_trials(inputs), trial_table[0], cohort_table, config.eval_list)
    calibration, scores, calibration_lines = _calibrate(config, inputs, trial_table, cohort_table,
                                                        cal_table, raw_scores, scoring)
    result = evaluate(scores, labels)
    write_scores(os.path.join(output_dir, SCORES_FILE), inputs.trials, scores)
    plot_det_curve(result.roc, os.path.join(output_dir, DET_FILE))
    plot_score_histograms(scores, labels, result.eer_threshold, os.path.join(output_dir, HISTOGRAM_FILE))

    summary = format_summary(result)
    summary += calibration_summary(calibration, evaluate(raw_scores, labels) if calibration else None)
    enrolled = "" if inputs.enrolled is None else f", against {len(inputs.enrolled)} enrolled speakers"
    details = [f"model_path: {config.model_path}",
               f"eval_list: {config.eval_list} ({len(inputs.trials)} trials, "
               f"{result.roc.num_targets} target, {len(inputs.utterances)} utterances{enrolled})",
               f"scoring: {scoring}",
               f"EER threshold: {result.eer_threshold:.6g}"]
    _append_log(os.path.join(output_dir, LOG_FILE), f"== {time.strftime('%Y-%m-%d %H:%M:%S')}",
                details + summary + calibration_lines + extraction_lines)
    write_metrics_json(os.path.join(output_dir, METRICS_FILE), result, calibration.kind if calibration else None,
                       trials=len(inputs.trials), target_trials=result.roc.num_targets,
                       nontarget_trials=result.roc.num_nontargets, utterances=len(inputs.utterances),
                       eval_list=config.eval_list, model_path=config.model_path,
                       model_sha256=file_fingerprint(config.model_path), scoring=scoring,
                       **({} if inputs.enrolled is None else
                          {"enroll_list": config.enroll_list, "enrolled_speakers": len(inputs.enrolled)}))
    return summary + calibration_lines + extraction_lines
