"""Embeddings outside a trial list: one pair of files (verify) or a list of files (to .npy).

Both accept audio at any sample rate (it is resampled to 16 kHz). Audio that is too short
or holds too little speech (:mod:`src.data.speech_content`) is refused by verification and
embedded with a warning by extraction.

Verification scores the pair like eval.py scores a trial (cosine; mean subtraction and
AS-norm with the configured cohort, whose embeddings come from eval_output_dir's cache when
eval.py computed them). Without ``calibration_file`` the decision is uncalibrated: raw
score >= ``threshold``. With it, the score becomes an LLR (durations and embedding norms of
the two files for a qmf calibration), accepted when it is >= the Bayes threshold
``log((1 - p_target) / p_target)`` or, when ``target_fa_rate`` > 0, >= the LLR that gave that
false-accept rate on the calibration list (stored in the calibration file).

Audio list format: one audio path per line; blank lines are skipped. A relative path is
relative to the folder that holds the list file, an absolute path is used as is. Each
embedding is written as ``<out_dir>/<name>.npy`` holding a (emb_size,) float32 vector,
where ``<name>`` is the path as written in the list, normalised, without its leading
``/``, its extension removed and every ``/`` replaced by ``_`` (``spk1/a/001.wav`` ->
``spk1_a_001.npy``).
"""
import os
from dataclasses import dataclass

import numpy as np

from src.config import ConfigError
from src.data.audio import SAMPLE_RATE, read_audio
from src.data.lists import ListFormatError, Trial
from src.data.speech_content import SpeechContentError, measure
from src.evaluation.embeddings import extract_embeddings, finite_embedding, require_audio_files
from src.evaluation.evaluate import (cohort_utterances, load_applicable_calibration, open_cache, score,
                                     scoring_description)
from src.evaluation.metrics import bayes_threshold
from src.evaluation.scoring import EmbeddingTable
from src.fileio import text_lines


def read_verification_audio(path):
    """16 kHz waveform (S,) of a file to verify, read at any sample rate.

    Raises AudioError for unreadable audio and SpeechContentError, naming the file, its
    duration or active speech and the threshold, for audio too short or too silent to verify.
    """
    wave = read_audio(path, allow_resample=True)
    problem = measure(wave).problem()
    if problem:
        raise SpeechContentError(f"{path}: {problem}; cannot verify with it")
    return wave


@dataclass(frozen=True)
class VerificationSetup:
    """What a verification needs besides the model, checked before it is loaded.

    cohort: cohort utterances (relative to train_path), empty without cohort scoring;
    scoring: description of the score; calibration: the loaded calibration_file or None;
    threshold: the decision threshold (on the raw score without calibration, else on the
    LLR); rule: one line saying how the decision is made.
    """
    cohort: list
    scoring: str
    calibration: object
    threshold: float
    rule: str


def prepare_verification(config, enrolled=False):
    """Check the cohort, calibration file and operating point of a verification (module docstring).

    ``enrolled``: the claim is checked against an enrolled speaker model (speakers.py).
    """
    cohort, _ = cohort_utterances(config)
    scoring = scoring_description(config, len(cohort), enrolled)
    calibration = load_applicable_calibration(config, len(cohort), enrolled)
    if calibration is None:
        if config.target_fa_rate > 0:
            raise ConfigError("target_fa_rate: needs a calibration_file (the rate's threshold is measured "
                              "on its calibration list)")
        rule = (f"uncalibrated decision: raw score ({scoring}) >= threshold; set calibration_file for a "
                "calibrated LLR decision")
        return VerificationSetup(cohort, scoring, None, config.threshold, rule)
    source = f"{calibration.kind} calibration {config.calibration_file}"
    if config.target_fa_rate > 0:
        threshold = calibration.fa_threshold(config.target_fa_rate)
        rule = (f"calibrated decision: LLR >= the threshold of a {config.target_fa_rate:g} false-accept "
                f"rate on the calibration list ({source})")
    else:
        threshold = bayes_threshold(config.p_target)
        rule = (f"calibrated decision: LLR >= log((1 - p_target) / p_target) for p_target "
                f"{config.p_target:g} ({source})")
    return VerificationSetup(cohort, scoring, calibration, threshold, rule)


