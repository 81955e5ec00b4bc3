"""Reading the embedding files written by the Ascend 310 program or the CPU and ONNX runners."""
import os

import numpy as np

from src.errors import InputError
from src.inference.binary_io import read_float_file
from src.inference.fixed_length import bin_file_names


def read_result_embeddings(result_path, utterances, emb_size):
    """``{utterance: (emb_size,) float32}`` from ``<result_path>/<name>.bin``.

    Names follow :func:`src.inference.fixed_length.bin_file_name`. A missing file or one
    holding another number of values raises BinFileError naming the file.
    """
    return {utterance: read_float_file(os.path.join(result_path, name), emb_size,
                                       what=f"result file of utterance {utterance}")
            for utterance, name in bin_file_names(utterances).items()}


def average_embeddings(vectors):
    """One embedding from the (W, D) embeddings of an utterance's windows, float32 (D,).

    Each is scaled to unit length, the mean is taken and scaled to unit length again (a
    zero vector stays zero).
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    mean = (vectors / np.where(norms > 0, norms, 1.0)).mean(axis=0)
    length = np.linalg.norm(mean)
    return (mean / length if length > 0 else mean).astype(np.float32)


def read_window_embeddings(result_path, window_pairs, utterances, emb_size, source):
    """``{utterance: averaged (emb_size,) float32}`` of the window results listed in ``window_pairs``.

    window_pairs: ``(window file, utterance)`` pairs of a windows.txt (``source``, named in
    errors); every utterance of ``utterances`` needs at least one window. Windows of other
    utterances are ignored. A missing or wrongly sized result file raises BinFileError.
    """
    wanted = set(utterances)
    grouped = {}
    for name, utterance in window_pairs:
        if utterance in wanted:
            grouped.setdefault(utterance, []).append(name)
    missing = sorted(wanted - set(grouped))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise InputError(f"{source} lists no window of {len(missing)} utterance(s) of the trial list: {shown}")
    return {utterance: average_embeddings([read_float_file(os.path.join(result_path, name), emb_size,
                                                           what=f"result file of a window of {utterance}")
                                           for name in names])
            for utterance, names in grouped.items()}
