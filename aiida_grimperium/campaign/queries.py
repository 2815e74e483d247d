"""QueryBuilder recipes for the questions asked most often of a campaign (shown in docs/campaigns.md).

Each recipe is one or two projections: no node is loaded, so they stay fast on large campaigns.
"""
from __future__ import annotations

from aiida import orm

from .store import records


def _runs_query(group_label: str):
    from ..workchains.pipeline import ConformerToDftWorkChain

    query = orm.QueryBuilder()
    query.append(orm.Group, filters={'label': group_label}, tag='group')
    query.append(ConformerToDftWorkChain, with_group='group', tag='run', project=['extras.mol_id'])
    return query


def large_deltas(group_label: str, threshold: float = 5.0) -> dict[str, float]:
    """``{mol_id: delta_1}`` of every molecule whose |PM7 most stable − reference| exceeds ``threshold`` kcal/mol."""
    query = _runs_query(group_label)
    query.append(orm.Float, with_incoming='run', edge_filters={'label': 'most_stable_hof'}, project=['attributes.value'])
    group = orm.load_group(label=group_label)
    references = {mol_id: row.get('H298_cbs') for mol_id, row in records(group).items()}
    deltas = {}
    for mol_id, hof in query.iterall():  # a rerun that finished replaces an earlier value: ids are ascending
        if references.get(mol_id) is not None:
            deltas[mol_id] = hof - references[mol_id]
    return {mol_id: delta for mol_id, delta in deltas.items() if abs(delta) > threshold}


def conformer_energies(group_label: str, mol_id: str) -> dict:
    """Relative conformer energies (kcal/mol, lowest first) and PM7 heats of formation of one molecule."""
    query = _runs_query(group_label)
    query.add_filter('run', {'extras.mol_id': mol_id})
    query.append(orm.Dict, with_incoming='run', edge_filters={'label': 'output_parameters'},
                 project=['attributes.conformer_relative_energies_kcal_mol', 'attributes.pm7_heats_of_formation_kcal_mol'])
    rows = query.all()
    if not rows:
        return {}
    _, relative, heats = rows[-1]
    return {'relative_energies_kcal_mol': relative, 'pm7_heats_of_formation_kcal_mol': heats}


def dft_band_gaps(group_label: str) -> dict[str, float]:
    """``{mol_id: band gap (eV)}`` of every molecule of the campaign with a DFT result."""
    query = _runs_query(group_label)
    query.append(orm.Float, with_incoming='run', edge_filters={'label': 'dft__band_gap'}, project=['attributes.value'])
    return dict(query.iterall())
