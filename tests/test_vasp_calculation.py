"""``grimperium.vasp`` input generation (dry runs) against the fixtures' own INCAR/KPOINTS/POSCAR.

The POTCARs used here are PLACEHOLDERS with a real header (tests/fixtures/vasp/potcar_library): inputs only.
"""
from __future__ import annotations

import json
import pathlib

import pytest
from aiida import engine, orm
from aiida.plugins import CalculationFactory
from pymatgen.io.vasp import Incar, Kpoints, Poscar

FIXTURES = pathlib.Path(__file__).parent / 'fixtures' / 'vasp'
LIBRARY = FIXTURES / 'potcar_library'
VaspCalculation = CalculationFactory('grimperium.vasp')


def structure_of(poscar_path: pathlib.Path) -> orm.StructureData:
    return orm.StructureData(pymatgen=Poscar.from_file(poscar_path).structure)


def dry_run(code, tmp_path, monkeypatch, structure, parameters, kpoints=None, **extra) -> pathlib.Path:
    monkeypatch.chdir(tmp_path)
    builder = VaspCalculation.get_builder()
    builder.code = code
    builder.structure = structure
    builder.parameters = orm.Dict(parameters)
    if kpoints is not None:
        builder.kpoints = kpoints
    builder.potcar_library = orm.Str(str(LIBRARY))
    for key, value in extra.items():
        builder[key] = value
    builder.metadata.dry_run = True
    builder.metadata.store_provenance = False
    _, node = engine.run_get_node(builder)
    return pathlib.Path(node.dry_run_info['folder'])


@pytest.fixture
def vasp_code(aiida_localhost):
    return orm.InstalledCode(label='vasp-inputs', computer=aiida_localhost, filepath_executable='/bin/true',
                             default_calc_job_plugin='grimperium.vasp').store()


def mesh(n, offset=(0, 0, 0)):
    kpoints = orm.KpointsData()
    kpoints.set_kpoints_mesh(n, offset)
    return kpoints


def test_si_simple_inputs_match_fixture(vasp_code, tmp_path, monkeypatch):
    inputs = FIXTURES / 'si-simple' / 'inputs'
    incar = Incar.from_file(inputs / 'INCAR')
    folder = dry_run(vasp_code, tmp_path, monkeypatch, structure_of(inputs / 'POSCAR'), dict(incar), mesh([8, 8, 8]))

    assert Incar.from_file(folder / 'INCAR') == incar
    generated, reference = Kpoints.from_file(folder / 'KPOINTS'), Kpoints.from_file(inputs / 'KPOINTS')
    assert generated.style == reference.style and list(generated.kpts[0]) == list(reference.kpts[0]) == [8, 8, 8]
    assert list(generated.kpts_shift) == pytest.approx(list(reference.kpts_shift))
    ours, theirs = Poscar.from_file(folder / 'POSCAR'), Poscar.from_file(inputs / 'POSCAR')
    assert ours.site_symbols == theirs.site_symbols == ['Si'] and ours.natoms == theirs.natoms
    assert ours.structure.lattice.matrix == pytest.approx(theirs.structure.lattice.matrix, abs=1e-8)
    assert ours.structure.frac_coords == pytest.approx(theirs.structure.frac_coords, abs=1e-8)
    potcar = (folder / 'POTCAR').read_text()
    assert potcar == (LIBRARY / 'Si' / 'POTCAR').read_text()
    spec = json.loads((folder / 'potcar_spec.json').read_text())
    assert [s['titel'] for s in spec] == ['PAW_PBE Si 05Jan2001']
    # the title VASP echoed in the fixture's OUTCAR is the one selected
    from aiida_grimperium.parsers.raw.vasp import parse_path

    assert parse_path(FIXTURES / 'si-simple' / 'outputs' / 'OUTCAR')['potcars'] == ['PAW_PBE Si 05Jan2001']


