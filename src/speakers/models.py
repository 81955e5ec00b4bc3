"""Speaker models from several recordings, and the scores of one recording against many models.

An enrolled speaker is one embedding: its direction is the mean of the length-normalised
embeddings of its recordings, its length the mean of their lengths. Cosine scoring and
AS-norm see only the direction; the length keeps the ``mean_embedding_norm`` quality of a
qmf calibration, and mean subtraction, on the scale of single embeddings. Its duration (for
a qmf calibration) is the total of its recordings'.

>>> import numpy as np
>>> model = speaker_embedding(np.array([[3.0, 0.0], [0.0, 1.0]]))
>>> [round(float(value), 4) for value in model]  # direction (1, 1)/sqrt(2), length (3 + 1) / 2
[1.4142, 1.4142]
"""
from dataclasses import dataclass

import numpy as np

from src.evaluation.scoring import cohort_statistics, mean_embedding

# Name of a speaker model's row among utterance embeddings: list fields hold no spaces, so it
# never equals an utterance path.
MODEL_ROW_SUFFIX = " (enrolled)"


def model_row(speaker):
    """Row name of ``speaker``'s model in an embedding table that also holds utterances."""
    return speaker + MODEL_ROW_SUFFIX


def speaker_of_row(name):
    """The speaker whose model row is named ``name`` (the inverse of :func:`model_row`)."""
    return name[:-len(MODEL_ROW_SUFFIX)]


def unit_sum_and_norms(embeddings):
    """Sum (D,) float64 of the unit-length rows of ``embeddings`` (n, D) and their lengths (n,).

    ValueError for a zero row (its direction is undefined).
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(embeddings, axis=1)
    if (norms == 0).any():
        raise ValueError("an embedding of zero length has no direction")
    return (embeddings / norms[:, None]).sum(axis=0), norms


def model_from_sums(unit_sums, norm_sums, counts):
    """Speaker embeddings (K, D) float32 from K models' unit-vector sums (K, D), length sums (K,)
    and recording counts (K,)."""
    unit_sums = np.asarray(unit_sums, dtype=np.float64)
    directions = unit_sums / np.maximum(np.linalg.norm(unit_sums, axis=1, keepdims=True), np.finfo(float).tiny)
    return (directions * (np.asarray(norm_sums) / np.asarray(counts))[:, None]).astype(np.float32)


def speaker_embedding(embeddings):
    """The model (D,) float32 of one speaker from its recordings' embeddings (n, D) (module docstring)."""
    unit_sum, norms = unit_sum_and_norms(embeddings)
    return model_from_sums(unit_sum[None], [norms.sum()], [len(norms)])[0]


@dataclass(frozen=True)
class ProbeScorer:
    """Scores of a probe embedding against K speaker models, as eval.py scores a trial.

    units: (K, D) unit-length models (minus ``mean`` before the normalisation when given);
    mean: (D,) vector subtracted from both sides, or None; cohort_units: (C, D) unit-length
    cohort embeddings for AS-norm, or None; model_stats: (mean, std) (K,) of each model's
    ``top_n`` best cohort scores, computed once.
    """
    units: np.ndarray
    mean: object
    cohort_units: object
    top_n: int
    model_stats: tuple

    @classmethod
    def for_config(cls, config, models, cohort):
        """The scorer of eval.py's settings (``mean_subtraction``, ``score_norm``, ``top_n``) for models
        (K, D); ``cohort``: the cohort's EmbeddingTable, None when neither setting uses one."""
        mean = mean_embedding(cohort) if config.mean_subtraction else None
        return cls.build(models, mean, cohort.matrix if config.score_norm == "asnorm" else None, config.top_n)

    @classmethod
    def build(cls, models, mean=None, cohort=None, top_n=300):
        """From models (K, D), an optional mean (D,) and optional raw cohort embeddings (C, D)."""
        units = _units(models, mean)
        cohort_units = None if cohort is None else _units(cohort, mean)
        stats = None if cohort is None else cohort_statistics(units, cohort_units, top_n)
        if stats is not None and (stats[1] == 0).any():
            raise ValueError(f"the top {top_n} cohort scores of a speaker model are all equal; AS-norm is undefined")
        return cls(units, mean, cohort_units, top_n, stats)

    def scores(self, probe):
        """Scores (K,) float64 of the probe embedding (D,) against every model."""
        unit = _units(np.asarray(probe)[None], self.mean)[0]
        raw = (self.units @ unit).astype(np.float64)
        if self.cohort_units is None:
            return raw
        probe_mean, probe_std = cohort_statistics(unit[None], self.cohort_units, self.top_n)
        if probe_std[0] == 0:
            raise ValueError(f"the top {self.top_n} cohort scores of the recording are all equal; "
                             "AS-norm is undefined")
        model_mean, model_std = self.model_stats
        return 0.5 * ((raw - model_mean) / model_std + (raw - probe_mean[0]) / probe_std[0])


def _units(matrix, mean):
    matrix = np.asarray(matrix, dtype=np.float32)
    if mean is not None:
        matrix = matrix - np.asarray(mean, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError("an embedding has zero length; cosine scoring is undefined")
    return matrix / norms


def top_k(scores, k):
    """Indices of the ``k`` highest ``scores`` (K,), best first (ties by index)."""
    k = min(k, len(scores))
    best = np.argpartition(-scores, k - 1)[:k]
    return best[np.lexsort((best, -scores[best]))]
