#!/bin/bash
# Fixed-length inference of an exported ONNX file with onnxruntime on the CPU, with the same
# files and steps as run_infer_cpu.sh (preprocess -> ONNX runner -> postprocess -> acc.log).
# Outputs go to the current folder (see infer_common.sh).
set -euo pipefail

usage() {
  echo "usage: bash $0 ONNX DATA"
  echo "  ONNX    model written by export.py --file_format ONNX, e.g. ecapatdnn.onnx"
  echo "  DATA    dataset folder with eval.txt and eval/wav/, or a folder preprocess.py filled"
  echo "          (feat/, utt_list.txt or windows.txt, eval.txt)"
}
if [ $# -ne 2 ]; then
  echo "error: expected 2 arguments (ONNX DATA), got $#" >&2
  usage >&2
  exit 1
fi

SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$SCRIPT_DIR")
PYTHON=${PYTHON:-python}
# shellcheck source=infer_common.sh
source "$SCRIPT_DIR/infer_common.sh"

ONNX=$1
DATA=$2
check_model_file "$ONNX" ONNX .onnx
check_data "$DATA"

prepare_features "$ONNX" "$DATA"
rm -rf ./result_Files
"$PYTHON" "$REPO/scripts/infer_onnx.py" --onnx_path="$ONNX" --input_path="$FEATURE_DIR" \
  --result_path=./result_Files --time_file=./time_Result/test_perform_static.txt 2>&1 | tee infer.log
score_results "$ONNX"
