"""Exporting the embedding network with a fixed input shape, and checking the exported file.

A check runs the exported file on a random input of the export shape and compares its
output with the network's; the largest absolute difference must stay within
``CHECK_TOLERANCE`` times the largest absolute network output (at least 1).
"""
import os

import numpy as np

from src.errors import InputError
from src.inference.model_file import load_graph_cell

EXTENSIONS = {"MINDIR": ".mindir", "AIR": ".air", "ONNX": ".onnx"}
CHECK_TOLERANCE = 1e-4


class ExportError(InputError):
    """A format that cannot be exported here, or an exporter that fails on this network."""


class ExportMismatchError(RuntimeError):
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


def _compare(run_exported, network, input_shape, seed, path):
    """Largest |exported - network| on a seeded standard-normal input; raise if beyond tolerance."""
    import mindspore as ms

    features = np.random.default_rng(seed).standard_normal(input_shape).astype(np.float32)
    expected = network(ms.Tensor(features)).asnumpy()
    found = np.asarray(run_exported(features), dtype=np.float32)
    if found.shape != expected.shape:
        raise ExportMismatchError(f"{path}: output shape {found.shape} differs from the network's "
                                  f"{expected.shape}")
    difference = float(np.max(np.abs(found - expected)))
    allowed = CHECK_TOLERANCE * max(1.0, float(np.max(np.abs(expected))))
    if not difference <= allowed:
        raise ExportMismatchError(f"{path}: output differs from the network's by up to {difference:.3g} "
                                  f"(allowed {allowed:.3g}); the exported model is not usable")
    return difference


def check_mindir(path, network, input_shape, seed=0):
    """Load the MindIR at ``path`` and compare it with ``network``; return the max abs difference."""
    import mindspore as ms

    cell = load_graph_cell(path)
    return _compare(lambda features: cell(ms.Tensor(features)).asnumpy(), network, input_shape, seed, path)


def check_onnx(path, network, input_shape, seed=0):
    """Run the ONNX file with onnxruntime and compare it with ``network``.

    Returns the max abs difference, or None when onnxruntime is not installed.
    """
    try:
        import onnxruntime
    except ImportError:
        return None
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    failures = (ort_errors.Fail, ort_errors.InvalidGraph, ort_errors.InvalidArgument,
                ort_errors.RuntimeException)
    try:
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        input_name = session.get_inputs()[0].name
        return _compare(lambda features: session.run(None, {input_name: features})[0], network,
                        input_shape, seed, path)
    except failures as error:
        raise ExportMismatchError(f"{path}: onnxruntime cannot run the exported graph ({error})") from None
