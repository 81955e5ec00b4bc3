#!/bin/bash
# Evaluate a checkpoint on CPU: bash scripts/run_eval_cpu.sh DEVICE_ID CKPT [--key=value ...]
# Prints EER and minDCF; writes eval.log here and the results to eval_output_dir.
DEVICE_TARGET=CPU
. "$(cd "$(dirname "$0")" && pwd)/run_eval_common.sh"
