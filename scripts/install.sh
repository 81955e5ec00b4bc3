#!/usr/bin/env bash
# Create the project's virtual environment (.venv in the repository), install the pinned
# requirements and the repository itself (editable, pyproject.toml) into it and build the
# custom CPU kernels (src/kernels/: matrix products and whole TDNN blocks in float32 or
# bfloat16, for the cpu_kernels setting). With --dev, also the
# test tools. A failed kernel build is reported and does not fail the install (cpu_kernels
# then falls back to MindSpore's own ops).
# Usage: bash scripts/install.sh [--dev]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQUIREMENTS="$ROOT/requirements.txt"
[ "${1:-}" = "--dev" ] && REQUIREMENTS="$ROOT/requirements-dev.txt"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$ROOT/.venv"
fi
"$ROOT/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
"$ROOT/.venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$ROOT/requirements-kernels.txt"
# The repository itself, editable: every program imports 'src' from this checkout.
"$ROOT/.venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e "$ROOT"
"$ROOT/.venv/bin/python" "$ROOT/scripts/build_kernels.py" || echo "continuing without the CPU kernels"
