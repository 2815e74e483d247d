"""``grimperium.dft``: one script, three engines — pw.x for real, VASP and CRYSTAL by REPLAY of recorded real runs.

The script (:func:`run_common`) passes only the common inputs (aiida-common-workflows' relax interface); only the
code differs. VASP and CRYSTAL cannot be installed: their codes are ``tests/replay/replay-run``, which copies a
recorded real run (computes nothing) whatever input was generated. So each engine gets the structure of its
recorded run, and the recorded runs were made with their own settings, not with the protocol's (VASP
``converged``: Si displaced, ENCUT 300, ISMEAR 0, VASP 5.4.4; VASP ``vasp620_relax``: 1-atom Si, ISPIN 2, ISIF 3,
VASP 6.2.0; CRYSTAL ``mgo_sto3g_*``: MgO HF/STO-3G, see tests/fixtures). What the test checks is that every
output name is there and carries the number the code printed, read here from the printed files with this
test's own regular expressions.
"""
from __future__ import annotations

import pathlib
import re
import shutil

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from pymatgen.io.vasp import Poscar

from aiida_grimperium.workchains.dft import DftWorkChain, vasp_site_order

FIXTURES = pathlib.Path(__file__).parent / 'fixtures'
VASP_REPLAY = FIXTURES / 'vasp' / 'replay'
CRYSTAL_REPLAY = FIXTURES / 'crystal' / 'replay'
RY_TO_EV, BOHR, HARTREE_TO_EV, KBAR_PER_EV_A3 = 13.605693122994, 0.529177210903, 27.211386245988, 1602.1766208
OPTIONS = {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}, 'withmpi': False}
FLOAT = r'[-+]?\d+\.\d*(?:[EeDd][-+]?\d+)?'


def run_common(code, structure, **common):
    """The user's script: the same for every engine."""
    inputs = {'protocol': 'fast', **common}  # the refusal tests give another protocol
    return run_get_node(DftWorkChain, structure=structure, engines={'relax': {'code': code, 'options': OPTIONS}},
                        **inputs)


def si_displaced() -> orm.StructureData:
    """The structure of the recorded VASP run ``converged`` (Si, both atoms off their sites)."""
    return orm.StructureData(pymatgen=Poscar.from_file(FIXTURES / 'vasp' / 'converged' / 'POSCAR').structure)


def mgo() -> orm.StructureData:
    """The structure of the recorded CRYSTAL runs ``mgo_sto3g_scf`` / ``mgo_sto3g_opt``."""
    h = 4.21 / 2
    structure = orm.StructureData(cell=[[0, h, h], [h, 0, h], [h, h, 0]])
    structure.append_atom(position=(0, 0, 0), symbols='Mg')
    structure.append_atom(position=(h, h, h), symbols='O')
    return structure


@pytest.fixture
def engine(request, real_code, replay_code, monkeypatch):
    """Factory: ``engine('vasp', run)`` -> the code of that engine (pw: the real pw.x; others: replay of ``run``)."""
    monkeypatch.setenv('GRIMPERIUM_POTCAR_LIBRARY', str(FIXTURES / 'vasp' / 'potcar_library'))  # placeholders

    def factory(name: str, run: pathlib.Path | None = None):
        if name == 'pw':
            return real_code('pw.x', 'grimperium.pw')
        return replay_code(f'grimperium.{name}', [run], label=f'dft-{name}-{run.name}')

    return factory


# -- what each code printed ------------------------------------------------------------------------------------

def last_calculation(node):
    calcs = [n for n in node.called_descendants if isinstance(n, orm.CalcJobNode)]
    return max(calcs, key=lambda n: n.ctime)


def pw_printed(node) -> dict:
    """From pw.x's aiida.out: last energy, forces, stress (eV, eV/Å, eV/Å^3), gap and magnetisation."""
    text = last_calculation(node).outputs.retrieved.get_object_content('aiida.out')
    printed = {'total_energy': float(re.findall(rf'!\s+total energy\s+=\s+({FLOAT}) Ry', text)[-1]) * RY_TO_EV}
    block = text.rsplit('Forces acting on atoms', 1)[1]
    forces = re.findall(rf'atom\s+\d+ type\s+\d+\s+force =\s+({FLOAT})\s+({FLOAT})\s+({FLOAT})', block)
    n = int(re.search(r'number of atoms/cell\s+=\s+(\d+)', text).group(1))
    printed['forces'] = np.array(forces[:n], dtype=float) * RY_TO_EV / BOHR
    rows = re.findall(rf'^\s+{FLOAT}\s+{FLOAT}\s+{FLOAT}\s+({FLOAT})\s+({FLOAT})\s+({FLOAT})\s*$',
                      text.rsplit('total   stress', 1)[1], re.M)[:3]
    printed['stress'] = np.array(rows, dtype=float) / KBAR_PER_EV_A3
    levels = re.findall(rf'highest occupied, lowest unoccupied level \(ev\):\s+({FLOAT})\s+({FLOAT})', text)
    if levels:
        printed['band_gap'] = float(levels[-1][1]) - float(levels[-1][0])
    magnetization = re.findall(rf'total magnetization\s+=\s+({FLOAT}) Bohr mag/cell', text)
    if magnetization:
        printed['total_magnetization'] = float(magnetization[-1])
    return printed


