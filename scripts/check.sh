#!/usr/bin/env sh
# The test command: installs the bot with its test tools into .venv, then lints, type-checks and tests.
# Needs only Python 3.11+ (and PyPI). Extra arguments go to pytest, e.g. `sh scripts/check.sh -k media`.
set -eu
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet -e '.[test]'
echo "== ruff check"
.venv/bin/ruff check .
echo "== ruff format --check"
.venv/bin/ruff format --check .
echo "== mypy bot cogs"
.venv/bin/mypy bot cogs
echo "== pytest"
.venv/bin/pytest "$@"
