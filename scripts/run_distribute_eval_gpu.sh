#!/bin/bash
# Distributed evaluation on GPU: bash run_distribute_eval_gpu.sh DEVICE_NUM CKPT [--key=value ...]
# Each process extracts its share of the utterances; rank 0 scores the trials and writes eval_output_dir
# (logs in ./eval_parallel*). CKPT may be relative to the current folder.
. "$(cd "$(dirname "$0")" && pwd)/distribute_eval_common.sh"
distribute_eval msrun GPU "$@"
