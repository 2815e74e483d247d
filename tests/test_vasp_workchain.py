"""REPLAY of recorded real VASP runs through the real engine: CalcJob, retrieval, parser, restart handlers.

VASP cannot be installed here: ``replay_code`` copies the files of recorded runs (tests/fixtures/vasp/replay,
unmodified copies of the fixtures) into the working directory; it computes nothing. POTCARs are placeholders.
"""
from __future__ import annotations

import pathlib
import re

import pytest
from aiida import engine, orm
from aiida.plugins import CalculationFactory, WorkflowFactory
from pymatgen.io.vasp import Poscar

FIXTURES = pathlib.Path(__file__).parent / 'fixtures' / 'vasp'
REPLAY = FIXTURES / 'replay'
LIBRARY = FIXTURES / 'potcar_library'
VaspCalculation = CalculationFactory('grimperium.vasp')
VaspBaseWorkChain = WorkflowFactory('grimperium.vasp.base')


def sigma0_from_outcar(run: str) -> float:
    return float(re.findall(r'energy\(sigma->0\) =\s+(\S+)', (REPLAY / run / 'OUTCAR').read_text())[-1])


def si_structure(run='converged') -> orm.StructureData:
    return orm.StructureData(pymatgen=Poscar.from_file(FIXTURES / run / 'POSCAR').structure)


def builder_for(code, parameters):
    kpoints = orm.KpointsData()
    kpoints.set_kpoints_mesh([4, 4, 4])
    builder = VaspBaseWorkChain.get_builder()
    builder.vasp.code = code
    builder.vasp.structure = si_structure()
    builder.vasp.parameters = orm.Dict(parameters)
    builder.vasp.kpoints = kpoints
    builder.vasp.potcar_library = orm.Str(str(LIBRARY))
    builder.vasp.metadata.options.withmpi = False  # the replay script is not an MPI program
    return builder


RELAX = {'ALGO': 'Fast', 'EDIFF': 1e-6, 'ENCUT': 300, 'IBRION': 1, 'ISIF': 2, 'ISMEAR': 0, 'SIGMA': 0.05, 'NSW': 5}


def test_replay_calcjob_si_simple(replay_code):
    """Replay of the si-simple run through VaspCalculation and VaspParser."""
    code = replay_code('grimperium.vasp', [REPLAY / 'si-simple'], label='si')
    builder = VaspCalculation.get_builder()
    builder.code = code
    builder.structure = orm.StructureData(pymatgen=Poscar.from_file(FIXTURES / 'si-simple' / 'inputs' / 'POSCAR').structure)
    builder.parameters = orm.Dict({'ENCUT': 200, 'EDIFF': 1e-4, 'IALGO': 38, 'ISMEAR': -5, 'PREC': 'Normal', 'SIGMA': 0.1})
    kpoints = orm.KpointsData()
    kpoints.set_kpoints_mesh([8, 8, 8])
    builder.kpoints = kpoints
    builder.potcar_library = orm.Str(str(LIBRARY))
    builder.metadata.options.withmpi = False
    results, node = engine.run_get_node(builder)
    assert node.exit_status == 0
    parameters = results['output_parameters'].get_dict()
    assert parameters['energy'] == pytest.approx(sigma0_from_outcar('si-simple'), abs=1e-8)
    assert parameters['band_gap'] == pytest.approx(0.6195, abs=1e-4)  # 6.4688 - 5.8493 in the XML eigenvalues
    assert results['output_arrays'].get_array('forces').shape == (2, 3)
    stored = node.base.repository.list_object_names()
    assert 'POTCAR' not in stored and 'potcar_spec.json' in stored  # licensed file kept out of the repository
    assert 'output_structure' not in results  # an SCF: the ions did not move


