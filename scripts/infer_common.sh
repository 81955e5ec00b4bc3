#!/bin/bash
# Steps shared by run_infer_310.sh and run_infer_cpu.sh; sourced, not run.
# Expects REPO (repository root), PYTHON and a usage function (printing the usage lines) from
# the sourcing script. Every output goes to the current folder:
#   preprocess_Result/  feat/*.bin, utt_list.txt, eval.txt   (only when DATA is a dataset)
#   result_Files/*.bin  embeddings     time_Result/  timing report
#   acc.log             EER/minDCF, appended     scores.txt   one scored trial a line
#   preprocess.log infer.log postprocess.log     what each step printed

# fail_usage MESSAGE: print "error: MESSAGE" and the usage on stderr, exit 1.
fail_usage() {
  echo "error: $1" >&2
  usage >&2
  exit 1
}

# check_model MINDIR: the file must exist and end with .mindir.
check_model() {
  case "$1" in
    *.mindir) ;;
    *) fail_usage "MINDIR '$1' does not end with .mindir" ;;
  esac
  if [ ! -f "$1" ]; then
    fail_usage "MINDIR '$1' not found"
  fi
}

# check_data DATA: must be a folder.
check_data() {
  if [ ! -d "$1" ]; then
    fail_usage "DATA '$1' is not a folder"
  fi
}

# prepare_features MINDIR DATA: sets FEATURE_DIR and TRIAL_LIST.
# DATA is either a folder preprocess.py filled (feat/, utt_list.txt and the eval.txt it copies
# there), used as it is, or a dataset folder with eval.txt and eval/wav/, which is preprocessed
# into ./preprocess_Result with the MindIR's input length.
prepare_features() {
  local mindir=$1 data=$2
  if [ -d "$data/feat" ] && [ -f "$data/utt_list.txt" ]; then
    if [ ! -f "$data/eval.txt" ]; then
      echo "error: $data holds preprocessed features but no eval.txt (the trial list preprocess.py copies there)" >&2
      exit 1
    fi
    echo "using the features preprocessed in $data"
    FEATURE_DIR=$data/feat
    TRIAL_LIST=$data/eval.txt
  elif [ -f "$data/eval.txt" ] && [ -d "$data/eval/wav" ]; then
    "$PYTHON" "$REPO/preprocess.py" --eval_list "$data/eval.txt" --eval_path "$data/eval/wav" \
      --output_path ./preprocess_Result --mindir_path "$mindir" 2>&1 | tee preprocess.log
    FEATURE_DIR=./preprocess_Result/feat
    TRIAL_LIST=./preprocess_Result/eval.txt
  else
    echo "error: DATA '$data' holds neither eval.txt with eval/wav/ (a dataset) nor feat/ with utt_list.txt" \
      "(preprocess.py output)" >&2
    exit 1
  fi
}

# score_results MINDIR: EER/minDCF of ./result_Files against TRIAL_LIST, appended to ./acc.log.
score_results() {
  "$PYTHON" "$REPO/postprocess.py" --result_path ./result_Files --eval_list "$TRIAL_LIST" \
    --mindir_path "$1" --log_file ./acc.log --score_file ./scores.txt 2>&1 | tee postprocess.log
}
