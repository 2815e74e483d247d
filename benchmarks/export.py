"""`grimperium export` at scale: N finished molecules in a throw-away profile, export vs the naive way.

The profile (``core.sqlite_dos`` + ZeroMQ, as ``grimperium setup`` / ``verdi presto`` make it) lives in its
own AiiDA configuration folder (``AIIDA_PATH``, default ``/tmp/grimperium-bench/aiida``), so the dev profile
and the user's default profile are never touched. It is filled with a fast bulk path (``bulk_insert`` of the
storage backend, 50 000 rows per statement) in exactly the shape a campaign leaves behind:

* one molecule record per molecule: a ``Dict`` of the CSV row, extras ``grimperium_record``, ``mol_id``,
  ``timestamp_added``, in the campaign group;
* one ``ConformerToDftWorkChain`` node per run (3 % of the molecules failed once and were rerun; 1 % are
  still failed at MOPAC with exit status 420), with the process attributes and extras ``mol_id``, ``rerun``,
  ``stage``, ``campaign``, in the group;
* its ``output_parameters`` Dict (the summary the pipeline writes) and ``most_stable_hof`` Float, linked with
  ``return`` links under those labels.

The export does not know about the bulk path: it runs its ordinary queries (for this ``core.sqlite_dos`` profile
the SQLite fast path of :func:`~aiida_grimperium.campaign.readers.read_sqlite`). Timed are ``grimperium export`` as
a command (a new process: Python start-up, profile load, queries, CSV), in this process :func:`export_campaign`
and the QueryBuilder way that other storage backends take (:func:`read_querybuilder`; its CSV must be identical);
against them the straightforward way, which loads every node of the group and reads each run's outputs through
the ORM (timed on ``--naive-sample`` molecules and scaled linearly when N is larger — it is linear: one node load
and one output query per node). Last line::

    export_seconds=<grimperium export> speedup=<naive / grimperium export>

Usage: ``python benchmarks/export.py --molecules 100000`` (about 2 min to build); ``--quick`` is 5000.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import random
import subprocess
import sys
import time
import uuid as uuidlib

BENCH_AIIDA_PATH = pathlib.Path(os.environ.get('GRIMPERIUM_BENCH_AIIDA_PATH', '/tmp/grimperium-bench/aiida'))
# AiiDA reads its configuration folder once, at import: point it at the benchmark's own before anything imports it.
os.environ['AIIDA_PATH'] = str(BENCH_AIIDA_PATH)
CHUNK = 50_000


def bench_env() -> dict:
    """Environment of the benchmark's AiiDA configuration (never the user's ``~/.aiida``)."""
    return {**os.environ, 'AIIDA_PATH': str(BENCH_AIIDA_PATH)}


def bench_profile(name: str, fresh: bool = True):
    """Create (``fresh``: re-create) the profile ``name`` in the benchmark's configuration and load it here."""
    os.environ['AIIDA_PATH'] = str(BENCH_AIIDA_PATH)  # before aiida reads its configuration
    BENCH_AIIDA_PATH.mkdir(parents=True, exist_ok=True)
    from aiida.manage.configuration import get_config

    config = get_config(create=True)
    if fresh and name in config.profile_names:
        subprocess.run([sys.executable, '-m', 'aiida', 'daemon', 'stop'], env=bench_env(), capture_output=True)
        subprocess.run([sys.executable, '-m', 'aiida', 'profile', 'delete', '--force', '--delete-data', name],
                       env=bench_env(), check=True, capture_output=True)
    from aiida.manage.configuration import reset_config

    reset_config()
    if name not in get_config(create=True).profile_names:
        subprocess.run([sys.executable, '-m', 'aiida', 'presto', '--profile-name', name, '--use-zeromq'],
                       env=bench_env(), check=True, capture_output=True)
        reset_config()
    from aiida import load_profile

    return load_profile(name, allow_switch=True)


def summary(rng: random.Random, failed: bool) -> dict:
    """An ``output_parameters`` of the pipeline (same keys, realistic values)."""
    n = rng.randint(3, 10)
    relative = sorted([0.0] + [round(rng.uniform(0.1, 6.0), 4) for _ in range(n - 1)])
    result = {'top_n': 3, 'engine': 'rdkit-xtb', 'conformer_search_status': 'SUCCESS', 'num_conformers': n,
              'conformer_search_time_s': round(rng.uniform(8, 40), 3), 'conformer_relative_energies_kcal_mol': relative,
              'mopac_time_s': round(rng.uniform(3, 20), 3)}
    if failed:
        result.update(mopac_status='FAILED', error_message='MOPAC: The calculation failed with an unrecoverable error.')
        return result
    heats = sorted(round(rng.uniform(-150, 50), 5) for _ in range(3))
    result.update(mopac_status='OK', pm7_heats_of_formation_kcal_mol=heats, most_stable_hof=heats[0])
    return result


