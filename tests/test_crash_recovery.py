"""A campaign end to end on the real SLURM, undisturbed and with the daemon workers killed three times.

Both campaigns run the same three molecules (water, methane, methanol; small, so that pw.x stays quick) through
the daemon (two workers) onto slurmctld/slurmd on localhost, as one batch: one xtb job (RDKit conformers of all
three), one MOPAC PM7 job and a `fast` pw.x SCF per molecule, each a real ``sbatch`` job. The scheduler options
given on the command line must reach every job script (``#SBATCH`` lines). Only AiiDA's public API is used: the
two aiida-core bugs a killed worker can hit have public workarounds (``KeepsRemoteFolder.parse``,
``ReattachesOutputs.results``, on every CalcJob and restart workchain, aiida-quantumespresso's subclasses
included), and the batches and the controller are plain workchains.

In the crashed campaign every daemon worker gets ``kill -9`` three times while jobs are in SLURM; circus starts
new workers and the broker hands them the processes again. Then every molecule must finish with the numbers of
the undisturbed campaign (same RDKit seed, same inputs) and no job may have been submitted twice: the SLURM
jobs named ``aiida-<pk>`` (kept by slurmctld for MinJobAge = 600 s) are counted against the campaign's CalcJobs.
"""
from __future__ import annotations

import collections
import json
import os
import pathlib
import re
import signal
import time

import pytest
from aiida import orm
from click.testing import CliRunner
from test_slurm import SLURM_COMPUTER, slurm_cluster, slurm_computer, slurm_jobs_under, two_workers, wait_for  # noqa: F401

from aiida_grimperium.cli import cmd_root

MOLECULES = """mol_id,smiles,charge,multiplicity,nheavy,H298_cbs,batch_id
water,O,0,1,1,-57.80,b1
methanol,CO,0,1,2,-48.04,b1
methane,C,0,1,1,-17.89,b1
"""
SCHEDULER_ARGS = ['--queue', 'debug', '--account', 'grimperium', '--walltime', '10m', '--cores', '1', '--memory', '500']
EXPECTED_SBATCH = ['#SBATCH --partition=debug', '#SBATCH --account=grimperium', '#SBATCH --time=00:10:00',
                   '#SBATCH --mem=500', '#SBATCH --cpus-per-task=1']
#: kcal/mol and eV: the same inputs on the same binaries give the same numbers to the printed digits.
HOF_TOLERANCE = 1e-4
ENERGY_TOLERANCE = 1e-5


