"""Export a campaign to CSV or JSON: one row per molecule, in the seed's columns and then the new ones.

Everything comes from three QueryBuilder projections (molecule records, runs, and the runs' summary
``output_parameters``); no node is loaded. The queries are executed as plain SQL rows (:func:`query_rows`), and
the table is assembled column by column: at 100 000 molecules the export takes a few seconds, where loading every
node would take hours (``benchmarks/export.py``). The file is written atomically: a temporary file in the same
folder, flushed to disk, then ``os.replace`` — a reader (or a crash) never sees half a file.
"""
from __future__ import annotations

import json
import os
import pathlib
import tempfile

import pandas as pd
from aiida import orm

from .store import query_rows, records, runs, settings_of, status_of

SEED_COLUMNS = [
    'mol_id', 'status', 'reruns', 'smiles', 'multiplicity', 'charge', 'nheavy', 'timestamp_added', 'H298_cbs',
    'batch_id', 'timestamp_started', 'timestamp_completed', 'crest_status', 'crest_conformers_generated',
    'crest_time', 'mopac_status', 'mopac_time', 'delta_1', 'delta_2', 'delta_3', 'most_stable_hof', 'error_message',
]
NEW_COLUMNS = ['pk', 'uuid', 'engine', 'top_n', 'pm7_heats_of_formation_kcal_mol', 'dft_code', 'dft_status',
               'dft_energy_ev', 'dft_band_gap_ev', 'dft_time']
RECORD_FIELDS = ('smiles', 'multiplicity', 'charge', 'nheavy', 'H298_cbs', 'batch_id')
TERMINAL = ('finished', 'excepted', 'killed')


def summaries(group: orm.Group) -> dict[int, dict]:
    """``{run pk: output_parameters attributes}`` for the runs of the campaign that wrote one."""
    from ..workchains.pipeline import ConformerToDftWorkChain

    query = orm.QueryBuilder()
    query.append(orm.Group, filters={'id': group.pk}, tag='group')
    query.append(ConformerToDftWorkChain, with_group='group', tag='run', project=['id'])
    # the whole attribute blob: one JSON document per row decodes faster than a dozen extracted keys
    query.append(orm.Dict, with_incoming='run', edge_filters={'label': 'output_parameters'}, project=['attributes'])
    return dict(query_rows(query))


def _iso(value) -> str | None:
    return value.isoformat(timespec='seconds') if value is not None else None


def molecule_row(mol_id: str, record: dict, molecule_runs: list[dict], summary: dict, max_reruns: int) -> dict:
    """One exported row (see the module docstring for where each value comes from)."""
    last = molecule_runs[-1] if molecule_runs else None
    row = {'mol_id': mol_id, 'status': status_of(molecule_runs, max_reruns),
           'reruns': max(len(molecule_runs) - 1, 0), 'timestamp_added': record.get('timestamp_added')}
    row.update({name: record.get(name) for name in RECORD_FIELDS})
    row['timestamp_started'] = _iso(last['ctime']) if last else None
    row['timestamp_completed'] = _iso(last['mtime']) if last and last['state'] in TERMINAL else None
    running = last is not None and last['state'] not in TERMINAL
    attempted = 'RUNNING' if running else 'NOT_ATTEMPTED'
    row['crest_status'] = summary.get('conformer_search_status', attempted if last else 'NOT_ATTEMPTED')
    row['crest_conformers_generated'] = summary.get('num_conformers')
    row['crest_time'] = summary.get('conformer_search_time_s')
    mopac_attempted = 'RUNNING' if running and row['crest_status'] == 'SUCCESS' else 'NOT_ATTEMPTED'
    row['mopac_status'] = summary.get('mopac_status', mopac_attempted)
    row['mopac_time'] = summary.get('mopac_time_s')
    heats = summary.get('pm7_heats_of_formation_kcal_mol') or []
    reference = record.get('H298_cbs')
    for k in (1, 2, 3):
        row[f'delta_{k}'] = heats[k - 1] - reference if reference is not None and len(heats) >= k else None
    row['most_stable_hof'] = summary.get('most_stable_hof')
    message = summary.get('error_message') or (last['exit_message'] if last and row['status'] != 'OK' else None)
    row['error_message'] = message
    row.update({'pk': last['pk'] if last else None, 'uuid': last['uuid'] if last else None,
                'engine': summary.get('engine'), 'top_n': summary.get('top_n'),
                'pm7_heats_of_formation_kcal_mol': json.dumps(heats) if heats else None,
                'dft_code': summary.get('dft_code'), 'dft_status': summary.get('dft_status'),
                'dft_energy_ev': summary.get('dft_energy_ev'), 'dft_band_gap_ev': summary.get('dft_band_gap_ev'),
                'dft_time': summary.get('dft_time_s')})
    extra = {k: v for k, v in record.items() if k not in row and k not in ('row', 'mol_id')}
    row.update(extra)  # the CSV's own extra columns, after the package's
    return row


def campaign_table(group: orm.Group) -> pd.DataFrame:
    """The export table of a campaign, one row per molecule in CSV order."""
    max_reruns = settings_of(group)['max_reruns']
    all_runs = runs(group)
    all_summaries = summaries(group)
    all_records = records(group)
    columns = SEED_COLUMNS + NEW_COLUMNS
    known = set(columns) | {'row', 'mol_id'}
    extra: dict[str, None] = {}  # the CSV's own extra columns, in first-seen order
    for record in all_records.values():
        for key in record:
            if key not in known and key not in extra:
                extra[key] = None
    header = columns + list(extra)
    empty: dict = {}
    rows = []
    for mol_id, record in all_records.items():
        molecule_runs = all_runs.get(mol_id, ())
        summary = all_summaries.get(molecule_runs[-1]['pk'], empty) if molecule_runs else empty
        row = molecule_row(mol_id, record, molecule_runs, summary, max_reruns)
        rows.append([row.get(name) for name in header])
    return pd.DataFrame(rows, columns=header)


def write_atomic(path: str | pathlib.Path, write) -> None:
    """Call ``write(handle)`` on a temporary file next to ``path``, then rename it over ``path``."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    try:
        with os.fdopen(fd, 'w', newline='', encoding='utf-8') as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def export_campaign(group: orm.Group, path: str | pathlib.Path, fmt: str = 'csv') -> pd.DataFrame:
    """Write the campaign table to ``path`` as ``csv`` or ``json`` (records), atomically; return the table."""
    table = campaign_table(group)
    if fmt == 'csv':
        write_atomic(path, lambda handle: table.to_csv(handle, index=False))
    elif fmt == 'json':
        write_atomic(path, lambda handle: handle.write(table.to_json(orient='records', indent=1)))
    else:
        raise ValueError(f'unknown export format `{fmt}`: use csv or json')
    return table