def verify_pair(config, setup, extractor, path_a, wave_a, path_b, wave_b):
    """Score two waveforms (S,) read from path_a and path_b; return the two lines of the verdict.

    The first line is ``score = S  threshold = T  ACCEPT|REJECT`` without a calibration and
    ``score = S  llr = L  threshold = T  ACCEPT|REJECT`` with one; the second is ``setup.rule``.
    """
    waves = (wave_a, wave_b)
    paths = (path_a,) if path_a == path_b else (path_a, path_b)  # a file against itself: one embedding
    table = EmbeddingTable(paths, np.stack([finite_embedding(extractor.embed_wave(wave), path)
                                            for path, wave in zip(paths, waves)]))
    cohort_table = None
    if setup.cohort:
        cohort_table, _ = extract_embeddings(extractor, setup.cohort, config.train_path,
                                             open_cache(config, extractor), description="cohort utterances")
    trial = Trial(target=True, utt_a=path_a, utt_b=path_b)
    raw = float(score(config, [trial], table, cohort_table, f"{path_a} and {path_b}")[0])
    if setup.calibration is None:
        decision = "ACCEPT" if raw >= setup.threshold else "REJECT"
        return [f"score = {raw:.4f}  threshold = {setup.threshold:g}  {decision}", setup.rule]
    durations = np.array([[wave.size / SAMPLE_RATE for wave in waves]])
    norms = np.linalg.norm(table.matrix[[0, -1]].astype(np.float64), axis=1)[np.newaxis]
    llr = float(setup.calibration.llrs([raw], durations, norms)[0])
    decision = "ACCEPT" if llr >= setup.threshold else "REJECT"
    return [f"score = {raw:.4f}  llr = {llr:.4f}  threshold = {setup.threshold:.4f}  {decision}", setup.rule]


def output_name(entry):
    """File name (without folder) of the .npy written for list entry ``entry``."""
    stem = os.path.splitext(os.path.normpath(entry).lstrip("/"))[0]
    return stem.replace("/", "_") + ".npy"


def read_audio_list(path):
    """Parse an audio list; return ``[(entry as written, resolved path)]``, one per file.

    A file listed twice is kept once. Raises ListFormatError when the list is missing or
    empty, or when two different files would be written to the same .npy name.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ListFormatError(f"{path}: list file not found")
    folder = os.path.dirname(os.path.abspath(path))
    entries = []
    resolved_paths = set()
    first_line = {}
    for number, line in text_lines(path):
        entry = line.strip()
        resolved = os.path.normpath(os.path.join(folder, entry))
        if not entry or resolved in resolved_paths:
            continue
        name = output_name(entry)
        if name in first_line:
            raise ListFormatError(f"{path}:{number}: {entry!r} would be written to {name}, "
                                  f"like the entry on line {first_line[name]}")
        first_line[name] = number
        resolved_paths.add(resolved)
        entries.append((entry, resolved))
    if not entries:
        raise ListFormatError(f"{path}: list is empty")
    return entries


def check_audio_list(path):
    """Parse an audio list and check every file exists; return it like :func:`read_audio_list`."""
    entries = read_audio_list(path)
    require_audio_files([resolved for _, resolved in entries], "", f"audio list {path}")
    return entries


def extract_to_folder(extractor, entries, out_dir):
    """Write the embedding of every ``(entry, resolved path)`` to ``out_dir``; return ExtractionStats."""
    os.makedirs(out_dir, exist_ok=True)
    table, stats = extract_embeddings(extractor, [resolved for _, resolved in entries],
                                      description="audio list", allow_resample=True)
    for entry, resolved in entries:
        np.save(os.path.join(out_dir, output_name(entry)), table.matrix[table.index[resolved]])
    return stats
