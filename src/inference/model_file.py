"""Reading an exported model: input/output shapes of a MindIR or ONNX file, a callable MindIR
cell, an onnxruntime session, and the model card export.py writes beside the file.

The model card ``<model without extension>.json`` records what the file itself cannot say:
the front end whose features it takes, so that preprocess.py computes them.
"""
import json
import math
import os

from src.errors import InputError
from src.fileio import file_fingerprint

_FLOAT32 = 1  # TensorProto.DataType.FLOAT of mind_ir.proto


class ModelFileError(InputError):
    """A model file that is missing, unreadable, or not a fixed-shape float32 model."""


def _read_model_proto(path):
    from google.protobuf.message import DecodeError
    from mindspore.train import mind_ir_pb2

    if not os.path.isfile(path):
        raise ModelFileError(f"{path}: MindIR file not found")
    model = mind_ir_pb2.ModelProto()
    try:
        with open(path, "rb") as handle:
            model.ParseFromString(handle.read())
    except (DecodeError, ValueError, OSError) as error:
        raise ModelFileError(f"{path}: not a readable MindIR file ({error})") from None
    if not model.graph.input or not model.graph.output:
        raise ModelFileError(f"{path}: not a MindIR model (no graph inputs or outputs)")
    return model


def _shape(path, value, role):
    if len(value.tensor) != 1:
        raise ModelFileError(f"{path}: model {role} {value.name!r} is not a single tensor")
    tensor = value.tensor[0]
    if tensor.data_type != _FLOAT32:
        raise ModelFileError(f"{path}: model {role} {value.name!r} is not float32")
    shape = tuple(int(dim) for dim in tensor.dims)
    if any(dim <= 0 for dim in shape):
        raise ModelFileError(f"{path}: model {role} shape {shape} has an unfixed dimension; "
                             "export the model with a fixed length")
    return shape


def mindir_shapes(path):
    """``(input_shape, output_shape)`` of a MindIR model with one float32 input and output.

    E.g. ((1, 1199, 80), (1, 192)) for the default export. Reads only the model's
    description, without building the graph. Raises ModelFileError naming the file.
    """
    path = os.fspath(path)
    model = _read_model_proto(path)
    if len(model.graph.input) != 1 or len(model.graph.output) != 1:
        raise ModelFileError(f"{path}: expected a model with 1 input and 1 output, found "
                             f"{len(model.graph.input)} and {len(model.graph.output)}")
    return _shape(path, model.graph.input[0], "input"), _shape(path, model.graph.output[0], "output")


def _runtime():
    try:
        import onnxruntime
    except ImportError:
        raise ModelFileError("onnxruntime is not installed; install requirements-dev.txt to run ONNX "
                             "models") from None
    return onnxruntime


def onnxruntime_available():
    """Whether onnxruntime can be imported."""
    try:
        _runtime()
    except ModelFileError:
        return False
    return True


def runtime_errors():
    """The exception types onnxruntime raises for a file or graph it cannot load or run."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    return (state.Fail, state.InvalidGraph, state.InvalidArgument, state.RuntimeException, state.NoSuchFile,
            state.InvalidProtobuf, state.NotImplemented)


def onnx_session(path):
    """An onnxruntime CPU InferenceSession of ``path``; ModelFileError naming the file if it cannot load."""
    runtime = _runtime()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelFileError(f"{path}: ONNX file not found")
    try:
        return runtime.InferenceSession(path, providers=["CPUExecutionProvider"])
    except runtime_errors() as error:
        first_line = str(error).strip().splitlines()[0]
        raise ModelFileError(f"{path}: onnxruntime cannot load this ONNX file ({first_line})") from None


def _fixed_shape(path, value, role):
    shape = tuple(value.shape)
    if not all(isinstance(dim, int) and dim > 0 for dim in shape):
        raise ModelFileError(f"{path}: model {role} {value.name!r} has the shape {shape} with an unfixed "
                             "dimension; export the model with a fixed length")
    if value.type != "tensor(float)":
        raise ModelFileError(f"{path}: model {role} {value.name!r} is {value.type}, not float32")
    return shape


def onnx_shapes(session, path):
    """``(input_shape, output_shape)`` of a session with one fixed-shape float32 input and output."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelFileError(f"{path}: expected a model with 1 input and 1 output, found {len(inputs)} "
                             f"and {len(outputs)}")
    return _fixed_shape(path, inputs[0], "input"), _fixed_shape(path, outputs[0], "output")


