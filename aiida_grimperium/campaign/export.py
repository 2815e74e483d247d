"""Export a campaign to CSV or JSON: one row per molecule, in the seed's columns and then the new ones.

The rows come from :mod:`.readers` (SQL on the profile's SQLite file when it can, the QueryBuilder otherwise;
no node is loaded). The table is built a column at a time (:func:`table_columns`), and the CSV is written with
the ``csv`` module in exactly the format ``pandas.DataFrame.to_csv`` gives for that table (:func:`write_csv`), so
the command does not import pandas either. At 100 000 molecules the command takes a few seconds, where loading
every node would take an hour (``benchmarks/export.py``). The file is written atomically: a temporary file in the
same folder, flushed to disk, then ``os.replace`` — a reader (or a crash) never sees half a file.
"""
from __future__ import annotations

import csv
import json
import os
import pathlib
import re
import tempfile
from itertools import repeat
from math import isnan
from typing import TYPE_CHECKING

from .readers import (  # noqa: F401  (re-exported: the readers were part of this module)
    ACTIVE_STATES, DEFAULT_MAX_RERUNS, PROCESS_TYPE, SQLITE_SCHEMA_VERSIONS, SUMMARY_KEYS, TERMINAL, CampaignData,
    NotFast, _no_gc, read_campaign, read_querybuilder, read_sqlite, summaries,
)

if TYPE_CHECKING:
    import pandas as pd
    from aiida import orm
    from aiida.manage.configuration.profile import Profile

SEED_COLUMNS = [
    'mol_id', 'status', 'reruns', 'smiles', 'multiplicity', 'charge', 'nheavy', 'timestamp_added', 'H298_cbs',
    'batch_id', 'timestamp_started', 'timestamp_completed', 'crest_status', 'crest_conformers_generated',
    'crest_time', 'mopac_status', 'mopac_time', 'delta_1', 'delta_2', 'delta_3', 'most_stable_hof', 'error_message',
]
NEW_COLUMNS = ['pk', 'uuid', 'engine', 'top_n', 'pm7_heats_of_formation_kcal_mol', 'dft_code', 'dft_status',
               'dft_energy_ev', 'dft_band_gap_ev', 'dft_time']
#: the record values of a row (after mol_id, status, reruns), in the order of SEED_COLUMNS
RECORD_COLUMNS = ('smiles', 'multiplicity', 'charge', 'nheavy', 'timestamp_added', 'H298_cbs', 'batch_id')

# ---------------------------------------------------------------------------------------------- the table

_NUMBERS = re.compile(r'[-+.0-9e\[\], ]*')


def _dumps(heats) -> str:
    """``json.dumps(heats)``: for a list of finite numbers that is its ``repr`` (written in C, and fast)."""
    if type(heats) is list:
        text = repr(heats)
        if _NUMBERS.fullmatch(text):  # no None / True / 'strings' / nan / inf, whose JSON differs
            return text
    return json.dumps(heats)


_NO_SUMMARY = (None,) * len(SUMMARY_KEYS)


