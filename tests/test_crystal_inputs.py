"""CRYSTAL inputs: the generated .d12 (and fort.34) for the fixtures' MgO match the recorded INPUT files in substance."""
from __future__ import annotations

import pathlib

import numpy as np
import pytest
from aiida import orm
from pymatgen.core import Lattice, Structure
from pymatgen.analysis.structure_matcher import StructureMatcher

from aiida_grimperium.basis_sets import available_libraries, get_basis_sets, read_basis
from aiida_grimperium.calculations.crystal import generate_inputs, validate_parameters

FIXTURES = pathlib.Path(__file__).parent / 'fixtures' / 'crystal'


def read_d12(text: str) -> dict:
    """Split a (simple, CRYSTAL-keyword) .d12 into title, geometry lines, geometry keywords, basis lines, SCF lines."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    out = {'title': lines[0], 'kind': lines[1]}
    i = 2
    if out['kind'] == 'CRYSTAL':
        out['flags'], out['space_group'] = lines[2], int(lines[3])
        out['lattice'] = [float(x) for x in lines[4].split()]
        natoms = int(lines[5])
        out['atoms'] = [(int(l.split()[0]), *map(float, l.split()[1:4])) for l in lines[6:6 + natoms]]
        i = 6 + natoms
    elif out['kind'] == 'MOLECULE':
        natoms = int(lines[3])
        out['atoms'] = [(int(l.split()[0]), *map(float, l.split()[1:4])) for l in lines[4:4 + natoms]]
        i = 4 + natoms
    else:
        i = 2
    end = lines.index('END', i)
    out['geometry_keywords'] = lines[i:end]
    stop = lines.index('99 0', end) if '99 0' in lines else next(k for k, l in enumerate(lines) if l.split() == ['99', '0'])
    out['basis'] = [' '.join(l.split()) for l in lines[end + 1:stop]]
    out['scf'] = [' '.join(l.split()) for l in lines[stop + 2:]]
    return out


def full_structure(d12: dict) -> Structure:
    """The whole crystal a CRYSTAL space-group input describes (cubic lattice only, as for MgO)."""
    assert len(d12['lattice']) == 1
    species = [{12: 'Mg', 8: 'O'}[a[0]] for a in d12['atoms']]
    return Structure.from_spacegroup(d12['space_group'], Lattice.cubic(d12['lattice'][0]), species,
                                     [a[1:] for a in d12['atoms']])


@pytest.fixture
def mgo_primitive():
    """MgO rock salt as CRYSTAL prints it for the fixture (primitive cell, a = 4.21 Angstrom)."""
    h = 4.21 / 2
    structure = orm.StructureData(cell=[[0, h, h], [h, 0, h], [h, h, 0]])
    structure.append_atom(position=(0, 0, 0), symbols='Mg')
    structure.append_atom(position=(h, h, h), symbols='O')
    return structure


def sto3g():
    return {element: read_basis('sto-3g', element) for element in ('Mg', 'O')}


@pytest.mark.parametrize('fixture, parameters', [
    ('mgo_sto3g_scf', {'title': 'MgO bulk', 'shrink': [8, 8]}),
    ('mgo_sto3g_opt', {'title': 'MgO bulk', 'shrink': [8, 8], 'optgeom': {'type': 'FULLOPTG'}}),
])
def test_d12_matches_fixture(mgo_primitive, fixture, parameters):
    """Geometry block (space group, a, Wyckoff sites), OPTGEOM, basis block and SCF block match the recorded INPUT."""
    generated = read_d12(generate_inputs(mgo_primitive, parameters, sto3g())['INPUT'])
    recorded = read_d12((FIXTURES / fixture / 'INPUT').read_text())
    for key in ('title', 'kind', 'flags', 'space_group', 'geometry_keywords', 'basis', 'scf'):
        assert generated[key] == recorded[key], key
    assert generated['lattice'] == pytest.approx(recorded['lattice'], abs=1e-8)
    # The representative of each Wyckoff orbit may differ (spglib picks O at (1/2,0,0), the fixture (1/2,1/2,1/2)):
    # the crystals they generate must be the same.
    assert StructureMatcher(primitive_cell=False, scale=False).fit(full_structure(generated), full_structure(recorded))
    assert sorted(a[0] for a in generated['atoms']) == sorted(a[0] for a in recorded['atoms'])


def test_scf_options_and_spin(mgo_primitive):
    parameters = {'hamiltonian': 'PBE0', 'spin': True, 'tolinteg': [7, 7, 7, 7, 14], 'toldee': 8, 'maxcycle': 100,
                  'fmixing': 60, 'levshift': [5, 1], 'spinlock': [0, 5], 'mixing': 'ANDERSON', 'kpoints_distance': 0.3}
    d12 = read_d12(generate_inputs(mgo_primitive, parameters, sto3g(), guessp=True)['INPUT'])
    scf = d12['scf']
    assert scf[:4] == ['DFT', 'SPIN', 'PBE0', 'END']
    # |b| of the fcc primitive cell with a = 4.21 is 2*pi*sqrt(3)/4.21 = 2.585 1/A -> ceil(2.585 / 0.3) = 9
    assert scf[scf.index('SHRINK') + 1] == '9 18'
    for keyword, value in (('TOLINTEG', '7 7 7 7 14'), ('TOLDEE', '8'), ('MAXCYCLE', '100'), ('FMIXING', '60'),
                           ('LEVSHIFT', '5 1'), ('SPINLOCK', '0 5')):
        assert scf[scf.index(keyword) + 1] == value
    assert 'ANDERSON' in scf and 'GUESSP' in scf and scf[-1] == 'END'
    hf = read_d12(generate_inputs(mgo_primitive, {'spin': True}, sto3g())['INPUT'])['scf']
    assert hf == ['UHF', 'END']


def test_external_fort34_reproduces_structure(mgo_primitive):
    """EXTERNAL: applying the fort.34 operations to its atoms gives back the atoms (each op maps the crystal onto itself)."""
    files = generate_inputs(mgo_primitive, {'shrink': 8}, sto3g(), {'symmetry': 'external'})
    assert read_d12(files['INPUT'])['kind'] == 'EXTERNAL'
    lines = files['fort.34'].splitlines()
    assert lines[0].split() == ['3', '1', '6']
    cell = np.array([[float(x) for x in l.split()] for l in lines[1:4]])
    assert np.allclose(cell, mgo_primitive.cell)
    nops = int(lines[4])
    assert nops == 48
    ops = [np.array([[float(x) for x in l.split()] for l in lines[5 + 4 * k:9 + 4 * k]]) for k in range(nops)]
    natoms = int(lines[5 + 4 * nops])
    atoms = [[float(x) for x in l.split()] for l in lines[6 + 4 * nops:6 + 4 * nops + natoms]]
    assert lines[-1].split() == ['225', '48']
    frac = np.linalg.inv(cell.T)
    for op in ops:
        for z, *r in atoms:
            image = op[:3] @ np.array(r) + op[3]
            assert any(z2 == z and np.allclose((d := frac @ (image - np.array(r2))), np.round(d), atol=1e-6)
                       for z2, *r2 in atoms)
    none = generate_inputs(mgo_primitive, {}, sto3g(), {'symmetry': 'none'})['fort.34'].splitlines()
    assert int(none[4]) == 1 and none[-1].split() == ['1', '1']


def test_two_origin_choice_group_goes_external():
    """Diamond (Fd-3m, two ITA origins): `auto` does not guess CRYSTAL's origin, it writes EXTERNAL."""
    h = 5.43 / 2
    structure = orm.StructureData(cell=[[0, h, h], [h, 0, h], [h, h, 0]])
    structure.append_atom(position=(0, 0, 0), symbols='O')
    structure.append_atom(position=(h / 2, h / 2, h / 2), symbols='O')
    files = generate_inputs(structure, {}, {'O': read_basis('sto-3g', 'O')})
    assert read_d12(files['INPUT'])['kind'] == 'EXTERNAL'
    assert files['fort.34'].splitlines()[-1].split() == ['227', '48']


