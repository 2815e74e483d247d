"""The scale-out profile: a campaign on PostgreSQL storage and the RabbitMQ broker with several daemon workers.

``scripts/scaleout.sh`` installs and starts the real services (idempotent). Both profiles here are made by
``verdi presto`` in subprocesses with their own ``AIIDA_PATH`` (a temporary directory), so they neither touch
``~/.aiida`` nor the in-process test profile: a ``core.psql_dos`` + ``core.rabbitmq`` one with 4 workers, and
the default ``core.sqlite_dos`` + ZeroMQ one with 1 worker. The same CSV (three batches of one molecule) goes
to both (the real xtb and mopac, the same RDKit seed); RabbitMQ is restarted (``rabbitmqctl stop_app`` /
``start_app``) while the PostgreSQL campaign's batches run. Every molecule must finish once (one xtb and one
MOPAC job per batch, no rerun), the exported heats of formation must agree between the two profiles, and equal
what MOPAC printed in the output files stored in the PostgreSQL profile's repository.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time
import uuid

import pandas as pd
import pytest

ROOT = pathlib.Path(__file__).parent.parent
GRIMPERIUM = str(pathlib.Path(sys.executable).with_name('grimperium'))
VERDI = str(pathlib.Path(sys.executable).with_name('verdi'))
PG_ADMIN = os.environ.get('GRIMPERIUM_PG_ADMIN', 'aiida_admin')
PG_PASSWORD = os.environ.get('GRIMPERIUM_PG_PASSWORD', 'aiida_admin')
CSV = """mol_id,smiles,charge,multiplicity,nheavy,H298_cbs,batch_id
water,O,0,1,1,-57.80,so
methanol,CO,0,1,2,-48.04,so
n-butane,CCCC,0,1,4,-30.02,so
"""
HOF_TOLERANCE = 1e-5  # kcal/mol: MOPAC prints 5 decimals; same inputs and seed must give the same digits

# Run inside the PostgreSQL profile: the profile's backends, and every MOPAC heat of formation as printed in
# the retrieved output file, per molecule.
INSPECT = r"""
import json, re, sys
from aiida import load_profile, orm
from aiida_grimperium.calculations.base import archived_file
from aiida_grimperium.calculations.mopac import MopacCalculation
profile = load_profile(sys.argv[1])
printed = {}
for calc, in orm.QueryBuilder().append(MopacCalculation, project=['*']).all():  # one per batch
    if not calc.is_finished_ok:
        continue  # did not finish well: the jobs below say so
    for key, molecule in calc.inputs.molecules.get_dict().items():
        text = archived_file(calc, f'{key}.out')
        printed[molecule['mol_id']] = [float(x) for x in re.findall(r'FINAL HEAT OF FORMATION =\s+(-?\d+\.\d+) KCAL/MOL', text)]
calcs = orm.QueryBuilder().append(orm.CalcJobNode, project=['*']).all(flat=True)
jobs = [(c.process_label, c.exit_status) for c in calcs if c.get_job_id() is not None]  # reached the scheduler
twins = [(c.process_label, c.process_state.value) for c in calcs if c.get_job_id() is None]
print(json.dumps({'storage': profile.storage_backend, 'broker': profile.process_control_backend,
                  'printed': printed, 'jobs': jobs, 'twins': twins}))