def test_relaxation_inputs_match_fixture(vasp_code, tmp_path, monkeypatch):
    """The converged/ run: Monkhorst 4x4x4, its INCAR tags and values."""
    run = FIXTURES / 'converged'
    incar = Incar.from_file(run / 'INCAR')
    folder = dry_run(vasp_code, tmp_path, monkeypatch, structure_of(run / 'POSCAR'), dict(incar), mesh([4, 4, 4]),
                     settings=orm.Dict({'kpoints_style': 'Monkhorst'}))
    assert Incar.from_file(folder / 'INCAR') == incar
    generated, reference = Kpoints.from_file(folder / 'KPOINTS'), Kpoints.from_file(run / 'KPOINTS')
    assert generated.style == reference.style and list(generated.kpts[0]) == list(reference.kpts[0])
    assert Poscar.from_file(folder / 'POSCAR').structure.frac_coords == pytest.approx(
        Poscar.from_file(run / 'POSCAR').structure.frac_coords, abs=1e-8)


def test_species_grouped_and_potcar_order(vasp_code, tmp_path, monkeypatch):
    structure = orm.StructureData(cell=[[4, 0, 0], [0, 4, 0], [0, 0, 4]])
    for symbol, position in (('O', (0, 0, 0)), ('Si', (1, 1, 1)), ('O', (2, 2, 2)), ('Si', (3, 3, 3))):
        structure.append_atom(position=position, symbols=symbol)
    folder = dry_run(vasp_code, tmp_path, monkeypatch, structure, {'ENCUT': 400}, mesh([2, 2, 2]))
    poscar = Poscar.from_file(folder / 'POSCAR')
    assert poscar.site_symbols == ['O', 'Si'] and poscar.natoms == [2, 2]
    titles = [line.split('=', 1)[1].strip() for line in (folder / 'POTCAR').read_text().splitlines() if 'TITEL' in line]
    assert titles == ['PAW_PBE O 08Apr2002', 'PAW_PBE Si 05Jan2001']


def test_kpoints_spacing_gives_a_mesh(vasp_code, tmp_path, monkeypatch):
    structure = structure_of(FIXTURES / 'si-simple' / 'inputs' / 'POSCAR')
    folder = dry_run(vasp_code, tmp_path, monkeypatch, structure, {'ENCUT': 200}, kpoints_spacing=orm.Float(0.2))
    expected = orm.KpointsData()
    expected.set_cell_from_structure(structure)
    expected.set_kpoints_mesh_from_density(0.2)
    assert list(Kpoints.from_file(folder / 'KPOINTS').kpts[0]) == list(expected.get_kpoints_mesh()[0])


def test_parent_folder_copies_restart_files(vasp_code, aiida_localhost, tmp_path, monkeypatch):
    parent = orm.RemoteData(computer=aiida_localhost, remote_path=str(tmp_path / 'parent')).store()
    folder = dry_run(vasp_code, tmp_path, monkeypatch, structure_of(FIXTURES / 'converged' / 'POSCAR'), {'ENCUT': 300},
                     mesh([2, 2, 2]), parent_folder=parent)
    copy_list = (folder / '_aiida_remote_copy_list.txt').read_text()
    assert 'WAVECAR' in copy_list and 'CHGCAR' in copy_list


@pytest.mark.parametrize('parameters, message', [
    ({'ENCUTT': 300}, 'unknown'),
    ({'ALGO': 'Fastest'}, 'not one of'),
    ({'NELM': 'many'}, 'not of type'),
])
def test_invalid_incar_is_refused(vasp_code, parameters, message):
    builder = VaspCalculation.get_builder()
    builder.code = vasp_code
    builder.structure = structure_of(FIXTURES / 'converged' / 'POSCAR')
    builder.parameters = orm.Dict(parameters)
    builder.kpoints = mesh([2, 2, 2])
    builder.potcar_library = orm.Str(str(LIBRARY))
    with pytest.raises(ValueError, match=message):
        engine.run(builder)


def test_missing_kpoints_and_missing_potcar(vasp_code, tmp_path, monkeypatch):
    builder = VaspCalculation.get_builder()
    builder.code = vasp_code
    builder.structure = structure_of(FIXTURES / 'converged' / 'POSCAR')
    builder.parameters = orm.Dict({'ENCUT': 300})
    builder.potcar_library = orm.Str(str(LIBRARY))
    with pytest.raises(ValueError, match='kpoints'):
        engine.run(builder)
    structure = orm.StructureData(cell=[[4, 0, 0], [0, 4, 0], [0, 0, 4]])
    structure.append_atom(position=(0, 0, 0), symbols='Fe')
    with pytest.raises(Exception, match='no POTCAR for `Fe`'):
        dry_run(vasp_code, tmp_path, monkeypatch, structure, {'ENCUT': 300}, mesh([2, 2, 2]))
