"""Shared test fixtures: a throw-away AiiDA profile with a ZeroMQ broker, real codes, and replay codes.

Real codes (mopac, xtb, pw.x) come from Debian packages installed by ``scripts/setup.sh``; a test that needs
one fails with a clear message when it is missing instead of being skipped, because CI must run them.
CREST, VASP and CRYSTAL23 cannot be installed: :func:`replay_code` gives a code that copies a *recorded real
run* (``tests/fixtures/...``) into the working directory, labelled as replay (see ``tests/replay/replay-run``).
"""
from __future__ import annotations

import os
import pathlib
import shutil

import pytest

pytest_plugins = ['aiida.tools.pytest_fixtures']

TESTS = pathlib.Path(__file__).parent
FIXTURES = TESTS / 'fixtures'
REPLAY_SCRIPT = TESTS / 'replay' / 'replay-run'

# The codes are serial here; keep OpenMP codes from oversubscribing the 2 cores when tests run side by side.
os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('OMPI_ALLOW_RUN_AS_ROOT', '1')
os.environ.setdefault('OMPI_ALLOW_RUN_AS_ROOT_CONFIRM', '1')


@pytest.fixture(scope='session', autouse=True)
def aiida_profile(aiida_config, aiida_profile_factory):
    """The test profile: ``core.sqlite_dos`` storage and the ZeroMQ broker, as ``verdi presto`` makes."""
    from aiida_grimperium.storage import enable_wal

    with aiida_profile_factory(aiida_config, storage_backend='core.sqlite_dos', broker_backend='core.zeromq') as profile:
        enable_wal(profile)  # as `grimperium setup` does for users
        yield profile


@pytest.fixture
def aiida_localhost(aiida_localhost):
    """AiiDA's ``localhost`` test computer, its commands without a login shell as ``grimperium setup`` does."""
    from aiida_grimperium.cli.cmd_setup import plain_local_shell

    plain_local_shell(aiida_localhost.label, echo=lambda _: None)
    return aiida_localhost


@pytest.fixture
def fixtures_dir() -> pathlib.Path:
    return FIXTURES


@pytest.fixture
def real_code(aiida_localhost):
    """Factory: ``real_code('mopac', 'grimperium.mopac')`` → an ``InstalledCode`` of the binary on PATH."""
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    def factory(executable: str, plugin: str, label: str | None = None):
        path = shutil.which(executable)
        if path is None:
            pytest.fail(f'`{executable}` is not on PATH: run `bash scripts/setup.sh` (it installs the Debian packages)')
        label = label or executable.replace('.', '_')
        try:
            return orm.load_code(f'{label}@{aiida_localhost.label}')
        except NotExistent:
            return orm.InstalledCode(
                label=label, computer=aiida_localhost, filepath_executable=path, default_calc_job_plugin=plugin
            ).store()

    return factory


@pytest.fixture
def codes(real_code):
    """The ``--code`` options of a campaign command for the real xtb and mopac."""
    xtb, mopac = real_code('xtb', 'grimperium.xtb'), real_code('mopac', 'grimperium.mopac')
    return [f'--code=xtb={xtb.full_label}', f'--code=mopac={mopac.full_label}']


@pytest.fixture
def replay_code(aiida_localhost, tmp_path):
    """Factory: a REPLAY code that plays back recorded real runs, in order, one per call of the code.

    ``replay_code('grimperium.vasp', [FIXTURES / 'vasp' / 'elec-unconverged', FIXTURES / 'vasp' / 'converged'])``
    """
    from aiida import orm

    def factory(plugin: str, runs: list[pathlib.Path], label: str = 'replay'):
        runs = [pathlib.Path(r).resolve() for r in runs]
        missing = [str(r) for r in runs if not r.is_dir()]
        assert not missing, f'recorded runs not found: {missing}'
        state = tmp_path / f'replay-state-{label}'
        prepend = (
            f"export GRIMPERIUM_REPLAY_DIRS='{':'.join(map(str, runs))}'\n"
            f"export GRIMPERIUM_REPLAY_STATE='{state}'\n"
        )
        return orm.InstalledCode(
            label=f'{label}-{tmp_path.name}',
            description='REPLAY of recorded real runs (tests only)',
            computer=aiida_localhost,
            filepath_executable=str(REPLAY_SCRIPT),
            default_calc_job_plugin=plugin,
            prepend_text=prepend,
        ).store()

    return factory


@pytest.fixture
def pseudo_family(aiida_profile):
    """Factory: ``pseudo_family('pbe')`` → the Debian UPF family of that functional (installed once, idempotent)."""
    from aiida_grimperium.pseudos import DEFAULT_PSEUDO_DIR, install_family

    def factory(functional: str = 'pbe'):
        if not DEFAULT_PSEUDO_DIR.is_dir():
            pytest.fail(f'{DEFAULT_PSEUDO_DIR} is missing: run `bash scripts/setup.sh` (Debian quantum-espresso-data)')
        return install_family(functional)[0]

    return factory
