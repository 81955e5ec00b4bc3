#!/usr/bin/env bash
# Install everything the tests need, check the code with ruff (pyproject.toml), then run the whole test suite.
# Usage: bash scripts/run_tests.sh [pytest options]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/install.sh" --dev
# ffmpeg makes the m4a tests of data preparation run (they are skipped without it).
if ! command -v ffmpeg >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && apt-get install -y -qq ffmpeg >/dev/null) || echo "ffmpeg not installed; m4a tests will be skipped"
fi
cd "$ROOT"
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q "$@"
