#!/bin/bash
# Fixed-length inference of an exported MindIR on the CPU, with the same files and steps as
# run_infer_310.sh (preprocess -> MindSpore-Python runner -> postprocess -> acc.log):
#   bash run_infer_cpu.sh MINDIR DATA
# Outputs go to the current folder (see infer_common.sh).
set -euo pipefail
# shellcheck source=infer_common.sh
source "$(cd "$(dirname "$0")" && pwd)/infer_common.sh"
infer_on_cpu MINDIR .mindir infer_cpu.py mindir_path "model written by export.py, e.g. ecapatdnn.mindir" "$@"