"""


SEALED_CHECK = """
import sys
from aiida import load_profile, orm
load_profile(sys.argv[1])
print(' '.join(str(orm.load_node(int(pk)).is_sealed) for pk in sys.argv[2:]))
"""


@pytest.fixture(scope='session')
def scaleout_services():
    """PostgreSQL and RabbitMQ up and accepting connections (``scripts/scaleout.sh`` is idempotent)."""
    result = subprocess.run(['bash', str(ROOT / 'scripts' / 'scaleout.sh')], capture_output=True, text=True,
                            timeout=1800)  # a first run on a clean machine installs the packages
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0 and lines and lines[-1] == 'SCALEOUT=ready', result.stdout + result.stderr


def run(env, *args, timeout=120, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, f'{args}:\n{result.stdout}\n{result.stderr}'
    return result


def run_all(env, commands: dict, timeout=300) -> dict[str, str]:
    """Run several commands at once (the machine has few cores; most of each is Python start-up and polling)."""
    running = {key: subprocess.Popen([str(a) for a in cmd], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True) for key, cmd in commands.items()}
    outputs = {key: process.communicate(timeout=timeout)[0] for key, process in running.items()}
    for key, process in running.items():
        assert process.returncode == 0, f'{commands[key]}:\n{outputs[key]}'
    return outputs


def as_postgres(sql: str) -> str:
    """Run SQL as the PostgreSQL superuser (peer authentication of the `postgres` Unix user)."""
    return run(os.environ, 'runuser', '-u', 'postgres', '--', 'psql', '-qAt', '-c', sql).stdout.strip()


@pytest.fixture
def profiles(scaleout_services, tmp_path):
    """Two fresh profiles in a private AIIDA_PATH; afterwards: daemons stopped, database and its role dropped."""
    env = {**os.environ, 'AIIDA_PATH': str(tmp_path / 'aiida'), 'OMP_NUM_THREADS': '1'}
    suffix = uuid.uuid4().hex[:8]
    names = {'psql': f'grimp-so-{suffix}', 'sqlite': f'grimp-lite-{suffix}'}
    try:
        run(env, VERDI, 'presto', '-n', '-p', names['psql'], '--use-postgres', '--postgres-hostname', 'localhost',
            '--postgres-username', PG_ADMIN, '--postgres-password', PG_PASSWORD)
        run(env, VERDI, 'presto', '-n', '-p', names['sqlite'], '--use-zeromq')
        yield env, names
    finally:
        stopping = [subprocess.Popen([VERDI, '-p', name, 'daemon', 'stop'], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL) for name in names.values()]
        for process in stopping:
            process.wait(timeout=120)
        config_file = tmp_path / 'aiida' / '.aiida' / 'config.json'
        storage = {}
        if config_file.exists():
            profile = json.loads(config_file.read_text())['profiles'].get(names['psql'], {})
            storage = profile.get('storage', {}).get('config', {})
        # `verdi profile delete --delete-data` needs the superuser through sudo; drop them directly instead.
        if storage.get('database_name'):
            as_postgres(f'DROP DATABASE IF EXISTS "{storage["database_name"]}" WITH (FORCE)')
            as_postgres(f'DROP ROLE IF EXISTS "{storage["database_username"]}"')
        shutil.rmtree(tmp_path / 'aiida', ignore_errors=True)


def wait_until(condition, timeout: float, what: str, interval: float = 2.0, explain=lambda: '') -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f'timed out after {timeout} s waiting for {what}{explain()}')


def diagnosis(env, profile: str, tmp_path) -> str:
    """What a failed assertion needs to be understood: every process, the reports, the daemon log's tail."""
    listing = run(env, VERDI, '-p', profile, 'process', 'list', '-a', '-P', 'pk', 'process_label', 'process_state',
                  'exit_status', check=False).stdout
    pks = [line.split()[0] for line in listing.splitlines() if 'WorkChain' in line]
    reports = run(env, VERDI, '-p', profile, 'process', 'report', *pks, check=False).stdout if pks else ''
    logs = sorted((tmp_path / 'aiida' / '.aiida' / 'daemon' / 'log').glob(f'*{profile}*'))
    tails = ''.join(f'\n--- {log.name}\n' + '\n'.join(log.read_text(errors='replace').splitlines()[-60:])
                    for log in logs)
    return f'\n{listing}\n{reports}\n{tails}'


def campaign_ended(env, profile: str) -> bool:
    """Every molecule of the campaign has ended (OK, or failed with no rerun left): what `campaign run` waits for.
    The controller may still show as running then (see the test)."""
    counts = run(env, GRIMPERIUM, '-p', profile, 'campaign', 'status', 'scaleout').stdout.splitlines()[0]
    return not any(f'{status}=' in counts for status in ('Running', 'Pending', 'Rerun'))


