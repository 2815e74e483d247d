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


def test_every_calcjob_and_restart_workchain_has_the_crash_workarounds():
    """The public-API workarounds of the two aiida-core 2.9 bugs a killed worker can hit (``KeepsRemoteFolder``:
    a lost ``remote_folder``; ``ReattachesOutputs``: outputs linked but not returned) are on every CalcJob and
    restart workchain, aiida-quantumespresso's subclasses included: ``tests/test_crash_recovery.py`` hits them only
    when a kill falls at such a moment, and the pw.x classes once lost them when they moved onto that plugin."""
    from aiida.engine import BaseRestartWorkChain

    from aiida_grimperium.calculations.base import KeepsRemoteFolder
    from aiida_grimperium.workchains.base import ReattachesOutputs

    calcjobs = [ep.load() for ep in ours('aiida.calculations')]
    assert len(calcjobs) == 6 and all(issubclass(cls, KeepsRemoteFolder) for cls in calcjobs), calcjobs
    restart = [cls for cls in (ep.load() for ep in ours('aiida.workflows')) if issubclass(cls, BaseRestartWorkChain)]
    assert len(restart) == 6 and all(issubclass(cls, ReattachesOutputs) for cls in restart), restart


def test_the_readers_process_types_are_the_workchains():
    """``campaign status``/``export`` query the controllers and batches by process type, without importing the
    workchains (``campaign/layout.py``): the strings must be what AiiDA stores for them."""
    from aiida_grimperium.campaign.layout import BATCH_PROCESS_TYPE, CONTROLLER_PROCESS_TYPE
    from aiida_grimperium.workchains.batch import ConformerBatchWorkChain
    from aiida_grimperium.workchains.campaign import CampaignWorkChain

    assert CampaignWorkChain.build_process_type() == CONTROLLER_PROCESS_TYPE
    assert ConformerBatchWorkChain.build_process_type() == BATCH_PROCESS_TYPE


def test_reading_a_campaign_does_not_import_the_engine():
    """The read-only commands start without AiiDA's engine (half a second of imports per command)."""
    import subprocess
    import sys

    code = ('import sys; import aiida_grimperium.campaign.export, aiida_grimperium.cli.cmd_export, '
            'aiida_grimperium.cli.options; print("aiida.engine" in sys.modules)')
    assert subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout.strip() == 'False'
