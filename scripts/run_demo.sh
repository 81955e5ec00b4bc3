#!/usr/bin/env bash
# The demo, end to end on this machine: install into .venv, generate the synthetic
# speaker corpus (demo/data), train a small ECAPA-TDNN (configs/demo.yaml, checkpoints, its
# curves and TensorBoard events in demo/ckpt) and evaluate it on the held-out speakers
# (demo/eval_output, with metrics.json), then enroll its speakers and identify one (demo/speakers.npz).
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
# Enrolled speakers (docs/speakers.md): each held-out speaker from its first 3 recordings, then one
# of its later recordings identified among them.
MODEL="demo/ckpt/$(cat demo/ckpt/last)"
for speaker in demo/data/eval/wav/*/; do
    echo "$(basename "$speaker") $(find "$speaker" -name '*.wav' | sort | head -3 | sed 's|^demo/||' | tr '\n' ' ')"
done > demo/enroll.txt
rm -f demo/speakers.npz
"$PY" speakers.py enroll demo/speakers.npz --list demo/enroll.txt --config configs/demo.yaml --model_path "$MODEL" "$@"
QUERY="$(find "$(ls -d demo/data/eval/wav/*/ | sed -n 3p)" -name '*.wav' | sort | sed -n 5p)"
echo "who is $QUERY?"
"$PY" speakers.py identify demo/speakers.npz "$QUERY" --config configs/demo.yaml --model_path "$MODEL" "$@"
