"""``grimperium export``: the fast SQLite path, the QueryBuilder fallback and the straightforward way agree.

The campaign is small but real: water and CeCl2 run through the real pipeline (real xtb and MOPAC, in this
process; CeCl2 fails at MOPAC as in ``test_campaign.py``), plus the states a live campaign also has, stored the way
AiiDA stores them: a molecule not yet run, a run still waiting, one with two failed runs (skipped), a run whose
extras are not written yet, a run of a molecule that is not in the campaign, a summary with a JSON null and a
missing key, and the CSV's own extra columns with missing and mixed values.
"""
from __future__ import annotations

import io
import json
import random
import types

import pandas as pd
import pytest
from aiida import orm
from aiida.common.links import LinkType
from click.testing import CliRunner

from aiida_grimperium.campaign import export, readers, store
from aiida_grimperium.campaign.molecules import Molecule
from aiida_grimperium.cli import cmd_root


def reference_table(group: orm.Group) -> pd.DataFrame:
    """The export table the straightforward way (the implementation before the fast path, kept as the spec):
    a dict per molecule from store.records / store.runs / the summaries, then a DataFrame."""
    max_reruns = store.settings_of(group)['max_reruns']
    all_runs, all_summaries, all_records = store.runs(group), export.summaries(group), store.records(group)
    columns = export.SEED_COLUMNS + export.NEW_COLUMNS
    known = set(columns) | {'row', 'mol_id'}
    extra = list(dict.fromkeys(k for record in all_records.values() for k in record if k not in known))
    terminal = ('finished', 'excepted', 'killed')
    rows = []
    for mol_id, record in all_records.items():
        molecule_runs = all_runs.get(mol_id, [])
        last = molecule_runs[-1] if molecule_runs else None
        summary = all_summaries.get(last['pk'], {}) if last else {}
        row = {'mol_id': mol_id, 'status': store.status_of(molecule_runs, max_reruns),
               'reruns': max(len(molecule_runs) - 1, 0), 'timestamp_added': record.get('timestamp_added')}
        row.update({name: record.get(name) for name in ('smiles', 'multiplicity', 'charge', 'nheavy', 'H298_cbs',
                                                          'batch_id')})
        row['timestamp_started'] = last['ctime'].isoformat(timespec='seconds') if last else None
        row['timestamp_completed'] = last['mtime'].isoformat(timespec='seconds') if last and last['state'] in terminal else None
        running = last is not None and last['state'] not in terminal
        row['crest_status'] = summary.get('conformer_search_status', 'RUNNING' if running else 'NOT_ATTEMPTED')
        row['crest_conformers_generated'] = summary.get('num_conformers')
        row['crest_time'] = summary.get('conformer_search_time_s')
        row['mopac_status'] = summary.get('mopac_status', 'RUNNING' if running and row['crest_status'] == 'SUCCESS'
                                          else 'NOT_ATTEMPTED')
        row['mopac_time'] = summary.get('mopac_time_s')
        heats = summary.get('pm7_heats_of_formation_kcal_mol') or []
        reference = record.get('H298_cbs')
        for k in (1, 2, 3):
            row[f'delta_{k}'] = heats[k - 1] - reference if reference is not None and len(heats) >= k else None
        row['most_stable_hof'] = summary.get('most_stable_hof')
        row['error_message'] = summary.get('error_message') or (last['exit_message'] if last and row['status'] != 'OK'
                                                                else None)
        row.update({'pk': last['pk'] if last else None, 'uuid': last['uuid'] if last else None,
                    'engine': summary.get('engine'), 'top_n': summary.get('top_n'),
                    'pm7_heats_of_formation_kcal_mol': json.dumps(heats) if heats else None,
                    'dft_code': summary.get('dft_code'), 'dft_status': summary.get('dft_status'),
                    'dft_energy_ev': summary.get('dft_energy_ev'), 'dft_band_gap_ev': summary.get('dft_band_gap_ev'),
                    'dft_time': summary.get('dft_time_s')})
        row.update({k: record.get(k) for k in extra})
        rows.append([row.get(name) for name in columns + extra])
    return pd.DataFrame(rows, columns=columns + extra)


