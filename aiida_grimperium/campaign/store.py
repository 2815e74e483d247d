"""A campaign in the database: a Group with the record of what was asked, and the controllers that run it.

* **records**: stored ``Dict`` nodes in the group, extra ``grimperium_records``, each ``{key: validated CSV
  row}`` for a batch's worth of molecules (``m0001``...). The batches are cut by estimated work
  (:mod:`.planning`); each row keeps its place in the CSV (``position``) for the export. A record is the
  ``molecules`` input of the first batch that runs its molecules.
* **settings**: the group's ``settings`` extra (engine, top_n, dft, protocol, max_reruns, batch_size, codes,
  scheduler, shell), so that reruns run exactly like the first run.
* **controllers**: :class:`~aiida_grimperium.workchains.campaign.CampaignWorkChain` nodes in the group.

A campaign is the record of what was asked: submitting a row whose SMILES, charge, multiplicity or reference
differs from the stored one is refused (:class:`CampaignError` naming each row and field) unless ``update``:
then a new record holds the new rows, which supersede the old ones (those runs stay in the graph, and the old
record's ``superseded`` extra lists them). Statuses are derived, never stored (:mod:`.readers`).
"""
from __future__ import annotations

import datetime
import math
from collections.abc import Iterable

from aiida import orm

from .columns import COST_FIELD, POSITION_FIELD
# the campaign's layout, also imported from here by callers of the store
from .layout import DEFAULT_SETTINGS, RECORDS_EXTRA, CampaignError, batch_key, load_campaign, settings_of
from .molecules import Molecule
from .planning import estimated_cost, plan_batches, smiles_cost_terms
from .readers import CampaignMolecule
from .readers import active_controllers, read_molecules, record_rows

#: The row fields that define what was asked of a molecule (a change must be asked for: ``update``).
IDENTITY_FIELDS = ('smiles', 'charge', 'multiplicity', 'H298_cbs')
#: Records stored, and added to the group, in one transaction.
STORE_CHUNK = 50


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')


def setting_changes(group: orm.Group, settings: dict) -> dict[str, tuple]:
    """``{name: (stored, new)}`` of the settings that differ from the campaign's."""
    stored = settings_of(group)
    return {name: (stored.get(name), value) for name, value in settings.items() if stored.get(name) != value}


def open_campaign(name: str, settings: dict, update: bool = False) -> tuple[orm.Group, bool]:
    """The campaign ``name`` with ``settings``: created, or loaded when the settings agree (``update``: the new
    ones are applied). Returns the group and whether it was created."""
    from aiida.common.exceptions import NotExistent

    try:
        group = load_campaign(name)
    except CampaignError:
        try:
            orm.load_group(label=name)
        except NotExistent:
            group = orm.Group(label=name).store()
            group.base.extras.set('settings', {**DEFAULT_SETTINGS, **settings})
            return group, True
        raise
    changes = setting_changes(group, settings)
    if changes and not update:
        listed = '; '.join(f'{name}: {old!r} -> {new!r}' for name, (old, new) in changes.items())
        raise CampaignError(f'campaign `{name}` was submitted with other options ({listed}); '
                            'use --update to apply the new ones, or submit to a new --group')
    if changes:
        group.base.extras.set('settings', {**settings_of(group), **settings})
    return group, False


def _same(old, new) -> bool:
    if isinstance(old, float) and isinstance(new, float):
        return math.isclose(old, new, rel_tol=0, abs_tol=1e-12)
    return old == new


def row_changes(existing: dict[str, tuple[dict, int]], molecules: Iterable[Molecule]) -> dict[str, list[str]]:
    """``{mol_id: [changed field, ...]}`` of the molecules whose row differs from the stored one."""
    changes = {}
    for molecule in molecules:
        if molecule.mol_id in existing:
            old, new = existing[molecule.mol_id][0], molecule.model_dump()
            fields = [name for name in IDENTITY_FIELDS if not _same(old.get(name), new.get(name))]
            if fields:
                changes[molecule.mol_id] = fields
    return changes