def build(n: int, group_label: str, seed: int = 1) -> None:
    """Bulk-create the campaign ``group_label`` with ``n`` finished molecules (see the module docstring)."""
    from aiida import orm
    from aiida.common.links import LinkType
    from aiida.manage import get_manager
    from aiida.orm.entities import EntityTypes

    from aiida_grimperium.campaign.store import DEFAULT_SETTINGS, RECORD_EXTRA
    from aiida_grimperium.workchains.pipeline import ConformerToDftWorkChain

    rng = random.Random(seed)
    storage = get_manager().get_profile_storage()
    user_id = orm.User.collection.get_default().pk
    group = orm.Group(label=group_label).store()
    group.base.extras.set('settings', {**DEFAULT_SETTINGS, 'num_conformers': 10})
    process_type = ConformerToDftWorkChain.build_process_type()
    now = datetime.datetime.now(datetime.timezone.utc)
    stamp = now.isoformat(timespec='seconds')

    def node(node_type, attributes, extras=None, label='', process_type_=None, ctime=now, mtime=now):
        return {'uuid': str(uuidlib.uuid4()), 'node_type': node_type, 'process_type': process_type_, 'label': label,
                'description': '', 'ctime': ctime, 'mtime': mtime, 'user_id': user_id, 'dbcomputer_id': None,
                'attributes': attributes, 'extras': extras or {}, 'repository_metadata': {}}

    smiles = ['CC(C)Cc1ccc(cc1)C(C)C(=O)O', 'Cn1cnc2c1c(=O)n(C)c(=O)n2C', 'CC(=O)Nc1ccc(O)cc1', 'CCO', 'CCCC']
    for start in range(0, n, CHUNK):
        ids = range(start, min(start + CHUNK, n))
        records, runs, outputs = [], [], []  # outputs: (run index, label, row)
        for i in ids:
            mol_id = f'mol{i:07d}'
            row = {'row': i + 2, 'mol_id': mol_id, 'smiles': smiles[i % len(smiles)], 'charge': 0, 'multiplicity': 1,
                   'nheavy': rng.randint(1, 30), 'H298_cbs': round(rng.uniform(-150, 50), 3), 'batch_id': f'b{i // 1000}',
                   'dHf_kJ_mol': round(rng.uniform(-600, 200), 2)}
            records.append(node('data.core.dict.Dict.', row, {RECORD_EXTRA: True, 'mol_id': mol_id, 'timestamp_added': stamp},
                                label=mol_id))
            attempts = [True, False] if rng.random() < 0.03 else [rng.random() < 0.01]
            for rerun, failed in enumerate(attempts):
                ctime = now + datetime.timedelta(seconds=rerun)
                mtime = ctime + datetime.timedelta(seconds=rng.uniform(10, 60))
                attributes = {'process_label': 'ConformerToDftWorkChain', 'process_state': 'finished', 'sealed': True,
                              'exit_status': 420 if failed else 0, 'stepper_state_info': '7:results'}
                if failed:
                    attributes['exit_message'] = 'The MOPAC calculation of the conformers failed.'
                runs.append(node('process.workflow.workchain.WorkChainNode.', attributes,
                                 {'mol_id': mol_id, 'rerun': rerun, 'stage': 'mopac' if failed else 'done',
                                  'campaign': group_label}, label=mol_id, process_type_=process_type,
                                 ctime=ctime, mtime=mtime))
                result = summary(rng, failed)
                outputs.append((len(runs) - 1, 'output_parameters', node('data.core.dict.Dict.', result)))
                if not failed:
                    outputs.append((len(runs) - 1, 'most_stable_hof',
                                    node('data.core.float.Float.', {'value': result['most_stable_hof']})))
        with storage.transaction():
            record_pks = storage.bulk_insert(EntityTypes.NODE, records, allow_defaults=True)
            run_pks = storage.bulk_insert(EntityTypes.NODE, runs, allow_defaults=True)
            output_pks = storage.bulk_insert(EntityTypes.NODE, [row for _, _, row in outputs], allow_defaults=True)
            storage.bulk_insert(EntityTypes.LINK, [
                {'input_id': run_pks[k], 'output_id': pk, 'label': label, 'type': LinkType.RETURN.value}
                for (k, label, _), pk in zip(outputs, output_pks)], allow_defaults=True)
            storage.bulk_insert(EntityTypes.GROUP_NODE, [
                {'dbgroup_id': group.pk, 'dbnode_id': pk} for pk in record_pks + run_pks], allow_defaults=True)
        print(f'  built {ids.stop}/{n} molecules', flush=True)