def test_molecule_input():
    structure = orm.StructureData(cell=[[20, 0, 0], [0, 20, 0], [0, 0, 20]], pbc=(False, False, False))
    structure.append_atom(position=(0, 0, 0), symbols='O')
    structure.append_atom(position=(0, 0, 1.21), symbols='O')
    d12 = read_d12(generate_inputs(structure, {'shrink': 8, 'optgeom': {}}, {'O': read_basis('sto-3g', 'O')})['INPUT'])
    assert d12['kind'] == 'MOLECULE' and d12['atoms'] == [(8, 0, 0, 0), (8, 0, 0, 1.21)]
    assert d12['geometry_keywords'] == ['OPTGEOM', 'ATOMONLY', 'ENDOPT']
    assert 'SHRINK' not in d12['scf']          # no k points for a molecule


@pytest.mark.parametrize('parameters', [
    {'hamiltonian': 'PBE\nEND\nGUESSP'}, {'tolinteg': [7, 7]}, {'nonsense': 1}, {'mixing': 'FOO'},
    {'optgeom': {'type': 'WRONG'}}, {'title': 'two\nlines'},
])
def test_parameters_refused(parameters):
    assert validate_parameters(parameters)


def test_basis_library(tmp_path, monkeypatch):
    assert 'sto-3g' in available_libraries()
    assert read_basis('sto-3g', 'Mg').splitlines()[0] == '12 3'
    with pytest.raises(ValueError, match='no basis for Fe'):
        read_basis('sto-3g', 'Fe')
    (tmp_path / 'mine').mkdir()
    (tmp_path / 'mine' / 'O.basis').write_text('12 1\n')
    monkeypatch.setenv('GRIMPERIUM_BASIS_SETS', str(tmp_path))
    with pytest.raises(ValueError, match='not the atomic number'):
        read_basis('mine', 'O')
    nodes = get_basis_sets('sto-3g', ['O', 'Mg', 'O'])
    assert sorted(nodes) == ['Mg', 'O'] and nodes['O'].get_content() == read_basis('sto-3g', 'O')


