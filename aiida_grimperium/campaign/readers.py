"""Reading a campaign for the export: one row per molecule, without loading a single node.

What the export reads, per molecule: its record (the CSV row, extras ``mol_id`` / ``timestamp_added``), how many
runs it had and the last one (pk, uuid, process state, exit status and message, ctime, mtime) with that run's
summary ``output_parameters``. Two readers give exactly the same :class:`CampaignData`:

* :func:`read_sqlite`: for the ``core.sqlite_dos`` storage, two SQL statements on the profile's own database
  file, opened read-only; SQLite extracts the few JSON keys needed from the runs and
  their summaries (in C), and the JSON texts are decoded a column at a time. It needs neither ``aiida.orm``
  nor the storage backend loaded, which is most of a command's start-up time. When anything is not as it
  expects (other backend, unknown schema version, unexpected values) it raises :class:`NotFast` and the caller
  uses the QueryBuilder instead.
* :func:`read_querybuilder`: the QueryBuilder projections of :mod:`.store` (any storage backend).
"""
from __future__ import annotations

import gc
import json
import pathlib
import re
from contextlib import contextmanager
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiida import orm
    from aiida.manage.configuration.profile import Profile

TERMINAL = ('finished', 'excepted', 'killed')
#: as :data:`.store.ACTIVE_STATES` and ``DEFAULT_SETTINGS['max_reruns']`` (not imported: :mod:`.store` imports
#: ``aiida.orm``; ``tests/test_export.py`` checks they agree).
ACTIVE_STATES = ('created', 'waiting', 'running')
DEFAULT_MAX_RERUNS = 3
#: ``ConformerToDftWorkChain.build_process_type()``, without importing the workchain (checked by the tests).
PROCESS_TYPE = 'aiida.workflows:grimperium.conformer_to_dft'
#: the keys of a run's ``output_parameters`` that the export reads.
SUMMARY_KEYS = ('conformer_search_status', 'num_conformers', 'conformer_search_time_s', 'mopac_status',
                'mopac_time_s', 'pm7_heats_of_formation_kcal_mol', 'most_stable_hof', 'error_message', 'engine',
                'top_n', 'dft_code', 'dft_status', 'dft_energy_ev', 'dft_band_gap_ev', 'dft_time_s')
#: schema versions (``alembic_version``) of ``core.sqlite_dos`` that :func:`read_sqlite` was written and tested for.
SQLITE_SCHEMA_VERSIONS = ('main_0002',)


class NotFast(Exception):
    """:func:`read_sqlite` cannot read this campaign exactly: use :func:`read_querybuilder`."""


@dataclass
class CampaignData:
    """What the export reads of a campaign.

    ``last_runs[mol_id]`` is a tuple ``(pk, mol_id, uuid, state, exit_status, exit_message, started, modified, _,
    crest_given, mopac_given)`` of the molecule's last run: process state, exit status and message, ctime and
    mtime (ISO 8601 to the second), and whether its ``output_parameters`` has the keys ``conformer_search_status``
    / ``mopac_status`` at all (a missing one has a default). ``summaries[mol_id]`` are the values of
    :data:`SUMMARY_KEYS` in that run's ``output_parameters`` (no entry when it wrote none).
    """

    max_reruns: int
    records: dict[str, dict]  # {mol_id: record attributes and timestamp_added}, in pk order
    last_runs: dict[str, tuple]
    counts: dict[str, int]  # {mol_id: number of runs}
    summaries: dict[str, list]


def _iso(value) -> str | None:
    return value.isoformat(timespec='seconds') if value is not None else None


# ---------------------------------------------------------------------------------------------- readers

def summaries(group: orm.Group) -> dict[int, dict]:
    """``{run pk: output_parameters attributes}`` for the runs of the campaign that wrote one."""
    from aiida import orm

    from ..workchains.pipeline import ConformerToDftWorkChain
    from .store import query_rows

    query = orm.QueryBuilder()
    query.append(orm.Group, filters={'id': group.pk}, tag='group')
    query.append(ConformerToDftWorkChain, with_group='group', tag='run', project=['id'])
    # the whole attribute blob: one JSON document per row decodes faster than a dozen extracted keys
    query.append(orm.Dict, with_incoming='run', edge_filters={'label': 'output_parameters'}, project=['attributes'])
    return dict(query_rows(query))


def read_querybuilder(group: orm.Group) -> CampaignData:
    """The campaign through QueryBuilder projections (:func:`.store.records`, :func:`.store.runs`): any backend."""
    from .store import records, runs, settings_of

    all_summaries = summaries(group)
    last_runs, counts, values = {}, {}, {}
    for mol_id, molecule_runs in runs(group).items():
        last = molecule_runs[-1]
        summary = all_summaries.get(last['pk'])
        last_runs[mol_id] = (last['pk'], mol_id, last['uuid'], last['state'], last['exit_status'],
                             last['exit_message'], _iso(last['ctime']), _iso(last['mtime']), None,
                             summary is not None and 'conformer_search_status' in summary,
                             summary is not None and 'mopac_status' in summary)
        counts[mol_id] = len(molecule_runs)
        if summary is not None:
            values[mol_id] = [summary.get(key) for key in SUMMARY_KEYS]
    return CampaignData(settings_of(group)['max_reruns'], records(group), last_runs, counts, values)


