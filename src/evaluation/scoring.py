"""Cosine scoring of verification trials, with optional mean subtraction and AS-norm.

Embeddings come either as a ``{utterance: (D,) vector}`` dict or as an
:class:`EmbeddingTable` (names + (U, D) matrix); trials are objects with ``utt_a`` and
``utt_b`` attributes, such as :class:`src.data.lists.Trial`.

Before scoring, every embedding (trial side and cohort alike) has the optional ``mean``
(D,) subtracted and is scaled to unit length, so the raw score is the cosine similarity.

Adaptive score normalisation (AS-norm, the symmetric variant of Matejka et al., 2017):
each trial utterance is scored against every cohort embedding, and the mean and standard
deviation of its ``top_n`` highest cohort scores are kept. A trial score ``s`` becomes

    0.5 * ((s - mean_a) / std_a + (s - mean_b) / std_b)

using the statistics of its two utterances. The statistics are computed once per
utterance, never per trial. Work is done in blocks of rows (utterances or trials) so
that no (utterances x cohort) or (trials x D) array larger than one block is built.
"""
import numpy as np

# float32 values held by one working block when ``chunk_size`` is not given (32 MB).
BLOCK_ELEMENTS = 1 << 23


class EmbeddingTable:
    """Named embeddings: ``names`` (U,) strings and ``matrix`` (U, D) float32."""

    def __init__(self, names, matrix):
        names = list(names)
        matrix = np.asarray(matrix, dtype=np.float32)
        if matrix.ndim != 2:
            raise ValueError(f"embedding matrix must be 2-D (utterances, dim), got shape {matrix.shape}")
        if len(names) != matrix.shape[0]:
            raise ValueError(f"{len(names)} names for {matrix.shape[0]} embedding rows")
        self.index = {name: row for row, name in enumerate(names)}
        if len(self.index) != len(names):
            raise ValueError("embedding names are not unique")
        bad = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
        if bad.size:
            raise ValueError(f"embedding of {names[bad[0]]!r} contains NaN or infinite values "
                             f"({bad.size} such embeddings)")
        self.names = names
        self.matrix = matrix

    @classmethod
    def from_dict(cls, embeddings):
        """Build a table from ``{name: (D,) vector}``; every vector must have the same size."""
        if not embeddings:
            raise ValueError("no embeddings given")
        names = list(embeddings)
        vectors = [np.asarray(embeddings[name], dtype=np.float32).reshape(-1) for name in names]
        dim = vectors[0].size
        for name, vector in zip(names, vectors):
            if vector.size != dim:
                raise ValueError(f"embedding of {name!r} has {vector.size} values, "
                                 f"expected {dim} like {names[0]!r}")
        return cls(names, np.stack(vectors))

    def __len__(self):
        return len(self.names)

    @property
    def dim(self):
        """Embedding size D."""
        return self.matrix.shape[1]

    def rows(self, names):
        """Row indices (len(names),) int64 of ``names``; unknown names raise ValueError."""
        index = self.index
        missing = [name for name in names if name not in index]
        if missing:
            raise ValueError(f"{len(missing)} trial utterances have no embedding, "
                             f"e.g. {', '.join(repr(name) for name in missing[:3])}")
        return np.fromiter((index[name] for name in names), dtype=np.int64, count=len(names))


def as_table(embeddings):
    """Return ``embeddings`` (dict, EmbeddingTable or (U, D) array) as an EmbeddingTable.

    Rows of a plain array are named ``"row <i>"``.
    """
    if isinstance(embeddings, EmbeddingTable):
        return embeddings
    if isinstance(embeddings, dict):
        return EmbeddingTable.from_dict(embeddings)
    matrix = np.asarray(embeddings, dtype=np.float32)
    return EmbeddingTable([f"row {row}" for row in range(len(matrix))], matrix)


def mean_embedding(embeddings):
    """Mean (D,) float64 of ``embeddings`` (dict, EmbeddingTable or (U, D) array)."""
    return as_table(embeddings).matrix.mean(axis=0, dtype=np.float64)


def trial_labels(trials):
    """(num_trials,) bool array, True for target trials."""
    return np.fromiter((trial.target for trial in trials), dtype=bool, count=len(trials))


