#!/bin/bash
# Train on one Ascend device: bash run_standalone_train_ascend.sh DEVICE_ID [--key=value ...]
# Output also goes to ./train_standalone/train.log; checkpoints to ckpt_save_dir (see train_common.sh).
# shellcheck source-path=SCRIPTDIR source=train_common.sh
. "$(cd "$(dirname "$0")" && pwd)/train_common.sh"
standalone_train Ascend "$@"
