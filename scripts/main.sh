#!/usr/bin/env bash
# The main job: installs what it needs, makes the AiiDA profile (core.sqlite_dos + ZeroMQ) and codes if
# missing, then runs examples/first_calculation.py with `verdi run`: MOPAC PM7 through AiiDA on a few
# molecules, printing their heats of formation.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=$(bash scripts/setup.sh --profile | tail -n 1 | sed 's/^PYTHON=//')
BIN=$(dirname "$PYTHON")
exec "$BIN/verdi" run examples/first_calculation.py "$@"
