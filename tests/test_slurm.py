"""A real SLURM (slurmctld + slurmd on localhost, ``scripts/slurm.sh``): computer setup and failures of jobs.

The jobs are the real ``mopac`` and ``xtb`` submitted with ``sbatch`` by the daemon. Two failures are made by
SLURM itself: ``scancel`` of the running job, and a walltime kill (``scontrol update EndTime=now`` shortens a
running job's limit; slurmctld then kills it "DUE TO TIME LIMIT" at its next time-limit check, within 30 s).
To hit the job while it is running whatever the machine's speed, each job script first waits on a *gate* file
(``prepend_text``); the test removes the gate once the failures are done and the real code runs.
"""
from __future__ import annotations

import pathlib
import re
import subprocess
import time

import pytest
from aiida import orm
from click.testing import CliRunner

from aiida_grimperium.cli import cmd_root, cmd_slurm  # noqa: F401  (cmd_slurm registers `setup-slurm`)

REPO = pathlib.Path(__file__).resolve().parents[1]
SLURM_COMPUTER = 'slurm-test'


def slurm_cli(*args: str) -> str:
    return subprocess.run(list(args), check=True, capture_output=True, text=True).stdout


def job_field(job_id: str, field: str) -> str | None:
    """A field of ``scontrol show job`` (finished jobs stay MinJobAge = 600 s), or ``None``."""
    try:
        text = slurm_cli('scontrol', 'show', 'job', '-o', str(job_id))
    except subprocess.CalledProcessError:
        return None
    match = re.search(rf'\b{field}=(\S+)', text)
    return match.group(1) if match else None


def slurm_jobs_under(workdir: str) -> list[dict]:
    """Every job SLURM still knows whose working directory is under ``workdir``: id, name, state."""
    jobs = []
    for line in slurm_cli('scontrol', 'show', 'job', '-o').splitlines():
        fields = dict(re.findall(r'(\w+)=(\S*)', line))
        if fields.get('WorkDir', '').startswith(workdir):
            jobs.append({'id': fields['JobId'], 'name': fields.get('JobName'), 'state': fields.get('JobState')})
    return jobs


