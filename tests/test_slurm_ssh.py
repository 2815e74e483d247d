"""The SLURM campaign through AiiDA's ``core.ssh`` transport, the way most users reach a cluster (the daemon on a
workstation): a real OpenSSH server on localhost (``scripts/sshd.sh``), key authentication only, and the server's
host key checked against ``~/.ssh/known_hosts`` (``RejectPolicy``: an unknown host key is refused, never added)."""
from __future__ import annotations

import pathlib
import re
import subprocess

import pytest
from aiida import orm
from click.testing import CliRunner
from test_slurm import slurm_cluster, slurm_jobs_under, wait_for  # noqa: F401

from aiida_grimperium.cli import cmd_root, cmd_slurm  # noqa: F401  (cmd_slurm registers `setup-slurm`)

REPO = pathlib.Path(__file__).resolve().parents[1]
KEY = pathlib.Path.home() / '.ssh' / 'grimperium_test_ed25519'
LABEL = 'slurm-ssh'
HOF = re.compile(r'FINAL HEAT OF FORMATION =\s+(-?\d+\.\d+) KCAL/MOL')


@pytest.fixture(scope='module')
def ssh_computer(slurm_cluster, aiida_profile, tmp_path_factory):  # noqa: F811
    result = subprocess.run(['bash', str(REPO / 'scripts' / 'sshd.sh')], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip().endswith('SSHD=ready'), result.stderr
    workdir = tmp_path_factory.mktemp('slurm-ssh-work')
    result = CliRunner().invoke(cmd_root, ['setup-slurm', '--computer-label', LABEL, '--transport', 'core.ssh',
                                           '--workdir', str(workdir), '--poll-interval', '1'], catch_exceptions=False)
    assert result.exit_code == 0 and f'verdi computer configure core.ssh {LABEL}' in result.output, result.output
    computer = orm.load_computer(LABEL)
    computer.configure(username='root', port=22, look_for_keys=False, allow_agent=False, key_filename=str(KEY),
                       load_system_host_keys=True, key_policy='RejectPolicy', timeout=30, safe_interval=0.2)
    return computer


@pytest.mark.daemon
def test_campaign_through_ssh_with_a_checked_host_key(ssh_computer, started_daemon_client, tmp_path):
    params = ssh_computer.get_authinfo(orm.User.collection.get_default()).get_auth_params()
    assert params['key_policy'] == 'RejectPolicy' and params['load_system_host_keys'] is True
    with ssh_computer.get_transport() as transport:  # a real SSH session: key login, host key checked
        assert transport.whoami() == 'root'

    csv_path = tmp_path / 'ssh.csv'
    csv_path.write_text('mol_id,smiles,charge,multiplicity,H298_cbs\nwater,O,0,1,-57.80\nmethanol,CO,0,1,-48.04\n')
    result = CliRunner().invoke(cmd_root, ['campaign', 'submit', str(csv_path), '--group', 'slurm-ssh-campaign',
                                           '--computer', LABEL, '--num-conformers', '2', '--max-reruns', '0'],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output

    from aiida_grimperium.calculations.base import archived_file
    from aiida_grimperium.campaign import queries
    from aiida_grimperium.campaign.readers import active_controllers, read_molecules
    from aiida_grimperium.campaign.store import load_campaign

    group = load_campaign('slurm-ssh-campaign')
    wait_for(lambda: not active_controllers(group), 300, 'the campaign through core.ssh')
    assert {m: molecule.status(0) for m, molecule in read_molecules(group).items()} == {'water': 'OK', 'methanol': 'OK'}

    controllers = [n for n in group.nodes if isinstance(n, orm.WorkflowNode)]
    jobs = [c for w in controllers for c in w.called_descendants if isinstance(c, orm.CalcJobNode)]
    assert sorted(c.process_label for c in jobs) == ['MopacCalculation', 'XtbCalculation']
    slurm = {job['name']: job for job in slurm_jobs_under(ssh_computer.get_workdir())}
    for job in jobs:
        assert job.computer.transport_type == 'core.ssh' and job.is_finished_ok
        assert slurm[f'aiida-{job.pk}']['state'] == 'COMPLETED'  # submitted with sbatch over SSH
    for mol_id in ('water', 'methanol'):
        pm7 = queries.molecule_nodes('slurm-ssh-campaign', mol_id)['pm7']
        mopac = next(job for job in jobs if job.process_label == 'MopacCalculation')
        key = next(k for k, m in mopac.inputs.molecules.get_dict().items() if m['mol_id'] == mol_id)
        printed = HOF.findall(archived_file(mopac, f'{key}.out'))  # retrieved over SSH
        assert pm7['lowest_heat_of_formation_kcal_mol'] == pytest.approx(min(map(float, printed)), abs=1e-5)