def controllers_running(env, profile: str) -> list[str]:
    """Pks of the campaign's controllers that `verdi process list` shows as active."""
    listing = run(env, VERDI, '-p', profile, 'process', 'list', '-P', 'pk', 'process_label').stdout
    return [line.split()[0] for line in listing.splitlines() if 'CampaignWorkChain' in line]


@pytest.mark.daemon
def test_campaign_on_postgres_and_rabbitmq_equals_sqlite_zeromq(profiles, tmp_path):
    env, names = profiles
    # AiiDA warns about every RabbitMQ >= 3.8.15 because of consumer_timeout; scaleout.sh disabled it, so the
    # warning is switched off only after checking the broker really runs with it disabled.
    timeout = run(env, 'rabbitmqctl', 'eval', 'application:get_env(rabbit, consumer_timeout).').stdout.strip()
    assert timeout == '{ok,undefined}', timeout
    psql = names['psql']
    outputs = run_all(env, {
        'warning': [VERDI, '-p', psql, 'config', 'set', 'warnings.rabbitmq_version', 'False'],
        'slots': [VERDI, '-p', psql, 'config', 'set', 'daemon.worker_process_slots', '50'],
        **{key: [GRIMPERIUM, '-p', name, 'setup'] for key, name in names.items()},
    })
    assert all('mopac@localhost' in outputs[key] for key in names)

    csv_path = tmp_path / 'molecules.csv'
    csv_path.write_text(CSV)
    common = ['campaign', '--group', 'scaleout', '--num-conformers', 3, '--batch-size', 1, '--max-active', 3]
    # PostgreSQL + RabbitMQ: 4 workers, submitted; the broker is restarted while the batches run (below)
    run(env, VERDI, '-p', psql, 'daemon', 'start', 4)
    submitted = run(env, GRIMPERIUM, '-p', psql, common[0], 'submit', csv_path, *common[1:])
    assert '3 molecule(s) stored in 3 batch(es)' in submitted.stdout, submitted.stdout
    sqlite = subprocess.Popen([str(a) for a in (GRIMPERIUM, '-p', names['sqlite'], common[0], 'run', csv_path,
                                                *common[1:], '--workers', 1)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # as soon as the controller has launched its batches (in any state: a fast machine may be past xtb already)
    wait_until(lambda: 'ConformerBatchWorkChain' in run(env, VERDI, '-p', psql, 'process', 'list', '-a').stdout, 300,
               'the batches of the PostgreSQL campaign', explain=lambda: diagnosis(env, psql, tmp_path), interval=0.5)
    run(env, 'rabbitmqctl', 'stop_app', timeout=120)  # every worker loses its broker connection and its tasks
    run(env, 'rabbitmqctl', 'start_app', timeout=120)
    broker_restarts, daemon_restarts = 1, 0
    try:
        wait_until(lambda: campaign_ended(env, psql), 180, 'the PostgreSQL campaign after the broker restart')
    except AssertionError as stalled:
        # the operator's remedy when the restarted broker lost processes' tasks: `verdi process repair` sends them
        # again (with the daemon stopped), and the restarted workers have fresh connections
        print(f'campaign stalled after the broker restart; repairing the tasks and restarting the daemon:\n{stalled}')
        run(env, VERDI, '-p', psql, 'daemon', 'stop', timeout=120)
        run(env, VERDI, '-p', psql, 'process', 'repair', timeout=120, check=False)  # needs the daemon stopped
        run(env, VERDI, '-p', psql, 'daemon', 'start', 4, timeout=120)
        daemon_restarts = 1
        wait_until(lambda: campaign_ended(env, psql), 240, 'the PostgreSQL campaign after the daemon restart',
                   explain=lambda: diagnosis(env, psql, tmp_path))
    # aiida-core 2.9: two instances of the controller (its task handed out again after the broker restart) can leave
    # its node sealed but with the state "running" of the instance that wrote last; the package's readers count a
    # sealed process as ended (campaign/readers.py), so `campaign run`/`status`/`rerun` are not fooled by it
    def sealed(pks):
        return run(env, sys.executable, '-c', SEALED_CHECK, psql, *pks).stdout.split() == ['True'] * len(pks)
    wait_until(lambda: sealed(controllers_running(env, psql)), 60, 'the controller to end',
               explain=lambda: diagnosis(env, psql, tmp_path))
    if controllers_running(env, psql):
        print(f'controller(s) {controllers_running(env, psql)} sealed but shown running by verdi (aiida-core)')
    output = sqlite.communicate(timeout=600)[0]
    assert sqlite.returncode == 0, output
    print(f'scale-out: broker restarts {broker_restarts}, daemon restarts {daemon_restarts}')
    for name in names.values():
        final = run(env, GRIMPERIUM, '-p', name, 'campaign', 'status', 'scaleout').stdout
        assert final.splitlines()[0].split()[-1] == 'OK=3', final + diagnosis(env, name, tmp_path)  # all 3 OK

    outputs = run_all(env, {
        'daemon': [VERDI, '-p', psql, 'daemon', 'status'],
        'inspect': [sys.executable, '-c', INSPECT, psql],
        **{key: [GRIMPERIUM, '-p', name, 'export', 'scaleout', '-o', tmp_path / f'{key}.csv']
           for key, name in names.items()},
    })
    workers = re.search(r'Active workers \[(\d+)\]', outputs['daemon'])
    assert workers and int(workers.group(1)) == 4, outputs['daemon']
    tables = {key: pd.read_csv(tmp_path / f'{key}.csv').set_index('mol_id') for key in names}
    big, small = tables['psql'], tables['sqlite']
    assert list(big.index) == ['water', 'methanol', 'n-butane']
    assert (big['status'] == 'OK').all() and (small['status'] == 'OK').all()
    assert list(big['crest_conformers_kept']) == list(small['crest_conformers_kept'])
    for mol_id in big.index:
        heats_big = json.loads(big.loc[mol_id, 'pm7_heats_of_formation_kcal_mol'])
        heats_small = json.loads(small.loc[mol_id, 'pm7_heats_of_formation_kcal_mol'])
        assert heats_big == pytest.approx(heats_small, abs=HOF_TOLERANCE), mol_id
        assert big.loc[mol_id, 'most_stable_hof'] == pytest.approx(small.loc[mol_id, 'most_stable_hof'],
                                                                   abs=HOF_TOLERANCE)
        assert big.loc[mol_id, 'delta_1'] == pytest.approx(big.loc[mol_id, 'most_stable_hof']
                                                           - big.loc[mol_id, 'H298_cbs'], abs=2e-5)

    inspected = json.loads(next(line for line in outputs['inspect'].splitlines() if line.startswith('{"storage"')))
    assert inspected['storage'] == 'core.psql_dos' and inspected['broker'] == 'core.rabbitmq'
    # every molecule ran once: one xtb and one MOPAC job per batch of one reached the scheduler, all finished well
    # (no job twice); a second instance of a batch waits for the job the first one claimed and launched
    # (LaunchOnce.submit_once): no job is even created twice
    assert sorted(inspected['jobs']) == [['MopacCalculation', 0]] * 3 + [['XtbCalculation', 0]] * 3, inspected['jobs']
    assert inspected['twins'] == [], inspected['twins']
    assert (big['reruns'] == 0).all()
    assert set(inspected['printed']) == set(big.index)
    for mol_id, printed in inspected['printed'].items():
        # the export's lowest HOF is the lowest one MOPAC printed for that molecule's conformers
        assert big.loc[mol_id, 'most_stable_hof'] == pytest.approx(min(printed), abs=HOF_TOLERANCE), mol_id
        assert sorted(printed) == pytest.approx(json.loads(big.loc[mol_id, 'pm7_heats_of_formation_kcal_mol']),
                                                abs=HOF_TOLERANCE), mol_id
