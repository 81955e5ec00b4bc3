# shellcheck shell=bash
# Shared body of run_distribute_eval_{ascend,gpu,cpu}.sh, which source it and call
#   distribute_eval MODE [TARGET] LAUNCH_ARGUMENT CKPT [--key=value ...]
# CKPT is made absolute (eval.py runs from the repository root), then scripts/launch.py starts eval.py.
set -euo pipefail

distribute_eval() {
  local words=("$1")
  shift
  if [ "${words[0]}" = msrun ]; then
    words+=("$1")
    shift
  fi
  local name=RANK_TABLE_FILE
  if [ "${words[0]}" = msrun ]; then
    name=DEVICE_NUM
  fi
  if [ $# -lt 2 ]; then
    echo "error: $name and CKPT are needed, got only $# of them" >&2
    echo "usage: bash $(basename "$0") $name CKPT [--key=value ...]" >&2
    exit 1
  fi
  local argument=$1 ckpt=$2
  shift 2
  if [ ! -f "$ckpt" ]; then
    echo "error: CKPT '$ckpt' is not a file" >&2
    exit 1
  fi
  ckpt="$(cd "$(dirname "$ckpt")" && pwd)/$(basename "$ckpt")"
  exec "${PYTHON:-python}" "$(dirname "${BASH_SOURCE[0]}")/launch.py" --script=eval.py --launcher="$(basename "$0")" \
    "${words[@]}" "$argument" --model_path="$ckpt" "$@"
}