def unit_rows(table, mean=None):
    """Rows of ``table`` minus ``mean`` (D,), scaled to unit length: (U, D) float32."""
    matrix = table.matrix
    if mean is not None:
        mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        if mean.size != table.dim:
            raise ValueError(f"mean has {mean.size} values but embeddings have {table.dim}")
        matrix = matrix - mean
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    zero = np.flatnonzero(norms[:, 0] == 0)
    if zero.size:
        after = " after mean subtraction" if mean is not None else ""
        raise ValueError(f"embedding of {table.names[zero[0]]!r} has zero length{after}; "
                         "cosine scoring is undefined")
    return matrix / norms


def _block_rows(chunk_size, row_width):
    """Rows per block: ``chunk_size`` if given, else enough to fill BLOCK_ELEMENTS."""
    if chunk_size is None:
        return max(1, BLOCK_ELEMENTS // row_width)
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    return int(chunk_size)


def paired_cosine(units, rows_a, rows_b, chunk_size=None):
    """Row-wise dot products ``units[rows_a[k]] . units[rows_b[k]]``: (K,) float64.

    units: (U, D) unit-length embeddings; rows_a, rows_b: (K,) row indices.
    """
    scores = np.empty(len(rows_a), dtype=np.float64)
    step = _block_rows(chunk_size, units.shape[1])
    for start in range(0, len(rows_a), step):
        stop = start + step
        scores[start:stop] = np.einsum("kd,kd->k", units[rows_a[start:stop]], units[rows_b[start:stop]])
    return scores


def cohort_statistics(units, cohort_units, top_n, chunk_size=None):
    """Mean and std of each row's ``top_n`` highest cohort scores: two (U,) float64 arrays.

    units: (U, D) and cohort_units: (C, D) unit-length embeddings. The standard
    deviation is the sample one (divisor top_n - 1).
    """
    cohort_size = cohort_units.shape[0]
    if not 2 <= top_n <= cohort_size:
        raise ValueError(f"top_n must be between 2 and the cohort size {cohort_size}, got {top_n}")
    means = np.empty(len(units), dtype=np.float64)
    stds = np.empty(len(units), dtype=np.float64)
    step = _block_rows(chunk_size, cohort_size)
    cohort_t = np.ascontiguousarray(cohort_units.T)
    for start in range(0, len(units), step):
        block = units[start:start + step] @ cohort_t
        top = np.partition(block, cohort_size - top_n, axis=1)[:, cohort_size - top_n:]
        top = top.astype(np.float64)
        means[start:start + step] = top.mean(axis=1)
        stds[start:start + step] = top.std(axis=1, ddof=1)
    return means, stds


def score_trials(embeddings, trials, mean=None, cohort=None, top_n=300, chunk_size=None):
    """Score ``trials`` by cosine similarity, AS-normalised when a ``cohort`` is given.

    embeddings: dict or EmbeddingTable holding every trial utterance.
    mean: optional (D,) vector subtracted from all embeddings (e.g. :func:`mean_embedding`
        of the training or cohort embeddings).
    cohort: optional dict, EmbeddingTable or (C, D) array of cohort embeddings.
    top_n: number of highest cohort scores per utterance used by AS-norm.
    chunk_size: rows (utterances or trials) per working block; None sizes blocks to about
        BLOCK_ELEMENTS values. Results do not depend on it.
    Returns (num_trials,) float64 scores in trial order.
    """
    table = as_table(embeddings)
    if not trials:
        raise ValueError("no trials to score")
    rows = table.rows([trial.utt_a for trial in trials] + [trial.utt_b for trial in trials])
    used, position = np.unique(rows, return_inverse=True)
    used_table = EmbeddingTable([table.names[row] for row in used], table.matrix[used])
    units = unit_rows(used_table, mean)
    rows_a, rows_b = position[:len(trials)], position[len(trials):]
    scores = paired_cosine(units, rows_a, rows_b, chunk_size)
    if cohort is None:
        return scores
    cohort_table = as_table(cohort)
    if cohort_table.dim != table.dim:
        raise ValueError(f"cohort embeddings have {cohort_table.dim} values, "
                         f"trial embeddings {table.dim}")
    means, stds = cohort_statistics(units, unit_rows(cohort_table, mean), top_n, chunk_size)
    flat = np.flatnonzero(stds == 0)
    if flat.size:
        raise ValueError(f"the top {top_n} cohort scores of {used_table.names[flat[0]]!r} are all "
                         "equal; AS-norm is undefined (duplicated cohort embeddings?)")
    return 0.5 * ((scores - means[rows_a]) / stds[rows_a] + (scores - means[rows_b]) / stds[rows_b])
