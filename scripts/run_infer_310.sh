#!/bin/bash
# Fixed-length inference of an exported MindIR on an Ascend 310: builds ascend310_infer/out/main,
# preprocesses the evaluation audio, runs the program and scores the embeddings into acc.log.
# Outputs go to the current folder (see infer_common.sh). The Ascend toolkit environment is
# taken from $ASCEND_HOME/ascend-toolkit/set_env.sh (ASCEND_HOME defaults to /usr/local/Ascend)
# when that file exists; MINDSPORE_PATH is passed on to build.sh.
set -euo pipefail

usage() {
  echo "usage: bash $0 MINDIR DATA DEVICE_ID"
  echo "  MINDIR     model written by export.py (export with --conv_impl native), e.g. ecapatdnn.mindir"
  echo "  DATA       dataset folder with eval.txt and eval/wav/, or a folder preprocess.py filled"
  echo "             (feat/, utt_list.txt, eval.txt)"
  echo "  DEVICE_ID  Ascend device index, e.g. 0"
}
if [ $# -ne 3 ]; then
  echo "error: expected 3 arguments (MINDIR DATA DEVICE_ID), got $#" >&2
  usage >&2
  exit 1
fi

SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$SCRIPT_DIR")
# shellcheck source=infer_common.sh
source "$SCRIPT_DIR/infer_common.sh"

MINDIR=$1
DATA=$2
DEVICE_ID=$3
check_model "$MINDIR"
check_data "$DATA"
if ! [[ "$DEVICE_ID" =~ ^[0-9]+$ ]]; then
  fail_usage "DEVICE_ID '$DEVICE_ID' is not a non-negative integer"
fi

ASCEND_ENV=${ASCEND_HOME:-/usr/local/Ascend}/ascend-toolkit/set_env.sh
if [ -f "$ASCEND_ENV" ]; then
  set +u
  # shellcheck disable=SC1090
  source "$ASCEND_ENV"
  set -u
fi

bash "$REPO/ascend310_infer/build.sh" 2>&1 | tee build.log
prepare_features "$MINDIR" "$DATA"
rm -rf ./result_Files
"$REPO/ascend310_infer/out/main" --mindir_path="$MINDIR" --input_path="$FEATURE_DIR" \
  --result_path=./result_Files --device_id="$DEVICE_ID" --time_file=./time_Result/test_perform_static.txt \
  2>&1 | tee infer.log
score_results "$MINDIR"