def vasp_printed(run: pathlib.Path, structure: orm.StructureData) -> dict:
    """From OUTCAR: energy(sigma->0), TOTAL-FORCE (back in the input's site order), `in kB` stress; the gap from
    vasprun.xml's eigenvalues and occupations (VASP 5.4 prints none): lowest empty (occ < 0.5) - highest full."""
    from pymatgen.io.vasp import Vasprun

    outcar = (run / 'OUTCAR').read_text()
    n = len(structure.sites)
    block = outcar.rsplit('TOTAL-FORCE (eV/Angst)', 1)[1].splitlines()[2:2 + n]
    vasp_forces = np.array([line.split()[3:6] for line in block], dtype=float)
    forces = np.zeros_like(vasp_forces)
    forces[vasp_site_order([s.kind_name for s in structure.sites])] = vasp_forces
    xx, yy, zz, xy, yz, zx = map(float, re.findall(r'in kB((?:\s+\S+){6})', outcar)[-1].split())
    eigenvalues = np.concatenate([v.reshape(-1, 2) for v in Vasprun(run / 'vasprun.xml', parse_potcar_file=False)
                                  .eigenvalues.values()])
    full, empty = eigenvalues[eigenvalues[:, 1] >= 0.5, 0], eigenvalues[eigenvalues[:, 1] < 0.5, 0]
    return {'total_energy': float(re.findall(rf'energy\(sigma->0\) =\s+({FLOAT})', outcar)[-1]), 'forces': forces,
            'stress': np.array([[xx, xy, zx], [xy, yy, yz], [zx, yz, zz]]) / KBAR_PER_EV_A3,
            'band_gap': max(0.0, empty.min() - full.max())}


def crystal_printed(run: pathlib.Path) -> dict:
    """From CRYSTAL's main output: the final energy (SCF, or OPT END) and the last band gap line."""
    text = (run / 'main.out.stdout').read_text()
    energies = re.findall(rf'OPT END - CONVERGED \* E\(AU\):\s+({FLOAT})', text) or \
        re.findall(rf'SCF ENDED - CONVERGENCE ON ENERGY\s+E\(AU\)\s+({FLOAT})', text)
    gap = re.findall(rf'BAND GAP:\s+({FLOAT})\s+eV', text)[-1]
    return {'total_energy': float(energies[-1]) * HARTREE_TO_EV, 'band_gap': float(gap)}


def assert_outputs_equal_printed(results: dict, printed: dict):
    """Every number the code printed is in the output of the same name: energies to 1e-5 eV (all engines in
    CODATA 2018 eV, as the codes printed them to 1e-7 eV or better), gap to 1e-4 eV, forces and stress to 1e-5
    (eV/Å, eV/Å^3; pw.x prints them to 1e-8 Ry/bohr and 0.01 kbar)."""
    assert results['total_energy'].value == pytest.approx(printed['total_energy'], abs=1e-5)
    if 'band_gap' in printed:
        assert results['band_gap'].value == pytest.approx(printed['band_gap'], abs=1e-4)
    if 'total_magnetization' in printed:
        assert results['total_magnetization'].value == pytest.approx(printed['total_magnetization'], abs=1e-2)
    for name, tolerance in (('forces', 1e-5), ('stress', 1e-5)):
        if name in printed:
            assert results[name].get_array(name) == pytest.approx(printed[name], abs=tolerance), name


def assert_provenance(node):
    """No output Data is created by the workchain itself: each comes from a calcfunction or a CalcJob."""
    from aiida.common.links import LinkType

    for triple in node.base.links.get_outgoing(link_type=LinkType.RETURN).all():
        creator = triple.node.creator
        assert creator is not None and creator.pk != node.pk, triple.link_label


# -- the same script on three engines ------------------------------------------------------------------------------

SCF_CASES = {
    'pw': (None, si_displaced),
    'vasp': (VASP_REPLAY / 'converged', si_displaced),
    'crystal': (CRYSTAL_REPLAY / 'mgo_sto3g_scf', mgo),
}