def table_columns(data: CampaignData) -> tuple[list[str], list[list]]:
    """Header and columns of the export table, one value per molecule in CSV order (see the module docstring).

    Built a column at a time (comprehensions and ``map`` over all molecules), which is several times faster
    than a row at a time in Python.
    """
    columns = SEED_COLUMNS + NEW_COLUMNS
    known = set(columns) | {'row', 'mol_id'}
    extra: dict[str, None] = {}  # the CSV's own extra columns, in first-seen order
    for record in data.records.values():
        for key in record:
            if key not in known and key not in extra:
                extra[key] = None
    header = columns + list(extra)
    mol_ids = list(data.records)
    records = list(data.records.values())
    n = len(mol_ids)
    field = {key: list(map(dict.get, records, repeat(key, n))) for key in (*RECORD_COLUMNS, *extra)}
    lasts = list(map(data.last_runs.get, mol_ids))
    counts = list(map(data.counts.get, mol_ids))
    summary = list(map(data.summaries.get, mol_ids, repeat(_NO_SUMMARY, n)))
    (crest_status, conformers, crest_time, mopac_status, mopac_time, heats, lowest, error, engine, top_n, dft_code,
     dft_status, dft_energy, dft_gap, dft_time) = map(list, zip(*summary)) if n else ([] for _ in SUMMARY_KEYS)
    state = [None if last is None else last[3] for last in lasts]
    max_reruns = data.max_reruns
    status = ['Pending' if last is None else 'Running' if last[3] in ACTIVE_STATES or last[3] is None
              else 'OK' if last[3] == 'finished' and last[4] == 0 else 'Rerun' if count - 1 < max_reruns else 'Skip'
              for last, count in zip(lasts, counts)]
    running = [last is not None and s not in TERMINAL for last, s in zip(lasts, state)]
    crest_status = [value if last is not None and last[9] else 'RUNNING' if run else 'NOT_ATTEMPTED'
                    for value, last, run in zip(crest_status, lasts, running)]
    mopac_status = [value if last is not None and last[10] else 'RUNNING' if run and crest == 'SUCCESS'
                    else 'NOT_ATTEMPTED' for value, last, run, crest in zip(mopac_status, lasts, running, crest_status)]
    reference = field['H298_cbs']
    deltas = [[(h[k] - r if len(h) > k else None) if h and r is not None else None for h, r in zip(heats, reference)]
              for k in (0, 1, 2)]
    message = [err or (None if last is None or st == 'OK' else last[5]) for err, last, st in zip(error, lasts, status)]
    table = {
        'mol_id': mol_ids, 'status': status,
        'reruns': [count - 1 if count and count > 1 else 0 for count in counts],
        **{key: field[key] for key in RECORD_COLUMNS},
        'timestamp_started': [None if last is None else last[6] for last in lasts],
        'timestamp_completed': [None if last is None or run else last[7] for last, run in zip(lasts, running)],
        'crest_status': crest_status, 'crest_conformers_generated': conformers, 'crest_time': crest_time,
        'mopac_status': mopac_status, 'mopac_time': mopac_time,
        'delta_1': deltas[0], 'delta_2': deltas[1], 'delta_3': deltas[2], 'most_stable_hof': lowest,
        'error_message': message,
        'pk': [None if last is None else last[0] for last in lasts],
        'uuid': [None if last is None else last[2] for last in lasts],
        'engine': engine, 'top_n': top_n,
        'pm7_heats_of_formation_kcal_mol': [_dumps(h) if h else None for h in heats],
        'dft_code': dft_code, 'dft_status': dft_status, 'dft_energy_ev': dft_energy, 'dft_band_gap_ev': dft_gap,
        'dft_time': dft_time,
        **{key: field[key] for key in extra},
    }
    return header, [table[name] for name in header]


def table_rows(data: CampaignData) -> tuple[list[str], list[list]]:
    """Header and rows of the export table (:func:`table_columns` a row at a time)."""
    header, columns = table_columns(data)
    return header, [list(row) for row in zip(*columns)]


def campaign_table(group: orm.Group) -> pd.DataFrame:
    """The export table of a campaign, one row per molecule in CSV order."""
    import pandas as pd

    with _no_gc():
        header, rows = table_rows(read_campaign(group))
        table = pd.DataFrame(rows, columns=header)
        del rows
    return table


# ---------------------------------------------------------------------------------------------- writing

