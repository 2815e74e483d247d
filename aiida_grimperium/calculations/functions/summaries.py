"""The per-molecule summary (the row a campaign export reads), made by a calcfunction from the jobs' outputs.

A workchain knows how its steps went (statuses, times, error messages: ``info``); the numbers come from the
jobs' own output nodes (the conformer search's and MOPAC's ``output_parameters``, the DFT energy). The
calcfunction joins them, so that the summary and ``most_stable_hof`` have a creator whose inputs are those
nodes: the graph says where every value of the export came from.

:data:`SUMMARY_KEYS` is the one list of the summary's keys; the export reads these.
"""
from __future__ import annotations

import math

from aiida import orm
from aiida.engine import calcfunction

from ...ensembles import boltzmann_average

#: Every key a summary may have (``None`` values are left out of the node).
SUMMARY_KEYS = (
    'mol_id', 'conformer_search_status', 'num_conformers', 'num_conformers_generated', 'conformer_search_time_s',
    'conformer_relative_energies_kcal_mol', 'mopac_status', 'mopac_time_s', 'pm7_heats_of_formation_kcal_mol',
    'most_stable_hof', 'boltzmann_hof', 'error_message', 'engine', 'top_n', 'dft_code', 'dft_status',
    'dft_energy_ev', 'dft_band_gap_ev', 'dft_time_s',
    # the shell step (workchains/shell.py): OK/FAILED, why it failed, the ShellJob's pk, {file name: pk} kept
    'shell_status', 'shell_error', 'shell_pk', 'shell_outputs',
)
#: Temperature of the Boltzmann-weighted PM7 heat of formation (K).
BOLTZMANN_TEMPERATURE = 298.15


def molecule_summary(info: dict, search: dict | None = None, pm7: dict | None = None,
                     dft: dict | None = None) -> dict:
    """The summary of one molecule: ``info`` (statuses, times, messages the workchain recorded), then the values
    of the search's summary (``search``), MOPAC's ``output_parameters`` (``pm7``) and the DFT results (``dft``:
    ``energy``, ``band_gap`` in eV)."""
    summary = {key: info.get(key) for key in SUMMARY_KEYS}
    if search:
        summary['num_conformers'] = search.get('num_conformers', summary['num_conformers'])
        summary['num_conformers_generated'] = search.get('num_input_conformers', summary['num_conformers_generated'])
        if search.get('relative_energies_kcal_mol') is not None:
            summary['conformer_relative_energies_kcal_mol'] = search['relative_energies_kcal_mol']
    if pm7:
        heats = [h for h in pm7.get('heats_of_formation_kcal_mol') or [] if h is not None and math.isfinite(h)]
        summary['pm7_heats_of_formation_kcal_mol'] = sorted(heats)
        if summary.get('mopac_status') == 'OK' and heats:
            summary['most_stable_hof'] = pm7.get('lowest_heat_of_formation_kcal_mol', min(heats))
            summary['boltzmann_hof'] = boltzmann_average(heats, BOLTZMANN_TEMPERATURE)
    if dft:
        summary['dft_energy_ev'] = dft.get('energy')
        summary['dft_band_gap_ev'] = dft.get('band_gap')
    return {key: value for key, value in summary.items() if value is not None}


def _dft_values(results: dict, prefix: str = 'dft_') -> dict:
    return {name[len(prefix):]: node.value for name, node in results.items() if name.startswith(prefix)}


@calcfunction
def summarize_molecule(info: orm.Dict, **results: orm.Data) -> dict:
    """One molecule's ``output_parameters`` (and ``most_stable_hof`` when MOPAC succeeded).

    ``results``: ``search`` and ``pm7`` (``Dict``), ``dft_energy`` and ``dft_band_gap`` (``Float``), as far as
    the molecule got.
    """
    search = results['search'].get_dict() if 'search' in results else None
    pm7 = results['pm7'].get_dict() if 'pm7' in results else None
    summary = molecule_summary(info.get_dict(), search, pm7, _dft_values(results))
    outputs = {'output_parameters': orm.Dict(summary)}
    if 'most_stable_hof' in summary:
        outputs['most_stable_hof'] = orm.Float(summary['most_stable_hof'])
    return outputs


@calcfunction
def summarize_batch(info: orm.Dict, **results: orm.Data) -> dict:
    """The summaries of a batch's molecules, one ``Dict`` each, keyed as the batch keys them (``m0001``...).

    ``info``: ``{key: {mol_id, statuses, times, error_message...}}``; ``results``: ``search`` (the conformer
    job's ``output_parameters``, with the summary of each molecule under ``molecules``) or ``search_<key>`` (one
    search per molecule), ``pm7`` (the MOPAC job's ``output_parameters``, each molecule's heats of formation
    under ``molecules``), ``dft_energy_<key>`` and ``dft_band_gap_<key>`` (``Float``). Two or three inputs for
    the whole batch: AiiDA validates every link with queries of its own.
    """
    searches = results['search'].get_dict().get('molecules', {}) if 'search' in results else {}
    for name, node in results.items():
        if name.startswith('search_'):
            searches[name[len('search_'):]] = node.get_dict()
    heats = results['pm7'].get_dict().get('molecules', {}) if 'pm7' in results else {}
    outputs = {}
    for key, molecule in info.get_dict().items():
        pm7 = heats.get(key)
        dft = {name: results[f'dft_{name}_{key}'].value for name in ('energy', 'band_gap') if f'dft_{name}_{key}' in results}
        outputs[key] = orm.Dict(molecule_summary(molecule, searches.get(key), pm7, dft))
    return outputs
