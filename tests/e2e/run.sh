#!/usr/bin/env bash
# tests/e2e/run.sh — install what the suite needs (tests/e2e/setup.sh), then run it with pytest.
#   tests/e2e/run.sh [pytest args...]
# E2E_BROKER=fjord (default; FJORD_BIN, default target/release/fjord) or E2E_BROKER=kafka.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="$(bash "$HERE/setup.sh" | tail -n 1)"
export PYTHONDONTWRITEBYTECODE=1
exec "$PY" -m pytest "$HERE" "$@"
