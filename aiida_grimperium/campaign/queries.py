"""QueryBuilder recipes for the questions asked most often of a campaign (shown in docs/campaigns.md).

Each recipe is one projection: campaign group → its controllers → their batches → the per-molecule nodes the
batches return (``summaries.<key>``, ``ensembles.<key>``, ``pm7.<key>``, ``structures.<key>``), each of which
carries the attribute ``mol_id``. When a molecule ran more than once, its latest run wins (batches are read in
pk order). No node is loaded unless asked for.
"""
from __future__ import annotations

from aiida import orm

from .readers import record_rows


def batch_outputs(group_label: str, namespace: str, node_class=orm.Dict, project=('attributes',),
                  mol_id: str | None = None) -> orm.QueryBuilder:
    """A query of the per-molecule outputs ``namespace`` (``summaries``, ``ensembles``, ``pm7``, ``structures``)
    of the campaign's batches; rows are ``(batch pk, *project)``."""
    from ..workchains.batch import ConformerBatchWorkChain
    from ..workchains.campaign import CampaignWorkChain

    query = orm.QueryBuilder()
    query.append(orm.Group, filters={'label': group_label}, tag='group')
    query.append(CampaignWorkChain, with_group='group', tag='controller')
    query.append(ConformerBatchWorkChain, with_incoming='controller', tag='batch', project=['id'])
    filters = {'attributes.mol_id': mol_id} if mol_id is not None else {}
    query.append(node_class, with_incoming='batch', edge_filters={'label': {'like': f'{namespace}__%'}},
                 filters=filters, project=list(project))
    query.order_by({'batch': {'id': 'asc'}})
    return query


def latest_summaries(group_label: str) -> dict[str, dict]:
    """``{mol_id: summary}`` of every molecule's latest run."""
    return {summary['mol_id']: summary for _, summary in batch_outputs(group_label, 'summaries').iterall()}


def large_deltas(group_label: str, threshold: float = 5.0) -> dict[str, float]:
    """``{mol_id: delta_1}`` of every molecule whose |PM7 most stable − reference| exceeds ``threshold`` kcal/mol."""
    rows, _ = record_rows(orm.load_group(label=group_label))
    deltas = {}
    for mol_id, summary in latest_summaries(group_label).items():
        reference = rows.get(mol_id, ({}, None))[0].get('H298_cbs')
        if reference is not None and summary.get('most_stable_hof') is not None:
            deltas[mol_id] = summary['most_stable_hof'] - reference
    return {mol_id: delta for mol_id, delta in deltas.items() if abs(delta) > threshold}


def conformer_energies(group_label: str, mol_id: str) -> dict:
    """Relative conformer energies (kcal/mol, lowest first) and PM7 heats of formation of one molecule."""
    rows = batch_outputs(group_label, 'summaries', mol_id=mol_id).all()
    if not rows:
        return {}
    summary = rows[-1][1]
    return {'relative_energies_kcal_mol': summary.get('conformer_relative_energies_kcal_mol'),
            'pm7_heats_of_formation_kcal_mol': summary.get('pm7_heats_of_formation_kcal_mol')}


def dft_band_gaps(group_label: str) -> dict[str, float]:
    """``{mol_id: band gap (eV)}`` of every molecule of the campaign with a DFT band gap."""
    return {mol_id: s['dft_band_gap_ev'] for mol_id, s in latest_summaries(group_label).items() if 'dft_band_gap_ev' in s}


def molecule_nodes(group_label: str, mol_id: str) -> dict[str, orm.Node]:
    """The nodes of one molecule's latest run: ``summary``, ``ensemble``, ``pm7`` and ``structure`` (as far as it got)."""
    kinds = {'summary': ('summaries', orm.Dict), 'ensemble': ('ensembles', orm.TrajectoryData),
             'pm7': ('pm7', orm.Dict), 'structure': ('structures', orm.StructureData)}
    nodes = {}
    for name, (namespace, node_class) in kinds.items():
        rows = batch_outputs(group_label, namespace, node_class, project=('*',), mol_id=mol_id).all()
        if rows:
            nodes[name] = rows[-1][1]
    return nodes
