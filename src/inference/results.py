"""Reading the embedding files written by the Ascend 310 program or the CPU runner."""
import os

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