_SQL_RECORDS = """
SELECT n.id, json_extract(n.extras, '$."mol_id"', '$."timestamp_added"'), n.attributes
FROM db_dbgroup_dbnodes AS m JOIN db_dbnode AS n ON n.id = m.dbnode_id
WHERE m.dbgroup_id = :group AND n.node_type LIKE 'data.core.dict.%' ESCAPE '\\'
  AND json_type(n.extras, '$."grimperium_record"') = 'true'
"""
# The filters are those of QueryBuilder().append(ConformerToDftWorkChain, with_group=...) and of
# .append(orm.Dict, with_incoming='run', edge_filters={'label': 'output_parameters'}). The process attributes
# are scalars that AiiDA validates (str, int, str).
_SQL_RUNS = """
SELECT n.id, json_extract(n.extras, '$."mol_id"'), n.uuid, json_extract(n.attributes, '$."process_state"'),
  json_extract(n.attributes, '$."exit_status"'), json_extract(n.attributes, '$."exit_message"'), n.ctime, n.mtime,
  json_extract(s.attributes, {summary_paths}), s.id
FROM db_dbgroup_dbnodes AS m JOIN db_dbnode AS n ON n.id = m.dbnode_id
LEFT JOIN db_dblink AS l ON l.input_id = n.id AND l.label = 'output_parameters'
LEFT JOIN db_dbnode AS s ON s.id = l.output_id AND s.node_type LIKE 'data.core.dict.%' ESCAPE '\\'
WHERE m.dbgroup_id = :group AND n.node_type LIKE 'process.workflow.workchain.%' ESCAPE '\\'
  AND (n.process_type = :process_type OR n.process_type LIKE :process_type_like ESCAPE '\\')
""".format(summary_paths=', '.join(f'\'$."{key}"\'' for key in SUMMARY_KEYS))
# whether summaries whose conformer_search_status / mopac_status is null have the key at all (a JSON null) or not
_SQL_KEYS = """
SELECT id, json_type(attributes, '$."conformer_search_status"') IS NOT NULL,
  json_type(attributes, '$."mopac_status"') IS NOT NULL
FROM db_dbnode WHERE id IN (SELECT value FROM json_each(:ids))
"""
# ctime / mtime: naive UTC text (aiida's TZDateTime, SQLAlchemy's format 'YYYY-MM-DD HH:MM:SS.ffffff'); of the
# datetime SQLAlchemy reads from it (ignoring what follows the seconds), _iso() is 'YYYY-MM-DDTHH:MM:SS+00:00'
_SQLITE_TIMES = re.compile(r'(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[^\n]*\n)*')


def _loads_all(texts) -> list:
    """``[json.loads(text) for text in texts]`` (``None`` for SQL NULL) in one call of the JSON decoder."""
    return json.loads('[' + ','.join(['null' if text is None else text for text in texts]) + ']')


