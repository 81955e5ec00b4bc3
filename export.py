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
the features of a tone must match the checkpoint network's; otherwise nothing is written and
the script exits with status 1. Beside it goes ``<file_name>.json``, the model card naming
the front end (``features``) whose features the model takes and the SHA-256 of each model
file it describes (a MindIR and an ONNX file of one name share it); preprocess.py reads it.
Both are written to temporary names and renamed only once the check has passed, so an
interrupted export leaves the previous model and card as they were.
"""
import os

os.environ.setdefault("GLOG_v", "3")  # MindSpore's own log: errors only, unless GLOG_v is set

import time

from src.checkpoint import load_embedding_weights
from src.cli import run_main
from src.config import ConfigError, load_config
from src.fileio import atomic_write, check_writable_file
from src.inference.exporter import (CHECK_TOLERANCE, EXTENSIONS, ExportError, ExportMismatchError,
                                    check_mindir, check_onnx, export_network, export_path, onnx_conv_impl)
from src.inference.fixed_length import check_fixed_length
from src.inference.folding import fold_batch_norm
from src.inference.model_file import model_card_path, write_model_card
from src.model import build_embedding_network
from src.device import conv_impl, init_context


def add_arguments(parser):
    parser.add_argument("--checkpoint_path", default="",
                        help="training or exported-weights checkpoint; '' = the model_path setting")


def check_exported(path, file_format, network, input_shape, final_path):
    """Compare the exported file ``path`` (the temporary of ``final_path``) with ``network``; print the
    outcome. ExportMismatchError naming ``final_path`` on a mismatch."""
    try:
        if file_format == "MINDIR":
            differences = check_mindir(path, network, input_shape)
        elif file_format == "ONNX":
            differences = check_onnx(path, network, input_shape)
        else:
            print("check: an AIR file cannot be run by MindSpore; convert it with ATC and compare there")
            return
    except ExportMismatchError as error:
        raise ExportMismatchError(f"{str(error).replace(path, final_path)} (not written)") from None
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
    model_path = export_path(config.file_name, config.file_format)
    card_path = model_card_path(model_path)
    check_writable_file(model_path, "file_name")
    check_writable_file(card_path, "file_name (its model card)")
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

    # Model and card are written to temporary names, checked, then renamed together: an interruption
    # leaves the previous pair, and the card's fingerprint exposes a pair torn between the two renames.
    with atomic_write(model_path, suffix=EXTENSIONS[config.file_format]) as model_temporary, \
            atomic_write(card_path) as card_temporary:
        start = time.perf_counter()
        export_network(network if folded is None else folded, input_shape, model_temporary, config.file_format)
        seconds = time.perf_counter() - start
        size_mb = os.path.getsize(model_temporary) / 1e6
        print(f"exported {model_path}: {size_mb:.1f} MB in {seconds:.1f} s; input {input_shape} float32, "
              f"output (1, {config.emb_size}), conv_impl {impl}, batch norm "
              f"{'kept' if folded is None else 'folded'}, weights from {checkpoint}")
        check_exported(model_temporary, config.file_format, network, input_shape, model_path)
        write_model_card(card_temporary, config, model_temporary, model_path)
    print(f"model card {card_path}: takes {config.features} features")


if __name__ == "__main__":
    run_main(main)
