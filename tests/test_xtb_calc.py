"""Real xtb runs through AiiDA (``grimperium.xtb``, ``grimperium.xtb.base``), checked against xtb run by hand."""
from __future__ import annotations

import re
import resource
import subprocess

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import CalculationFactory

from aiida_grimperium.calculations.xtb import command_line
from aiida_grimperium.parsers.raw.xtb import STDERR_NAME
from aiida_grimperium.chemistry import HARTREE_TO_EV, xyz_text
from aiida_grimperium.structures import conformer_values, make_ensemble, molecule_structure, structure_symbols_positions

WATER = (['O', 'H', 'H'], [[0.0, 0.0, 0.1], [0.0, 0.76, -0.45], [0.0, -0.76, -0.45]])
# Acetate anion, a rough geometry: the charged-molecule case.
ACETATE = (
    ['C', 'C', 'O', 'O', 'H', 'H', 'H'],
    [[-1.44, 0.0, 0.0], [0.09, 0.0, 0.0], [0.70, 1.10, 0.0], [0.70, -1.10, 0.0],
     [-1.80, 1.02, 0.0], [-1.80, -0.51, 0.88], [-1.80, -0.51, -0.88]],
)


def by_hand(tmp_path, symbols, positions, params, charge=0, multiplicity=1, name='hand'):
    """Run xtb on the same geometry and arguments outside AiiDA; return (stdout, folder)."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / 'in.xyz').write_text(xyz_text(symbols, positions))
    args = ['xtb', 'in.xyz', *command_line(params, charge, multiplicity, 1)]
    proc = subprocess.run(args, cwd=folder, capture_output=True, text=True, env={'OMP_NUM_THREADS': '1', 'PATH': '/usr/bin:/bin'})
    assert 'normal termination of xtb' in proc.stderr
    return proc.stdout, folder


def box_value(stdout: str, label: str) -> float:
    """The value xtb prints in its final summary box, read independently of the package's parser."""
    return float(re.search(rf'\|\s*{label}\s+(\S+)', stdout).group(1))


def run_xtb(code, structure=None, ensemble=None, params=None, charge=0, multiplicity=1):
    inputs = {'code': code, 'charge': orm.Int(charge), 'multiplicity': orm.Int(multiplicity), 'parameters': orm.Dict(params or {})}
    inputs['structure' if structure is not None else 'ensemble'] = structure if structure is not None else ensemble
    return run_get_node(CalculationFactory('grimperium.xtb'), **inputs)


@pytest.fixture
def xtb_code(real_code):
    return real_code('xtb', 'grimperium.xtb')


def test_xtb_single_point_equals_hand_run(xtb_code, tmp_path):
    params = {'method': 'gfn2', 'task': 'single_point'}
    results, node = run_xtb(xtb_code, molecule_structure(*WATER), params=params)
    assert node.is_finished_ok, node.exit_status
    stdout, _ = by_hand(tmp_path, *WATER, params)
    out = results['output_parameters']
    assert out['total_energy_hartree'] == pytest.approx(box_value(stdout, 'TOTAL ENERGY'), abs=1e-10)
    assert out['homo_lumo_gap_ev'] == pytest.approx(box_value(stdout, 'HOMO-LUMO GAP'), abs=1e-8)
    assert out['gradient_norm_hartree_bohr'] == pytest.approx(box_value(stdout, 'GRADIENT NORM'), abs=1e-10)
    assert out['energy'] == pytest.approx(out['total_energy_hartree'] * HARTREE_TO_EV, rel=1e-12)
    assert out['normal_termination'] is True
    assert 'output_structure' not in results


def test_xtb_optimisation_geometry_equals_hand_run(xtb_code, tmp_path):
    params = {'method': 'gfn2', 'task': 'optimization', 'opt_level': 'tight'}
    results, node = run_xtb(xtb_code, molecule_structure(*WATER), params=params)
    assert node.is_finished_ok, node.exit_status
    stdout, folder = by_hand(tmp_path, *WATER, params)
    assert results['output_parameters']['total_energy_hartree'] == pytest.approx(box_value(stdout, 'TOTAL ENERGY'), abs=1e-10)
    assert results['output_parameters']['optimization_converged'] is True
    lines = (folder / 'xtbopt.xyz').read_text().splitlines()[2:5]
    expected = np.array([[float(x) for x in line.split()[1:4]] for line in lines])
    _, positions = structure_symbols_positions(results['output_structure'])
    assert np.allclose(positions, expected, atol=1e-8)
    # the O-H bond relaxed from the rough start towards GFN2's 0.959 Angstrom
    assert np.linalg.norm(positions[1] - positions[0]) == pytest.approx(0.959, abs=0.005)


