"""Evaluation of a trial list: inputs checked, embeddings extracted, trials scored, results written.

Scoring is the cosine similarity of full-length embeddings. Two options use a cohort of
training utterances (``cohort_list``, default ``train_list``, paths relative to
``train_path``): ``mean_subtraction`` removes the cohort's mean embedding before the
cosine, and ``score_norm: asnorm`` applies adaptive symmetric score normalisation
with the ``top_n`` best cohort scores of each utterance (see src/evaluation/scoring.py).

Files written to ``eval_output_dir``: ``scores.txt`` (see src/evaluation/report.py),
``det.png``, ``score_hist.png``, ``embeddings.npz`` (the cache, when ``embedding_cache``)
and ``eval.log``, to which every run appends a block with its settings and results.
"""
import logging
import os
import time
from dataclasses import dataclass

from src.config import ConfigError
from src.data.lists import read_train_list, read_trial_list, trial_utterances
from src.errors import InputError
from src.evaluation.embeddings import (CACHE_FILE_NAME, EmbeddingCache, extract_embeddings,
                                       model_fingerprint, require_audio_files)
from src.evaluation.metrics import evaluate
from src.evaluation.plots import plot_det_curve, plot_score_histograms
from src.evaluation.report import format_summary, write_scores
from src.evaluation.scoring import mean_embedding, score_trials, trial_labels

SCORES_FILE = "scores.txt"
DET_FILE = "det.png"
HISTOGRAM_FILE = "score_hist.png"
LOG_FILE = "eval.log"

logger = logging.getLogger(__name__)


class EvaluationError(InputError):
    """Trials or embeddings that cannot be scored (one-class trial list, degenerate cohort...)."""


@dataclass(frozen=True)
class EvalInputs:
    """Checked inputs of one evaluation.

    trials: the parsed trial list; utterances: its unique utterances (relative to
    eval_path); cohort: cohort utterances (relative to train_path), empty when unused.
    """
    trials: list
    utterances: list
    cohort: list


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
    chosen = []
    for rank in range(max(len(utterances) for utterances in per_speaker)):
        for utterances in per_speaker:
            if rank < len(utterances):
                chosen.append(utterances[rank])
                if len(chosen) == cohort_size:
                    return chosen
    return chosen


def _cohort_utterances(config):
    """Cohort utterances (relative to train_path) chosen from cohort_list or train_list."""
    key = "cohort_list" if config.cohort_list else "train_list"
    path = getattr(config, key)
    if not os.path.isfile(path):
        raise ConfigError(f"{key}: file {path!r} not found (the cohort of mean_subtraction/asnorm)")
    cohort = select_cohort(read_train_list(path), config.cohort_size)
    require_audio_files(cohort, config.train_path, f"{key} {path}")
    if config.score_norm == "asnorm" and not 2 <= config.top_n <= len(cohort):
        raise ConfigError(f"top_n: {config.top_n} must be between 2 and the cohort size {len(cohort)}")
    return cohort


def prepare_inputs(config):
    """Parse and check the trial list, its audio files and the cohort, before any extraction."""
    if not os.path.isfile(config.eval_list):
        raise ConfigError(f"eval_list: file {config.eval_list!r} not found")
    trials = read_trial_list(config.eval_list)
    targets = int(trial_labels(trials).sum())
    if targets in (0, len(trials)):
        raise EvaluationError(f"{config.eval_list}: all {len(trials)} trials are "
                              f"{'non-target' if targets == 0 else 'target'} trials; EER needs both kinds")
    utterances = trial_utterances(trials)
    require_audio_files(utterances, config.eval_path, f"eval_list {config.eval_list}")
    cohort = _cohort_utterances(config) if uses_cohort(config) else []
    return EvalInputs(trials=trials, utterances=utterances, cohort=cohort)


def scoring_description(config, cohort_size):
    """Human-readable name of the scoring, e.g. 'cosine, cohort mean subtracted, AS-norm ...'."""
    parts = ["cosine"]
    if config.mean_subtraction:
        parts.append(f"mean of {cohort_size} cohort embeddings subtracted")
    if config.score_norm == "asnorm":
        parts.append(f"AS-norm (cohort {cohort_size}, top_n {config.top_n})")
    return ", ".join(parts)


def score(config, inputs, trial_table, cohort_table):
    """Scores (num_trials,) of the trials under the configured scoring."""
    mean = mean_embedding(cohort_table) if config.mean_subtraction else None
    cohort = cohort_table if config.score_norm == "asnorm" else None
    try:
        return score_trials(trial_table, inputs.trials, mean=mean, cohort=cohort, top_n=config.top_n)
    except ValueError as error:
        raise EvaluationError(f"{config.eval_list}: cannot score the trials: {error}") from None


def _append_log(path, header, lines):
    with open(path, "a", encoding="utf-8") as log:
        log.write(header + "\n")
        log.writelines(f"  {line}\n" for line in lines)


def run_evaluation(config, extractor, inputs):
    """Extract, score, compute metrics and write every output file; return the summary lines.

    The summary lines are those of :func:`src.evaluation.report.format_summary`
    (``EER = x.xx%`` then one minDCF line per p_target) followed by the extraction line.
    """
    output_dir = config.eval_output_dir
    os.makedirs(output_dir, exist_ok=True)
    cache = None
    if config.embedding_cache:
        cache = EmbeddingCache(os.path.join(output_dir, CACHE_FILE_NAME),
                               model_fingerprint(config.model_path, extractor.network))
    trial_table, stats = extract_embeddings(extractor, inputs.utterances, config.eval_path, cache,
                                            description="trial utterances")
    logger.info("trial utterances: %s", stats.describe())
    extraction_lines = [f"trial utterances: {stats.describe()}"]
    cohort_table = None
    if inputs.cohort:
        cohort_table, cohort_stats = extract_embeddings(extractor, inputs.cohort, config.train_path,
                                                        cache, description="cohort utterances")
        logger.info("cohort utterances: %s", cohort_stats.describe())
        extraction_lines.append(f"cohort utterances: {cohort_stats.describe()}")

    scores = score(config, inputs, trial_table, cohort_table)
    result = evaluate(scores, trial_labels(inputs.trials))
    write_scores(os.path.join(output_dir, SCORES_FILE), inputs.trials, scores)
    plot_det_curve(result.roc, os.path.join(output_dir, DET_FILE))
    plot_score_histograms(scores, trial_labels(inputs.trials), result.eer_threshold,
                          os.path.join(output_dir, HISTOGRAM_FILE))

    summary = format_summary(result)
    details = [f"model_path: {config.model_path}",
               f"eval_list: {config.eval_list} ({len(inputs.trials)} trials, "
               f"{result.roc.num_targets} target, {len(inputs.utterances)} utterances)",
               f"scoring: {scoring_description(config, len(inputs.cohort))}",
               f"EER threshold: {result.eer_threshold:.6g}"]
    _append_log(os.path.join(output_dir, LOG_FILE), f"== {time.strftime('%Y-%m-%d %H:%M:%S')}",
                details + summary + extraction_lines)
    return summary + extraction_lines
