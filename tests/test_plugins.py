"""Every entry point is prefixed `grimperium.`, loads, and shows in `verdi plugin list`."""
from __future__ import annotations

import subprocess
from importlib.metadata import entry_points

import pytest

GROUPS = ('aiida.calculations', 'aiida.parsers', 'aiida.workflows')
EXPECTED = {
    'aiida.calculations': {'grimperium.mopac', 'grimperium.xtb', 'grimperium.crest', 'grimperium.pw',
                           'grimperium.vasp', 'grimperium.crystal'},
    'aiida.parsers': {'grimperium.mopac', 'grimperium.xtb', 'grimperium.crest', 'grimperium.pw',
                      'grimperium.vasp', 'grimperium.crystal'},
    'aiida.workflows': {'grimperium.mopac.base', 'grimperium.xtb.base', 'grimperium.crest.base', 'grimperium.pw.base', 'grimperium.vasp.base',
                        'grimperium.crystal.base', 'grimperium.dft', 'grimperium.conformers',
                        'grimperium.conformer_to_dft', 'grimperium.conformer_batch', 'grimperium.campaign'},
}


def ours(group: str):
    return [ep for ep in entry_points(group=group) if ep.value.startswith('aiida_grimperium')]


@pytest.mark.parametrize('group', GROUPS)
def test_entry_points_are_prefixed_and_load(group):
    names = {ep.name for ep in ours(group)}
    assert names == EXPECTED[group]
    for ep in ours(group):
        assert ep.name.startswith('grimperium.')
        ep.load()


@pytest.mark.parametrize('group', GROUPS)
def test_verdi_plugin_list_shows_them(group):
    output = subprocess.run(['verdi', 'plugin', 'list', group], capture_output=True, text=True, check=True).stdout
    for name in EXPECTED[group]:
        assert name in output, (name, output)


@pytest.mark.parametrize('group', ['aiida.calculations', 'aiida.workflows'])
def test_no_exit_status_is_declared_twice(group):
    """`verdi plugin list` shows each exit code once: no status under two labels (e.g. a restart workchain
    re-declaring BaseRestartWorkChain's 401/402)."""
    from aiida.plugins.entry_point import get_entry_point_names, load_entry_point

    for name in get_entry_point_names(group):
        if not name.startswith('grimperium.'):
            continue
        statuses = [code.status for code in load_entry_point(group, name).spec().exit_codes.values()]
        duplicated = sorted({status for status in statuses if statuses.count(status) > 1})
        assert not duplicated, f'{name}: exit status(es) {duplicated} declared twice'