def write_atomic(path: str | pathlib.Path, write) -> None:
    """Call ``write(handle)`` on a temporary file next to ``path``, then rename it over ``path``."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    try:
        with os.fdopen(fd, 'w', newline='', encoding='utf-8', buffering=1 << 20) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


_PLAIN = frozenset({type(None), bool, int, float, str})
_INT64 = 2 ** 63


def csv_cells(columns: list[list]) -> bool:
    """Turn ``columns`` (in place) into what ``csv.writer`` must write to give ``pd.DataFrame(rows).to_csv()``.

    Per column, as pandas infers its dtype: integers with missing values or with floats become float64 (``1`` is
    written ``1.0``), NaN is written empty; everything else (``None`` as empty, ``True``, ``str``, ``repr`` of a
    float) the ``csv`` module already writes as pandas does. False, with ``columns`` untouched, when a column holds
    something else (lists, integers beyond int64, ...): then pandas must write the table.
    """
    none = type(None)
    changes = []
    for index, column in enumerate(columns):
        kinds = set(map(type, column))
        if not kinds <= _PLAIN:
            return False
        if kinds <= {float, int, none} and (float in kinds or kinds == {int, none}):  # float64
            # NaN propagates through a sum (so does inf - inf: then the exact check below finds nothing to do)
            if int in kinds or isnan(sum(filter(None, column))):
                cells = []
                for value in column:
                    if value is None:
                        cells.append(None)
                    elif type(value) is int:
                        if not -_INT64 <= value < _INT64:
                            return False  # pandas may keep such integers as objects
                        cells.append(repr(float(value)))
                    else:
                        cells.append(None if isnan(value) else repr(value))
                changes.append((index, cells))
        elif float in kinds and any(isnan(v) for v in column if type(v) is float):  # object/str column with NaN
            changes.append((index, [None if type(v) is float and isnan(v) else v for v in column]))
    for index, cells in changes:
        columns[index] = cells
    return True


def write_csv(handle, header: list[str], columns: list[list]) -> None:
    """Write the table as ``pd.DataFrame(rows, columns=header).to_csv(handle, index=False)`` would, ``rows`` being
    the rows of ``columns`` (whose lists may be replaced)."""
    if csv_cells(columns):
        writer = csv.writer(handle, lineterminator='\n')
        writer.writerow(header)
        writer.writerows(zip(*columns))
    else:
        import pandas as pd

        pd.DataFrame([list(row) for row in zip(*columns)], columns=header).to_csv(handle, index=False)


def _write(path, header: list[str], columns: list[list], fmt: str, table: pd.DataFrame | None = None) -> None:
    """Write the table (``table``: its DataFrame, when there is one) as ``csv`` or ``json``."""
    if fmt == 'csv':
        write_atomic(path, lambda handle: write_csv(handle, header, columns))
    elif fmt == 'json':
        if table is None:
            import pandas as pd

            table = pd.DataFrame([list(row) for row in zip(*columns)], columns=header)
        write_atomic(path, lambda handle: handle.write(table.to_json(orient='records', indent=1)))
    else:
        raise ValueError(f'unknown export format `{fmt}`: use csv or json')


def export_campaign(group: orm.Group, path: str | pathlib.Path, fmt: str = 'csv') -> pd.DataFrame:
    """Write the campaign table to ``path`` as ``csv`` or ``json`` (records), atomically; return the table."""
    import pandas as pd

    if fmt not in ('csv', 'json'):
        raise ValueError(f'unknown export format `{fmt}`: use csv or json')
    with _no_gc():
        header, columns = table_columns(read_campaign(group))
        table = pd.DataFrame([list(row) for row in zip(*columns)], columns=header)  # as campaign_table()
        _write(path, header, columns, fmt, table)
        del columns
    return table


def export_named(name: str, path: str | pathlib.Path, fmt: str = 'csv', profile: Profile | None = None) -> int:
    """``grimperium export``: write campaign ``name`` of the loaded profile to ``path``; the number of molecules.

    The same file as :func:`export_campaign`, without importing the ORM or pandas when :func:`read_sqlite` can
    read the campaign (a missing campaign is created empty, as :func:`.store.get_campaign` does).
    """
    if fmt not in ('csv', 'json'):
        raise ValueError(f'unknown export format `{fmt}`: use csv or json')
    if profile is None:
        from aiida import load_profile

        profile = load_profile()  # the loaded one (or the default)
    with _no_gc():
        try:
            data = read_sqlite(profile, label=name)
        except NotFast:
            from .store import get_campaign

            data = read_querybuilder(get_campaign(name))
        header, columns = table_columns(data)
        _write(path, header, columns, fmt)
        count = len(columns[0])
        del data, columns  # freed before the collector runs again (else it first goes through all of it)
    return count
