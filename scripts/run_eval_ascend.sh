#!/bin/bash
# Evaluate a checkpoint on Ascend: bash scripts/run_eval_ascend.sh DEVICE_ID CKPT [--key=value ...]
# Prints EER and minDCF; writes eval.log here and the results to eval_output_dir.
DEVICE_TARGET=Ascend
. "$(cd "$(dirname "$0")" && pwd)/run_eval_common.sh"
