"""A campaign in the database: a Group holding one record per molecule and the workchains run for them.

* **molecule record**: a stored ``Dict`` with the validated CSV row as attributes, in the campaign group, with
  extras ``grimperium_record = True``, ``mol_id`` and ``timestamp_added``.
* **run**: a :class:`ConformerToDftWorkChain` in the same group, with extras ``mol_id``, ``rerun`` (0 for the
  first run) and ``stage``.
* **settings**: the group's extras (engine, top_n, dft, protocol, max_reruns, code labels), so that reruns are
  built exactly like the first run.

A molecule's status is derived, never stored: ``Pending`` (no run yet), ``Running``, ``OK``, ``Rerun`` (failed,
reruns left), ``Skip`` (failed ``max_reruns`` + 1 times).
"""
from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterable

from aiida import orm

from .molecules import Molecule

RECORD_EXTRA = 'grimperium_record'
DEFAULT_SETTINGS = {
    'engine': 'rdkit-xtb',
    'top_n': 3,
    'dft': None,
    'protocol': 'fast',
    'max_reruns': 3,
    'num_conformers': 10,
    'codes': {'xtb': 'xtb@localhost', 'mopac': 'mopac@localhost', 'crest': 'crest@localhost',
              'pw': 'pw@localhost', 'vasp': 'vasp@localhost', 'crystal': 'crystal@localhost'},
    # Scheduler overrides of every job's metadata.options (None: as the code's protocol says); see
    # builders.scheduler_options: SLURM partition, account, walltime in seconds, threads, memory in MB.
    'scheduler': {'queue': None, 'account': None, 'walltime': None, 'cores': None, 'memory_mb': None},
}
ACTIVE_STATES = ('created', 'waiting', 'running')


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')


def get_campaign(name: str, settings: dict | None = None) -> orm.Group:
    """Load (or create, when ``settings`` are given) the campaign group ``name``; new settings are saved."""
    group, created = orm.Group.collection.get_or_create(label=name)
    if settings is not None:
        merged = {**DEFAULT_SETTINGS, **group.base.extras.get('settings', {}), **settings}
        group.base.extras.set('settings', merged)
    elif created:
        group.base.extras.set('settings', dict(DEFAULT_SETTINGS))
    return group


def settings_of(group: orm.Group) -> dict:
    return {**DEFAULT_SETTINGS, **group.base.extras.get('settings', {})}


def add_molecules(group: orm.Group, molecules: Iterable[Molecule]) -> list[orm.Dict]:
    """Store a record per molecule not yet in the campaign (mol_id already present: kept as it is)."""
    existing = set(records(group))
    added = []
    for molecule in molecules:
        if molecule.mol_id in existing:
            continue
        record = orm.Dict(molecule.model_dump())
        record.label = molecule.mol_id
        record.store()
        record.base.extras.set_many({RECORD_EXTRA: True, 'mol_id': molecule.mol_id, 'timestamp_added': now()})
        added.append(record)
    group.add_nodes(added)
    return added


def query_rows(query: orm.QueryBuilder) -> list[tuple]:
    """All rows of ``query`` as plain tuples, executed as one SQL statement.

    ``QueryBuilder.all()`` converts every projected value through the ORM layer (a few microseconds each); for
    the hundreds of thousands of values of a large campaign that is most of the time, so the statement the
    QueryBuilder built is run on the storage session directly. JSON and dates still come back decoded.
    Falls back to ``iterall`` when the storage backend has no SQLAlchemy session.
    """
    impl = query._impl
    try:
        session = impl.get_session()
        with impl.query_session(query.as_dict()) as built:
            return [tuple(row) for row in session.execute(built.query.statement)]
    except AttributeError:
        return [tuple(row) for row in query.iterall()]


def records(group: orm.Group) -> dict[str, dict]:
    """``{mol_id: row attributes}`` of the campaign's molecule records, in insertion order."""
    query = orm.QueryBuilder()
    query.append(orm.Group, filters={'id': group.pk}, tag='group')
    # whole JSON columns, picked apart here: SQLite re-parses a JSON column for every key extracted or filtered on,
    # which at 100 000 molecules costs several times more than one decoding per row
    query.append(orm.Dict, with_group='group', project=['id', 'extras', 'attributes'])
    rows = sorted(query_rows(query), key=lambda row: row[0])
    return {extras['mol_id']: {**attributes, 'timestamp_added': extras.get('timestamp_added')}
            for _, extras, attributes in rows if extras.get(RECORD_EXTRA) is True}


