#!/usr/bin/env bash
# Create the project's virtual environment (.venv in the repository) and install the
# pinned requirements into it. With --dev, also the test tools.
# Usage: bash scripts/install.sh [--dev]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQUIREMENTS="$ROOT/requirements.txt"
[ "${1:-}" = "--dev" ] && REQUIREMENTS="$ROOT/requirements-dev.txt"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$ROOT/.venv"
fi
"$ROOT/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
