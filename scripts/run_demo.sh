#!/usr/bin/env bash
# The demo, end to end on this machine: install into .venv, generate the synthetic
# speaker corpus (demo/data), train a small ECAPA-TDNN (configs/demo.yaml, checkpoints, its
# curves and TensorBoard events in demo/ckpt) and evaluate it on the held-out speakers
# (demo/eval_output, with metrics.json).
# Usage: bash scripts/run_demo.sh [extra --key=value settings for train.py and eval.py]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/install.sh
PY=.venv/bin/python
if [ ! -f demo/data/eval.txt ]; then
    "$PY" scripts/make_demo_corpus.py --out_dir demo/data
fi
# resume=auto: an interrupted demo continues, a finished one goes straight to evaluation.
"$PY" train.py --config configs/demo.yaml --resume=auto "$@"
echo "training curves: demo/ckpt/training_curves.png; figures per step and epoch: demo/ckpt/metrics.jsonl;" \
     "TensorBoard: .venv/bin/pip install tensorboard && .venv/bin/tensorboard --logdir demo/ckpt"
"$PY" eval.py --config configs/demo.yaml --model_path "demo/ckpt/$(cat demo/ckpt/last)" "$@"
