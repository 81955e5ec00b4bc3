#!/bin/bash
# The interpreter of the shell scripts that run the project's programs; sourced, not run.
# Sets PYTHON: as given, else 'python' from PATH when it can import MindSpore, else the
# repository's .venv (made by scripts/install.sh). Stops with one line naming what it tried
# when the interpreter cannot import MindSpore.

_can_import_mindspore() {
  "$1" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('mindspore') is None)" 2>/dev/null
}

_venv_python="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv/bin/python"
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python
  if ! _can_import_mindspore python && [ -x "$_venv_python" ]; then
    PYTHON=$_venv_python
  fi
fi
if ! _can_import_mindspore "$PYTHON"; then
  echo "error: the interpreter '$PYTHON' ($(command -v "$PYTHON" || echo "not found")) cannot import mindspore;" \
    "activate the environment scripts/install.sh made (source .venv/bin/activate) or set" \
    "PYTHON=/path/to/.venv/bin/python" >&2
  exit 1
fi
