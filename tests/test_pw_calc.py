"""The grimperium.pw CalcJob and parser with the real pw.x 6.7 (Debian), serial, small and fast systems."""
from __future__ import annotations

import re

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_grimperium.calculations.pw import PwCalculation
from aiida_grimperium.pseudos import get_pseudos
from aiida_grimperium.structures import molecule_structure

RY_TO_EV = 13.605693122994


def si_structure(displace: float = 0.0) -> orm.StructureData:
    a = 2.715
    structure = orm.StructureData(cell=[[0, a, a], [a, 0, a], [a, a, 0]])
    structure.append_atom(position=(0.0, 0.0, 0.0), symbols='Si')
    structure.append_atom(position=(1.3575 + displace, 1.3575, 1.3575), symbols='Si')
    return structure


def h2o_structure() -> orm.StructureData:
    structure = molecule_structure(['O', 'H', 'H'], [[0.0, 0.0, 0.0], [0.757, 0.586, 0.0], [-0.757, 0.586, 0.0]])
    # a small box keeps the test fast; Martyna-Tuckerman needs the box twice the molecule's extent, which 8 A is
    structure.reset_cell([[8.0, 0, 0], [0, 8.0, 0], [0, 0, 8.0]])
    structure.reset_sites_positions([[4.0, 4.0, 4.0], [4.757, 4.586, 4.0], [3.243, 4.586, 4.0]])
    return structure


def mesh(n: int) -> orm.KpointsData:
    kpoints = orm.KpointsData()
    kpoints.set_kpoints_mesh([n, n, n])
    return kpoints


def si_inputs(code, calculation='scf', **electrons):
    structure = si_structure(0.04 if calculation != 'scf' else 0.0)
    parameters = {
        'CONTROL': {'calculation': calculation, 'tprnfor': True, 'tstress': True},
        'SYSTEM': {'ecutwfc': 16.0, 'nbnd': 8},
        'ELECTRONS': {'conv_thr': 1e-8, **electrons},
    }
    return {
        'code': code, 'structure': structure, 'parameters': orm.Dict(parameters), 'kpoints': mesh(4),
        'pseudos': get_pseudos(structure, 'pz'),
        'metadata': {'options': {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}}},
    }


def printed_energies(node) -> list[float]:
    """The '!    total energy' lines of the retrieved aiida.out, read directly (not by the parser)."""
    text = node.outputs.retrieved.base.repository.get_object_content('aiida.out')
    return [float(x) for x in re.findall(r'^!\s+total energy\s+=\s+(\S+) Ry', text, re.M)]


@pytest.fixture
def pw_code(real_code):
    return real_code('pw.x', 'grimperium.pw')


def test_si_scf(pw_code):
    results, node = run_get_node(PwCalculation, **si_inputs(pw_code))
    assert node.is_finished_ok, node.exit_status
    params = results['output_parameters']
    energy_ry = printed_energies(node)[-1]
    assert params['energy_ry'] == energy_ry
    assert params['energy'] == pytest.approx(energy_ry * RY_TO_EV, abs=1e-8)
    assert params['scf_converged'] is True
    assert params['band_gap'] == pytest.approx(params['lumo'] - params['homo'])
    assert 0.3 < params['band_gap'] < 1.0  # Si at this k-mesh and cut-off, LDA
    assert 'output_structure' not in results
    assert results['output_trajectory'].get_array('energies_ry').tolist() == [energy_ry]


def test_si_relax_and_vc_relax(pw_code):
    results, node = run_get_node(PwCalculation, **si_inputs(pw_code, 'relax'))
    assert node.is_finished_ok, node.exit_status
    assert results['output_parameters']['energy_ry'] == printed_energies(node)[-1]
    assert results['output_parameters']['ionic_converged'] is True
    relaxed = results['output_structure']
    assert np.allclose(relaxed.cell, node.inputs.structure.cell)  # relax: the cell is kept
    assert not np.allclose(relaxed.sites[1].position, node.inputs.structure.sites[1].position)

    results, node = run_get_node(PwCalculation, **si_inputs(pw_code, 'vc-relax'))
    assert node.is_finished_ok, node.exit_status
    text = node.outputs.retrieved.base.repository.get_object_content('aiida.out')
    final_block = text.split('Begin final coordinates')[1].split('End final coordinates')[0]
    printed_cell = [[float(x) for x in line.split()] for line in final_block.split('CELL_PARAMETERS (angstrom)')[1].strip().splitlines()[:3]]
    assert np.allclose(results['output_structure'].cell, printed_cell, atol=1e-9)
    assert results['output_parameters']['energy_ry'] == printed_energies(node)[-1]
    trajectory = results['output_trajectory']
    assert trajectory.get_array('energies_ry').tolist() == printed_energies(node)
    assert trajectory.get_array('cells').shape == (len(printed_energies(node)), 3, 3)


def test_h2o_in_a_box_gamma(pw_code):
    structure = h2o_structure()
    parameters = {'CONTROL': {'tprnfor': True}, 'SYSTEM': {'ecutwfc': 25.0, 'nbnd': 6}, 'ELECTRONS': {'conv_thr': 1e-7}}
    results, node = run_get_node(
        PwCalculation, code=pw_code, structure=structure, parameters=orm.Dict(parameters),
        pseudos=get_pseudos(structure, 'pz'),
    )
    assert node.is_finished_ok, node.exit_status
    text = node.base.repository.get_object_content('aiida.in')
    assert 'K_POINTS gamma' in text and "assume_isolated = 'mt'" in text
    params = results['output_parameters']
    assert params['energy_ry'] == printed_energies(node)[-1]
    assert params['lumo'] - params['homo'] == pytest.approx(params['band_gap'])
    assert params['band_gap'] > 4.0


def test_scf_not_converged_exit_code(pw_code):
    _, node = run_get_node(PwCalculation, **si_inputs(pw_code, electron_maxstep=1))
    assert node.exit_status == 410
    assert node.outputs.output_parameters['scf_converged'] is False


@pytest.mark.parametrize(('parameters', 'message'), [
    ({'SYSTEM': {'ecutwfx': 16}}, 'did you mean `ecutwfc`'),
    ({'SYSTEMS': {'ecutwfc': 16}}, 'unknown namelist'),
    ({'CONTROL': {'outdir': '/tmp'}}, 'set by the plugin'),
    ({'CONTROL': {'calculation': 'relaxx'}}, 'unknown calculation'),
])
def test_parameters_validated(pw_code, parameters, message):
    inputs = si_inputs(pw_code)
    inputs['parameters'] = orm.Dict(parameters)
    with pytest.raises(ValueError, match=re.escape(message)):
        run_get_node(PwCalculation, **inputs)


def test_missing_pseudo_and_kpoints_refused(pw_code):
    inputs = si_inputs(pw_code)
    inputs.pop('kpoints')
    with pytest.raises(ValueError, match='kpoints'):
        run_get_node(PwCalculation, **inputs)
