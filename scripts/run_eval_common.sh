# Shared body of run_eval_{ascend,gpu,cpu}.sh, which set DEVICE_TARGET and source this file.
# Runs eval.py from the repository root and copies its output to eval.log in the folder the
# script was called from. CKPT may be relative to that folder; relative paths in the extra
# --key=value settings are relative to the repository root (where dataset/ lives).
set -euo pipefail

# fail_usage MESSAGE: print "error: MESSAGE" and the usage on stderr, exit 1.
fail_usage() {
  echo "error: $1" >&2
  echo "usage: bash $(basename "$0") DEVICE_ID CKPT [--key=value ...]" >&2
  echo "  DEVICE_ID  device index (an integer; ignored on CPU)" >&2
  echo "  CKPT       training checkpoint or exported-weights checkpoint" >&2
  echo "  --key=value  any setting of src/config.py, e.g. --config=my.yaml --score_norm=asnorm" >&2
  exit 1
}

if [ $# -lt 2 ]; then
  fail_usage "DEVICE_ID and CKPT are required, got $# argument(s)"
fi
DEVICE_ID=$1
CKPT=$2
shift 2
if ! [[ "$DEVICE_ID" =~ ^[0-9]+$ ]]; then
  fail_usage "DEVICE_ID must be a non-negative integer, got '$DEVICE_ID'"
fi
if [ ! -f "$CKPT" ]; then
  fail_usage "CKPT '$CKPT' is not a file"
fi

CKPT="$(cd "$(dirname "$CKPT")" && pwd)/$(basename "$CKPT")"
LOG="$PWD/eval.log"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=python_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/python_env.sh"

cd "$REPO_ROOT"
echo "eval.py on $DEVICE_TARGET $DEVICE_ID with $CKPT; log in $LOG"
"$PYTHON" eval.py --device_target="$DEVICE_TARGET" --device_id="$DEVICE_ID" --model_path="$CKPT" "$@" \
  2>&1 | tee "$LOG"