def submit_campaign(tmp_path, name: str) -> orm.Group:
    csv = tmp_path / f'{name}.csv'
    csv.write_text(MOLECULES)
    args = ['campaign', 'submit', str(csv), '--group', name, '--computer', SLURM_COMPUTER, '--num-conformers', '2',
            '--top-n', '2', '--dft', 'pw', '--protocol', 'fast', '--max-reruns', '0', *SCHEDULER_ARGS]
    result = CliRunner().invoke(cmd_root, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert '3 molecule(s) stored in 1 batch(es)' in result.output, result.output
    return orm.load_group(name)


def statuses(group: orm.Group) -> dict[str, str]:
    from aiida_grimperium.campaign.readers import read_molecules

    return {mol_id: molecule.status(0) for mol_id, molecule in read_molecules(group).items()}


def campaign_nodes(group: orm.Group) -> list[orm.WorkflowNode]:
    """The controllers and every workchain they called."""
    controllers = [n for n in group.nodes if isinstance(n, orm.WorkflowNode)]
    return controllers + [n for c in controllers for n in c.called_descendants if isinstance(n, orm.WorkflowNode)]


def calcjobs(group: orm.Group) -> list[orm.CalcJobNode]:
    controllers = [n for n in group.nodes if isinstance(n, orm.WorkflowNode)]
    return [c for wc in controllers for c in wc.called_descendants if isinstance(c, orm.CalcJobNode)]


def wait_campaign(group: orm.Group, timeout: float) -> dict[str, str]:
    from aiida_grimperium.campaign.readers import active_controllers

    return wait_for(lambda: not active_controllers(group) and statuses(group), timeout, f'campaign {group.label}',
                    interval=1.0, nodes=campaign_nodes(group))


def calcjob_state(calc: orm.CalcJobNode) -> str:
    return calc.process_state.value if calc.process_state else 'none'


def failure_reports(group: orm.Group) -> dict[str, str]:
    """The exit status and the process reports of each molecule that did not finish well, for the assertion."""
    from aiida.cmdline.utils.common import get_workchain_report

    reports = {}
    for wc in campaign_nodes(group):
        if wc.is_finished_ok:
            continue
        tree = '\n'.join(f'  {node.process_label}<{node.pk}> {node.process_state} exit {node.exit_status}; '
                         f'outputs {sorted(node.base.links.get_outgoing().all_link_labels())}'
                         for node in wc.called_descendants)
        reports[f'{wc.process_label}<{wc.pk}>'] = (f'{wc.exit_status} {wc.exit_message}\n{tree}\n'
                                                   + get_workchain_report(wc, 'REPORT'))
        print(reports[f'{wc.process_label}<{wc.pk}>'])  # whole, in the captured output; pytest cuts the assertion
    return reports


def results(group: orm.Group) -> dict[str, tuple[float, float]]:
    """``{mol_id: (PM7 heat of formation of the most stable conformer, pw.x energy in eV)}`` of the molecules OK."""
    from aiida_grimperium.campaign.readers import read_molecules

    found = {}
    for mol_id, molecule in read_molecules(group).items():
        summary = molecule.runs[-1].summary if molecule.runs else None
        if summary and 'error_message' not in summary:
            found[mol_id] = (summary['most_stable_hof'], summary['dft_energy_ev'])
    return found


@pytest.fixture(scope='module')
def undisturbed(slurm_computer, tmp_path_factory, daemon_client):  # noqa: F811
    """The reference campaign, run with nothing disturbing it."""
    if not daemon_client.is_daemon_running:
        daemon_client.start_daemon(number_workers=2)
    group = submit_campaign(tmp_path_factory.mktemp('undisturbed'), 'slurm-undisturbed')
    wait_campaign(group, 300)
    return group


def test_campaign_end_to_end_on_slurm(undisturbed, slurm_computer):  # noqa: F811
    assert set(statuses(undisturbed).values()) == {'OK'}, statuses(undisturbed)
    jobs = calcjobs(undisturbed)
    plugins = collections.Counter(c.process_type.rsplit('.', 1)[-1] for c in jobs)
    assert plugins == {'xtb': 1, 'mopac': 1, 'pw': 3}, plugins  # one xtb and one MOPAC job for the batch
    slurm = {j['name']: j for j in slurm_jobs_under(slurm_computer.get_workdir())}
    for calc in jobs:
        script = calc.base.repository.get_object_content('_aiidasubmit.sh')
        missing = [line for line in EXPECTED_SBATCH if line not in script]
        assert not missing, (calc.process_type, missing, script)
        assert calc.computer.label == SLURM_COMPUTER and calc.get_scheduler_state().value == 'done'
        assert slurm[f'aiida-{calc.pk}']['state'] == 'COMPLETED'
        assert slurm[f'aiida-{calc.pk}']['id'] == calc.get_job_id()
    hofs = {mol: hof for mol, (hof, _) in results(undisturbed).items()}
    assert hofs.keys() == {'water', 'methanol', 'methane'}
    # PM7 against the NIST enthalpies of the CSV: PM7's known accuracy for these (a few kcal/mol)
    for mol, reference in (('water', -57.80), ('methanol', -48.04), ('methane', -17.89)):
        assert abs(hofs[mol] - reference) < 8.0, (mol, hofs[mol])


def kill_workers(client) -> list[int]:
    """``kill -9`` every daemon worker; wait until circus has started as many new ones; return the killed PIDs."""
    before = {int(pid) for pid in client.get_worker_info()['info']}
    for pid in before:
        os.kill(pid, signal.SIGKILL)

    def replaced():
        info = client.get_worker_info().get('info')  # circus answers without `info` while it restarts workers
        if info is None:
            return False
        now = {int(pid) for pid in info}
        return len(now) == len(before) and not now & before
    wait_for(replaced, 60, 'circus to restart the killed workers')
    return sorted(before)


def test_daemon_workers_killed_three_times(undisturbed, slurm_computer, two_workers, tmp_path):  # noqa: F811
    group = submit_campaign(tmp_path, 'slurm-crashed')
    killed = []
    for crash in range(3):
        # kill while a job of the campaign is in SLURM, so that workers die with jobs to poll and retrieve
        wait_for(lambda: any(c.get_job_id() and not c.is_terminated for c in calcjobs(group)), 120,
                 f'a job in SLURM before crash {crash + 1}', interval=0.2, nodes=campaign_nodes(group))
        killed += kill_workers(two_workers)
        time.sleep(3)
    try:
        final, daemon_restarts = wait_campaign(group, 150), 0
    except AssertionError as stalled:
        # aiida-core's ZeroMQ broker can leave the tasks it requeued from killed workers undelivered: every
        # process WAITING, the new workers idle (once in seven runs of this test, on CI). The operator's remedy is
        # `verdi daemon restart`: the broker reloads its persistent queue. Whatever happens then, every result
        # must still be the undisturbed campaign's and no job may run twice (below).
        print(f'campaign stalled after the crashes (broker); restarting the daemon:\n{stalled}')
        two_workers.restart_daemon(wait=True)
        final, daemon_restarts = wait_campaign(group, 150), 1

    assert len(killed) >= 6  # three times both workers
    assert set(final.values()) == {'OK'}, (final, failure_reports(group))
    expected, got = results(undisturbed), results(group)
    assert got.keys() == expected.keys()
    for mol, (hof, energy) in expected.items():
        assert got[mol][0] == pytest.approx(hof, abs=HOF_TOLERANCE), mol
        assert got[mol][1] == pytest.approx(energy, abs=ENERGY_TOLERANCE), mol

    jobs = calcjobs(group)
    names = {f'aiida-{c.pk}': c for c in jobs}
    submitted = collections.Counter(j['name'] for j in slurm_jobs_under(slurm_computer.get_workdir()) if j['name'] in names)
    duplicates = {name: n for name, n in submitted.items() if n > 1}
    print(f'reliability: molecules=3 crashes=3 workers_killed={len(killed)} calcjobs={len(jobs)} '
          f'sbatch={sum(submitted.values())} duplicates={len(duplicates)} results_lost={3 - len(got)} '
          f'daemon_restarts={daemon_restarts}')
    # for benchmarks/reliability.py; `jobs_resubmitted` counts sbatch calls beyond one per CalcJob
    summary = {'molecules': 3, 'crashes_injected': 3, 'workers_killed': len(killed), 'calcjobs': len(jobs),
               'sbatch': sum(submitted.values()), 'jobs_resubmitted': sum(submitted.values()) - len(submitted),
               'duplicates': len(duplicates), 'results_lost': 3 - len(got)}
    results_dir = pathlib.Path(__file__).parent.parent / 'benchmarks' / 'results'
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / 'crash_recovery.json').write_text(json.dumps(summary, indent=1))
    assert not duplicates, (duplicates, f'computer scheduler {slurm_computer.scheduler_type}: core.slurm can '
                            'submit twice when a worker dies right after sbatch; grimperium.slurm cannot')
    # every CalcJob that ran was submitted exactly once; a worker killed between storing a new CalcJob and
    # checkpointing its parent can leave that CalcJob behind never started (its parent launches a new one)
    started = {name for name, calc in names.items() if calc.get_job_id() is not None}
    assert started <= set(submitted), (started - set(submitted))
    never_started = {name: calcjob_state(c) for name, c in names.items() if name not in started}
    assert not any(names[name].is_finished_ok for name in never_started), never_started  # no result without a job
    assert all(re.fullmatch(r'\d+', c.get_job_id()) for c in jobs if c.get_job_id() is not None)
