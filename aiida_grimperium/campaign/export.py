"""Export a campaign to CSV or JSON: one row per molecule, the seed's columns first, then the new ones.

The rows come from :func:`.readers.read_molecules` (public QueryBuilder projections; no node is loaded). Each
molecule's row is its current CSV row, its status, and the summary of its last run
(:mod:`aiida_grimperium.calculations.functions.summaries`). Numbers are written as the codes printed them:
integers as integers, heats of formation and deltas to 5 decimals (MOPAC's ``FINAL HEAT OF FORMATION``), DFT
energies to 6, times to 0.1 s. The file is written atomically: a temporary file in the same folder, flushed to
disk, then ``os.replace``; a reader (or a crash) never sees half a file.
"""
from __future__ import annotations

import csv
import json
import os
import pathlib
import tempfile

from aiida import orm

from .columns import NEW_COLUMNS, POSITION_FIELD, SEED_COLUMNS
from .layout import settings_of
from .readers import CampaignMolecule, read_molecules

#: Row fields that are the package's own bookkeeping, not the user's columns.
INTERNAL_FIELDS = {'row', 'record', POSITION_FIELD}
#: Decimals of each rounded column (as the code prints it).
DECIMALS = {'H298_cbs': 5, 'delta_1': 5, 'delta_2': 5, 'delta_3': 5, 'most_stable_hof': 5, 'boltzmann_hof': 5,
            'crest_time': 1, 'mopac_time': 1, 'dft_time': 1, 'dft_energy_ev': 6, 'dft_band_gap_ev': 4}


def _iso(value) -> str | None:
    return value.isoformat(timespec='seconds') if value is not None else None


def molecule_row(molecule: CampaignMolecule, max_reruns: int) -> dict:
    """The export row of one molecule (its own columns of the CSV included), numbers rounded (:data:`DECIMALS`)."""
    row, runs = molecule.row, molecule.runs
    last = runs[-1] if runs else None
    summary = (last.summary if last is not None else None) or {}
    heats = summary.get('pm7_heats_of_formation_kcal_mol') or []
    reference = row.get('H298_cbs')
    running = last is not None and last.active
    values = {
        'mol_id': molecule.mol_id, 'status': molecule.status(max_reruns), 'reruns': max(0, len(runs) - 1),
        **{name: value for name, value in row.items() if name not in INTERNAL_FIELDS},
        'timestamp_started': _iso(last.ctime) if last else None,
        'timestamp_completed': None if last is None or running else _iso(last.mtime),
        'crest_status': summary.get('conformer_search_status') or ('RUNNING' if running else 'NOT_ATTEMPTED'),
        'crest_conformers_generated': summary.get('num_conformers_generated'),
        'crest_conformers_kept': summary.get('num_conformers'),
        'crest_time': summary.get('conformer_search_time_s'),
        'mopac_status': summary.get('mopac_status') or ('RUNNING' if running else 'NOT_ATTEMPTED'),
        'mopac_time': summary.get('mopac_time_s'),
        'most_stable_hof': summary.get('most_stable_hof'),
        'boltzmann_hof': summary.get('boltzmann_hof'),
        'error_message': summary.get('error_message') or (
            f'the batch ended {last.state}: {last.exit_message}' if last and not running and not summary else None),
        'pk': last.batch_pk if last else None, 'uuid': last.batch_uuid if last else None,
        'engine': summary.get('engine'), 'top_n': summary.get('top_n'),
        'pm7_heats_of_formation_kcal_mol': json.dumps([round(h, 5) for h in heats]) if heats else None,
        'dft_code': summary.get('dft_code'), 'dft_status': summary.get('dft_status'),
        'dft_energy_ev': summary.get('dft_energy_ev'), 'dft_band_gap_ev': summary.get('dft_band_gap_ev'),
        'dft_time': summary.get('dft_time_s'),
        # the shell step: OK/FAILED, why, its ShellJob and the files kept as {file name: node pk} (JSON)
        'shell_status': summary.get('shell_status'), 'shell_error': summary.get('shell_error'),
        'shell_pk': summary.get('shell_pk'),
        'shell_outputs': json.dumps(summary['shell_outputs'], sort_keys=True) if summary.get('shell_outputs') else None,
    }
    for k in (1, 2, 3):
        values[f'delta_{k}'] = heats[k - 1] - reference if reference is not None and len(heats) >= k else None
    for name, decimals in DECIMALS.items():
        value = values.get(name)
        if isinstance(value, float):
            values[name] = round(value, decimals)
    return values


def campaign_rows(group: orm.Group) -> tuple[list[str], list[dict]]:
    """Header and rows of the export table, one row per molecule in CSV order: the seed's columns, the new ones,
    then the CSV's own extra columns."""
    max_reruns = settings_of(group)['max_reruns']
    rows = [molecule_row(molecule, max_reruns) for molecule in read_molecules(group).values()]
    header = [*SEED_COLUMNS, *NEW_COLUMNS]
    known = set(header)
    extra = {}
    for row in rows:
        extra.update(dict.fromkeys(row.keys() - known))
    return header + [name for name in rows[0] if name in extra] + sorted(extra.keys() - set(rows[0])) if rows \
        else header, rows


def campaign_table(group: orm.Group):
    """The export table as a ``pandas.DataFrame``."""
    import pandas as pd

    header, rows = campaign_rows(group)
    return pd.DataFrame(rows, columns=header)


def write_atomic(path: str | pathlib.Path, write) -> None:
    """Call ``write(handle)`` on a temporary file next to ``path``, then rename it over ``path``."""
    path = pathlib.Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    except OSError as exc:  # name the file the user asked for, not the temporary one
        raise OSError(exc.errno, f'cannot write here: {exc.strerror}', str(path)) from None
    try:
        with os.fdopen(fd, 'w', newline='', encoding='utf-8', buffering=1 << 20) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def export_campaign(group: orm.Group, path: str | pathlib.Path, fmt: str = 'csv') -> int:
    """Write the campaign table to ``path`` as ``csv`` or ``json`` (records), atomically; return the row count."""
    if fmt not in ('csv', 'json'):
        raise ValueError(f'unknown export format `{fmt}`: use csv or json')
    header, rows = campaign_rows(group)

    def write(handle):
        if fmt == 'json':
            json.dump([{name: row.get(name) for name in header} for row in rows], handle, indent=1)
            return
        writer = csv.writer(handle, lineterminator='\n')
        writer.writerow(header)
        writer.writerows([row.get(name) for name in header] for row in rows)

    write_atomic(path, write)
    return len(rows)