def add_molecules(group: orm.Group, molecules: list[Molecule], *, batch_size: int, min_batches: int = 1,
                  num_conformers: int = DEFAULT_SETTINGS['num_conformers'], update: bool = False) -> tuple[int, int]:
    """Store records of the new molecules (and, with ``update``, of the changed ones), in batches balanced by
    estimated work (:mod:`.planning`); return how many records and molecules were stored.

    A molecule already in the campaign with the same row is kept as it is; a changed one raises
    :class:`CampaignError` naming every changed row and field, unless ``update``.
    """
    existing, _ = record_rows(group)
    changes = row_changes(existing, molecules)
    if changes and not update:
        listed = '; '.join(f'row {_row_of(molecules, mol_id)} (mol_id {mol_id}): {", ".join(fields)}'
                           for mol_id, fields in changes.items())
        raise CampaignError(f'{len(changes)} molecule(s) differ from what campaign `{group.label}` holds: {listed}. '
                            'Use --update to run the new rows (the old results stay in the graph, superseded)')
    todo = [m for m in molecules if m.mol_id not in existing or m.mol_id in changes]
    superseded: dict[int, list[str]] = {}
    for mol_id in changes:
        superseded.setdefault(existing[mol_id][1], []).append(mol_id)
    from aiida.manage import get_manager

    # the export's order (record_rows gives the rows in it): a changed row keeps its place, a new one comes after
    # every molecule already there
    positions = {mol_id: i for i, mol_id in enumerate(existing)}
    for molecule in todo:
        positions.setdefault(molecule.mol_id, len(positions))
    storage, stored, stamp = get_manager().get_profile_storage(), 0, now()
    costs = [estimated_cost(m.cost_terms or smiles_cost_terms(m.smiles), num_conformers) for m in todo]
    batches = plan_batches(costs, batch_size, min_batches)
    for first in range(0, len(batches), STORE_CHUNK):
        # one transaction (AiiDA's public StorageBackend.transaction) per chunk: one commit for its records and
        # their group membership, where each store commits three times and every commit expires all the
        # objects the session holds (quadratic in the records of a 100 000-molecule campaign)
        with storage.transaction():
            chunk = []
            for members in batches[first:first + STORE_CHUNK]:
                # no None values (an empty cell is a missing key), no line number, no cost: fewer values to read back
                rows = {batch_key(i): {**todo[m].model_dump(exclude_none=True, exclude={'row', COST_FIELD}),
                                       POSITION_FIELD: positions[todo[m].mol_id]}
                        for i, m in enumerate(members)}
                record = orm.Dict(rows)
                record.label = f'{group.label} records'
                record.base.extras.set_many({RECORDS_EXTRA: True, 'campaign': group.label, 'timestamp_added': stamp})
                chunk.append(record.store())
            group.add_nodes(chunk)
        stored += len(chunk)
    for pk, mol_ids in superseded.items():
        old = orm.load_node(pk)
        old.base.extras.set('superseded', sorted({*old.base.extras.get('superseded', []), *mol_ids}))
    return stored, len(todo)


def _row_of(molecules: list[Molecule], mol_id: str):
    return next((m.row for m in molecules if m.mol_id == mol_id), '?')


def rerun_batches(group: orm.Group, molecules: dict[str, CampaignMolecule]) -> tuple[list[orm.Dict], dict]:
    """The batches that run what is left: whole records never run, and the failed molecules with reruns left (and
    pending ones of partly run records) in new batches. Returns them and ``{mol_id: runs so far}``."""
    settings = settings_of(group)
    by_record: dict[int, list[CampaignMolecule]] = {}
    for molecule in molecules.values():
        by_record.setdefault(molecule.record_pk, []).append(molecule)
    batches, rows, attempts = [], [], {}
    for record_pk, members in by_record.items():
        statuses = [m.status(settings['max_reruns']) for m in members]
        record = orm.load_node(record_pk)
        if all(status == 'Pending' for status in statuses) and len(members) == len(record.get_dict()):
            batches.append(record)
            continue
        for molecule, status in zip(members, statuses):
            if status in ('Pending', 'Rerun'):
                rows.append({**molecule.row, 'record': record_pk})
                attempts[molecule.mol_id] = len(molecule.runs)
    batches.extend(rerun_records(rows, settings['batch_size'], settings['num_conformers']))
    return batches, attempts


def rerun_records(rows: list[dict], batch_size: int, num_conformers: int) -> list[orm.Dict]:
    """Stored ``Dict`` nodes of ``rows`` (rows that name their ``record``) in batches balanced by estimated work."""
    costs = [estimated_cost(smiles_cost_terms(row['smiles']), num_conformers) for row in rows]
    return [orm.Dict({batch_key(i): rows[m] for i, m in enumerate(members)}).store()
            for members in plan_batches(costs, batch_size)]


def start_controller(group: orm.Group, batches: list[orm.Dict], *, max_active: int, attempts: dict | None = None):
    """Submit a :class:`~aiida_grimperium.workchains.campaign.CampaignWorkChain` for ``batches`` (the daemon must
    be running: its broker takes the process) and put it in the campaign."""
    from aiida.engine import submit

    from ..workchains.campaign import CampaignWorkChain

    settings = settings_of(group)
    inputs = {
        'batches': {f'b{i + 1:05d}': node for i, node in enumerate(batches)},
        'settings': orm.Dict(settings),
        'max_active': orm.Int(max_active),
        'max_reruns': orm.Int(settings['max_reruns']),
        'batch_size': orm.Int(settings['batch_size']),
        'campaign': orm.Str(group.uuid),
        'metadata': {'label': group.label},
    }
    if attempts:
        inputs['attempts'] = orm.Dict(attempts)
    node = submit(CampaignWorkChain, **inputs)
    group.add_nodes(node)
    return node


__all__ = ['CampaignError', 'DEFAULT_SETTINGS', 'active_controllers', 'add_molecules', 'load_campaign',
           'open_campaign', 'read_molecules', 'rerun_batches', 'settings_of', 'start_controller']
