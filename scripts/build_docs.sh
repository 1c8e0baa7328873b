#!/usr/bin/env bash
# Build the HTML documentation (docs/ -> docs/_build/html) with warnings as errors, as CI does.
# Needs the `docs` extra (pip install ".[docs]") and torch. Uses the in-tree package under
# python/ when its compiled module is built there, else the installed qkan_fast (docs/conf.py).
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G "python/qkan_fast/_C*.so" >/dev/null || compgen -G "python/qkan_fast/_C*.pyd" >/dev/null; then
  export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
fi
exec sphinx-build -W --keep-going -b html docs docs/_build/html "$@"
