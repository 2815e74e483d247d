"""Reading a campaign back, through AiiDA's public QueryBuilder only (any storage backend: SQLite, PostgreSQL).

A campaign group holds the **records** (``Dict`` nodes, extra ``grimperium_records``: ``{key: CSV row}``, a
batch's worth of molecules each) and the **controllers** (:class:`~aiida_grimperium.workchains.campaign.
CampaignWorkChain`) that ran them; each controller calls :class:`~aiida_grimperium.workchains.batch.
ConformerBatchWorkChain` batches, whose ``molecules`` input is a record (first runs) or a ``Dict`` of the rows
to run again (reruns: each row names its record, ``record``), and whose ``summarize`` calcfunction made the
molecules' summaries. Four projections read all of it, each a few thousand rows per 100 000 molecules but the summaries:
no node is loaded.

A molecule's **current row** is the one of its newest record (``campaign submit --update`` adds a record that
supersedes the rows it changes). Only runs of the current row count for its status and its export row; runs of
a superseded row stay in the graph.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from aiida import orm
from aiida.orm.utils.mixins import Sealable

from .columns import POSITION_FIELD
from .layout import CONTROLLER_PROCESS_TYPE, RECORDS_EXTRA, batches_query

ACTIVE_STATES = ('created', 'waiting', 'running')
TERMINAL_STATES = ('finished', 'excepted', 'killed')
#: aiida-core 2.9 bug: two instances of one process (a task RabbitMQ handed out again after a broker restart) can
#: leave its node sealed, i.e. terminated, with the ``process_state`` of the instance that wrote last ("running").
#: A sealed node has ended whatever its state says (``Sealable.SEALED_KEY``).
SEALED = f'attributes.{Sealable.SEALED_KEY}'
#: A node's attributes projected as their JSON text, parsed by ``json.loads``: the QueryBuilder passes every
#: projected value through ``orm.convert``, a dispatch per leaf, most of the time of reading many records
#: (docs/performance.md). The same dict (SQLite ``json_extract``, PostgreSQL ``#>> '{}'``; both tested).
ATTRIBUTES_TEXT = {'attributes': {'cast': 't'}}


@dataclass
class Run:
    """One attempt at one molecule: the batch that ran it and, once it ended, the molecule's summary."""

    batch_pk: int
    batch_uuid: str
    state: str | None
    exit_status: int | None
    exit_message: str | None
    stage: str
    ctime: object
    mtime: object
    sealed: bool = False
    summary: dict | None = None

    @property
    def active(self) -> bool:
        return not self.sealed and (self.state is None or self.state in ACTIVE_STATES)

    @property
    def ok(self) -> bool:
        return self.summary is not None and 'error_message' not in self.summary


@dataclass
class CampaignMolecule:
    """A molecule of the campaign: its current row, the record that holds it, its runs (oldest first)."""

    mol_id: str
    row: dict
    record_pk: int
    runs: list[Run] = field(default_factory=list)

    def status(self, max_reruns: int) -> str:
        """``Pending`` (never run), ``Running``, ``OK``, ``Rerun`` (failed, reruns left), ``Skip`` (no reruns left)."""
        if not self.runs:
            return 'Pending'
        last = self.runs[-1]
        if last.active:
            return 'Running'
        if last.ok:
            return 'OK'
        return 'Rerun' if len(self.runs) - 1 < max_reruns else 'Skip'


def record_rows(group: orm.Group) -> tuple[dict[str, tuple[dict, int]], set[int]]:
    """``{mol_id: (row, record pk)}`` of the current rows, in CSV order (where the mol_id first came in; a newer
    record supersedes the row in place), and the pks of all the records.

    Batches are cut by estimated work, not in CSV order: a row's ``position`` field keeps its place (records of
    an older version of the package have none, and were cut in CSV order)."""
    query = orm.QueryBuilder()
    query.append(orm.Group, filters={'id': group.pk}, tag='group')
    query.append(orm.Dict, with_group='group', filters={f'extras.{RECORDS_EXTRA}': True},
                 project=['id', ATTRIBUTES_TEXT, 'extras.timestamp_added'])
    current: dict[str, tuple[dict, int]] = {}
    pks = set()
    for pk, rows, added in sorted(query.iterall(), key=lambda row: row[0]):
        pks.add(pk)
        for row in json.loads(rows).values():
            row['timestamp_added'] = added
            current[row['mol_id']] = (row, pk)
    order = {mol_id: row.get(POSITION_FIELD, i) for i, (mol_id, (row, _)) in enumerate(current.items())}
    return dict(sorted(current.items(), key=lambda item: order[item[0]])), pks


