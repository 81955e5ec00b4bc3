#!/bin/bash
# Steps shared by run_infer_310.sh, run_infer_cpu.sh and run_infer_onnx.sh; sourced, not run.
# REPO (repository root) defaults to this file's repository, PYTHON as python_env.sh picks; the
# sourcing script defines a usage function (printing the usage lines), or infer_on_cpu does.
# Every output goes to the current folder:
#   preprocess_Result/  feat/*.bin, utt_list.txt or windows.txt, eval.txt   (only when DATA is a dataset)
#   result_Files/*.bin  embeddings     time_Result/  timing report
#   acc.log             EER/minDCF, appended     scores.txt   one scored trial a line
#   preprocess.log infer.log postprocess.log     what each step printed

REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
# shellcheck source=python_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/python_env.sh"

# fail_usage MESSAGE: print "error: MESSAGE" and the usage on stderr, exit 1.
fail_usage() {
  echo "error: $1" >&2
  usage >&2
  exit 1
}

# check_model MINDIR: the file must exist and end with .mindir.
check_model() {
  check_model_file "$1" MINDIR .mindir
}

# check_model_file FILE NAME EXTENSION: FILE (the argument called NAME in the usage) must exist
# and end with EXTENSION.
check_model_file() {
  case "$1" in
    *"$3") ;;
    *) fail_usage "$2 '$1' does not end with $3" ;;
  esac
  if [ ! -f "$1" ]; then
    fail_usage "$2 '$1' not found"
  fi
}

# check_data DATA: must be a folder.
check_data() {
  if [ ! -d "$1" ]; then
    fail_usage "DATA '$1' is not a folder"
  fi
}

# prepare_features MODEL DATA: sets FEATURE_DIR, TRIAL_LIST and WINDOW_LIST.
# DATA is either a folder preprocess.py filled (feat/, utt_list.txt or windows.txt, and the
# eval.txt it copies there), used as it is, or a dataset folder with eval.txt and eval/wav/,
# which is preprocessed into ./preprocess_Result with the model's input length. WINDOW_LIST is
# the windows.txt of the features (preprocess.py --windows=all), or empty.
prepare_features() {
  local model=$1 data=$2
  WINDOW_LIST=
  if [ -d "$data/feat" ] && { [ -f "$data/utt_list.txt" ] || [ -f "$data/windows.txt" ]; }; then
    if [ ! -f "$data/eval.txt" ]; then
      echo "error: $data holds preprocessed features but no eval.txt (the trial list preprocess.py copies there)" >&2
      exit 1
    fi
    echo "using the features preprocessed in $data"
    FEATURE_DIR=$data/feat
    TRIAL_LIST=$data/eval.txt
    if [ -f "$data/windows.txt" ]; then
      WINDOW_LIST=$data/windows.txt
    fi
  elif [ -f "$data/eval.txt" ] && [ -d "$data/eval/wav" ]; then
    "$PYTHON" "$REPO/preprocess.py" --eval_list "$data/eval.txt" --eval_path "$data/eval/wav" \
      --output_path ./preprocess_Result --mindir_path "$model" 2>&1 | tee preprocess.log
    FEATURE_DIR=./preprocess_Result/feat
    TRIAL_LIST=./preprocess_Result/eval.txt
  else
    echo "error: DATA '$data' holds neither eval.txt with eval/wav/ (a dataset) nor feat/ with utt_list.txt" \
      "or windows.txt (preprocess.py output)" >&2
    exit 1
  fi
}

# score_results MODEL: EER/minDCF of ./result_Files against TRIAL_LIST (window embeddings averaged
# per utterance when WINDOW_LIST is set), appended to ./acc.log.
score_results() {
  local windows=()
  if [ -n "${WINDOW_LIST:-}" ]; then
    windows=(--window_list "$WINDOW_LIST")
  fi
  "$PYTHON" "$REPO/postprocess.py" --result_path ./result_Files --eval_list "$TRIAL_LIST" \
    --mindir_path "$1" "${windows[@]}" --log_file ./acc.log --score_file ./scores.txt 2>&1 | tee postprocess.log
}

# infer_on_cpu NAME EXTENSION RUNNER OPTION MEANING "$@": the whole of run_infer_cpu.sh and
# run_infer_onnx.sh. Checks the arguments MODEL DATA (MODEL, called NAME in the usage and
# described by MEANING, ends with EXTENSION), then preprocesses DATA, embeds every feature file
# with scripts/RUNNER (the model given as --OPTION) and scores the embeddings into ./acc.log.
infer_on_cpu() {
  local name=$1 extension=$2 runner=$3 option=$4 meaning=$5
  shift 5
  usage() {
    echo "usage: bash $0 $name DATA"
    printf '  %-7s %s\n' "$name" "$meaning" DATA "dataset folder with eval.txt and eval/wav/, or a folder preprocess.py filled"
    echo "          (feat/, utt_list.txt or windows.txt, eval.txt)"
  }
  if [ $# -ne 2 ]; then
    fail_usage "expected 2 arguments ($name DATA), got $#"
  fi
  local model=$1 data=$2
  check_model_file "$model" "$name" "$extension"
  check_data "$data"
  prepare_features "$model" "$data"
  rm -rf ./result_Files
  "$PYTHON" "$REPO/scripts/$runner" "--$option=$model" --input_path="$FEATURE_DIR" \
    --result_path=./result_Files --time_file=./time_Result/test_perform_static.txt 2>&1 | tee infer.log
  score_results "$model"
}
