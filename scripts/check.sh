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
# The whole bot's kill -9, fault and cancel-storm tests again with the bot on PostgreSQL (the store's and
# the ledger's tests already ran on both engines above). Skipped, with this line, when no server answers.
if why=$(.venv/bin/python -c "from tests.postgres import unavailable; print(unavailable() or '')") && [ -z "$why" ]; then
    echo "== pytest, the bot on PostgreSQL"
    KLING_TEST_ENGINE=postgresql .venv/bin/pytest "$@" tests/test_crash.py tests/test_fault_matrix.py tests/test_cancel_storm.py
else
    echo "== pytest, the bot on PostgreSQL: SKIPPED, no PostgreSQL server answers ($why)"
fi