def _batches_query(group: orm.Group) -> orm.QueryBuilder:
    return batches_query({'id': group.pk}, project=['id', 'uuid', 'attributes.process_state', 'attributes.exit_status',
                                                    'attributes.exit_message', 'extras.stage', 'ctime', 'mtime', SEALED])


def read_molecules(group: orm.Group) -> dict[str, CampaignMolecule]:
    """Every molecule of the campaign with its runs of its current row (see the module docstring)."""
    rows, record_pks = record_rows(group)
    molecules = {mol_id: CampaignMolecule(mol_id, row, pk) for mol_id, (row, pk) in rows.items()}
    record_of = {}  # {(molecules Dict pk): {mol_id: record pk}} for the rerun Dicts

    query = _batches_query(group)
    query.append(orm.Dict, with_outgoing='batch', edge_filters={'label': 'molecules'}, project=['id'])
    batches = {}
    for pk, uuid, state, exit_status, message, stage, ctime, mtime, sealed, molecules_pk in query.iterall():
        run = Run(pk, uuid, state, exit_status, message, stage or 'selected', ctime, mtime, bool(sealed))
        batches[pk] = (run, molecules_pk)
    rerun_pks = sorted({molecules_pk for _, molecules_pk in batches.values() if molecules_pk not in record_pks})
    if rerun_pks:
        reruns = orm.QueryBuilder().append(orm.Dict, filters={'id': {'in': rerun_pks}}, project=['id', ATTRIBUTES_TEXT])
        for pk, rows in reruns.iterall():
            record_of[pk] = {row['mol_id']: row['record'] for row in json.loads(rows).values()}

    summaries: dict[int, dict[str, dict]] = {}
    query = _batches_query(group)
    query.append(orm.CalcFunctionNode, with_incoming='batch', edge_filters={'label': 'summarize'}, tag='summarize')
    query.append(orm.Dict, with_incoming='summarize', project=[ATTRIBUTES_TEXT])
    for *batch, summary in query.iterall():
        summary = json.loads(summary)
        summaries.setdefault(batch[0], {})[summary.get('mol_id')] = summary

    members = _members(molecules)
    for pk in sorted(batches):
        run, molecules_pk = batches[pk]
        mol_ids = record_of[molecules_pk] if molecules_pk in record_of else {m: molecules_pk for m in members.get(molecules_pk, ())}
        for mol_id, record_pk in mol_ids.items():
            molecule = molecules.get(mol_id)
            if molecule is None or molecule.record_pk != record_pk:
                continue  # a run of a superseded row
            molecule.runs.append(Run(**{**run.__dict__, 'summary': summaries.get(pk, {}).get(mol_id)}))
    return molecules


def _members(molecules: dict[str, CampaignMolecule]) -> dict[int, list[str]]:
    """``{record pk: [mol_id, ...]}`` of the current rows."""
    members: dict[int, list[str]] = {}
    for mol_id, molecule in molecules.items():
        members.setdefault(molecule.record_pk, []).append(mol_id)
    return members


def active_controllers(group: orm.Group) -> list[int]:
    """Pks of the campaign's controllers that have not finished."""
    query = orm.QueryBuilder()
    query.append(orm.Group, filters={'id': group.pk}, tag='group')
    query.append(orm.WorkChainNode, with_group='group', filters={'process_type': CONTROLLER_PROCESS_TYPE},
                 project=['id', 'attributes.process_state', SEALED])
    # (a process submitted a moment ago may not have its state attribute yet)
    return [pk for pk, state, sealed in query.iterall() if state not in TERMINAL_STATES and not sealed]
