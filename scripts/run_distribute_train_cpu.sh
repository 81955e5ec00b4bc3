#!/bin/bash
# Data-parallel training with DEVICE_NUM CPU worker processes started by msrun:
#   bash run_distribute_train_cpu.sh DEVICE_NUM [--key=value ...]
# Worker logs in ./train_parallel_logs/worker_<rank>.log; minibatch_size is the global batch.
# shellcheck source-path=SCRIPTDIR source=train_common.sh
. "$(cd "$(dirname "$0")" && pwd)/train_common.sh"
msrun_train CPU "$@"
