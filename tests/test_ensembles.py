"""Ensemble tools (calcfunctions) on the real CREST ensembles of tests/fixtures/crest."""
from __future__ import annotations

import math
import pathlib

import numpy as np
import pytest
from aiida import orm

from aiida_grimperium import ensembles
from aiida_grimperium.chemistry import BOLTZMANN_KCAL_MOL_K, HARTREE_TO_KCAL_MOL
from aiida_grimperium.parsers.raw import crest as raw_crest
from aiida_grimperium.structures import conformer_values, make_ensemble

FIXTURES = pathlib.Path(__file__).parent / 'fixtures' / 'crest'


def crest_ensemble(run):
    symbols, frames, energies = raw_crest.read_frames(FIXTURES / run / 'crest_conformers.xyz')
    return make_ensemble(symbols, frames, energies, engine='crest'), np.array(frames), np.array(energies)


def rotation(angle):
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def test_boltzmann_weights_at_temperature():
    ensemble, _, energies = crest_ensemble('propanol')
    for temperature in (150.0, 298.15, 1000.0):
        weighted = ensembles.boltzmann_weights(ensemble, orm.Float(temperature))
        rel = (energies - energies.min()) * HARTREE_TO_KCAL_MOL
        expected = np.exp(-rel / (BOLTZMANN_KCAL_MOL_K * temperature))
        assert conformer_values(weighted, 'populations') == pytest.approx(expected / expected.sum(), rel=1e-10)
        assert weighted.base.attributes.get('temperature') == temperature
    assert weighted.creator.process_label == 'boltzmann_weights'  # provenance kept


def test_energy_window_against_crest_energies():
    ensemble, _, _ = crest_ensemble('propanol')
    relative = [float(line.split()[1]) for line in (FIXTURES / 'propanol' / 'crest.energies').read_text().splitlines()]
    for window in (0.2, 1.0, 1.5, 10.0):
        kept = ensembles.energy_window(ensemble, orm.Float(window))
        # CREST rounds to 0.001 kcal/mol: no conformer of the fixture sits that close to these windows
        assert kept.base.attributes.get('num_conformers') == sum(r <= window for r in relative)
        assert conformer_values(kept, 'populations').sum() == pytest.approx(1.0)


def test_deduplicate_rotated_permuted_and_mirrored_copies():
    """Rigidly moved copies, copies with the ends of butane swapped, and mirror images are duplicates."""
    ensemble, frames, energies = crest_ensemble('butane')
    anti, gauche = frames
    swapped = gauche[[3, 2, 1, 0, *range(4, 14)]]  # carbons numbered from the other end
    mirrored = gauche * [-1, 1, 1]
    copies = [anti @ rotation(0.7).T + 3.0, swapped @ rotation(2.0).T, mirrored]
    big = make_ensemble(list(ensemble.symbols), [anti, gauche, *copies],
                        [energies[0], energies[1], energies[0] + 1e-6, energies[1] + 1e-6, energies[1] + 2e-6])
    unique = ensembles.deduplicate(big, orm.Float(0.125))
    assert unique.base.attributes.get('num_conformers') == 2
    assert np.allclose(unique.get_positions(), frames)
    kept = ensembles.deduplicate(big, orm.Float(0.125), orm.Bool(False))
    assert kept.base.attributes.get('num_conformers') == 3  # the mirror image of gauche is its own conformer


def test_deduplicate_keeps_distinct_conformers():
    """The 7 propanol conformers CREST reports stay 7 at CREST's own RMSD threshold (0.125 Angstrom)."""
    ensemble, _, _ = crest_ensemble('propanol')
    assert ensembles.deduplicate(ensemble, orm.Float(0.125)).base.attributes.get('num_conformers') == 7


