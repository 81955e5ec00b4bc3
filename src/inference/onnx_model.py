"""Running an exported ONNX model with onnxruntime: its shapes and a callable session.

export.py writes ONNX files with one float32 input 'features' (1, length, 80) and one
output 'embedding' (1, emb_size); :class:`OnnxModel` runs such a file on the CPU.
"""
import math
import os

import numpy as np

from src.inference.model_file import ModelFileError


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


class OnnxModel:
    """A fixed-shape ONNX model run on one feature array at a time (the interface of MindIRModel)."""

    def __init__(self, path):
        self.session = onnx_session(path)
        self.input_shape, self.output_shape = onnx_shapes(self.session, os.fspath(path))
        self.input_size = math.prod(self.input_shape)
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, features):
        """features: float32 array of input_size values -> (output size,) float32 embedding."""
        batch = np.asarray(features, dtype=np.float32).reshape(self.input_shape)
        return self.session.run(None, {self.input_name: batch})[0].reshape(-1)