@pytest.mark.parametrize('name', list(SCF_CASES))
def test_single_point_same_script(engine, name):
    """relax_type none, insulator, no spin: total_energy, band_gap, forces and stress as printed; no relaxed_structure."""
    run, structure = SCF_CASES[name]
    results, node = run_common(engine(name, run), structure(), relax_type='none', electronic_type='insulator')
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    printed = {'pw': lambda: pw_printed(node), 'vasp': lambda: vasp_printed(run, node.inputs.structure),
               'crystal': lambda: crystal_printed(run)}[name]()
    assert_outputs_equal_printed(results, printed)
    assert 'relaxed_structure' not in results and 'band_gap' in results
    expected = {'pw': {'forces', 'stress'}, 'vasp': {'forces', 'stress'}, 'crystal': set()}[name]
    assert {'forces', 'stress'} & set(results) == expected  # CRYSTAL's parser reads no forces or stress yet
    assert_provenance(node)


RELAX_CASES = {'pw': (None, si_displaced), 'crystal': (CRYSTAL_REPLAY / 'mgo_sto3g_opt', mgo)}


@pytest.mark.parametrize('name', list(RELAX_CASES))
def test_cell_relaxation_same_script(engine, name):
    """relax_type positions_cell: relaxed_structure is the code's last geometry; energy of that geometry."""
    run, structure = RELAX_CASES[name]
    results, node = run_common(engine(name, run), structure(), relax_type='positions_cell', electronic_type='insulator')
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    relaxed = results['relaxed_structure']
    assert relaxed.uuid == last_calculation(node).outputs.output_structure.uuid  # the CalcJob's own output
    if name == 'crystal':
        assert_outputs_equal_printed(results, crystal_printed(run))
        assert relaxed.cell[0] == pytest.approx([0, 1.94218061274, 1.94218061274])  # FINAL OPTIMIZED GEOMETRY
        assert 'OPTGEOM\nFULLOPTG\n' in last_calculation(node).base.repository.get_object_content('INPUT')
    else:
        assert_outputs_equal_printed(results, pw_printed(node))
        assert last_calculation(node).inputs.parameters['CONTROL']['calculation'] == 'vc-relax'
        assert relaxed.get_cell_volume() != pytest.approx(node.inputs.structure.get_cell_volume(), rel=1e-4)
    assert_provenance(node)


def test_vasp_spin_polarised_cell_relaxation(engine, tmp_path):
    """The recorded VASP 6.2.0 run (1-atom Si, ISPIN 2, MAGMOM 0.646, ISIF 3): the INCAR asks for the same."""
    run = tmp_path / 'vasp620_relax'
    run.mkdir()
    source = FIXTURES / 'vasp' / 'versions' / 'vasp620_relax'
    for name in ('OUTCAR', 'vasprun.xml'):
        shutil.copy(source / name, run / name)
    shutil.copy(source / 'vasp_output', run / 'vasp_output.stdout')  # replay-run prints *.stdout on stdout
    structure = orm.StructureData(cell=[[0, 2.7, 2.7], [2.7, 0, 2.7], [2.7, 2.7, 0]])
    structure.append_atom(position=(0, 0, 0), symbols='Si')
    results, node = run_common(engine('vasp', run), structure, relax_type='positions_cell', spin_type='collinear',
                               magnetization_per_site=[0.646])
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    incar = last_calculation(node).inputs.parameters.get_dict()
    assert (incar['ISPIN'], incar['MAGMOM'], incar['ISIF']) == (2, [0.646], 3)
    printed = vasp_printed(run, structure)
    printed.pop('band_gap')  # spin-polarised: the two channels' edges, not compared here
    assert_outputs_equal_printed(results, printed)
    assert results['relaxed_structure'].cell[0] == pytest.approx([2.369457, 2.369457, 0.0])  # vasprun finalpos
    assert_provenance(node)


# -- refusals at submission, and the translations ------------------------------------------------------------------

@pytest.fixture
def fake_code(aiida_localhost):
    """Factory: a code of ``plugin`` that is never run (the inputs are refused before anything runs)."""
    def factory(plugin: str):
        return orm.InstalledCode(label=f'never-run-{plugin}', computer=aiida_localhost, filepath_executable='/bin/true',
                                 default_calc_job_plugin=plugin).store()
    return factory


