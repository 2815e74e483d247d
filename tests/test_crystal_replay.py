"""REPLAY tests: grimperium.crystal, its parser and CrystalBaseWorkChain through the real AiiDA engine.

CRYSTAL cannot be installed here; the code is ``tests/replay/replay-run``, which copies a recorded real CRYSTAL
run (``tests/fixtures/crystal/replay/<run>/main.out.stdout``, the unmodified main output) to stdout, i.e. into
``main.out``. It computes nothing. The generated INPUT is checked separately against the recorded inputs.
"""
from __future__ import annotations

import pathlib

import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_grimperium.basis_sets import get_basis_sets
from aiida_grimperium.chemistry import HARTREE_TO_EV
from aiida_grimperium.parsers.raw import crystal as raw
from aiida_grimperium.workchains.crystal import CrystalBaseWorkChain

REPLAY = pathlib.Path(__file__).parent / 'fixtures' / 'crystal' / 'replay'


def node_class():
    from aiida.plugins import CalculationFactory

    return CalculationFactory('grimperium.crystal')


@pytest.fixture
def mgo():
    h = 4.21 / 2
    structure = orm.StructureData(cell=[[0, h, h], [h, 0, h], [h, h, 0]])
    structure.append_atom(position=(0, 0, 0), symbols='Mg')
    structure.append_atom(position=(h, h, h), symbols='O')
    return structure


def calc_inputs(code, structure, **parameters):
    return {
        'code': code, 'structure': structure,
        'parameters': orm.Dict({'title': 'MgO bulk', 'shrink': [8, 8], **parameters}),
        'basis_sets': get_basis_sets('sto-3g', ['Mg', 'O']),
        'metadata': {'options': {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}}},
    }


def test_replay_calcjob_scf(replay_code, mgo):
    """Replay of the MgO SCF: parsed energy/gap equal the raw parse of the recorded file; INPUT is stored."""
    code = replay_code('grimperium.crystal', [REPLAY / 'mgo_sto3g_scf'], label='crystal-scf')
    results, node = run_get_node(node_class(), **calc_inputs(code, mgo))
    assert node.is_finished_ok, node.exit_status
    expected = raw.parse_path(REPLAY / 'mgo_sto3g_scf' / 'main.out.stdout')
    parameters = results['output_parameters'].get_dict()
    assert parameters['energy_hartree'] == pytest.approx(-271.21814374931, abs=1e-9)
    assert parameters['energy'] == pytest.approx(expected['energy_hartree'] * HARTREE_TO_EV, rel=1e-12)
    assert parameters['band_gap'] == pytest.approx(12.6917, abs=1e-4)
    assert 'output_structure' not in results          # an SCF does not change the structure
    d12 = node.base.repository.get_object_content('INPUT')
    assert 'CRYSTAL\n0 0 0\n225\n4.21000000\n' in d12 and 'SHRINK\n8 8\n' in d12


def test_replay_calcjob_optimisation(replay_code, mgo):
    code = replay_code('grimperium.crystal', [REPLAY / 'mgo_sto3g_opt'], label='crystal-opt')
    results, node = run_get_node(node_class(), **calc_inputs(code, mgo, optgeom={'type': 'FULLOPTG'}))
    assert node.is_finished_ok, node.exit_status
    assert results['output_parameters']['geometry_converged'] is True
    assert results['output_parameters']['energy_hartree'] == pytest.approx(-271.25962068879, abs=1e-9)
    structure = results['output_structure']
    h = 1.94218061274                                  # FINAL OPTIMIZED GEOMETRY lattice vectors of main.out
    assert structure.cell[0] == pytest.approx([0, h, h]) and structure.get_formula() == 'MgO'


def test_replay_calcjob_failure_exit_code(replay_code, mgo):
    code = replay_code('grimperium.crystal', [REPLAY / 'failed_scf'], label='crystal-failed')
    _, node = run_get_node(node_class(), **calc_inputs(code, mgo))
    assert node.exit_status == 411 and node.exit_message.startswith('CRYSTAL stopped because an SCF failed')


def test_replay_workchain_scf_handler(replay_code, mgo):
    """failed_scf (SCF FAILED) then the MgO SCF: the handler restarts once with FMIXING 60 and then succeeds."""
    code = replay_code('grimperium.crystal', [REPLAY / 'failed_scf', REPLAY / 'mgo_sto3g_scf'], label='crystal-wc')
    builder = CrystalBaseWorkChain.get_builder_from_protocol(
        code, mgo, protocol='fast', overrides={'crystal': {'parameters': {'hamiltonian': 'HF', 'fmixing': 30}}})
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_status
    calcs = sorted(node.called, key=lambda n: n.ctime)
    assert [c.exit_status for c in calcs] == [411, 0]
    assert calcs[0].inputs.parameters['fmixing'] == 30 and calcs[1].inputs.parameters['fmixing'] == 60
    assert 'FMIXING\n60\n' in calcs[1].base.repository.get_object_content('INPUT')
    assert results['output_parameters']['energy_hartree'] == pytest.approx(-271.21814374931, abs=1e-9)
    assert any('FMIXING 30 -> 60' in log.message for log in orm.Log.collection.get_logs_for(node))


def test_replay_workchain_geometry_handler(replay_code, mgo, tmp_path):
    """An OPTGEOM that ended 'OPT END - FAILED' (the recorded opt output with that one line edited: a mutation)
    then the recorded converged opt: the restart starts from the first run's last geometry."""
    failed = tmp_path / 'opt_failed'
    failed.mkdir()
    text = (REPLAY / 'mgo_sto3g_opt' / 'main.out.stdout').read_text()
    (failed / 'main.out.stdout').write_text(text.replace('OPT END - CONVERGED', 'OPT END - FAILED'))
    code = replay_code('grimperium.crystal', [failed, REPLAY / 'mgo_sto3g_opt'], label='crystal-geo')
    builder = CrystalBaseWorkChain.get_builder_from_protocol(
        code, mgo, relax=True, overrides={'crystal': {'parameters': {'hamiltonian': 'HF'}}})
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_status
    calcs = sorted(node.called, key=lambda n: n.ctime)
    assert [c.exit_status for c in calcs] == [500, 0]
    assert calcs[1].inputs.structure.uuid == calcs[0].outputs.output_structure.uuid
    assert 'OPTGEOM\nFULLOPTG\n' in calcs[1].base.repository.get_object_content('INPUT')
    assert results['output_structure'].cell[0][1] == pytest.approx(1.94218061274)