def _run_node(group, mol_id, state, rerun=0, exit_status=None, exit_message=None, summary=None, extras=True):
    """A ConformerToDftWorkChain node as the engine leaves it (state, exit status, returned summary)."""
    node = orm.WorkChainNode()
    node.process_type = export.PROCESS_TYPE
    node.set_process_label('ConformerToDftWorkChain')
    node.set_process_state(state)
    if exit_status is not None:
        node.set_exit_status(exit_status)
    if exit_message is not None:
        node.set_exit_message(exit_message)
    node.store()
    if summary is not None:
        output = orm.Dict(summary).store()
        output.base.links.add_incoming(node, LinkType.RETURN, 'output_parameters')
    if extras:
        node.base.extras.set_many({'mol_id': mol_id, 'rerun': rerun, 'campaign': group.label})
    group.add_nodes(node)
    return node


_CAMPAIGN: dict = {}


@pytest.fixture
def campaign(real_code):
    """The campaign `export-paths` (built once: the real runs take a while)."""
    if 'pk' not in _CAMPAIGN:
        _CAMPAIGN['pk'] = build_campaign(real_code).pk
    return orm.load_group(_CAMPAIGN['pk'])


def build_campaign(real_code) -> orm.Group:
    from aiida.engine import run_get_node

    from aiida_grimperium.campaign.builders import pipeline_builder

    group = store.get_campaign('export-paths', {**store.DEFAULT_SETTINGS, 'num_conformers': 3, 'max_reruns': 1})
    molecules = [
        Molecule(mol_id='water', smiles='O', charge=0, multiplicity=1, nheavy=1, H298_cbs=-57.8, batch_id='t',
                 source='NIST', score=3, note='a'),
        Molecule(mol_id='cecl2', smiles='Cl[Ce]Cl', charge=0, multiplicity=1, nheavy=3, batch_id='t', source='fails',
                 note=2.5),
        Molecule(mol_id='pending', smiles='CC', charge=0, multiplicity=1, H298_cbs=-20.0, score=None, note=7),
        Molecule(mol_id='waiting', smiles='CCC', charge=0, multiplicity=1, nheavy=3, H298_cbs=-25.0, score=1),
        Molecule(mol_id='skipped', smiles='CCCC', charge=0, multiplicity=1, nheavy=4, H298_cbs=-30.0, batch_id='u'),
        Molecule(mol_id='partial', smiles='CO', charge=0, multiplicity=1, nheavy=2, H298_cbs=-48.0),
    ]
    store.add_molecules(group, molecules)
    orm.Dict({'not': 'a record'}).store()  # outside the group
    group.add_nodes(orm.Dict({'mol_id': 'stray'}).store())  # in the group, not a record
    codes = {'xtb': real_code('xtb', 'grimperium.xtb'), 'mopac': real_code('mopac', 'grimperium.mopac')}
    settings = store.settings_of(group)
    for molecule in molecules[:2]:
        _, node = run_get_node(pipeline_builder(molecule, settings, codes))
        node.base.extras.set_many({'mol_id': molecule.mol_id, 'rerun': 0, 'campaign': group.label})
        group.add_nodes(node)
    _run_node(group, 'waiting', 'waiting')
    failed = {'conformer_search_status': 'SUCCESS', 'num_conformers': 2, 'mopac_status': 'FAILED',
              'error_message': 'MOPAC: failed', 'engine': 'rdkit-xtb', 'top_n': 3}
    _run_node(group, 'skipped', 'finished', 0, 420, 'The MOPAC calculation failed.', failed)
    _run_node(group, 'skipped', 'excepted', 1, None, 'boom', {**failed, 'mopac_time_s': 1})
    # a summary with a JSON null for one defaulted key and the other missing, and integer heats
    _run_node(group, 'partial', 'finished', 0, 0, None, {'conformer_search_status': None, 'num_conformers': 1,
                                                         'pm7_heats_of_formation_kcal_mol': [-50, -49.5],
                                                         'most_stable_hof': -50, 'top_n': 2})
    _run_node(group, 'water', 'created', 1, extras=False)  # submitted a moment ago: no extras yet
    _run_node(group, 'not-in-campaign', 'finished', 0, 0, None, failed)
    return group


