#!/bin/bash
# Data-parallel training on the Ascend devices of an HCCL rank table:
#   bash run_distribute_train_ascend.sh RANK_TABLE_FILE [--key=value ...]
# Starts one process per device of this server (run it on every server of the table), each
# logging to ./train_parallel<rank>/train.log; minibatch_size is the global batch.
exec "${PYTHON:-python}" "$(dirname "$0")/launch.py" --launcher="$(basename "$0")" rank_table "$@"