@pytest.mark.parametrize('protocol', ['fast', 'balanced', 'stringent'])
def test_protocols_give_valid_inputs(mgo_primitive, protocol, aiida_localhost):
    from aiida_grimperium.workchains.crystal import CrystalBaseWorkChain

    code = orm.InstalledCode(label='crystal-proto', computer=aiida_localhost, filepath_executable='/bin/true',
                             default_calc_job_plugin='grimperium.crystal')
    overrides = {'crystal': {'parameters': {'hamiltonian': 'B3LYP'}}}
    builder = CrystalBaseWorkChain.get_builder_from_protocol(code, mgo_primitive, protocol, overrides, relax=True)
    assert overrides == {'crystal': {'parameters': {'hamiltonian': 'B3LYP'}}}  # not mutated
    parameters = builder.crystal.parameters.get_dict()
    assert validate_parameters(parameters) is None and parameters['hamiltonian'] == 'B3LYP'
    assert parameters['optgeom']['type'] == 'FULLOPTG' and sorted(builder.crystal.basis_sets) == ['Mg', 'O']
    scf = read_d12(generate_inputs(mgo_primitive, parameters, sto3g())['INPUT'])['scf']
    expected = {'fast': '6 6 6 6 12', 'balanced': '7 7 7 7 14', 'stringent': '8 8 8 8 16'}[protocol]
    assert scf[scf.index('TOLINTEG') + 1] == expected
    assert scf[:2] == ['DFT', 'B3LYP'] and ('XLGRID' in scf) == (protocol == 'stringent')
