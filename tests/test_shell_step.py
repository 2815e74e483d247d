"""The shell step: a user's command on each molecule's PM7-lowest conformer, through aiida-shell's ShellJob.

The command is the real xtb (`xtb {lowest} --ohess --json`: optimisation, Hessian and 298 K thermochemistry) on
the real conformers of a campaign run by the daemon; its kept files are nodes the ShellJob created, and what they
hold is what xtb printed, and what xtb prints when run by hand on the same XYZ file. A command that fails fails
only its step; a command that cannot run is refused at submission.
"""
from __future__ import annotations

import json
import re
import subprocess

import pandas as pd
import pytest
from aiida import orm
from aiida.common.links import LinkType
from click.testing import CliRunner

from aiida_grimperium.cli import cmd_root

TWO = 'mol_id,smiles,charge,multiplicity\nwater,O,0,1\nmethanol,CO,0,1\n'
OHESS = 'xtb {lowest} --ohess --json'
TOTAL_ENERGY = re.compile(r'\|\s+TOTAL ENERGY\s+(-?\d+\.\d+) Eh')
FREE_ENERGY = re.compile(r'\|\s+TOTAL FREE ENERGY\s+(-?\d+\.\d+) Eh')


def invoke(*args):
    return CliRunner().invoke(cmd_root, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def two_csv(tmp_path):
    path = tmp_path / 'two.csv'
    path.write_text(TWO)
    return path


def shell_job(group_label: str, mol_id: str) -> orm.CalcJobNode:
    """The molecule's ShellJob, as docs/campaigns.md finds it: campaign → controller → batch → ShellJob with the
    extra ``mol_id``."""
    from aiida_grimperium.workchains.batch import ConformerBatchWorkChain
    from aiida_grimperium.workchains.campaign import CampaignWorkChain

    query = orm.QueryBuilder()
    query.append(orm.Group, filters={'label': group_label}, tag='group')
    query.append(CampaignWorkChain, with_group='group', tag='controller')
    query.append(ConformerBatchWorkChain, with_incoming='controller', tag='batch')
    query.append(orm.CalcJobNode, with_incoming='batch', filters={'extras.mol_id': mol_id},
                 edge_filters={'label': {'like': 'shell_%'}}, project=['*'])
    return query.one()[0]


def created_files(job: orm.ProcessNode) -> dict[str, orm.SinglefileData]:
    links = job.base.links.get_outgoing(link_type=LinkType.CREATE).all()
    return {t.node.filename: t.node for t in links if isinstance(t.node, orm.SinglefileData)}


def export_table(group: str, tmp_path) -> pd.DataFrame:
    path = tmp_path / f'{group}.csv'
    result = invoke('export', group, '-o', path)
    assert result.exit_code == 0, result.output
    return pd.read_csv(path).set_index('mol_id')


@pytest.mark.daemon
def test_xtb_thermochemistry_on_each_lowest_conformer(codes, two_csv, started_daemon_client, tmp_path):
    result = invoke('campaign', 'run', two_csv, '--group', 'shell-ohess', '--num-conformers', 2, '--top-n', 1,
                    '--max-reruns', 0, '--shell-step', OHESS, '--shell-output', 'xtbout.json',
                    '--shell-output', 'vibspectrum', *codes)
    assert result.exit_code == 0, result.output
    assert re.search(r'shell step\s+\[#+\] 2/2', result.output), result.output
    table = export_table('shell-ohess', tmp_path)
    for mol_id, row in table.iterrows():
        assert row.status == 'OK' and row.mopac_status == 'OK' and row.shell_status == 'OK', row.to_dict()
        assert pd.isna(row.shell_error) and pd.isna(row.error_message)
        job = shell_job('shell-ohess', mol_id)
        assert job.pk == row.shell_pk and job.is_finished
        files = created_files(job)  # the kept files are nodes the ShellJob created
        assert {'xtbout.json', 'vibspectrum', 'stdout', 'stderr'} <= set(files), sorted(files)
        assert json.loads(row.shell_outputs) == {name: node.pk for name, node in files.items()}

        stdout = files['stdout'].get_content()
        assert 'normal termination of xtb' in files['stderr'].get_content()
        results = json.loads(files['xtbout.json'].get_content())
        assert results['total energy'] == pytest.approx(float(TOTAL_ENERGY.findall(stdout)[-1]), abs=1e-8)
        printed = [float(line.split()[-4]) for line in files['vibspectrum'].get_content().splitlines()
                   if line.strip() and line.split()[0].isdigit()]
        assert printed == pytest.approx(results['vibrational frequencies/rcm'], abs=0.006)

        # the XYZ file is the PM7-lowest conformer, made by a calcfunction from the batch's structure
        xyz = job.base.links.get_incoming(link_label_filter='nodes__lowest').one().node
        assert xyz.creator.process_label == 'conformer_xyz'
        structure = xyz.creator.inputs.structure
        assert structure.creator.process_label == 'lowest_structure' and structure.base.attributes.get('mol_id') == mol_id
        lines = xyz.get_content().splitlines()
        assert lines[1] == f'mol_id={mol_id} charge=0 multiplicity=1'
        positions = [float(v) for line in lines[2:] for v in line.split()[1:]]
        assert positions == pytest.approx([v for site in structure.sites for v in site.position], abs=1e-9)

        # xtb by hand on that file prints the same 298 K free energy
        folder = tmp_path / mol_id
        folder.mkdir()
        (folder / 'lowest.xyz').write_text(xyz.get_content())
        by_hand = subprocess.run(['xtb', 'lowest.xyz', '--ohess'], cwd=folder, capture_output=True, text=True,
                                 timeout=120, check=True, env={'OMP_NUM_THREADS': '1', 'PATH': '/usr/bin:/bin'})
        assert float(FREE_ENERGY.findall(by_hand.stdout)[-1]) == pytest.approx(
            float(FREE_ENERGY.findall(stdout)[-1]), abs=1e-6)
    assert orphans('shell-ohess') == []


def orphans(group_label: str) -> list[str]:
    """The Data nodes created or returned by the campaign's processes that have no creator (none, we hope).
    The processes are the controllers' CALL descendants: the QueryBuilder's ``with_ancestors`` follows only the
    data-provenance links (CREATE and INPUT), not CALL links, so it would find none of them."""
    from aiida_grimperium.workchains.campaign import CampaignWorkChain

    query = orm.QueryBuilder().append(orm.Group, filters={'label': group_label}, tag='group')
    query.append(CampaignWorkChain, with_group='group', project=['*'])
    processes = [p for controller in query.all(flat=True) for p in controller.called_descendants]
    assert any(p.process_label.startswith('ShellJob') for p in processes)
    nodes = [t.node for p in processes for t in p.base.links.get_outgoing(
        link_type=(LinkType.CREATE, LinkType.RETURN)).all()]
    assert nodes
    return [f'{node.__class__.__name__}<{node.pk}>' for node in nodes if node.creator is None]


@pytest.mark.daemon
def test_a_failing_command_fails_only_the_shell_step(codes, tmp_path, started_daemon_client):
    path = tmp_path / 'water.csv'
    path.write_text('mol_id,smiles,charge,multiplicity\nwater,O,0,1\n')
    result = invoke('campaign', 'run', path, '--group', 'shell-fails', '--num-conformers', 2, '--top-n', 1,
                    '--max-reruns', 0, '--shell-step', 'xtb {lowest} --alpb nosuchsolvent', *codes)
    assert result.exit_code == 0, result.output  # the molecule did not fail: its PM7 result stands
    row = export_table('shell-fails', tmp_path).loc['water']
    assert row.status == 'OK' and row.mopac_status == 'OK' and pd.notna(row.most_stable_hof)
    assert pd.isna(row.error_message)
    job = shell_job('shell-fails', 'water')
    stderr = created_files(job)['stderr'].get_content()
    assert job.exit_status == 400 and 'abnormal termination of xtb' in stderr
    assert row.shell_status == 'FAILED'
    assert row.shell_error.startswith('the command exited with status 1: ') and row.shell_error.endswith(
        'abnormal termination of xtb'), row.shell_error
    assert set(json.loads(row.shell_outputs)) == {'stdout', 'stderr'}
    assert "'nosuchsolvent' is not parametrized" in created_files(job)['stdout'].get_content()


def test_pipeline_shell_step_outputs(real_code):
    """The single-molecule pipeline: the ShellJob's files are its outputs `shell.*`, the summary has its status."""
    from aiida.engine import run_get_node

    from aiida_grimperium.campaign.builders import pipeline_builder
    from aiida_grimperium.campaign.molecules import Molecule
    from aiida_grimperium.campaign.store import DEFAULT_SETTINGS

    codes = {'xtb': real_code('xtb', 'grimperium.xtb'), 'mopac': real_code('mopac', 'grimperium.mopac')}
    settings = {**DEFAULT_SETTINGS, 'num_conformers': 2, 'top_n': 1,
                'shell': {'command': 'xtb {lowest} --hess --json', 'outputs': ['xtbout.json', 'hessian']}}
    builder = pipeline_builder(Molecule(mol_id='water', smiles='O', charge=0, multiplicity=1), settings, codes)
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    summary = results['output_parameters'].get_dict()
    assert summary['shell_status'] == 'OK' and summary['mopac_status'] == 'OK'
    shell = results['shell']
    assert {'stdout', 'stderr', 'xtbout_json', 'hessian'} <= set(shell)
    job = shell['stdout'].creator
    assert job.pk == summary['shell_pk'] and job.base.links.get_incoming(link_type=LinkType.CALL_CALC,
                                                                          ).one().link_label == 'shell'
    assert summary['shell_outputs']['hessian'] == shell['hessian'].pk
    printed = float(TOTAL_ENERGY.findall(shell['stdout'].get_content())[-1])
    assert json.loads(shell['xtbout_json'].get_content())['total energy'] == pytest.approx(printed, abs=1e-8)
    xyz = job.base.links.get_incoming(link_label_filter='nodes__lowest').one().node
    assert xyz.creator.inputs.structure.pk == results['lowest_structure'].pk


def groups() -> set[str]:
    return set(orm.QueryBuilder().append(orm.Group, project=['label']).all(flat=True))


@pytest.mark.parametrize('options, exit_code, message', [
    (('--shell-step', 'no-such-program-42 {lowest}'), 1,
     '--shell-step: `no-such-program-42` is not on computer'),
    (('--shell-step', 'xtb {structure} --ohess'), 2, '`{structure}` in `xtb {structure} --ohess` is not a placeholder'),
    (('--shell-step', 'xtb lowest.xyz --ohess'), 2, 'has no `{lowest}`'),
    (('--shell-step', 'xtb {lowest} > out'), 2, 'no redirections'),
    (('--shell-step', 'xtb {lowest}', '--shell-output', 'stdout'), 2, '`stdout` is always kept'),
    (('--shell-output', 'hessian'), 2, 'give the command too'),
])
@pytest.mark.parametrize('dry_run', [False, True])
def test_a_shell_step_that_cannot_run_is_refused(options, exit_code, message, dry_run, codes, two_csv,
                                                 stopped_daemon_client):
    name = f'refused-{exit_code}-{dry_run}'
    result = invoke('campaign', 'submit', two_csv, '--group', name, *options, *codes, *(['--dry-run'] if dry_run else []))
    assert result.exit_code == exit_code, result.output
    assert message in ' '.join(result.output.split()) and 'Traceback' not in result.output, result.output
    assert name not in groups()


def test_a_changed_shell_step_is_refused_unless_update(codes, two_csv, stopped_daemon_client):
    args = ('campaign', 'submit', two_csv, '--group', 'shell-settings', *codes)
    assert invoke(*args, '--shell-step', 'xtb {lowest} --ohess').exit_code == 0
    result = invoke(*args, '--shell-step', 'xtb {lowest} --hess')
    assert result.exit_code == 1 and 'shell:' in result.output and '--update' in result.output, result.output
    result = invoke(*args)  # leaving the option out is a change too
    assert result.exit_code == 1 and 'shell:' in result.output, result.output
    assert invoke(*args, '--shell-step', 'xtb {lowest} --hess', '--shell-output', 'hessian', '--update').exit_code == 0
    from aiida_grimperium.campaign.store import load_campaign, settings_of

    assert settings_of(load_campaign('shell-settings'))['shell'] == {'command': 'xtb {lowest} --hess',
                                                                     'outputs': ['hessian']}
