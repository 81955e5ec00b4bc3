#!/bin/bash
# Builds the Ascend 310 inference program as ascend310_infer/out/main (and out/test_utils).
# MindSpore's C++ API is taken from $MINDSPORE_PATH, else from the installed mindspore Python
# package (the python3 on PATH); CMakeLists.txt stops with an explanation if it is not there.
# Usage: bash build.sh            (from any folder)
set -euo pipefail

cd "$(dirname "$0")"
rm -rf out
mkdir out
cd out
if ! cmake .. > cmake.log 2>&1; then
  cat cmake.log >&2
  echo "build.sh: configuration failed (see the message above); out/main was not built" >&2
  exit 1
fi
make -j"$(nproc 2>/dev/null || echo 1)"
echo "built $(pwd)/main"
