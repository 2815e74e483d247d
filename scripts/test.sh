#!/usr/bin/env bash
# The test suite: installs what it needs (scripts/setup.sh), then runs pytest with the real codes.
# Tests make their own throw-away AiiDA profiles; nothing in ~/.aiida is touched.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=$(bash scripts/setup.sh | tail -n 1 | sed 's/^PYTHON=//')
# Headless Chromium renders the campaign report in a test (Debian package; installed once).
if ! command -v chromium >/dev/null 2>&1; then
  echo "test: installing chromium (Debian) for the report test" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
fi
# Services some tests use for real: a one-node SLURM cluster, an SSH server on localhost, PostgreSQL + RabbitMQ
# (each script is idempotent).
for service in scripts/slurm.sh scripts/sshd.sh scripts/scaleout.sh; do
  if [ -f "$service" ]; then bash "$service" >&2; fi
done
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec "$PYTHON" -m pytest -p no:cacheprovider -q -ra --durations=15 "$@"
