#!/bin/bash
# Fixed-length inference of an exported ONNX file with onnxruntime on the CPU, with the same
# files and steps as run_infer_cpu.sh (preprocess -> ONNX runner -> postprocess -> acc.log):
#   bash run_infer_onnx.sh ONNX DATA
# Outputs go to the current folder (see infer_common.sh).
set -euo pipefail
# shellcheck source=infer_common.sh
source "$(cd "$(dirname "$0")" && pwd)/infer_common.sh"
infer_on_cpu ONNX .onnx infer_onnx.py onnx_path "model written by export.py --file_format ONNX, e.g. ecapatdnn.onnx" "$@"