def test_replay_electronic_restart(replay_code):
    """elec-unconverged (NELM=8 reached) then converged: ALGO Fast -> Normal, then success."""
    code = replay_code('grimperium.vasp', [REPLAY / 'elec-unconverged', REPLAY / 'converged'], label='elec')
    results, node = engine.run_get_node(builder_for(code, {**RELAX, 'NSW': -1, 'NELM': 8}))
    assert node.is_finished_ok, node.exit_status
    calcs = sorted(node.called, key=lambda n: n.ctime)
    assert [c.exit_status for c in calcs] == [410, 0]
    assert calcs[0].inputs.parameters['ALGO'] == 'Fast' and calcs[1].inputs.parameters['ALGO'] == 'Normal'
    assert calcs[1].inputs.parent_folder.uuid == calcs[0].outputs.remote_folder.uuid
    assert results['output_parameters']['energy'] == pytest.approx(sigma0_from_outcar('converged'), abs=1e-8)
    assert any('electronic loop not converged' in r.message for r in orm.Log.collection.get_logs_for(node))


def test_replay_ionic_restart_continues_from_contcar(replay_code):
    """ionic-unconverged (NSW=5 reached) then converged: the second run starts from the first one's CONTCAR."""
    code = replay_code('grimperium.vasp', [REPLAY / 'ionic-unconverged', REPLAY / 'converged'], label='ionic')
    results, node = engine.run_get_node(builder_for(code, RELAX))
    assert node.is_finished_ok, node.exit_status
    calcs = sorted(node.called, key=lambda n: n.ctime)
    assert [c.exit_status for c in calcs] == [500, 0]
    contcar = Poscar.from_file(REPLAY / 'ionic-unconverged' / 'CONTCAR').structure
    restarted = calcs[1].inputs.structure.get_pymatgen_structure()
    assert restarted.frac_coords == pytest.approx(contcar.frac_coords, abs=1e-6)
    assert restarted.lattice.matrix == pytest.approx(contcar.lattice.matrix, abs=1e-6)
    assert calcs[1].inputs.parent_folder.uuid == calcs[0].outputs.remote_folder.uuid
    assert results['output_parameters']['energy'] == pytest.approx(sigma0_from_outcar('converged'), abs=1e-8)


def test_replay_unfinished_restart(replay_code):
    """unfinished (killed mid-SCF) then converged: 312 is handled by rerunning from the run folder."""
    code = replay_code('grimperium.vasp', [REPLAY / 'unfinished', REPLAY / 'converged'], label='unfinished')
    results, node = engine.run_get_node(builder_for(code, {**RELAX, 'NSW': 0, 'IBRION': -1}))
    assert node.is_finished_ok, node.exit_status
    calcs = sorted(node.called, key=lambda n: n.ctime)
    assert [c.exit_status for c in calcs] == [312, 0]
    assert results['output_parameters']['energy'] == pytest.approx(sigma0_from_outcar('converged'), abs=1e-8)


@pytest.mark.parametrize('protocol', ['fast', 'balanced', 'stringent'])
def test_protocol_builders(aiida_localhost, protocol):
    code = orm.InstalledCode(label=f'vasp-{protocol}', computer=aiida_localhost, filepath_executable='/bin/true',
                             default_calc_job_plugin='grimperium.vasp').store()
    builder = VaspBaseWorkChain.get_builder_from_protocol(code, si_structure(), protocol, potcar_library=str(LIBRARY),
                                                         relax=True, overrides={'vasp': {'parameters': {'ENCUT': 450}}})
    parameters = builder.vasp.parameters.get_dict()
    assert parameters['ENCUT'] == 450 and parameters['IBRION'] == 2 and parameters['NSW'] > 0
    from aiida_grimperium.calculations.vasp import validate_incar

    assert validate_incar(parameters) is None
    spacings = {'fast': 0.5, 'balanced': 0.25, 'stringent': 0.15}
    assert builder.vasp.kpoints_spacing.value == spacings[protocol]
    with pytest.raises(ValueError, match='potcar_library'):
        VaspBaseWorkChain.get_builder_from_protocol(code, si_structure(), protocol)
