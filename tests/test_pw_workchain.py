"""grimperium.pw.base: aiida-quantumespresso's restart handlers on real pw.x failures, and the protocols."""
from __future__ import annotations

import copy

import pytest
from aiida import orm
from aiida.engine import run_get_node
from qe_tools import CONSTANTS

from aiida_grimperium.structures import molecule_structure
from aiida_grimperium.workchains.pw import PwBaseWorkChain
from test_pw_calc import printed_energies, printed_levels, si_inputs, si_structure, stdout_of


@pytest.fixture
def pw_code(real_code):
    return real_code('pw.x', 'grimperium.pw')


def reports(node) -> str:
    from aiida.cmdline.utils.common import get_workchain_report

    return get_workchain_report(node, 'REPORT')


def water() -> orm.StructureData:
    return molecule_structure(['O', 'H', 'H'], [[0, 0, 0.117], [0, 0.755, -0.471], [0, -0.755, -0.471]])


def run_base(pw_code, inputs, **extra):
    builder = PwBaseWorkChain.get_builder()
    kpoints = inputs.pop('kpoints')
    builder.pw = inputs
    builder.kpoints = kpoints
    for key, value in extra.items():
        builder[key] = value
    return run_get_node(builder)


def test_scf_failure_recovered(pw_code):
    """A real SCF failure (electron_maxstep 3, Si needs 7) → 410 → lower mixing_beta, full restart."""
    results, node = run_base(pw_code, si_inputs(pw_code, electron_maxstep=3))
    assert node.is_finished_ok, node.exit_status
    calcs = sorted(node.called, key=lambda n: n.ctime)
    calcs = [c for c in calcs if c.process_label == 'PwCalculation']
    assert [c.exit_status for c in calcs][0] == 410 and calcs[-1].exit_status == 0
    second = calcs[1].inputs.parameters.get_dict()
    assert second['ELECTRONS']['mixing_beta'] == pytest.approx(0.7 * 0.8)  # pw.x's default times QE's factor
    assert second['CONTROL']['restart_mode'] == 'restart'
    assert calcs[1].inputs.parent_folder.pk == calcs[0].outputs.remote_folder.pk
    assert results['output_parameters']['energy'] == pytest.approx(printed_energies(calcs[-1])[-1] * CONSTANTS.ry_to_ev, abs=1e-6)
    assert 'reduced beta mixing from 0.7' in reports(node)
    assert calcs[-1].base.attributes.get('parser_name') == 'grimperium.pw'  # the gap-adding parser
    assert 'band_gap' in results['output_parameters'].get_dict()


def test_walltime_restart_from_parent_folder(pw_code):
    """A real max_seconds interruption of a relax → 400 → restart_mode restart from the parent folder.

    A relax, not a vc-relax: pw.x 6.7 cannot restart a vc-relax interrupted in its final SCF (new G-vectors).
    """
    inputs = si_inputs(pw_code, 'relax')
    parameters = inputs['parameters'].get_dict()
    parameters['CONTROL']['max_seconds'] = 1
    parameters['SYSTEM']['ecutwfc'] = 30.0  # long enough (a few s) to be interrupted at 1 s
    inputs['parameters'] = orm.Dict(parameters)
    results, node = run_base(pw_code, inputs, max_iterations=orm.Int(8))
    assert node.is_finished_ok, node.exit_status
    calcs = sorted((c for c in node.called if c.process_label == 'PwCalculation'), key=lambda n: n.ctime)
    assert calcs[0].exit_status == 400 and calcs[-1].exit_status == 0
    for previous, calc in zip(calcs, calcs[1:]):
        assert calc.inputs.parameters['CONTROL']['restart_mode'] == 'restart'
        assert calc.inputs.parent_folder.pk == previous.outputs.remote_folder.pk
    text = stdout_of(calcs[1])
    restart_lines = ('Calculation restarted from', 'Atomic positions and unit cell read from directory',
                     'The initial density is read from file')
    assert any(line in text for line in restart_lines), text[:3000]
    assert "restarting in full with `CONTROL.restart_mode` = 'restart'" in reports(node)
    assert 'output_structure' in results


def test_no_exit_code_declared_twice():
    statuses = [code.status for code in PwBaseWorkChain.spec().exit_codes.values()]
    assert len(statuses) == len(set(statuses))


def test_protocol_api(pw_code, pseudo_family):
    protocols = PwBaseWorkChain.get_available_protocols()
    assert set(protocols) == {'fast', 'balanced', 'stringent'} and all(p['description'] for p in protocols.values())
    assert PwBaseWorkChain.get_default_protocol() == 'balanced'
    assert PwBaseWorkChain.get_protocol_inputs('moderate') == PwBaseWorkChain.get_protocol_inputs('balanced')
    inputs = PwBaseWorkChain.get_protocol_inputs('fast')
    assert inputs['kpoints_distance'] == 0.30  # aiida-quantumespresso's value, underneath
    assert inputs['meta_parameters']['cutoff_stringency'] == 'low'  # this package's, on top


