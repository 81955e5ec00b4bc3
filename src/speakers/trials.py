"""Scoring trials against enrolled speakers with the trial-list machinery of src/evaluation.

An enrolled speaker becomes one more row of the embedding table of the trial utterances,
named :func:`src.speakers.models.model_row`, holding its model embedding; a trial
``<speaker> <test utt>`` is then scored as the pair (model row, test utterance), so cosine
scoring, mean subtraction, AS-norm and calibration treat it like any trial.
"""
import numpy as np

from src.data.lists import Trial
from src.evaluation.embeddings import audio_durations
from src.evaluation.scoring import EmbeddingTable
from src.speakers.models import model_row, speaker_embedding


def with_speaker_models(table, recordings_table, speakers, root):
    """``(table + one model row per speaker, {model row: enrollment seconds})``.

    table: EmbeddingTable of the test utterances; recordings_table: that of the enrollment
    utterances; speakers: {speaker: [utterances]} (relative to ``root``, for the durations).
    """
    names, rows, seconds = list(table.names), [table.matrix], {}
    for speaker, utterances in speakers.items():
        names.append(model_row(speaker))
        rows.append(speaker_embedding(recordings_table.matrix[recordings_table.rows(utterances)])[None])
        seconds[model_row(speaker)] = float(np.sum(audio_durations(utterances, root)))
    return EmbeddingTable(names, np.concatenate(rows)), seconds


def model_trials(trials):
    """Trials (``utt_a`` a speaker) with ``utt_a`` replaced by the speaker's model row name."""
    return [Trial(trial.target, model_row(trial.utt_a), trial.utt_b) for trial in trials]


def probe_utterances(trials):
    """Sorted unique test utterances of trials against enrolled speakers."""
    return sorted({trial.utt_b for trial in trials})