def test_xtb_charged_molecule(xtb_code, tmp_path):
    params = {'task': 'single_point'}
    results, node = run_xtb(xtb_code, molecule_structure(*ACETATE), params=params, charge=-1)
    assert node.is_finished_ok, node.exit_status
    stdout, _ = by_hand(tmp_path, *ACETATE, params, charge=-1)
    out = results['output_parameters']
    assert out['total_charge'] == pytest.approx(-1.0)
    assert out['total_energy_hartree'] == pytest.approx(box_value(stdout, 'TOTAL ENERGY'), abs=1e-10)
    assert '--chrg' in node.base.repository.get_object_content('_aiidasubmit.sh')


def test_xtb_solvated_alpb_and_gbsa(xtb_code, tmp_path):
    gas, _ = run_xtb(xtb_code, molecule_structure(*ACETATE), params={}, charge=-1)
    for model in ('alpb', 'gbsa'):
        params = {'solvent': 'water', 'solvent_model': model}
        results, node = run_xtb(xtb_code, molecule_structure(*ACETATE), params=params, charge=-1)
        assert node.is_finished_ok
        stdout, _ = by_hand(tmp_path, *ACETATE, params, charge=-1, name=model)
        assert f'--{model}' in stdout
        assert results['output_parameters']['total_energy_hartree'] == pytest.approx(box_value(stdout, 'TOTAL ENERGY'), abs=1e-10)
        # an anion is strongly stabilised by water: tens of kcal/mol
        assert results['output_parameters']['total_energy_hartree'] < gas['output_parameters']['total_energy_hartree'] - 0.05


def test_xtb_ensemble_runs_as_one_job(xtb_code, tmp_path):
    frames = [WATER[1], [[0.0, 0.0, 0.0], [0.0, 0.8, -0.5], [0.0, -0.8, -0.5]], [[0.0, 0.0, 0.0], [0.0, 0.9, 0.3], [0.0, -0.9, 0.3]]]
    ensemble = make_ensemble(WATER[0], frames, charge=0, multiplicity=1, engine='rdkit')
    params = {'task': 'single_point'}
    results, node = run_xtb(xtb_code, ensemble=ensemble, params=params)
    assert node.is_finished_ok
    script = node.base.repository.get_object_content('_aiidasubmit.sh')
    assert script.count('--namespace') == 3
    hand = [box_value(by_hand(tmp_path, WATER[0], f, params, name=f'f{i}')[0], 'TOTAL ENERGY') for i, f in enumerate(frames)]
    out = results['output_parameters']
    assert out['total_energies_hartree'] == pytest.approx(hand, abs=1e-10)
    trajectory = results['output_ensemble']
    assert list(conformer_values(trajectory, 'energies_hartree')) == pytest.approx(sorted(hand), abs=1e-10)
    assert out['ensemble_order'] == sorted(range(3), key=lambda i: hand[i])
    assert np.allclose(trajectory.get_positions()[0], frames[out['ensemble_order'][0]], atol=1e-7)
    assert trajectory.base.attributes.get('engine') == 'xtb'


def test_xtb_fatal_error_exit_code(xtb_code):
    overlap = molecule_structure(['O', 'H', 'H'], [[0, 0, 0], [0, 0, 0], [0, 0, 0.1]])
    results, node = run_xtb(xtb_code, overlap, params={})
    assert node.exit_status == 320
    assert 'very* short distance' in results['output_parameters']['fatal_error']


def test_xtb_impossible_multiplicity_rejected(xtb_code):
    with pytest.raises(ValueError, match='impossible'):
        run_xtb(xtb_code, molecule_structure(*WATER), params={}, multiplicity=2)
    with pytest.raises(ValueError, match='method'):
        run_xtb(xtb_code, molecule_structure(*WATER), params={'method': 'gfn7'})


