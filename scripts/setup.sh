#!/usr/bin/env bash
# Idempotent setup of a Debian machine (as root) for aiida-grimperium:
#   1. the Debian packages of the real codes (mopac, xtb, pw.x + pseudopotentials), only those missing;
#   2. this package with its test extras, into the active virtual environment, or into ./.venv when the
#      system Python is "externally managed" (Debian's own python3);
#   3. with --profile: an AiiDA profile (core.sqlite_dos + ZeroMQ broker) when none exists, and one code per
#      executable found on PATH (`grimperium setup`).
# Prints the Python it used on its last line, `PYTHON=/path/to/python`, for the scripts that call it.
set -euo pipefail
cd "$(dirname "$0")/.."

want_profile=0
[ "${1:-}" = "--profile" ] && want_profile=1

packages=(mopac xtb quantum-espresso quantum-espresso-data)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done

choose_python() {
  if [ -n "${VIRTUAL_ENV:-}" ]; then echo "$VIRTUAL_ENV/bin/python"; return; fi
  if [ -x .venv/bin/python ]; then echo "$PWD/.venv/bin/python"; return; fi
  local py; py=$(command -v python3)
  if "$py" -c 'import sys, sysconfig, pathlib; sys.exit(0 if (pathlib.Path(sysconfig.get_path("stdlib")) / "EXTERNALLY-MANAGED").exists() else 1)'; then
    echo "VENV"
  else
    echo "$py"
  fi
}
PYTHON=$(choose_python)
if [ "$PYTHON" = "VENV" ]; then
  python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$PYTHON" = "VENV" ]; then
  python3 -m venv .venv
  PYTHON="$PWD/.venv/bin/python"
fi

# pip is quick when everything is already installed; the editable install keeps entry points current.
"$PYTHON" -m pip install -q --disable-pip-version-check -e ".[tests]" 2>&1 | grep -v -E '^WARNING: (Location|Running pip)' || true
"$PYTHON" -c 'import aiida_grimperium, aiida, rdkit, pymatgen' || { echo "setup: the Python install failed" >&2; exit 1; }

if [ "$want_profile" = 1 ]; then
  "$(dirname "$PYTHON")/grimperium" setup >&2
fi
echo "PYTHON=$PYTHON"