def naive_rows(group, fraction: float = 1.0) -> list[dict]:
    """The straightforward export: load every node of the group (or a uniform ``fraction`` of them) and read each
    run's summary through the ORM."""
    from aiida import orm

    from aiida_grimperium.campaign.store import RECORD_EXTRA

    pks = orm.QueryBuilder().append(orm.Group, filters={'id': group.pk}, tag='g').append(
        orm.Node, with_group='g', project='id').all(flat=True)
    if fraction < 1.0:
        pks = random.Random(2).sample(pks, max(1, int(len(pks) * fraction)))
    records, last_run = {}, {}
    for pk in pks:
        node = orm.load_node(pk)
        mol_id = node.base.extras.get('mol_id', None)
        if node.base.extras.get(RECORD_EXTRA, False):
            records[mol_id] = {**node.get_dict(), 'timestamp_added': node.base.extras.get('timestamp_added')}
        elif node.process_label == 'ConformerToDftWorkChain':
            summary_ = node.outputs.output_parameters.get_dict() if 'output_parameters' in node.outputs else {}
            if mol_id not in last_run or node.pk > last_run[mol_id][0]:
                last_run[mol_id] = (node.pk, node.exit_status, summary_)
    rows = []
    for mol_id in records.keys() | last_run.keys():
        record = records.get(mol_id, {})
        pk, exit_status, summary_ = last_run.get(mol_id, (None, None, {}))
        heats = summary_.get('pm7_heats_of_formation_kcal_mol') or []
        rows.append({**record, 'mol_id': mol_id, 'status': 'OK' if exit_status == 0 else 'Rerun', 'pk': pk,
                     'most_stable_hof': summary_.get('most_stable_hof'), 'pm7': json.dumps(heats)})
    return rows


def main(argv=None) -> None:
    cli = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    cli.add_argument('--molecules', type=int, default=100_000)
    cli.add_argument('--naive-sample', type=int, default=2_000,
                     help='about this many molecules\' nodes are loaded the naive way (scaled linearly to N)')
    cli.add_argument('--profile', default='grimperium-bench-export')
    cli.add_argument('--reuse', action='store_true', help='keep an existing profile of the same N (no rebuild)')
    cli.add_argument('--quick', action='store_true', help='5000 molecules')
    args = cli.parse_args(argv)
    if args.quick:
        args.molecules = 5000
    n = args.molecules
    label = f'export-bench-{n}'
    bench_profile(args.profile, fresh=not args.reuse)
    from aiida import orm

    if not orm.QueryBuilder().append(orm.Group, filters={'label': label}).count():
        start = time.perf_counter()
        build(n, label)
        print(f'built {n} molecules in {time.perf_counter() - start:.1f} s (bulk path)')
    print(f'profile {args.profile}: {orm.QueryBuilder().append(orm.Node).count()} nodes; load average '
          f'{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores')

    from aiida_grimperium.campaign import export
    from aiida_grimperium.campaign.export import export_campaign

    out = pathlib.Path('/tmp/grimperium-bench') / f'{label}.csv'
    cmd = ['grimperium', '-p', args.profile, 'export', label, '-o', str(out)]
    subprocess.run(cmd, env=bench_env(), check=True, capture_output=True)  # warm the OS file cache
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run(cmd, env=bench_env(), check=True, capture_output=True)
        timings.append(time.perf_counter() - start)
    cli_seconds = min(timings)
    start = time.perf_counter()
    table = export_campaign(orm.load_group(label), out)
    inprocess = time.perf_counter() - start
    assert len(table) == n, f'export has {len(table)} rows, expected {n}'
    ok = int((table['status'] == 'OK').sum())
    print(f'grimperium export (command, best of 3): {cli_seconds:.2f} s   export_campaign() in-process: {inprocess:.2f} s'
          f'   rows={len(table)} OK={ok}')
    exported = out.read_bytes()  # by export_campaign()
    subprocess.run(cmd, env=bench_env(), check=True, capture_output=True)
    assert out.read_bytes() == exported, 'the command and export_campaign() wrote different files'
    slow = out.with_name(f'{label}.querybuilder.csv')
    start = time.perf_counter()
    header, columns = export.table_columns(export.read_querybuilder(orm.load_group(label)))
    export.write_atomic(slow, lambda handle: export.write_csv(handle, header, columns))
    querybuilder = time.perf_counter() - start
    assert slow.read_bytes() == exported, 'the QueryBuilder way wrote a different file'
    slow.unlink()
    print(f'QueryBuilder way (other storage backends; in-process): {querybuilder:.2f} s, the same CSV')

    group = orm.load_group(label)
    fraction = min(1.0, args.naive_sample / n)
    start = time.perf_counter()
    rows = naive_rows(group, fraction)
    measured = time.perf_counter() - start
    naive = measured / fraction
    exported = table.set_index('mol_id')['most_stable_hof']
    checked = [r for r in rows if r['pk'] is not None and r['pk'] == int(table.set_index('mol_id').at[r['mol_id'], 'pk'])]
    mismatch = [r['mol_id'] for r in checked
                if not (r['most_stable_hof'] == exported[r['mol_id']] or (r['most_stable_hof'] is None and exported[r['mol_id']] != exported[r['mol_id']]))]
    assert not mismatch, f'naive and export disagree on {mismatch[:5]}'
    how = 'measured on all nodes' if fraction == 1.0 else f'{measured:.1f} s on {fraction:.1%} of the nodes, scaled'
    print(f'naive (load every node, read outputs): {naive:.1f} s ({how}); most_stable_hof agrees on {len(checked)} runs')
    print(f'export_seconds={cli_seconds:.2f} speedup={naive / cli_seconds:.1f}')


if __name__ == '__main__':
    main()