def test_xtb_base_workchain_restarts_unconverged_optimisation(xtb_code):
    from aiida_grimperium.workchains.xtb import XtbBaseWorkChain

    builder = XtbBaseWorkChain.get_builder_from_protocol(
        xtb_code, molecule_structure(*ACETATE), overrides={'xtb': {'parameters': {'cycles': 2}}}, charge=-1
    )
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_status
    calcs = sorted(node.called, key=lambda n: n.ctime)
    assert [c.exit_status for c in calcs][0] == 500 and calcs[-1].exit_status == 0
    # the restart continued from the first run's last geometry with doubled cycles
    assert calcs[1].inputs.structure.uuid == calcs[0].outputs.output_structure.uuid
    assert calcs[1].inputs.parameters['cycles'] == 4
    assert results['output_parameters']['optimization_converged'] is True


def test_xtb_base_workchain_restarts_scc_failure(xtb_code):
    from aiida_grimperium.workchains.xtb import XtbBaseWorkChain

    builder = XtbBaseWorkChain.get_builder_from_protocol(
        xtb_code, molecule_structure(*WATER), overrides={'xtb': {'parameters': {'task': 'single_point', 'iterations': 2}}}
    )
    results, node = run_get_node(builder)
    assert node.is_finished_ok
    first, second = sorted(node.called, key=lambda n: n.ctime)
    assert first.exit_status == 410
    assert second.inputs.parameters['iterations'] == 500


def test_xtb_dry_run_command_line_threads_and_batch(xtb_code, tmp_path, monkeypatch):
    """The generated script: one xtb line per frame, namespaced, threads from the resources."""
    monkeypatch.chdir(tmp_path)  # a dry run writes its submit_test/ folder into the working directory
    ensemble = make_ensemble(WATER[0], [WATER[1], WATER[1]])
    inputs = {'code': xtb_code, 'ensemble': ensemble, 'charge': orm.Int(0),
              'parameters': orm.Dict({'method': 'gfn1', 'task': 'optimization', 'opt_level': 'verytight', 'solvent': 'water', 'solvent_model': 'gbsa'}),
              'metadata': {'dry_run': True, 'options': {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 2}}}}
    _, node = run_get_node(CalculationFactory('grimperium.xtb'), **inputs)
    script = ' '.join((tmp_path / node.dry_run_info['folder'] / '_aiidasubmit.sh').read_text().split())
    assert 'export OMP_NUM_THREADS=2' in script
    for name in ('conf0001', 'conf0002'):
        assert (f"'{name}.xyz' '--gfn' '1' '--opt' 'vtight' '--chrg' '0' '--uhf' '0' '--gbsa' 'water' '--parallel' '2' "
                f"'--namespace' '{name}' > '{name}.out' 2> '{name}.err'") in script


