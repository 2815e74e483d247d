"""What the benchmarks share: a throw-away AiiDA configuration folder, never the user's ``~/.aiida``.

Profiles (``core.sqlite_dos`` + ZeroMQ, as ``verdi presto`` makes them) live in ``AIIDA_PATH`` =
``GRIMPERIUM_BENCH_AIIDA_PATH`` (default ``/tmp/grimperium-bench/aiida``).
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

BENCH_AIIDA_PATH = pathlib.Path(os.environ.get('GRIMPERIUM_BENCH_AIIDA_PATH', '/tmp/grimperium-bench/aiida'))
# AiiDA reads its configuration folder once, at import: point it at the benchmark's own before anything imports it.
os.environ['AIIDA_PATH'] = str(BENCH_AIIDA_PATH)
BIN = pathlib.Path(sys.executable).parent


def bench_env() -> dict:
    """Environment of the benchmark's AiiDA configuration."""
    return {**os.environ, 'AIIDA_PATH': str(BENCH_AIIDA_PATH), 'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '1')}


def run(*args, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], env=bench_env(), capture_output=True, text=True, check=check, **kwargs)


def fresh_profile(name: str) -> None:
    """(Re-)create the profile ``name`` with ``verdi presto`` and the codes of ``grimperium setup``."""
    BENCH_AIIDA_PATH.mkdir(parents=True, exist_ok=True)
    run(BIN / 'verdi', '-p', name, 'daemon', 'stop', check=False)
    run(BIN / 'verdi', 'profile', 'delete', '--force', '--delete-data', name, check=False)
    run(BIN / 'verdi', 'presto', '--profile-name', name, '--use-zeromq')
    run(BIN / 'grimperium', '-p', name, 'setup')


def bench_profile(name: str, fresh: bool = True):
    """Create (``fresh``: re-create) the profile ``name`` and load it in this process."""
    from aiida.manage.configuration import get_config, reset_config

    BENCH_AIIDA_PATH.mkdir(parents=True, exist_ok=True)
    if fresh or name not in get_config(create=True).profile_names:
        fresh_profile(name)
    reset_config()
    from aiida import load_profile

    return load_profile(name, allow_switch=True)