@pytest.mark.parametrize('plugin, common, message', [
    ('grimperium.vasp', {'relax_type': 'positions_volume'}, 'VASP: relax_type `positions_volume` cannot be mapped'),
    ('grimperium.vasp', {'charge': 1}, 'VASP: charge `1` cannot be mapped: VASP takes NELECT'),
    ('grimperium.vasp', {'threshold_stress': 0.01}, 'VASP: threshold_stress `0.01` cannot be mapped'),
    ('grimperium.crystal', {'relax_type': 'volume'}, 'CRYSTAL: relax_type `volume` cannot be mapped'),
    ('grimperium.crystal', {'charge': -1}, 'CRYSTAL: charge `-1` cannot be mapped'),
    ('grimperium.crystal', {'spin_type': 'collinear', 'magnetization_per_site': [1.0, 0.0]},
     'CRYSTAL: magnetization_per_site'),
    ('grimperium.pw', {'relax_type': 'cell'}, 'pw.x: relax_type `cell` cannot be mapped'),
    ('grimperium.pw', {'relax_type': 'positions', 'magnetization_per_site': [1.0, 0.0]},
     'magnetization_per_site needs spin_type `collinear`'),
    ('grimperium.pw', {'protocol': 'balanced'}, "protocol `balanced` is not one of .* `moderate`"),
    ('grimperium.pw', {'relax_type': 'sideways'}, 'relax_type `sideways` is not one of'),
    ('grimperium.mopac', {}, 'the code runs `grimperium.mopac`'),
])
def test_refused_at_submission(fake_code, plugin, common, message):
    with pytest.raises(ValueError, match=message):
        run_common(fake_code(plugin), mgo(), **common)


def test_molecule_has_no_cell_to_relax(fake_code):
    from aiida_grimperium.structures import molecule_structure

    water = molecule_structure(['O', 'H', 'H'], [[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    with pytest.raises(ValueError, match='a molecule .* has no cell to relax'):
        run_common(fake_code('grimperium.pw'), water, relax_type='positions_cell')


def test_translations():
    """The common inputs as each engine's keyword arguments and builder-shaped overrides."""
    from aiida_grimperium.workchains.dft import CommonInputs, crystal_inputs, pw_inputs, vasp_inputs

    structure = orm.StructureData(cell=[[4, 0, 0], [0, 4, 0], [0, 0, 4]])
    for symbol, x in (('O', 0.0), ('Mg', 1.0), ('O', 2.0)):
        structure.append_atom(position=(x, 0, 0), symbols=symbol)
    common = CommonInputs(structure, relax_type='positions_shape', spin_type='collinear', threshold_forces=0.01,
                          magnetization_per_site=[1.0, 2.0, 1.0], multiplicity=3)
    kwargs, overrides = pw_inputs(common)
    assert overrides['pw']['parameters']['CONTROL'] == {'calculation': 'vc-relax',
                                                         'forc_conv_thr': pytest.approx(0.01 * BOHR / RY_TO_EV)}
    assert overrides['pw']['parameters']['CELL'] == {'cell_dofree': 'shape'}
    assert kwargs == {'electronic_type': 'metal', 'spin_type': 'collinear', 'charge': 0, 'multiplicity': 3,
                      'initial_magnetic_moments': {'O': 1.0, 'Mg': 2.0}}

    kwargs, overrides = vasp_inputs(common)
    assert kwargs == {'relax': True}
    assert overrides == {'vasp': {'parameters': {'ISPIN': 2, 'MAGMOM': [1.0, 1.0, 2.0], 'NUPDOWN': 2}},
                         'relax_parameters': {'ISIF': 4, 'EDIFFG': -0.01}}  # MAGMOM in VASP's O, O, Mg order

    kwargs, overrides = crystal_inputs(CommonInputs(structure, relax_type='positions', electronic_type='insulator',
                                                    threshold_forces=0.01, multiplicity=3))
    assert kwargs == {'relax': True}
    assert overrides == {'crystal': {'parameters': {'spin': True, 'spinlock': [2, 999]}},
                         'optgeom': {'type': 'ATOMONLY', 'toldeg': pytest.approx(0.01 * BOHR / HARTREE_TO_EV / 1.5)}}

    common = CommonInputs(structure, relax_type='none', magnetization_per_site=[1.0, 2.0, 3.0], spin_type='collinear')
    with pytest.raises(ValueError, match='sites of kind O differ'):
        pw_inputs(common)
    assert vasp_inputs(common) == ({'relax': False}, {'vasp': {'parameters': {'ISPIN': 2, 'MAGMOM': [1.0, 3.0, 2.0]}},
                                                      'relax_parameters': {}})


def test_vasp_site_order():
    assert vasp_site_order(['O', 'Mg', 'O', 'H', 'Mg']) == [0, 2, 1, 4, 3]


def test_validator_without_structure(fake_code):
    """A pipeline validates its DFT namespace before the molecule's structure exists: the charge is refused now."""
    from aiida_grimperium.workchains.dft import validate_common_inputs

    def namespace(plugin, charge):
        return {'engines': {'relax': {'code': fake_code(plugin)}}, 'relax_type': orm.Str('none'),
                'charge': orm.Int(charge), 'multiplicity': orm.Int(2)}

    assert validate_common_inputs(namespace('grimperium.pw', 1)) is None
    assert validate_common_inputs(namespace('grimperium.vasp', 0)) is None  # multiplicity 2: NUPDOWN 1
    assert validate_common_inputs(namespace('grimperium.crystal', 1)).startswith('CRYSTAL: charge `1` cannot be mapped')
