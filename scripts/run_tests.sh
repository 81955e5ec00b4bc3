#!/usr/bin/env bash
# Install everything the tests need, check the code with ruff (pyproject.toml), then run the whole test suite
# (scripts/run_test_processes.py), or pytest with the options given.
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
if [ "$#" -gt 0 ]; then
    exec .venv/bin/python -m pytest -q "$@"
fi
# The whole suite: side-by-side pytest processes (one per core, at most 2) sharing out the test files.
exec .venv/bin/python scripts/run_test_processes.py
