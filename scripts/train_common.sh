# shellcheck shell=bash
# Shared body of the training launchers run_standalone_train_{ascend,gpu,cpu}.sh and
# run_distribute_train_{ascend,gpu,cpu}.sh; sourced, not run. Each launcher calls one of
#   standalone_train TARGET DEVICE_ID [--key=value ...]   one process, log in ./train_standalone/
#   rank_table_train RANK_TABLE_FILE [--key=value ...]    one process per Ascend device of this
#                                                         server, logs in ./train_parallel<rank>/
#   msrun_train TARGET DEVICE_NUM [--key=value ...]       DEVICE_NUM workers started by msrun,
#                                                         logs in ./train_parallel_logs/
# The run folders are made in the folder the launcher is called from. train.py itself always runs
# from the repository root, so relative paths in --config files and --key=value settings (data
# lists, ckpt_save_dir, ...) are relative to the repository root, as for run_eval_*.sh.
# PYTHON names the interpreter that has MindSpore (default: python).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN_BASE=$PWD
PYTHON=${PYTHON:-python}
if [[ $PYTHON == */* && $PYTHON != /* ]]; then
  PYTHON=$PWD/$PYTHON
fi

# fail_usage MESSAGE NAME MEANING: print the error and the usage of a launcher whose arguments
# are NAME [--key=value ...], exit 1.
fail_usage() {
  echo "error: $1" >&2
  echo "usage: bash $(basename "$0") $2 [--key=value ...]" >&2
  printf '  %-15s  %s\n' "$2" "$3" "--key=value" "any setting of src/config.py, e.g. --config=configs/demo.yaml" >&2
  exit 1
}

# forget_launchers: drop launcher variables a previous run may have left in this shell, so that
# train.py does not take a standalone or msrun run for a rank-table one (or the reverse).
forget_launchers() {
  unset RANK_TABLE_FILE RANK_SIZE RANK_ID DEVICE_ID MS_WORKER_NUM MS_ROLE MS_SCHED_HOST MS_SCHED_PORT MS_NODE_ID
}

# standalone_train TARGET DEVICE_ID [--key=value ...]: train.py on one device, output also in
# ./train_standalone/train.log.
standalone_train() {
  local target=$1
  shift
  local meaning="device index, an integer >= 0 (ignored on CPU)"
  if [ $# -lt 1 ]; then
    fail_usage "DEVICE_ID is missing" DEVICE_ID "$meaning"
  fi
  local device_id=$1
  shift
  if ! [[ $device_id =~ ^[0-9]+$ ]]; then
    fail_usage "DEVICE_ID must be a non-negative integer, got '$device_id'" DEVICE_ID "$meaning"
  fi
  local run_dir=$RUN_BASE/train_standalone
  mkdir -p "$run_dir"
  forget_launchers
  echo "train.py on $target $device_id; log in $run_dir/train.log"
  cd "$REPO_ROOT"
  "$PYTHON" train.py --device_target="$target" --device_id="$device_id" "$@" 2>&1 | tee "$run_dir/train.log"
}

# rank_table_train RANK_TABLE_FILE [--key=value ...]: one background train.py per device that the
# rank table gives this server, with RANK_TABLE_FILE, RANK_SIZE, RANK_ID and DEVICE_ID set; each
# logs to ./train_parallel<RANK_ID>/train.log. Waits for all; when one fails the others are
# stopped (they would wait for it forever) and the launcher exits with 1.
rank_table_train() {
  local meaning="HCCL rank table (JSON, version 1.0) of all servers of the run"
  if [ $# -lt 1 ]; then
    fail_usage "RANK_TABLE_FILE is missing" RANK_TABLE_FILE "$meaning"
  fi
  local table=$1
  shift
  if [ ! -f "$table" ]; then
    fail_usage "RANK_TABLE_FILE '$table' is not a file" RANK_TABLE_FILE "$meaning"
  fi
  table="$(cd "$(dirname "$table")" && pwd)/$(basename "$table")"
  local size ranks
  size=$("$PYTHON" "$REPO_ROOT/scripts/rank_table.py" --rank_size "$table")
  ranks=$("$PYTHON" "$REPO_ROOT/scripts/rank_table.py" "$table")

  forget_launchers
  export RANK_TABLE_FILE=$table RANK_SIZE=$size
  cd "$REPO_ROOT"
  trap 'stop_ranks; exit 130' INT TERM
  local rank device run_dir
  while read -r rank device; do
    run_dir=$RUN_BASE/train_parallel$rank
    mkdir -p "$run_dir"
    echo "rank $rank of $size on Ascend $device; log in $run_dir/train.log"
    RANK_ID=$rank DEVICE_ID=$device setsid "$PYTHON" train.py --device_target=Ascend "$@" > "$run_dir/train.log" 2>&1 &
    RANK_OF_PID[$!]=$rank
    RUNNING_RANKS+=("$!")
  done <<< "$ranks"
  wait_for_ranks
}

# The ranks started by rank_table_train: rank id by process id, and the process ids still running.
declare -A RANK_OF_PID=()
RUNNING_RANKS=()

# stop_ranks: send SIGTERM to the ranks still running, with the processes they started (each rank
# leads its own process group).
stop_ranks() {
  local pid
  for pid in "${RUNNING_RANKS[@]}"; do
    kill -TERM -- "-$pid" 2> /dev/null || true
  done
}

# wait_for_ranks: wait for every rank in RUNNING_RANKS, polling once a second; report the first
# failure and stop the other ranks then. Exits 1 if any rank failed.
wait_for_ranks() {
  local failed=() pid status still_running
  while [ ${#RUNNING_RANKS[@]} -gt 0 ]; do
    still_running=()
    for pid in "${RUNNING_RANKS[@]}"; do
      if kill -0 "$pid" 2> /dev/null; then
        still_running+=("$pid")
        continue
      fi
      status=0
      wait "$pid" || status=$?
      if [ "$status" -ne 0 ]; then
        if [ ${#failed[@]} -eq 0 ]; then
          echo "error: rank ${RANK_OF_PID[$pid]} failed (exit status $status), see" \
            "$RUN_BASE/train_parallel${RANK_OF_PID[$pid]}/train.log; stopping the other ranks" >&2
        fi
        failed+=("${RANK_OF_PID[$pid]}")
      fi
    done
    RUNNING_RANKS=("${still_running[@]}")
    if [ ${#failed[@]} -gt 0 ]; then
      stop_ranks
    fi
    if [ ${#RUNNING_RANKS[@]} -gt 0 ]; then
      sleep 1
    fi
  done
  if [ ${#failed[@]} -gt 0 ]; then
    echo "error: ranks that did not finish: ${failed[*]} (of ${#RANK_OF_PID[@]} started here)" >&2
    exit 1
  fi
  echo "all ${#RANK_OF_PID[@]} ranks finished"
}

# free_port: a TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# python_first_on_path: msrun starts every worker as the 'python' found on PATH; put one that runs
# $PYTHON first on PATH (a small wrapper in a temporary folder, removed on exit; a symbolic link
# would lose a virtual environment).
python_first_on_path() {
  local interpreter
  if ! interpreter=$(command -v "$PYTHON"); then
    echo "error: PYTHON '$PYTHON' not found; set PYTHON to the interpreter that has MindSpore" >&2
    exit 1
  fi
  if [[ $interpreter != /* ]]; then
    interpreter=$PWD/$interpreter
  fi
  WORKER_BIN=$(mktemp -d)
  trap 'rm -rf "$WORKER_BIN"' EXIT
  printf '#!/bin/bash\nexec %q "$@"\n' "$interpreter" > "$WORKER_BIN/python"
  chmod +x "$WORKER_BIN/python"
  PATH=$WORKER_BIN:$PATH
}

# msrun_train TARGET DEVICE_NUM [--key=value ...]: DEVICE_NUM workers on this machine started by
# msrun (run as '$PYTHON -m mindspore.parallel.cluster.run', which is what the msrun command
# runs), joined; worker logs in ./train_parallel_logs/worker_<rank>.log. The scheduler listens on
# MASTER_PORT (default: a free port).
msrun_train() {
  local target=$1
  shift
  local meaning="number of $target worker processes (one per device), >= 1"
  if [ $# -lt 1 ]; then
    fail_usage "DEVICE_NUM is missing" DEVICE_NUM "$meaning"
  fi
  local workers=$1
  shift
  if ! [[ $workers =~ ^[1-9][0-9]*$ ]]; then
    fail_usage "DEVICE_NUM must be an integer >= 1, got '$workers'" DEVICE_NUM "$meaning"
  fi
  local port=${MASTER_PORT:-}
  if [ -n "$port" ] && ! [[ $port =~ ^[0-9]+$ ]]; then
    echo "error: MASTER_PORT must be a port number, got '$port'" >&2
    exit 1
  fi
  python_first_on_path
  if [ -z "$port" ]; then
    port=$(free_port)
  fi
  local log_dir=$RUN_BASE/train_parallel_logs
  forget_launchers
  echo "msrun: $workers $target workers, scheduler on port $port; logs in $log_dir"
  cd "$REPO_ROOT"
  if ! "$PYTHON" -m mindspore.parallel.cluster.run --worker_num="$workers" --local_worker_num="$workers" \
    --master_port="$port" --log_dir="$log_dir" --join=True train.py --device_target="$target" "$@"; then
    echo "error: training failed; see $log_dir/worker_<rank>.log" >&2
    exit 1
  fi
}
