#!/bin/bash
# Train on one GPU device: bash run_standalone_train_gpu.sh DEVICE_ID [--key=value ...]
# Output also goes to ./train_standalone/train.log; checkpoints to ckpt_save_dir (see launch.py).
exec "${PYTHON:-python}" "$(dirname "$0")/launch.py" --launcher="$(basename "$0")" standalone GPU "$@"
