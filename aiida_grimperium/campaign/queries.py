"""QueryBuilder recipes for the questions asked most often of a campaign (shown in docs/campaigns.md).

Each recipe is one projection: campaign group → its controllers → their batches → the job (or calcfunction) a
batch called → the per-molecule nodes it made, each with the attribute ``mol_id``: ``summaries`` (the
``summarize`` calcfunction's outputs), ``ensembles`` (the xtb job's ``ensembles.<key>``) and ``pm7`` (the MOPAC
job's ``results.<key>``, with the PM7 geometry of the most stable conformer as ``lowest_structure``). When a molecule ran more than
once, its latest run wins (batches are read in pk order). No node is loaded unless asked for.
"""
from __future__ import annotations

from aiida import orm

from .layout import BATCH_PROCESS_TYPE, batches_query
from .readers import record_rows

#: What a batch called (its call link label), the node class and the output link labels of each kind.
KINDS = {
    'summaries': ('summarize', orm.Dict, '%'),
    'ensembles': ('conformers', orm.TrajectoryData, 'ensembles__%'),
    'pm7': ('pm7', orm.Dict, 'results__%'),
}


def batch_outputs(group_label: str | None, kind: str, project=('attributes',), mol_id: str | None = None,
                  batch_pks: list[int] | None = None) -> orm.QueryBuilder:
    """A query of the per-molecule nodes of ``kind`` (:data:`KINDS`) of the campaign's batches (or of the batches
    ``batch_pks``); rows are ``(batch pk, *project)``."""
    call_label, node_class, output_labels = KINDS[kind]
    if batch_pks is None:
        query = batches_query({'label': group_label})
    else:
        query = orm.QueryBuilder().append(orm.WorkChainNode, tag='batch', project=['id'], filters={
            'id': {'in': batch_pks}, 'process_type': BATCH_PROCESS_TYPE})
    query.append(orm.ProcessNode, with_incoming='batch', edge_filters={'label': call_label}, tag='job')
    filters = {'attributes.mol_id': mol_id} if mol_id is not None else {}
    query.append(node_class, with_incoming='job', edge_filters={'label': {'like': output_labels}},
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
    """The nodes of one molecule's latest run: ``summary``, ``ensemble`` and ``pm7`` (as far as it got)."""
    kinds = {'summary': 'summaries', 'ensemble': 'ensembles', 'pm7': 'pm7'}
    nodes = {}
    for name, kind in kinds.items():
        rows = batch_outputs(group_label, kind, project=('*',), mol_id=mol_id).all()
        if rows:
            nodes[name] = rows[-1][1]
    return nodes
