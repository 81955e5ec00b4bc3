#!/bin/bash
# Prepare VoxCeleb from the raw downloads in the layout the configs expect:
#   OUT/train/wav/<spk>/<video>/<n>.wav   OUT/train.txt   (VoxCeleb2 dev, converted from m4a)
#   OUT/eval/wav -> VOX1_WAV              OUT/eval.txt    (the trial list, checked)
# The trial list is checked first, so a wrong path fails before the long conversion.
# Speakers that occur in the trial list are left out of train.txt.
# Safe to run again: finished wav files are kept and only missing ones are converted.
set -euo pipefail

# fail_usage MESSAGE: print "error: MESSAGE" and the usage on stderr, exit 1.
fail_usage() {
  echo "error: $1" >&2
  echo "usage: bash $0 VOX2_AAC VOX1_WAV TRIAL_LIST OUT [JOBS]" >&2
  echo "  VOX2_AAC    VoxCeleb2 dev folder holding <spk>/<video>/<n>.m4a (often .../dev/aac)" >&2
  echo "  VOX1_WAV    VoxCeleb1 folder holding <spk>/<video>/<n>.wav (the eval audio)" >&2
  echo "  TRIAL_LIST  veri_test2.txt, list_test_all2.txt or list_test_hard2.txt" >&2
  echo "  OUT         dataset folder to fill, e.g. dataset/Voxceleb2" >&2
  echo "  JOBS        files converted at once (default: number of CPUs)" >&2
  exit 1
}

if [ $# -lt 4 ] || [ $# -gt 5 ]; then
  fail_usage "expected 4 or 5 arguments (VOX2_AAC VOX1_WAV TRIAL_LIST OUT [JOBS]), got $#"
fi

VOX2_AAC=$1
VOX1_WAV=$2
TRIAL_LIST=$3
OUT=$4
JOBS=${5:-$(nproc)}
SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-python}

if ! command -v ffmpeg > /dev/null; then
  echo "error: ffmpeg not found; install it first (Debian/Ubuntu: apt-get install ffmpeg)" >&2
  exit 1
fi
if [ ! -d "$VOX1_WAV" ]; then
  fail_usage "$VOX1_WAV: VoxCeleb1 wav folder not found"
fi

mkdir -p "$OUT/eval"
if [ -e "$OUT/eval/wav" ]; then
  echo "using the existing $OUT/eval/wav"
else
  ln -s "$(cd "$VOX1_WAV" && pwd)" "$OUT/eval/wav"
fi
"$PYTHON" "$SCRIPT_DIR/prepare_voxceleb.py" eval \
  --trials "$TRIAL_LIST" --wav_dir "$OUT/eval/wav" --out "$OUT"
"$PYTHON" "$SCRIPT_DIR/prepare_voxceleb.py" train \
  --input "$VOX2_AAC" --out "$OUT" --jobs "$JOBS" --exclude_trials "$TRIAL_LIST"