def model_shapes(path):
    """``(input_shape, output_shape)`` of an exported model: ONNX for a ``.onnx`` file, else MindIR."""
    if os.fspath(path).endswith(".onnx"):
        return onnx_shapes(onnx_session(path), os.fspath(path))
    return mindir_shapes(path)


def fixed_length_of(path, mels):
    """``length`` of a model (MindIR or ONNX) whose input is (1, length, ``mels``); ModelFileError otherwise."""
    input_shape, _ = model_shapes(path)
    if len(input_shape) != 3 or input_shape[0] != 1 or input_shape[2] != mels:
        raise ModelFileError(f"{path}: model input shape {input_shape} is not (1, length, {mels})")
    return input_shape[1]


def embedding_size_of(path):
    """Values per embedding (the product of the output shape) of a MindIR or ONNX model."""
    _, output_shape = model_shapes(path)
    return math.prod(output_shape)


def load_graph_cell(path):
    """The MindIR at ``path`` as a callable ``mindspore.nn.GraphCell`` (graph mode)."""
    import mindspore as ms
    from mindspore import nn

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelFileError(f"{path}: MindIR file not found")
    try:
        graph = ms.load(path)
    except (RuntimeError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise ModelFileError(f"{path}: MindSpore cannot load this MindIR ({first_line})") from None
    return nn.GraphCell(graph)


def model_card_path(path):
    """Where the model card of the exported model ``path`` is: the same name ending in .json."""
    return os.path.splitext(path)[0] + ".json"


def _card_entries(settings):
    return {"model": settings.model, "features": settings.features, "in_channels": settings.in_channels,
            "emb_size": settings.emb_size}


def _read_card_file(card_path):
    with open(card_path, encoding="utf-8") as handle:
        return json.load(handle)


def write_model_card(card_path, settings, model_file, final_path):
    """Write to ``card_path`` the model card of the exported ``model_file``, whose final path is
    ``final_path``: its settings (a Config) and the SHA-256 of each model file the card describes.
    The card at the final card path keeps its fingerprints of the model's other formats (the ONNX
    beside a MindIR) when it describes the same settings. export.py gives temporary paths for
    ``card_path`` and ``model_file``, renamed into place together."""
    card = _card_entries(settings)
    try:
        previous = _read_card_file(model_card_path(final_path))
    except (OSError, ValueError):
        previous = None
    kept = {}
    if (isinstance(previous, dict) and isinstance(previous.get("sha256"), dict)
            and all(previous.get(key) == value for key, value in card.items())):
        kept = previous["sha256"]
    card["sha256"] = {**kept, os.path.basename(final_path): file_fingerprint(model_file)}
    with open(card_path, "w", encoding="utf-8") as handle:
        json.dump(card, handle, indent=1)
        handle.write("\n")


def read_model_card(path):
    """The model card (dict) of the exported model ``path``, or None when it has none (a file
    exported before cards were written takes the default front end).

    ModelFileError for an unreadable card, one without a front end, or one that does not hold the
    fingerprint of ``path`` (the card of another export, e.g. one interrupted between its two
    files). A card from before fingerprints were written is taken as it is.
    """
    card_path = model_card_path(path)
    if not os.path.isfile(card_path):
        return None
    try:
        card = _read_card_file(card_path)
    except (OSError, ValueError) as error:
        raise ModelFileError(f"{card_path}: not a readable model card ({error})") from None
    if not isinstance(card, dict) or not isinstance(card.get("features"), str):
        raise ModelFileError(f"{card_path}: a model card needs a 'features' entry naming the front end")
    fingerprints = card.get("sha256")
    if fingerprints is not None and (not isinstance(fingerprints, dict)
                                     or fingerprints.get(os.path.basename(path)) != file_fingerprint(path)):
        raise ModelFileError(f"{card_path}: describes another model file than {path} (the fingerprints differ: "
                             "an export interrupted between its two files, or files of two exports mixed); "
                             "export the model again")
    return card
