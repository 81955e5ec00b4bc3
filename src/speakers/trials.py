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


def speaker_models(recordings_table, speakers):
    """Model embeddings (K, D) float32 of {speaker: [utterances]}, in its order, from the
    EmbeddingTable of their recordings."""
    return np.stack([speaker_embedding(recordings_table.matrix[recordings_table.rows(utterances)])
                     for utterances in speakers.values()])


def with_speaker_models(table, recordings_table, speakers, root):
    """``(table + one model row per speaker, {model row: enrollment seconds})``.

    table: EmbeddingTable of the test utterances; recordings_table: that of the enrollment
    utterances; speakers: {speaker: [utterances]} (relative to ``root``, for the durations).
    """
    rows = [model_row(speaker) for speaker in speakers]
    seconds = {row: float(np.sum(audio_durations(utterances, root)))
               for row, utterances in zip(rows, speakers.values())}
    return (EmbeddingTable(list(table.names) + rows,
                           np.concatenate([table.matrix, speaker_models(recordings_table, speakers)])), seconds)


def model_trials(trials):
    """Trials (``utt_a`` a speaker) with ``utt_a`` replaced by the speaker's model row name."""
    return [Trial(trial.target, model_row(trial.utt_a), trial.utt_b) for trial in trials]


def probe_utterances(trials):
    """Sorted unique test utterances of trials against enrolled speakers."""
    return sorted({trial.utt_b for trial in trials})
