#!/usr/bin/env bash
# Set up (idempotent) and run every check: lint, format, import contracts, the test suite.
# Extra arguments go to pytest, e.g. ./scripts/test.sh -k parity
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=test,server ./scripts/setup.sh
./scripts/fetch_test_videos.sh >/dev/null

echo "== ruff check";         .venv/bin/ruff check .
echo "== ruff format --check"; .venv/bin/ruff format --check .
echo "== import contracts";   .venv/bin/lint-imports
echo "== pytest"
mkdir -p test-artifacts
# A virtual X screen for the tests that drive real VLC and take screen-level screenshots.
exec xvfb-run -a -s "-screen 0 1280x720x24" .venv/bin/python -m pytest "$@"
