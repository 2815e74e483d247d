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
