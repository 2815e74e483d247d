"""PwBaseWorkChain handlers on real pw.x failures, the protocols, and the DftWorkChain with pw.x."""
from __future__ import annotations

import copy
import re

import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_grimperium.workchains.dft import DftWorkChain
from aiida_grimperium.workchains.pw import PwBaseWorkChain
from test_pw_calc import h2o_structure, printed_energies, si_inputs, si_structure


@pytest.fixture
def pw_code(real_code):
    return real_code('pw.x', 'grimperium.pw')


def reports(node) -> str:
    from aiida.cmdline.utils.common import get_workchain_report

    return get_workchain_report(node, 'REPORT')


def test_scf_failure_recovered(pw_code):
    """A real SCF failure (electron_maxstep 3, Si needs 7) → 410 → lower mixing_beta, restart from density."""
    builder = PwBaseWorkChain.get_builder()
    builder.pw = si_inputs(pw_code, electron_maxstep=3)
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_status
    calcs = sorted(node.called, key=lambda n: n.ctime)
    assert [c.exit_status for c in calcs] == [410, 0]
    second = calcs[1].inputs.parameters.get_dict()['ELECTRONS']
    assert second['mixing_beta'] == pytest.approx(0.7 * 0.7) and second['startingpot'] == 'file'
    assert calcs[1].inputs.parent_folder.pk == calcs[0].outputs.remote_folder.pk
    assert results['output_parameters']['energy_ry'] == printed_energies(calcs[1])[-1]
    assert 'SCF not converged: mixing_beta 0.7 -> 0.49' in reports(node)


def test_walltime_restart_from_parent_folder(pw_code):
    """A real max_seconds interruption of a relax → 400 → restart_mode restart from the parent folder.

    A relax, not a vc-relax: pw.x 6.7 cannot restart a vc-relax interrupted in its final SCF (new G-vectors;
    ``davcio: error reading file aiida.wfc1``), seen by hand on this machine.
    """
    builder = PwBaseWorkChain.get_builder()
    inputs = si_inputs(pw_code, 'relax')
    parameters = inputs['parameters'].get_dict()
    parameters['CONTROL']['max_seconds'] = 1
    parameters['SYSTEM']['ecutwfc'] = 30.0  # long enough (a few s) to be interrupted at 1 s
    inputs['parameters'] = orm.Dict(parameters)
    builder.pw = inputs
    builder.max_iterations = orm.Int(8)
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_status
    calcs = sorted(node.called, key=lambda n: n.ctime)
    assert calcs[0].exit_status == 400 and calcs[-1].exit_status == 0
    for previous, calc in zip(calcs, calcs[1:]):
        assert calc.inputs.parameters['CONTROL']['restart_mode'] == 'restart'
        assert calc.inputs.parent_folder.pk == previous.outputs.remote_folder.pk
    text = calcs[1].outputs.retrieved.base.repository.get_object_content('aiida.out')
    # pw.x says how it restarted; which line depends on where max_seconds stopped the previous run
    restart_lines = ('Calculation restarted from', 'Atomic positions and unit cell read from directory',
                     'The initial density is read from file')
    assert any(line in text for line in restart_lines), text[:3000]
    assert 'ran out of walltime: restarting from its folder' in reports(node)
    assert results['output_parameters']['ionic_converged'] is True
    assert 'output_structure' in results


def test_protocol_builder_si(pw_code):
    overrides = {'parameters': {'SYSTEM': {'ecutwfc': 22.0}}}
    before = copy.deepcopy(overrides)
    builder = PwBaseWorkChain.get_builder_from_protocol(pw_code, si_structure(), protocol='fast', overrides=overrides)
    assert overrides == before  # not mutated
    parameters = builder.pw.parameters.get_dict()
    assert parameters['SYSTEM']['ecutwfc'] == 22.0 and parameters['SYSTEM']['ecutrho'] == 160.0
    assert parameters['SYSTEM']['occupations'] == 'smearing' and parameters['SYSTEM']['smearing'] == 'cold'
    assert parameters['ELECTRONS']['conv_thr'] == pytest.approx(2 * 4.0e-10)
    assert parameters['CONTROL']['etot_conv_thr'] == pytest.approx(2 * 1.0e-4)
    assert builder.pw.kpoints.get_kpoints_mesh()[0] == [5, 5, 5]
    assert builder.pw.pseudos['Si'].filename == 'Si.pbe-rrkj.UPF'
    stringent = PwBaseWorkChain.get_builder_from_protocol(pw_code, si_structure(), protocol='stringent')
    assert stringent.pw.parameters['SYSTEM']['ecutwfc'] == 45.0
    assert stringent.pw.kpoints.get_kpoints_mesh()[0][0] > 5
    # a misspelled override is warned about by the protocol merge, then refused by the CalcJob's validator
    with pytest.warns(UserWarning, match='ecutwfx'), pytest.raises(ValueError, match='did you mean `ecutwfc`'):
        PwBaseWorkChain.get_builder_from_protocol(pw_code, si_structure(), overrides={'parameters': {'SYSTEM': {'ecutwfx': 1}}})


def test_protocol_builder_molecule(pw_code):
    builder = PwBaseWorkChain.get_builder_from_protocol(pw_code, h2o_structure())
    parameters = builder.pw.parameters.get_dict()
    assert 'kpoints' not in builder.pw  # Gamma
    assert parameters['SYSTEM']['occupations'] == 'fixed'
    assert parameters['SYSTEM']['nbnd'] == 4 + 4  # 8 valence electrons / 2 + 4 empty bands
    assert 'tstress' not in parameters['CONTROL']
    assert parameters['SYSTEM']['ecutwfc'] == 30.0
    assert parameters['ELECTRONS']['conv_thr'] == pytest.approx(3 * 2.0e-10)


def test_dft_workchain_with_pw(pw_code):
    """The common DFT interface dispatches on the code's plugin and returns energy and gap in eV."""
    overrides = {'kpoints_distance': 0.6, 'parameters': {'SYSTEM': {'ecutwfc': 16.0, 'ecutrho': 64.0}}}
    results, node = run_get_node(
        DftWorkChain, code=pw_code, structure=si_structure(), protocol=orm.Str('fast'), overrides=orm.Dict(overrides),
    )
    assert node.is_finished_ok, node.exit_status
    base = node.called[0] if node.called[0].process_label == 'PwBaseWorkChain' else node.called[1]
    calc = [c for c in base.called if c.process_label == 'PwCalculation'][-1]
    assert results['energy'].value == pytest.approx(printed_energies(calc)[-1] * 13.605693122994, abs=1e-8)
    assert results['band_gap'].value == results['output_parameters']['band_gap']
    assert results['structure'].pk == node.inputs.structure.pk  # SCF: the input structure


def test_dft_workchain_refuses_other_codes(aiida_localhost):
    code = orm.InstalledCode(computer=aiida_localhost, filepath_executable='/bin/true', default_calc_job_plugin='core.arithmetic.add')
    with pytest.raises(ValueError, match=re.escape('grimperium.pw')):
        run_get_node(DftWorkChain, code=code.store(), structure=si_structure())
