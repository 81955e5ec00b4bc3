#!/bin/bash
# Data-parallel training with DEVICE_NUM CPU worker processes started by msrun:
#   bash run_distribute_train_cpu.sh DEVICE_NUM [--key=value ...]
# Worker logs in ./train_parallel_logs/worker_<rank>.log; minibatch_size is the global batch.
exec "${PYTHON:-python}" "$(dirname "$0")/launch.py" --launcher="$(basename "$0")" msrun CPU "$@"