def runs(group: orm.Group) -> dict[str, list[dict]]:
    """``{mol_id: [run, ...]}`` oldest first; a run has pk, state, exit_status, exit_message, rerun, stage."""
    from ..workchains.pipeline import ConformerToDftWorkChain

    query = orm.QueryBuilder()
    query.append(orm.Group, filters={'id': group.pk}, tag='group')
    query.append(ConformerToDftWorkChain, with_group='group',
                 project=['id', 'extras', 'attributes', 'ctime', 'mtime', 'uuid'])  # whole JSON: see records()
    result: dict[str, list[dict]] = {}
    for pk, extras, attributes, ctime, mtime, uuid in sorted(query_rows(query), key=lambda row: row[0]):
        mol_id = extras.get('mol_id')
        if mol_id is None:  # submitted a moment ago, extras not yet written
            continue
        result.setdefault(mol_id, []).append({
            'pk': pk, 'uuid': uuid, 'state': attributes.get('process_state'), 'exit_status': attributes.get('exit_status'),
            'exit_message': attributes.get('exit_message'), 'rerun': extras.get('rerun') or 0,
            'stage': extras.get('stage') or 'selected', 'ctime': ctime, 'mtime': mtime})
    return result


def status_of(molecule_runs: list[dict], max_reruns: int) -> str:
    """The seed's status word for a molecule, from its runs (oldest first)."""
    if not molecule_runs:
        return 'Pending'
    last = molecule_runs[-1]
    if last['state'] in ACTIVE_STATES or last['state'] is None:
        return 'Running'
    if last['state'] == 'finished' and last['exit_status'] == 0:
        return 'OK'
    return 'Rerun' if len(molecule_runs) - 1 < max_reruns else 'Skip'


def schedule(group: orm.Group) -> list[str]:
    """mol_ids to run next: failed ones with reruns left first, then the ones never run (CSV order)."""
    settings = settings_of(group)
    all_runs = runs(group)
    failed, pending = [], []
    for mol_id in records(group):
        status = status_of(all_runs.get(mol_id, []), settings['max_reruns'])
        if status == 'Rerun':
            failed.append(mol_id)
        elif status == 'Pending':
            pending.append(mol_id)
    return failed + pending


def count_active(group: orm.Group) -> int:
    from ..workchains.pipeline import ConformerToDftWorkChain

    query = orm.QueryBuilder()
    query.append(orm.Group, filters={'id': group.pk}, tag='group')
    query.append(ConformerToDftWorkChain, with_group='group',
                 filters={'attributes.process_state': {'in': list(ACTIVE_STATES)}})
    return query.count()


def submit_molecules(group: orm.Group, mol_ids: list[str], *, max_active: int | None = None, wait: bool = False,
                     poll_seconds: float = 0.5, echo: Callable[[str], None] = print) -> list[int]:
    """Submit the pipeline for ``mol_ids`` to the daemon, never more than ``max_active`` at once.

    ``max_active`` ``None``: :func:`~aiida_grimperium.campaign.builders.default_max_active` of the campaign's
    codes (a low one with ``wait=True``, which feeds the daemon as molecules finish). With ``wait=False``
    submission stops when the limit is reached (the rest stay ``Pending`` for the next ``campaign submit`` /
    ``rerun``); with ``wait=True`` it waits for slots to free up, looking every ``poll_seconds`` (a count query:
    cheap, and with the write-ahead log it never blocks the daemon). The settings' input nodes are shared by all
    the molecules (:class:`~aiida_grimperium.campaign.builders.SharedInputs`).
    """
    from aiida.engine import submit

    from .builders import SharedInputs, default_max_active, load_codes, pipeline_builder

    settings = settings_of(group)
    codes = load_codes(settings)
    if max_active is None:
        max_active = default_max_active(codes, feeding=wait)
    shared = SharedInputs()  # the settings' input nodes, stored once for all these molecules
    rows = records(group)
    all_runs = runs(group)
    submitted = []
    for mol_id in mol_ids:
        while count_active(group) >= max_active:
            if not wait:
                echo(f'{len(mol_ids) - len(submitted)} molecule(s) left Pending: {max_active} already running')
                return submitted
            time.sleep(poll_seconds)
        builder = pipeline_builder(Molecule.model_validate(rows[mol_id]), settings, codes, shared)
        rerun = len(all_runs.get(mol_id, []))
        builder.metadata.label = mol_id
        node = submit(builder)
        # no `stage` here: the daemon may already have started the run and set it; missing means 'selected'
        node.base.extras.set_many({'mol_id': mol_id, 'rerun': rerun, 'campaign': group.label})
        group.add_nodes(node)
        submitted.append(node.pk)
        echo(f'submitted {mol_id:<20} pk={node.pk}' + (f' (rerun {rerun})' if rerun else ''))
    return submitted
