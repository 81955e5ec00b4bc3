#!/bin/bash
# The staged recipe: bash run_recipe.sh CONFIG TRAIN_DIR EVAL_DIR OUT_DIR [--stage N --stop_stage M] [--key=value ...]
# Stages 1 train, 2 large-margin fine-tune, 3 average, 4 evaluate, 5 export (see run_recipe.py).
exec "${PYTHON:-python}" "$(dirname "$0")/run_recipe.py" "$@"
