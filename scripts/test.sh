#!/usr/bin/env bash
# The test suite: installs what it needs (scripts/setup.sh), then runs pytest with the real codes.
# Tests make their own throw-away AiiDA profiles; nothing in ~/.aiida is touched.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=$(bash scripts/setup.sh | tail -n 1 | sed 's/^PYTHON=//')
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec "$PYTHON" -m pytest -p no:cacheprovider -q -ra --durations=15 "$@"