def wait_for(condition, timeout: float, what: str, interval: float = 0.5, nodes=()):
    """Poll ``condition`` until it is true; on timeout fail with the state of ``nodes`` (and their reports)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f'timed out after {timeout} s waiting for {what}\n' + '\n'.join(map(describe, nodes)))


def describe(node: orm.ProcessNode) -> str:
    """A process, its CalcJobs (state, exit status, SLURM job and its state) and its report, for failure messages."""
    from aiida.cmdline.utils.common import get_workchain_report

    lines = [f'{node.process_label}<{node.pk}> {node.process_state} {node.exit_status}']
    for calc in sorted((n for n in node.called_descendants if isinstance(n, orm.CalcJobNode)), key=lambda n: n.pk):
        job = calc.get_job_id()
        lines.append(f'  {calc.process_label}<{calc.pk}> {calc.process_state} {calc.exit_status} {calc.get_state()} '
                     f'job {job} {job_field(job, "JobState") if job else ""}')
        if 'retrieved' in calc.outputs:
            retrieved = calc.outputs.retrieved
            names = retrieved.base.repository.list_object_names()
            stderr = calc.get_option('scheduler_stderr')
            lines.append(f'    retrieved {names}; scheduler stderr: '
                         f'{retrieved.base.repository.get_object_content(stderr) if stderr in names else None!r}')
    if isinstance(node, orm.WorkflowNode):
        lines.append(get_workchain_report(node, 'REPORT'))
    return '\n'.join(lines)


@pytest.fixture(scope='session')
def slurm_cluster():
    """The one-node cluster of ``scripts/slurm.sh`` (idempotent: installs and starts only what is missing)."""
    result = subprocess.run(['bash', str(REPO / 'scripts' / 'slurm.sh')], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip().endswith('SLURM=ready'), result.stderr
    return True


@pytest.fixture(scope='session')
def slurm_computer(slurm_cluster, aiida_profile, tmp_path_factory):
    """``grimperium setup-slurm``: a core.slurm computer (core.local transport) with mopac, xtb and pw.x on it."""
    workdir = tmp_path_factory.mktemp('slurm-work')
    args = ['setup-slurm', '--computer-label', SLURM_COMPUTER, '--workdir', str(workdir), '--poll-interval', '1']
    result = CliRunner().invoke(cmd_root, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return orm.load_computer(SLURM_COMPUTER)


@pytest.fixture
def two_workers(started_daemon_client):
    """The daemon with (at least) two workers."""
    missing = 2 - started_daemon_client.get_number_of_workers()
    if missing > 0:
        started_daemon_client.increase_workers(missing)
        wait_for(lambda: started_daemon_client.get_number_of_workers() >= 2, 30, 'two daemon workers')
    return started_daemon_client


@pytest.fixture
def gate(tmp_path, slurm_computer):
    """A gate file job scripts wait on; on teardown it is opened and no job of the test is left in SLURM."""
    path = tmp_path / 'gate'
    yield path
    path.unlink(missing_ok=True)
    workdir = slurm_computer.get_workdir()
    leftover = [j['id'] for j in slurm_jobs_under(workdir) if j['state'] in ('PENDING', 'RUNNING')]
    if leftover:
        subprocess.run(['scancel', *leftover], check=False)


def test_setup_slurm_is_idempotent(slurm_computer):
    assert slurm_computer.scheduler_type in ('grimperium.slurm', 'core.slurm')
    assert slurm_computer.transport_type == 'core.local'
    assert slurm_computer.get_minimum_job_poll_interval() == 1.0
    result = CliRunner().invoke(cmd_root, ['setup-slurm', '--computer-label', SLURM_COMPUTER], catch_exceptions=False)
    assert result.exit_code == 0
    assert re.search(rf'computer {SLURM_COMPUTER}\s+exists', result.output), result.output
    for code in ('mopac', 'xtb', 'pw'):
        assert re.search(rf'{code}@{SLURM_COMPUTER}\s+exists', result.output), result.output
        assert orm.load_code(f'{code}@{SLURM_COMPUTER}').computer.uuid == slurm_computer.uuid


def test_sbatch_of_the_same_working_directory_runs_once(slurm_cluster, tmp_path):
    """The exactly-once submission of ``grimperium.slurm``: a worker dying after ``sbatch`` and the next one
    submitting the same CalcJob again get the same job, not a second one."""
    from aiida.transports.plugins.local import LocalTransport

    from aiida_grimperium.schedulers import SUBMITTED_MARKER, IdempotentSlurmScheduler

    (tmp_path / 'job.sh').write_text('#!/bin/bash\n#SBATCH --job-name=exactly-once\n#SBATCH --time=1\necho ran\n')
    scheduler = IdempotentSlurmScheduler()
    with LocalTransport() as transport:
        scheduler.set_transport(transport)
        first = scheduler.submit_job(str(tmp_path), 'job.sh')
        second = scheduler.submit_job(str(tmp_path), 'job.sh')
    assert re.fullmatch(r'\d+', first) and second == first
    assert (tmp_path / SUBMITTED_MARKER).read_text().strip() == f'Submitted batch job {first}'
    assert [j['id'] for j in slurm_jobs_under(str(tmp_path))] == [first]


def calcjobs_of(workchain: orm.WorkflowNode) -> list[orm.CalcJobNode]:
    return sorted((n for n in workchain.called if isinstance(n, orm.CalcJobNode)), key=lambda n: n.pk)


def running_job(workchain: orm.WorkflowNode, attempt: int, timeout: float = 60) -> str:
    """The SLURM id of the ``attempt``-th CalcJob of ``workchain`` once its job script runs on the node."""
    def ready():
        calcs = calcjobs_of(workchain)
        if len(calcs) < attempt or calcs[attempt - 1].get_job_id() is None:
            return None
        job_id = calcs[attempt - 1].get_job_id()
        # RUNNING in slurmctld comes a moment before slurmd launches the script; the stderr file marks the launch
        stderr = job_field(job_id, 'StdErr')
        return job_id if job_field(job_id, 'JobState') == 'RUNNING' and stderr and pathlib.Path(stderr).exists() else None

    return wait_for(ready, timeout, f'attempt {attempt} of {workchain.process_label}<{workchain.pk}> running in SLURM',
                    nodes=[workchain])


def hit_walltime(job_id: str) -> None:
    """Make SLURM kill ``job_id`` at its walltime now (its limit shrinks to the time it has run).

    SLURM refuses an end time that is not after the start time ("Invalid time specified") when the job started
    within the same second; the job is held by the gate, so wait a second and ask again.
    """
    for _ in range(5):
        try:
            slurm_cli('scontrol', 'update', f'JobId={job_id}', 'EndTime=now')
            return
        except subprocess.CalledProcessError as exc:
            if 'Invalid time specified' not in (exc.stderr or ''):
                raise
            time.sleep(1.0)
    slurm_cli('scontrol', 'update', f'JobId={job_id}', 'EndTime=now')


def test_scancel_and_walltime_are_restarted_to_the_same_result(slurm_computer, two_workers, gate):
    """MOPAC: scancel (→ 401) then walltime (→ 400, twice the walltime); xtb: the reverse. Both then finish with
    exactly the numbers of an undisturbed run of the same input on the same cluster."""
    from aiida.engine import submit

    from aiida_grimperium.structures import molecule_structure
    from aiida_grimperium.workchains.mopac import MopacBaseWorkChain
    from aiida_grimperium.workchains.xtb import XtbBaseWorkChain

    water = molecule_structure(['O', 'H', 'H'], [[0, 0, 0.12], [0, 0.76, -0.47], [0, -0.76, -0.47]])
    gated = {'prepend_text': f'while [ -e {gate} ]; do sleep 0.2; done', 'max_wallclock_seconds': 600,
             'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}}

    def builders(options):
        mopac = MopacBaseWorkChain.get_builder_from_protocol(orm.load_code(f'mopac@{SLURM_COMPUTER}'), water, 'fast',
                                                             options=options)
        xtb = XtbBaseWorkChain.get_builder_from_protocol(orm.load_code(f'xtb@{SLURM_COMPUTER}'), water, 'fast',
                                                         options=options)
        return mopac, xtb

    # the undisturbed reference runs first, on the same cluster, while the gated ones are held
    gate.touch()
    reference = [submit(b) for b in builders({k: v for k, v in gated.items() if k != 'prepend_text'})]
    disturbed = [submit(b) for b in builders(gated)]
    mopac, xtb = disturbed

    first = {wc.pk: running_job(wc, 1) for wc in disturbed}
    slurm_cli('scancel', first[mopac.pk])
    hit_walltime(first[xtb.pk])
    second = {wc.pk: running_job(wc, 2, timeout=90) for wc in disturbed}
    hit_walltime(second[mopac.pk])
    slurm_cli('scancel', second[xtb.pk])
    wait_for(lambda: all(len(calcjobs_of(wc)) == 3 for wc in disturbed), 90, 'third attempts', nodes=disturbed)
    gate.unlink()
    for node in reference + disturbed:
        wait_for(lambda: node.is_terminated, 120, f'{node.process_label}<{node.pk}> to finish', nodes=[node])

    assert [job_field(first[mopac.pk], 'JobState'), job_field(second[mopac.pk], 'JobState')] == ['CANCELLED', 'TIMEOUT']
    assert [job_field(first[xtb.pk], 'JobState'), job_field(second[xtb.pk], 'JobState')] == ['TIMEOUT', 'CANCELLED']
    for workchain, expected in ((mopac, [401, 400, 0]), (xtb, [400, 401, 0])):
        assert workchain.is_finished_ok, workchain.exit_status
        calcs = calcjobs_of(workchain)
        assert [c.exit_status for c in calcs] == expected
        assert len({c.get_job_id() for c in calcs}) == 3  # each attempt its own sbatch
        times = [re.search(r'#SBATCH --time=(\S+)', c.base.repository.get_object_content('_aiidasubmit.sh')).group(1)
                 for c in calcs]
        after_walltime = expected.index(400) + 1  # the walltime handler doubled the limit of the next attempt
        assert times[after_walltime - 1] == '00:10:00' and times[after_walltime] == '00:20:00', times
    reports = ' '.join(log.message for wc in disturbed for log in orm.Log.collection.get_logs_for(wc))
    assert 'cancelled by the scheduler' in reports and 'ran out of' in reports

    ref_mopac, ref_xtb = reference
    assert all(node.is_finished_ok for node in reference)
    assert mopac.outputs.output_parameters['heat_of_formation_kcal_mol'] == pytest.approx(
        ref_mopac.outputs.output_parameters['heat_of_formation_kcal_mol'], abs=1e-6)
    assert xtb.outputs.output_parameters['total_energy_hartree'] == pytest.approx(
        ref_xtb.outputs.output_parameters['total_energy_hartree'], abs=1e-9)
