#!/usr/bin/env bash
# Create the project's virtual environment (.venv in the repository), install the pinned
# requirements into it and build the custom CPU kernels (src/kernels/: bfloat16 matrix
# products and TDNN blocks, for cpu_kernels). With --dev, also the test tools. A failed kernel
# build is reported (cpu_kernels then falls back to MindSpore's ops); it does not fail the install.
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
(cd "$ROOT" && .venv/bin/python -m src.kernels.build) || echo "continuing without the bfloat16 kernels"