def test_xtb_gfn0_crash_is_a_fatal_error(xtb_code, tmp_path):
    """GFN0-xTB reads its parameter file from XTBPATH (Debian: /usr/share/xtb); the Debian xtb 6.5.1 build then
    crashes in its Fortran runtime (a failed allocation) on a molecule. Run by hand it does the same; through AiiDA
    the crash is ERROR_FATAL_ERROR with the runtime's message, not a success and not a traceback."""
    params = {'method': 'gfn0'}
    folder = tmp_path / 'hand'
    folder.mkdir()
    (folder / 'in.xyz').write_text(xyz_text(*WATER))
    # The broken build asks for tens of GB: capped at 4 GiB of address space, by hand and in the job script, the
    # allocation fails inside xtb (as on a cluster node with a memory limit) instead of the kernel's OOM killer
    # ending it, or other processes of the machine, at some point.
    limit = 4 * 1024**3
    proc = subprocess.run(['xtb', 'in.xyz', *command_line(params, 0, 1, 1)], cwd=folder, capture_output=True, text=True,
                          env={'OMP_NUM_THREADS': '1', 'PATH': '/usr/bin:/bin', 'XTBPATH': '/usr/share/xtb'},
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    inputs = {'code': xtb_code, 'structure': molecule_structure(*WATER), 'parameters': orm.Dict(params),
              'metadata': {'options': {'environment_variables': {'XTBPATH': '/usr/share/xtb'},
                                       'prepend_text': f'ulimit -v {limit // 1024}'}}}
    results, node = run_get_node(CalculationFactory('grimperium.xtb'), **inputs)
    if 'normal termination of xtb' in proc.stderr:  # a fixed xtb build: then the numbers must agree
        assert node.is_finished_ok, node.exit_status
        assert results['output_parameters']['total_energy_hartree'] == pytest.approx(box_value(proc.stdout, 'TOTAL ENERGY'), abs=1e-10)
    else:
        assert proc.returncode != 0, proc.stderr  # by hand it crashes too
        assert 'XTBPATH' in node.base.repository.get_object_content('_aiidasubmit.sh')
        # The crash follows a failed allocation, and how it ends varies from run to run: usually the runtime says
        # `Error termination` on stderr (320, with its message); sometimes a segmentation fault ends the process
        # first, and the output is simply cut short (312). Each run must get the exit code of what it left behind.
        repository = node.outputs.retrieved.base.repository
        stderr = repository.get_object_content(STDERR_NAME) if STDERR_NAME in repository.list_object_names() else ''
        if 'Error termination' in stderr:
            assert node.exit_status == 320
            assert results['output_parameters']['fatal_error']
        else:
            assert node.exit_status == 312, stderr


def test_xtb_embeds_smiles_and_refines_as_the_ensemble_tools_do(xtb_code):
    """``smiles`` + ``embedding`` + ``refine``: the job starts from exactly RDKit's conformers for that seed, and its
    ``output_ensemble`` is what :func:`ensembles.refine` keeps of the same job run on those conformers as an
    ``ensemble`` (both real xtb runs; the same xtb settings give the same numbers to 1e-8 Eh)."""
    from aiida_grimperium.ensembles import embed_conformers, refine

    xtb = CalculationFactory('grimperium.xtb')
    params = orm.Dict({'task': 'optimization', 'opt_level': 'normal'})
    settings = {'energy_window': 6.0, 'rmsd_threshold': 0.125, 'temperature': 298.15, 'engine': 'rdkit-xtb'}
    options = {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}}
    results, node = run_get_node(xtb, code=xtb_code, smiles=orm.Str('CCCC'), parameters=params,
                                 embedding=orm.Dict({'num_conformers': 6, 'seed': 7}), refine=orm.Dict(settings),
                                 metadata={'options': options})
    assert node.is_finished_ok, node.exit_status
    symbols, frames = embed_conformers('CCCC', 6, 7)
    written = sorted(n for n in node.base.repository.list_object_names() if n.startswith('conf') and n.endswith('.xyz'))
    assert len(written) == len(frames)
    first = node.base.repository.get_object_content(written[0]).splitlines()[2:]
    assert np.allclose([[float(x) for x in line.split()[1:4]] for line in first], frames[0], atol=1e-6)

    reference, plain = run_get_node(xtb, code=xtb_code, ensemble=make_ensemble(symbols, frames), parameters=params,
                                    metadata={'options': options})
    assert plain.is_finished_ok
    expected = refine(reference['output_ensemble'], **settings)
    refined = results['output_ensemble']
    assert refined.numsteps == expected.numsteps == 2  # butane: anti and gauche
    assert np.allclose(conformer_values(refined, 'energies_hartree'), conformer_values(expected, 'energies_hartree'), atol=1e-8)
    assert np.allclose(refined.get_positions(), expected.get_positions(), atol=1e-6)
    out = results['output_parameters']
    assert out['num_input_conformers'] == len(frames) and out['num_conformers'] == 2
    assert out['relative_energies_kcal_mol'] == pytest.approx(conformer_values(expected, 'relative_energies_kcal_mol').tolist())
    assert np.allclose([s.position for s in results['output_structure'].sites], refined.get_positions()[0])


@pytest.mark.parametrize('inputs, message', [
    ({'smiles': 'CCO', 'structure': True}, 'exactly one of'),
    ({'structure': True, 'embedding': {'num_conformers': 2}}, 'with `smiles`'),
    ({'structure': True, 'refine': {'top_n': 1}}, '`refine` selects among conformers'),
    ({'smiles': 'CCO', 'refine': {'top': 1}}, "unknown `refine` keys \\['top'\\]"),
    ({'smiles': 'C1CC'}, 'cannot parse'),
])
def test_xtb_smiles_inputs_validated_before_anything_runs(xtb_code, inputs, message):
    ports = {'code': xtb_code}
    for name, value in inputs.items():
        ports[name] = (molecule_structure(*WATER) if name == 'structure' else
                       orm.Str(value) if name == 'smiles' else orm.Dict(value))
    with pytest.raises(ValueError, match=message):
        run_get_node(CalculationFactory('grimperium.xtb'), **ports)
