"""Exporting the embedding network with a fixed input shape, and checking the exported file.

A check runs the exported file on the inputs of :func:`parity_inputs` (a random input and
log-mel features of a tone) and compares its outputs with the network's; the largest
absolute difference must stay within ``CHECK_TOLERANCE`` times the largest absolute network
output (at least 1).
"""
import os

import numpy as np

from src.data.audio import SAMPLE_RATE
from src.data.features import N_MELS, log_mel, samples_for_frames
from src.errors import InputError
from src.inference.model_file import (ModelFileError, load_graph_cell, onnx_session, onnxruntime_available,
                                      runtime_errors)


EXTENSIONS = {"MINDIR": ".mindir", "AIR": ".air", "ONNX": ".onnx"}
CHECK_TOLERANCE = 1e-4


class ExportError(InputError):
    """A format that cannot be exported here, or an exporter that fails on this network."""


class ExportMismatchError(ExportError):
    """An exported file whose output differs from the network's beyond CHECK_TOLERANCE."""


def onnx_conv_impl(configured_impl):
    """Convolution formulation of an ONNX export: always 'shifted'.

    MindSpore's ONNX exporter writes the padding of the 'native' Conv2D in the wrong
    order, so an explicit 'native' is refused; 'auto' and 'shifted' give 'shifted'.
    """
    if configured_impl == "native":
        raise ExportError("conv_impl: ONNX export needs 'shifted' (or 'auto'); MindSpore's ONNX "
                          "exporter writes the padding of the 'native' Conv2D wrongly")
    return "shifted"


def export_path(file_name, file_format):
    """``file_name`` with the extension of ``file_format`` added unless it already has it."""
    extension = EXTENSIONS[file_format]
    return file_name if file_name.endswith(extension) else file_name + extension


def export_network(network, input_shape, file_name, file_format):
    """Export ``network`` (in inference mode) for a float32 input of ``input_shape``.

    Returns the path of the written file. MINDIR and AIR use ``mindspore.export``, ONNX uses
    ``mindspore.onnx.export`` with input name 'features' and output name 'embedding'.
    An operator the exporter cannot convert raises ExportError.
    """
    import mindspore as ms

    path = export_path(file_name, file_format)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    example = ms.Tensor(np.zeros(input_shape, dtype=np.float32))
    try:
        if file_format == "ONNX":
            ms.onnx.export(network, example, file_name=path, input_names=["features"],
                           output_names=["embedding"])
        else:
            ms.export(network, example, file_name=path, file_format=file_format)
    except (RuntimeError, ValueError, TypeError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise ExportError(f"MindSpore cannot export this network as {file_format}: {first_line}") from None
    if not os.path.isfile(path):
        raise ExportError(f"MindSpore reported no error but wrote no file {path}")
    return path


def parity_inputs(input_shape, seed=0):
    """Named float32 inputs of ``input_shape`` on which an exported file is checked.

    Always seeded standard-normal values ('random input'); for a feature input
    (1, T, N_MELS) also the log-mel features of a harmonic tone ('tone features'), an
    input on the scale of real speech features.
    """
    inputs = {"random input": np.random.default_rng(seed).standard_normal(input_shape).astype(np.float32)}
    if len(input_shape) == 3 and input_shape[0] == 1 and input_shape[2] == N_MELS:
        time = np.arange(samples_for_frames(input_shape[1])) / SAMPLE_RATE
        wave = sum(np.sin(2 * np.pi * 140.0 * harmonic * time) / harmonic for harmonic in range(1, 6))
        inputs["tone features"] = log_mel(0.1 * wave.astype(np.float32))[np.newaxis]
    return inputs


def _compare(run_exported, network, input_shape, seed, path):
    """``{input name: max |exported - network|}`` on :func:`parity_inputs`; raise if beyond tolerance."""
    import mindspore as ms

    differences = {}
    for name, features in parity_inputs(input_shape, seed).items():
        expected = network(ms.Tensor(features)).asnumpy()
        found = np.asarray(run_exported(features), dtype=np.float32)
        if found.shape != expected.shape:
            raise ExportMismatchError(f"{path}: output shape {found.shape} differs from the network's "
                                      f"{expected.shape}")
        difference = float(np.max(np.abs(found - expected)))
        allowed = CHECK_TOLERANCE * max(1.0, float(np.max(np.abs(expected))))
        if not difference <= allowed:
            raise ExportMismatchError(f"{path}: output differs from the network's by up to {difference:.3g} "
                                      f"on the {name} (allowed {allowed:.3g}); the exported model is not usable")
        differences[name] = difference
    return differences


def check_mindir(path, network, input_shape, seed=0):
    """Load the MindIR at ``path`` and compare it with ``network``: ``{input name: max abs difference}``."""
    import mindspore as ms

    cell = load_graph_cell(path)
    return _compare(lambda features: cell(ms.Tensor(features)).asnumpy(), network, input_shape, seed, path)


def check_onnx(path, network, input_shape, seed=0):
    """Run the ONNX file with onnxruntime and compare it with ``network``.

    Returns ``{input name: max abs difference}``, or None when onnxruntime is not installed.
    A file onnxruntime cannot load or run raises ExportMismatchError.
    """
    if not onnxruntime_available():
        return None
    try:
        session = onnx_session(path)
        input_name = session.get_inputs()[0].name
        return _compare(lambda features: session.run(None, {input_name: features})[0], network,
                        input_shape, seed, path)
    except ModelFileError as error:
        raise ExportMismatchError(str(error)) from None
    except runtime_errors() as error:
        first_line = str(error).strip().splitlines()[0]
        raise ExportMismatchError(f"{path}: onnxruntime cannot run the exported graph ({first_line})") from None
