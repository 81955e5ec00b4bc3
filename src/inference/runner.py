"""Fixed-length inference of an exported MindIR on the CPU, with the Ascend 310 program's I/O.

The program scripts/infer_cpu.py runs it with the command line, output files and timing
report of ascend310_infer/out/main (scripts/infer_onnx.py runs an ONNX file with
onnxruntime the same way, with ``--onnx_path`` instead of ``--mindir_path``):

    python scripts/infer_cpu.py --mindir_path=FILE --input_path=DIR [--result_path=DIR]
                                [--device_id=N] [--time_file=FILE]

Every ``<utt>.bin`` of ``--input_path`` (float32, the model's input size; see
:mod:`src.inference.binary_io`) is checked first, then run through the model in name
order; its embedding (float32, emb_size values) is written to ``<result_path>/<utt>.bin``.
``--result_path`` defaults to ./result_Files, ``--time_file`` to
``<result_path>/../time_Result/test_perform_static.txt``; ``--device_id`` is accepted for
the same command line and ignored. The timing report holds one line with the average
model time per utterance (the graph is compiled on an untimed first run).
Usage errors exit with status 2 (:func:`parse_args`, as out/main does), failures with
status 1 and a line naming the file.
"""
import argparse
import math
import os
import time

import numpy as np

from src.fileio import write_text
from src.inference.binary_io import (BinFileError, check_float_file, list_bin_files, read_float_file,
                                     write_float_file)
from src.inference.model_file import load_graph_cell, mindir_shapes

DEFAULT_RESULT_PATH = "./result_Files"


def default_time_file(result_path):
    """``<result_path>/../time_Result/test_perform_static.txt``, normalised."""
    return os.path.normpath(os.path.join(result_path, "..", "time_Result", "test_perform_static.txt"))


def format_timing(utterances, total_ms):
    """The timing line (with newline) of ``utterances`` runs taking ``total_ms`` milliseconds."""
    average_ms = total_ms / utterances if utterances else 0.0
    return (f"ECAPA-TDNN inference cost average time: {average_ms:.3f} ms of infer_count {utterances} "
            f"(total {total_ms:.3f} ms)\n")


class _SingleValue(argparse.Action):
    """Store a non-empty option value; giving the option twice is a usage error."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.dest) is not None:
            parser.error(f"option '{option_string}' is given more than once")
        if values == "":
            parser.error(f"option '{option_string}' needs a value")
        setattr(namespace, self.dest, values)


def _device_id(text):
    if not text.isdigit() or len(text) > 10 or int(text) > 0xFFFFFFFF:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got '{text}'")
    return int(text)


def parse_args(argv=None, model_option="mindir_path", model_kind="MindIR"):
    """Options of a runner, defaults filled in as the Ascend 310 program fills them.

    ``model_option`` names the option of the model file (``--mindir_path``; the ONNX runner
    uses ``--onnx_path``), ``model_kind`` its format in the help. A bad command line prints
    argparse's usage and message and exits with status 2, the usage-error status of
    ascend310_infer/out/main.
    """
    parser = argparse.ArgumentParser(description=f"Fixed-length ECAPA-TDNN inference of a {model_kind} on the CPU",
                                     allow_abbrev=False)
    parser.add_argument(f"--{model_option}", required=True, action=_SingleValue,
                        help=f"exported model ({model_kind}), input (1, length, 80) float32")
    parser.add_argument("--input_path", required=True, action=_SingleValue,
                        help="folder of <utt>.bin feature files (raw float32, 1*length*80 values)")
    parser.add_argument("--result_path", action=_SingleValue,
                        help=f"folder for <utt>.bin embeddings (raw float32), default {DEFAULT_RESULT_PATH}")
    parser.add_argument("--device_id", type=_device_id, action=_SingleValue,
                        help="device index, accepted for compatibility and ignored on the CPU")
    parser.add_argument("--time_file", action=_SingleValue,
                        help="timing report, default <result_path>/../time_Result/test_perform_static.txt")
    args = parser.parse_args(argv)
    if args.result_path is None:
        args.result_path = DEFAULT_RESULT_PATH
    if args.time_file is None:
        args.time_file = default_time_file(args.result_path)
    return args


class MindIRModel:
    """A fixed-shape MindIR run on one feature array at a time."""

    def __init__(self, mindir_path):
        self.input_shape, self.output_shape = mindir_shapes(mindir_path)
        self.input_size = math.prod(self.input_shape)
        self.cell = load_graph_cell(mindir_path)

    def __call__(self, features):
        """features: float32 array of input_size values -> (output size,) float32 embedding."""
        import mindspore as ms

        tensor = ms.Tensor(np.asarray(features, dtype=np.float32).reshape(self.input_shape))
        return self.cell(tensor).asnumpy().reshape(-1)


def run_inference(model, input_path, result_path, time_file):
    """Embed every feature file of ``input_path`` into ``result_path``; return (files, total_ms).

    model: a MindIRModel, an OnnxModel (src/inference/onnx_model.py) or anything with
    ``input_shape``, ``input_size`` and a call mapping input_size float32 values to an
    embedding; a MindIR path is loaded as a MindIRModel.
    """
    files = list_bin_files(input_path)
    if isinstance(model, (str, os.PathLike)):
        model = MindIRModel(model)
    note = f" (model input shape {model.input_shape})"
    for path in files:
        try:
            check_float_file(path, model.input_size)
        except BinFileError as error:
            raise BinFileError(f"{error}{note}") from None
    os.makedirs(result_path, exist_ok=True)
    print(f"model input {model.input_shape}, {len(files)} utterances from {input_path}", flush=True)

    model(read_float_file(files[0], model.input_size))  # compiles the graph
    total_ms = 0.0
    for path in files:
        features = read_float_file(path, model.input_size)
        start = time.perf_counter()
        embedding = model(features)
        total_ms += 1000.0 * (time.perf_counter() - start)
        write_float_file(os.path.join(result_path, os.path.basename(path)), embedding)

    write_text(time_file, format_timing(len(files), total_ms))
    return files, total_ms