def test_protocol_builder_si(pw_code, pseudo_family):
    family = pseudo_family('pbe')
    overrides = {'pw': {'parameters': {'SYSTEM': {'ecutwfc': 22.0}}}}
    before = copy.deepcopy(overrides)
    builder = PwBaseWorkChain.get_builder_from_protocol(
        pw_code, si_structure(), protocol='fast', overrides=overrides, options={'max_wallclock_seconds': 600})
    assert overrides == before  # not mutated
    parameters = builder.pw.parameters.get_dict()
    assert parameters['SYSTEM']['ecutwfc'] == 22.0  # the override
    assert parameters['SYSTEM']['ecutrho'] == family.get_recommended_cutoffs(elements=('Si',), stringency='low', unit='Ry')[1]
    assert parameters['SYSTEM']['occupations'] == 'smearing' and parameters['CONTROL']['tstress'] is True
    assert parameters['ELECTRONS']['conv_thr'] == pytest.approx(2 * 0.4e-9)
    options = builder.pw.metadata['options']
    assert options['max_wallclock_seconds'] == 600 and options['withmpi'] is False  # merged, not replaced
    assert options['resources']['num_machines'] == 1  # aiida-quantumespresso's default for the scheduler
    assert builder.kpoints_distance.value == 0.30
    assert builder.pw.pseudos['Si'].filename == 'Si.pbe-rrkj.UPF'
    stringent = PwBaseWorkChain.get_builder_from_protocol(pw_code, si_structure(), protocol='stringent')
    assert stringent.pw.parameters['SYSTEM']['ecutwfc'] == 45.0
    with pytest.warns(UserWarning, match='ecutwfx'):
        PwBaseWorkChain.get_builder_from_protocol(pw_code, si_structure(), overrides={'pw': {'parameters': {'SYSTEMS': {}}}, 'ecutwfx': 1})


def test_protocol_builder_molecule(pw_code, pseudo_family):
    family = pseudo_family('pbe')
    builder = PwBaseWorkChain.get_builder_from_protocol(pw_code, water(), protocol='fast')
    parameters = builder.pw.parameters.get_dict()
    assert builder.kpoints.get_kpoints_mesh()[0] == [1, 1, 1] and 'kpoints_distance' not in builder
    assert builder.pw.settings['gamma_only'] is True
    assert parameters['SYSTEM']['occupations'] == 'fixed' and parameters['SYSTEM']['assume_isolated'] == 'mt'
    assert parameters['SYSTEM']['nbnd'] == 4 + 4  # 8 valence electrons / 2 + 4 empty bands
    assert 'tstress' not in parameters['CONTROL'] and 'degauss' not in parameters['SYSTEM']
    assert (parameters['SYSTEM']['ecutwfc'], parameters['SYSTEM']['ecutrho']) == (20.0, 160.0)  # `low`
    assert builder.pw.structure.cell[2][2] == pytest.approx(0.117 + 0.471 + 2 * 4.0)  # 4 A vacuum
    balanced = PwBaseWorkChain.get_builder_from_protocol(pw_code, water())
    expected = family.get_recommended_cutoffs(elements=('H', 'O'), stringency='normal', unit='Ry')
    assert (balanced.pw.parameters['SYSTEM']['ecutwfc'], balanced.pw.parameters['SYSTEM']['ecutrho']) == expected
    cation = PwBaseWorkChain.get_builder_from_protocol(pw_code, water(), charge=1, multiplicity=2)
    system = cation.pw.parameters['SYSTEM']
    assert (system['tot_charge'], system['nspin'], system['tot_magnetization'], system['nbnd']) == (1.0, 2, 1.0, 4 + 4)
    assert 'starting_magnetization' not in system


def test_water_through_the_protocol(pw_code, pseudo_family):
    """A molecule end to end: fast protocol, real pw.x, energy and gap against what pw.x printed."""
    pseudo_family('pbe')
    builder = PwBaseWorkChain.get_builder_from_protocol(pw_code, water(), protocol='fast')
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_status
    calc = [c for c in node.called if c.process_label == 'PwCalculation'][-1]
    text = stdout_of(calc)
    assert 'K_POINTS gamma' in calc.base.repository.get_object_content('aiida.in')
    params = results['output_parameters']
    assert params['energy'] == pytest.approx(printed_energies(text)[-1] * CONSTANTS.ry_to_ev, abs=1e-6)
    homo, lumo = printed_levels(text)
    assert params['band_gap'] == pytest.approx(lumo - homo, abs=2e-4) and params['band_gap'] > 4.0
