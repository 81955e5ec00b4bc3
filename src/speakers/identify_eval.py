"""eval.py --identify: identification of a labelled test list among the speakers of enroll_list.

Each test utterance (paths relative to eval_path) is scored against every enrolled speaker
as speakers.py identify scores it (src/speakers/models.py: cosine, with mean subtraction
and AS-norm as configured); the figures are those of src/speakers/identification.py. Files
written to eval_output_dir: ``identification.json`` (the figures, the lists, the scoring
and the model's SHA-256) and ``identification_scores.npz`` (``scores`` (N, K) float64,
``speakers`` (K,), ``utterances`` (N,), ``truth`` (N,) speaker index or -1 for unknown).
"""
import json
import os
import time
from dataclasses import dataclass

import numpy as np

from src.evaluation.embeddings import extract_embeddings, require_audio_files
from src.evaluation.evaluate import (EvaluationError, cohort_utterances, enroll_root, open_cache,
                                     read_enrollment, scoring_description)
from src.fileio import atomic_write, file_fingerprint, write_text
from src.speakers.identification import UNKNOWN, describe, identification_figures
from src.speakers.lists import enrolled_utterances, read_labelled_list
from src.speakers.models import ProbeScorer
from src.speakers.trials import speaker_models

FIGURES_FILE = "identification.json"
SCORES_FILE = "identification_scores.npz"


@dataclass(frozen=True)
class IdentificationInputs:
    """Checked inputs: ``queries`` [(speaker, utterance)], ``enrolled`` {speaker: utterances},
    ``cohort`` utterances (relative to train_path, empty without cohort scoring)."""
    queries: list
    enrolled: dict
    cohort: list


def prepare_identification(config, test_list):
    """Parse and check the test list, enroll_list and cohort before any extraction."""
    if not config.enroll_list:
        raise EvaluationError("--identify: set enroll_list (the enrolled speakers to identify among)")
    if config.score_calibration != "none" or config.calibration_file:
        raise EvaluationError("--identify ranks and thresholds the scores themselves; leave score_calibration "
                              "and calibration_file unset (speakers.py identify applies a calibration_file)")
    queries = read_labelled_list(test_list)
    require_audio_files([utterance for _, utterance in queries], config.eval_path, f"--identify {test_list}")
    cohort, _ = cohort_utterances(config)
    return IdentificationInputs(queries, read_enrollment(config).speakers, cohort)


def run_identification(config, extractor, inputs, test_list):
    """Extract, score every query against every speaker, write the files; return the summary lines."""
    cache = open_cache(config, extractor)
    utterances = [utterance for _, utterance in inputs.queries]
    tests, _ = extract_embeddings(extractor, utterances, config.eval_path, cache, description="test utterances")
    recordings, _ = extract_embeddings(extractor, enrolled_utterances(inputs.enrolled),
                                       enroll_root(config), cache, description="enrollment utterances")
    cohort = None
    if inputs.cohort:
        cohort, _ = extract_embeddings(extractor, inputs.cohort, config.train_path, cache,
                                       description="cohort utterances")
    speakers = list(inputs.enrolled)
    try:
        scorer = ProbeScorer.for_config(config, speaker_models(recordings, inputs.enrolled), cohort)
        scores = np.stack([scorer.scores(tests.matrix[tests.index[utterance]]) for utterance in utterances])
    except ValueError as error:
        raise EvaluationError(f"--identify {test_list}: cannot score it: {error}") from None
    index = {speaker: row for row, speaker in enumerate(speakers)}
    truth = np.array([index.get(speaker, UNKNOWN) for speaker, _ in inputs.queries])
    figures = identification_figures(scores, truth)
    scoring = scoring_description(config, len(inputs.cohort), enrolled=True)
    output_dir = config.eval_output_dir
    with atomic_write(os.path.join(output_dir, SCORES_FILE), suffix=".npz") as temporary:
        with open(temporary, "wb") as handle:
            np.savez(handle, scores=scores, speakers=np.array(speakers), utterances=np.array(utterances), truth=truth)
    document = {**figures, "test_list": test_list, "enroll_list": config.enroll_list, "scoring": scoring,
                "model_path": config.model_path, "model_sha256": file_fingerprint(config.model_path),
                "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_text(os.path.join(output_dir, FIGURES_FILE), json.dumps(document, indent=1) + "\n")
    return describe(figures) + [f"scoring: {scoring}"]