def not_fast(*args, **kwargs):
    raise export.NotFast('test: the QueryBuilder way')


def invoke(*args):
    result = CliRunner().invoke(cmd_root, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_constants_agree_with_the_package():
    from aiida_grimperium.workchains.pipeline import ConformerToDftWorkChain

    assert export.PROCESS_TYPE == ConformerToDftWorkChain.build_process_type()
    assert export.ACTIVE_STATES == store.ACTIVE_STATES
    assert export.DEFAULT_MAX_RERUNS == store.DEFAULT_SETTINGS['max_reruns']


def test_fast_path_reads_the_test_profile(campaign):
    """The test profile is core.sqlite_dos at the schema version read_sqlite knows: the fast path is used (a new
    AiiDA schema version makes this fail instead of silently exporting the slow way)."""
    data = export.read_sqlite(campaign.backend.profile, pk=campaign.pk)
    assert export.read_sqlite(campaign.backend.profile, label=campaign.label) == data
    assert set(data.records) == {'water', 'cecl2', 'pending', 'waiting', 'skipped', 'partial'}
    assert data.counts == {'water': 1, 'cecl2': 1, 'waiting': 1, 'skipped': 2, 'partial': 1, 'not-in-campaign': 1}


def test_fast_path_fallback_and_straightforward_way_agree(campaign, tmp_path, monkeypatch):
    assert export.read_sqlite(campaign.backend.profile, pk=campaign.pk) == export.read_querybuilder(campaign)

    table = reference_table(campaign)
    status = dict(zip(table['mol_id'], table['status']))
    assert status == {'water': 'OK', 'cecl2': 'Rerun', 'pending': 'Pending', 'waiting': 'Running', 'skipped': 'Skip',
                      'partial': 'OK'}
    row = table.set_index('mol_id').loc['partial']
    assert pd.isna(row['crest_status']) and row['mopac_status'] == 'NOT_ATTEMPTED'  # JSON null kept, missing: default
    expected_csv = table.to_csv(index=False)
    assert 'score' in table.columns and ',3.0,' in expected_csv  # an integer column with gaps is written as floats

    # the command (fast path), export_campaign (fast path), and both again the QueryBuilder way
    files = {}
    invoke('export', campaign.label, '-o', tmp_path / 'command.csv')
    files['command'] = tmp_path / 'command.csv'
    in_process = export.export_campaign(campaign, tmp_path / 'function.csv')
    files['function'] = tmp_path / 'function.csv'
    pd.testing.assert_frame_equal(in_process, table)
    pd.testing.assert_frame_equal(export.campaign_table(campaign), table)
    with monkeypatch.context() as patch:
        patch.setattr(export, 'read_sqlite', not_fast)  # export_named calls it
        patch.setattr(readers, 'read_sqlite', not_fast)  # read_campaign calls it
        invoke('export', campaign.label, '-o', tmp_path / 'command-qb.csv')
        files['command-qb'] = tmp_path / 'command-qb.csv'
        export.export_campaign(campaign, tmp_path / 'function-qb.csv')
        files['function-qb'] = tmp_path / 'function-qb.csv'
        # and store.query_rows' own fallback (QueryBuilder.iterall)
        patch.setattr(store, 'query_rows', lambda query: [tuple(row) for row in query.iterall()])
        export.export_campaign(campaign, tmp_path / 'iterall.csv')
        files['iterall'] = tmp_path / 'iterall.csv'
    for name, path in files.items():
        assert path.read_text() == expected_csv, name

    invoke('export', campaign.label, '-o', tmp_path / 'fast.json', '--format', 'json')
    with monkeypatch.context() as patch:
        patch.setattr(export, 'read_sqlite', not_fast)
        invoke('export', campaign.label, '-o', tmp_path / 'slow.json', '--format', 'json')
    assert (tmp_path / 'fast.json').read_text() == (tmp_path / 'slow.json').read_text()
    assert json.loads((tmp_path / 'fast.json').read_text()) == json.loads(table.to_json(orient='records'))


def test_other_backends_and_schemas_take_the_querybuilder_way(campaign, tmp_path, monkeypatch):
    psql = types.SimpleNamespace(storage_backend='core.psql_dos', storage_config={})
    with pytest.raises(export.NotFast, match='psql'):
        export.read_sqlite(psql, pk=campaign.pk)
    monkeypatch.setattr(readers, 'SQLITE_SCHEMA_VERSIONS', ('main_9999',))
    with pytest.raises(export.NotFast, match='schema'):
        export.read_sqlite(campaign.backend.profile, pk=campaign.pk)
    export.export_campaign(campaign, tmp_path / 'slow.csv')
    assert (tmp_path / 'slow.csv').read_text() == reference_table(campaign).to_csv(index=False)


def test_missing_campaign_is_created_empty_as_before(tmp_path):
    invoke('export', 'no-such-campaign', '-o', tmp_path / 'empty.csv')
    assert (tmp_path / 'empty.csv').read_text() == ','.join(export.SEED_COLUMNS + export.NEW_COLUMNS) + '\n'
    assert orm.load_group('no-such-campaign').count() == 0


def test_csv_writer_is_pandas_to_csv():
    """write_csv gives byte for byte what DataFrame.to_csv gives, column dtype by column dtype."""
    rng = random.Random(3)
    floats = [rng.choice([-1, 1]) * 10 ** rng.uniform(-30, 30) for _ in range(300)] + [0.0, -0.0, 1e16, 1e-4, 0.1]
    columns = {
        'none': [None] * 4, 'int': [1, -2, 3, 2 ** 62], 'int_gaps': [1, None, 3, 2 ** 60],
        'int_float': [1, 2.5, None, -3], 'float': [0.1, None, float('nan'), 1e-7], 'bool': [True, False, None, True],
        'bool_int': [True, 1, 0, None], 'str': ['a', 'b,c', 'd"e', None], 'str_nan': ['a', float('nan'), 'x\ny', 'z'],
        'mixed': ['a', 1, 2.5, True], 'inf': [float('inf'), -1.0, None, float('-inf')], 'unicode': ['é', '✓', '', None],
    }
    rows = [[values[i] for values in columns.values()] for i in range(4)]
    rows += [[None, 5, 6, 7.5, f, None, None, 's', 't', None, f, 'u'] for f in floats]
    header = list(columns)
    buffer = io.StringIO()
    expected = pd.DataFrame(rows, columns=header).to_csv(index=False)
    export.write_csv(buffer, header, [list(column) for column in zip(*rows)])
    assert buffer.getvalue() == expected

    # columns pandas keeps as objects or writes its own way: the writer leaves them (and the rows) to pandas
    for odd in ([[1, 2], None, 'x'], [2 ** 64, None, 1], [2 ** 1000, None, 1.5], [{'a': 1}, None, None]):
        rows = [[value, float(i)] for i, value in enumerate(odd)]
        columns = [list(column) for column in zip(*rows)]
        assert export.csv_cells(columns) is False and columns == [list(column) for column in zip(*rows)]
        buffer = io.StringIO()
        export.write_csv(buffer, ['odd', 'x'], columns)
        assert buffer.getvalue() == pd.DataFrame(rows, columns=['odd', 'x']).to_csv(index=False)


@pytest.mark.parametrize('heats', [[-143.882, 30.28549, 39.05414], [1e-05, 1e16, -0.0], [-50, -49.5], [[1.0]],
                                   [float('nan'), 1.0], [float('inf')], [None, 1.0], [True], ['a'], (1.0,), 'x'])
def test_dumps_is_json_dumps(heats):
    assert export._dumps(heats) == json.dumps(heats)