def read_sqlite(profile: Profile, *, label: str | None = None, pk: int | None = None) -> CampaignData:
    """The campaign ``label`` (or the group ``pk``) read with plain SQL from the profile's ``core.sqlite_dos``
    database file, opened read-only. The only raw-SQL code of the package; raises :class:`NotFast` whenever it
    cannot give exactly what :func:`read_querybuilder` gives (which the caller then uses).

    Like the QueryBuilder queries, the statements are separate snapshots: none holds a lock while another runs,
    so a daemon committing meanwhile is never blocked for longer than one statement.
    """
    import sqlite3

    if profile.storage_backend != 'core.sqlite_dos':
        raise NotFast(f'storage backend {profile.storage_backend}')
    # the database of this profile only: FILENAME_DATABASE of aiida.storage.sqlite_dos.backend, not imported (slow)
    database = pathlib.Path(profile.storage_config['filepath']) / 'database.sqlite'
    if not database.is_absolute() or not database.is_file():
        raise NotFast(f'no database file {database}')
    try:  # autocommit: each statement is its own read transaction, as the QueryBuilder's are
        connection = sqlite3.connect(f'{database.as_uri()}?mode=ro', uri=True, timeout=60, isolation_level=None)
    except sqlite3.Error as exc:
        raise NotFast(str(exc)) from exc
    try:
        versions = connection.execute('SELECT version_num FROM alembic_version').fetchall()
        if len(versions) != 1 or versions[0][0] not in SQLITE_SCHEMA_VERSIONS:
            raise NotFast(f'schema version {versions}')
        if pk is None:
            groups = connection.execute('SELECT id, extras FROM db_dbgroup WHERE label = ?', (label,)).fetchall()
        else:
            groups = connection.execute('SELECT id, extras FROM db_dbgroup WHERE id = ?', (pk,)).fetchall()
        if len(groups) != 1:  # not there (get_campaign creates it) or ambiguous: the ordinary way says what to do
            raise NotFast(f'{len(groups)} group(s) {label or pk}')
        group_pk, group_extras = groups[0]
        record_rows = connection.execute(_SQL_RECORDS, {'group': group_pk}).fetchall()
        process_type_like = PROCESS_TYPE.replace('%', '\\%').replace('_', '\\_') + '.'  # as escape_for_sql_like
        run_rows = connection.execute(_SQL_RUNS, {'group': group_pk, 'process_type': PROCESS_TYPE,
                                                  'process_type_like': process_type_like}).fetchall()
        settings = json.loads(group_extras).get('settings', {})
        max_reruns = {'max_reruns': DEFAULT_MAX_RERUNS, **settings}['max_reruns']  # as store.settings_of

        # JSON texts are decoded a column at a time: one json.loads('[doc,doc,...]'), not one call per document
        first = itemgetter(0)
        record_rows.sort(key=first)
        records: dict[str, dict] = {}
        for (mol_id, timestamp_added), record in zip(_loads_all([row[1] for row in record_rows]),
                                                     _loads_all([row[2] for row in record_rows])):
            if type(mol_id) is not str:  # missing (the QueryBuilder way raises KeyError) or not a string
                raise NotFast(f'record mol_id {mol_id!r}')
            if type(record) is not dict:
                raise NotFast('record attributes are not an object')
            record['timestamp_added'] = timestamp_added
            records[mol_id] = record
        del record_rows  # (memory: the JSON texts)

        run_rows.sort(key=first)  # stable: duplicates of a run (two output_parameters links) stay together
        counts: dict[str, int] = {}
        last_rows: dict[str, tuple] = {}
        previous = None
        for row in run_rows:
            mol_id = row[1]
            if mol_id is None:  # submitted a moment ago, extras not yet written
                continue
            if type(mol_id) is not str:
                raise NotFast(f'run {row[0]}: mol_id {mol_id!r}')
            if row[0] == previous:  # the same run again: keep a row with a summary
                if last_rows[mol_id][8] is None:
                    last_rows[mol_id] = row
                continue
            previous = row[0]
            counts[mol_id] = counts.get(mol_id, 0) + 1
            last_rows[mol_id] = row
        del run_rows
        rows = list(last_rows.values())
        if not _SQLITE_TIMES.fullmatch(''.join([f'{row[6]}\n{row[7]}\n' for row in rows])):
            raise NotFast('unexpected time stamps')
        with_summary = [row for row in rows if row[8] is not None]
        decoded = _loads_all([row[8] for row in with_summary])
        values = {row[1]: summary for row, summary in zip(with_summary, decoded)}
        given = {row[9]: (summary[0] is not None, summary[3] is not None) for row, summary in zip(with_summary, decoded)}
        unknown = [sid for sid, (crest, mopac) in given.items() if not (crest and mopac)]
        if unknown:  # a null value: the key may be there (JSON null) or not (then the column's default)
            keys = connection.execute(_SQL_KEYS, {'ids': json.dumps(unknown)}).fetchall()
            given.update((sid, (bool(crest), bool(mopac))) for sid, crest, mopac in keys)
        no_summary = (False, False)
        last_runs = {}
        for mol_id, (pk_, _, uuid, state, exit_status, exit_message, ctime, mtime, _, sid) in zip(last_rows, rows):
            crest_given, mopac_given = no_summary if sid is None else given[sid]
            last_runs[mol_id] = (pk_, mol_id, uuid, state, exit_status, exit_message,
                                 f'{ctime[:10]}T{ctime[11:19]}+00:00', f'{mtime[:10]}T{mtime[11:19]}+00:00', None,
                                 crest_given, mopac_given)
        return CampaignData(max_reruns, records, last_runs, counts, values)
    except sqlite3.Error as exc:
        raise NotFast(str(exc)) from exc
    finally:
        connection.close()


@contextmanager
def _no_gc():
    """The cyclic garbage collector paused: decoding a campaign creates millions of containers (none in a cycle),
    which would otherwise set off collections over all of them again and again (a seventh of the export's time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def read_campaign(group: orm.Group) -> CampaignData:
    """:func:`read_sqlite` when it can, else :func:`read_querybuilder`."""
    try:
        return read_sqlite(group.backend.profile, pk=group.pk)
    except NotFast:
        return read_querybuilder(group)


# ---------------------------------------------------------------------------------------------- the table