def test_top_n_and_chain():
    ensemble, frames, energies = crest_ensemble('ethanol')
    top = ensembles.top_n(ensemble, orm.Int(2))
    assert list(conformer_values(top, 'energies_hartree')) == sorted(energies)[:2]
    outputs = ensembles.refine_ensemble(ensemble, orm.Dict({'energy_window': 2.0, 'top_n': 5, 'temperature': 400.0}))
    refined = outputs['ensemble']
    assert refined.base.attributes.get('num_conformers') == 3  # 0, 1.306, 1.551 kcal/mol
    assert refined.base.attributes.get('temperature') == 400.0
    assert outputs['output_parameters']['lowest_energy_hartree'] == energies.min()
    assert np.allclose([s.position for s in outputs['lowest_structure'].sites], frames[np.argmin(energies)])
    assert sorted(refined.get_arraynames()) == sorted(ensemble.get_arraynames())


def test_embed_ensemble_from_smiles_and_structure():
    out = ensembles.embed_ensemble(orm.Dict({'num_conformers': 5, 'seed': 1}), smiles=orm.Str('CCCC'))
    assert out['ensemble'].get_positions().shape[1:] == (14, 3)
    again = ensembles.embed_ensemble(orm.Dict({'num_conformers': 3, 'seed': 1}), structure=out['structure'])
    assert list(again['ensemble'].symbols) == list(out['ensemble'].symbols)
    with pytest.raises(ValueError, match='cannot parse'):
        ensembles.embed_ensemble(orm.Dict({'num_conformers': 1}), smiles=orm.Str('C1CC'))


def test_an_ensemble_exports_with_verdi(tmp_path):
    """`verdi data core.trajectory export` works on an ensemble (each frame carries its box as a cell), and gives
    back every conformer's atoms and positions."""
    from click.testing import CliRunner
    from aiida.cmdline.commands.cmd_data.cmd_trajectory import trajectory_export

    frames = [[[0.0, 0.0, 0.0], [0.0, 0.0, 1.1]], [[0.0, 0.0, 0.0], [0.0, 1.2, 0.0]]]
    ensemble = make_ensemble(['C', 'O'], frames, [-1.0, -0.99]).store()
    output = tmp_path / 'ensemble.xsf'
    result = CliRunner().invoke(trajectory_export, ['--format', 'xsf', '-o', str(output), str(ensemble.pk)])
    assert result.exit_code == 0, result.output
    text = output.read_text()
    assert text.count('PRIMCOORD') == 2
    assert ' 1.20000' in text or ' 1.2000' in text
    cells = ensemble.get_cells()
    assert cells.shape == (2, 3, 3) and cells[0][2][2] == pytest.approx(1.1 + 2 * 10.0)


def test_conformer_energies_are_attributes_and_old_array_layout_still_reads():
    """The energies and populations are attributes (the QueryBuilder filters on them); an ensemble stored with
    them as arrays (grimperium 0.1 before they moved) is still read, and refines into the new layout."""
    frames = np.zeros((3, 2, 3))
    frames[:, 1, 0] = [0.74, 0.75, 0.76]
    energies = [-1.1, -1.0995, -1.0990]
    node = make_ensemble(['H', 'H'], frames, energies).store()
    assert sorted(node.get_arraynames()) == ['cells', 'positions', 'steps']
    found = orm.QueryBuilder().append(orm.TrajectoryData, filters={
        'id': node.pk, 'attributes.relative_energies_kcal_mol': {'shorter': 4}}, project=['attributes.populations'])
    populations, = found.one()
    assert sum(populations) == pytest.approx(1.0) and populations == sorted(populations, reverse=True)

    old = orm.TrajectoryData()
    old.set_trajectory(symbols=['H', 'H'], positions=frames, stepids=np.arange(3))
    old.set_array('energies_hartree', np.array(energies))
    old.set_array('relative_energies_kcal_mol', (np.array(energies) - min(energies)) * HARTREE_TO_KCAL_MOL)
    old.set_array('populations', np.array(populations))
    assert conformer_values(old, 'energies_hartree').tolist() == energies
    refined = ensembles.refine(old, energy_window=0.5)
    assert conformer_values(refined, 'relative_energies_kcal_mol').tolist() == pytest.approx([0.0, 0.5 * 0.6275], abs=1e-3)
    assert refined.base.attributes.get('energies_hartree') == energies[:2]
    assert conformer_values(make_ensemble(['H', 'H'], frames), 'populations') is None
