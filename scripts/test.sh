#!/usr/bin/env bash
# The tests, from a fresh machine: sets up what is missing (scripts/setup.sh is idempotent and
# quick when everything is there), then the linter and the test suite. Extra arguments go to
# pytest, e.g. `bash scripts/test.sh -x tests/test_cli_config.py`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/pytest -q "$@"
