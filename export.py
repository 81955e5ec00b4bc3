"""Export the embedding network (the ``model`` setting, ECAPA-TDNN by default) for fixed-length inference.

    python export.py --checkpoint_path CKPT [--file_format MINDIR|AIR|ONNX] [--file_name NAME]
                     [--length N] [--conv_impl native] [--config FILE.yaml]

Builds the configured embedding network, loads a training or exported-weights
checkpoint (``--checkpoint_path``, else the ``model_path`` setting) and writes
``<file_name>.<format>`` with one float32 input (1, length, in_channels) and one output
(1, emb_size). The graph written is the inference copy of the network with batch norm folded
into the neighbouring layers (src/inference/folding.py); a model without a folding rule is
exported as it is. The convolution formulation is ``conv_impl`` ('auto' = the device's); for
Ascend 310 export with ``--conv_impl native``, which also works from a CPU machine. AIR
needs an Ascend device. ONNX uses 'shifted' (MindSpore's ONNX exporter writes the padding of
the native Conv2D wrongly) and the folded graph, which holds only operators the exporter
converts; its input is named 'features', its output 'embedding'.

The exported file is then checked: a MindIR is loaded back (as the CPU runner loads it), an
ONNX file is run with onnxruntime when installed, and its outputs on a random input and on
the features of a tone must match the checkpoint network's; otherwise the file is deleted
and the script exits with status 1. Beside it goes ``<file_name>.json``, the model card naming
the front end (``features``) whose features the model takes; preprocess.py reads it.
"""
import os

os.environ.setdefault("GLOG_v", "3")  # MindSpore's own log: errors only, unless GLOG_v is set

import time

from src.checkpoint import load_embedding_weights
from src.cli import run_main
from src.config import ConfigError, load_config
from src.fileio import check_writable_file
from src.inference.exporter import (CHECK_TOLERANCE, ExportError, ExportMismatchError,
                                    check_mindir, check_onnx, export_network, export_path, onnx_conv_impl)
from src.inference.fixed_length import check_fixed_length
from src.inference.folding import fold_batch_norm
from src.inference.model_file import model_card_path, write_model_card
from src.model import build_embedding_network
from src.device import conv_impl, init_context


def add_arguments(parser):
    parser.add_argument("--checkpoint_path", default="",
                        help="training or exported-weights checkpoint; '' = the model_path setting")


def check_exported(path, file_format, network, input_shape):
    """Compare the exported file with ``network``; print the outcome. Deletes the file on mismatch."""
    try:
        if file_format == "MINDIR":
            differences = check_mindir(path, network, input_shape)
        elif file_format == "ONNX":
            differences = check_onnx(path, network, input_shape)
        else:
            print("check: an AIR file cannot be run by MindSpore; convert it with ATC and compare there")
            return
    except ExportMismatchError as error:
        os.remove(path)
        raise ExportMismatchError(f"{error} (deleted)") from None
    if differences is None:
        print("check: onnxruntime is not installed, the ONNX file was not run")
        return
    inputs = " and the ".join(differences)
    measured = " and ".join(f"{difference:.3g}" for difference in differences.values())
    print(f"check: {file_format} output vs checkpoint network on the {inputs}: max abs difference {measured} "
          f"(tolerance {CHECK_TOLERANCE:g} x largest output)")


def main(argv=None):
    """Export with the settings of ``argv`` (default: the command line)."""
    config, args = load_config(argv, description="Export the embedding network", add_arguments=add_arguments)
    checkpoint = args.checkpoint_path or config.model_path
    if not checkpoint:
        raise ConfigError("checkpoint_path: no checkpoint given; pass --checkpoint_path or set model_path")
    check_fixed_length(config.length)
    check_writable_file(export_path(config.file_name, config.file_format), "file_name")
    device = init_context(config)
    if config.file_format == "AIR" and device != "Ascend":
        raise ExportError(f"file_format: AIR files can only be exported on an Ascend device, this run is on "
                          f"{device}; export MINDIR instead")
    impl = onnx_conv_impl(config.conv_impl) if config.file_format == "ONNX" else conv_impl(config, device)

    network = build_embedding_network(config, impl)
    load_embedding_weights(checkpoint, network)
    network.set_train(False)
    folded = fold_batch_norm(network, config, impl)
    if folded is None:
        print(f"model {config.model} has no batch-norm folding rule: exporting it unfolded")
    input_shape = (1, config.length, config.in_channels)

    start = time.perf_counter()
    path = export_network(network if folded is None else folded, input_shape, config.file_name, config.file_format)
    seconds = time.perf_counter() - start
    size_mb = os.path.getsize(path) / 1e6
    print(f"exported {path}: {size_mb:.1f} MB in {seconds:.1f} s; input {input_shape} float32, "
          f"output (1, {config.emb_size}), conv_impl {impl}, batch norm {'kept' if folded is None else 'folded'}, "
          f"weights from {checkpoint}")
    check_exported(path, config.file_format, network, input_shape)
    write_model_card(path, config)
    print(f"model card {model_card_path(path)}: takes {config.features} features")


if __name__ == "__main__":
    run_main(main)
