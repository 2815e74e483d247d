"""``grimperium.crystal``: a CRYSTAL14-23 SCF or geometry optimisation from a ``StructureData``.

The ``.d12`` input is rendered from ``templates/crystal/main.d12.j2`` (sandboxed Jinja2). The geometry block is

* ``MOLECULE`` (point group 1, Cartesian coordinates) for a structure without periodicity;
* ``CRYSTAL`` with the space-group number, the minimal cell parameters and the irreducible atoms of the
  spglib-standardised conventional cell (pymatgen's ``SpacegroupAnalyzer``), the default for crystals;
* ``EXTERNAL``: a ``fort.34`` holding the cell as given, its symmetry operations in Cartesian form and all
  atoms. ``auto`` uses it for the space groups with two ITA origin choices, where the ``CRYSTAL`` input would
  depend on CRYSTAL's choice of origin, and for slabs and polymers.

Basis sets come from a library (:mod:`aiida_grimperium.basis_sets`) as one ``SinglefileData`` per element.
A restart reads the density matrix of a previous run (``fort.9`` of ``parent_folder``, or a ``wavefunction``
file) as ``fort.20`` with ``GUESSP``.
"""
from __future__ import annotations

import math
import re

import numpy as np
from aiida import orm
from aiida.common import datastructures

from ..parsers.raw.crystal import EXIT_CODES
from ..structures import structure_symbols_positions
from ..templating import render
from .base import GrimperiumCalcJob

#: Space groups with two origin choices in the International Tables: ``auto`` writes these as EXTERNAL.
TWO_ORIGIN_CHOICES = frozenset(
    {48, 50, 59, 68, 70, 85, 86, 88, 125, 126, 129, 130, 133, 134, 137, 138, 141, 142, 201, 203, 222, 224, 227, 228}
)
#: Crystal-system codes of the fort.34 header.
CRYSTAL_TYPE = {'triclinic': 1, 'monoclinic': 2, 'orthorhombic': 3, 'tetragonal': 4, 'trigonal': 5,
                'hexagonal': 5, 'cubic': 6}
KEYWORD = re.compile(r'^[A-Z0-9][A-Z0-9-]{0,19}\Z')     # one CRYSTAL keyword: no spaces, no newlines
OPTGEOM_TYPES = ('FULLOPTG', 'ATOMONLY', 'CELLONLY', 'ITATOCEL', 'INTREDUN')
MIXING = ('ANDERSON', 'BROYDEN', 'DIIS', 'NODIIS')
GRIDS = ('OLDGRID', 'LGRID', 'XLGRID', 'XXLGRID')
SCF_KEYS = {'title', 'hamiltonian', 'spin', 'shrink', 'kpoints_distance', 'tolinteg', 'toldee', 'maxcycle',
            'fmixing', 'levshift', 'smear', 'mixing', 'spinlock', 'ppan', 'dft_grid', 'optgeom'}


def minimal_lattice(number: int, a, b, c, alpha, beta, gamma) -> list[float]:
    """The cell parameters CRYSTAL reads for space group ``number`` (standard ITA setting, hexagonal axes)."""
    if number <= 2:
        return [a, b, c, alpha, beta, gamma]
    if number <= 15:
        return [a, b, c, beta]             # monoclinic, unique axis b
    if number <= 74:
        return [a, b, c]
    if number <= 194:
        return [a, c]                      # tetragonal, trigonal (hexagonal axes) and hexagonal
    return [a]


def crystal_geometry(symbols, cell, positions, pbc, *, symmetry: str = 'auto', symprec: float = 1e-3) -> dict:
    """The geometry context of the template (``kind`` MOLECULE / CRYSTAL / EXTERNAL) plus ``fort34`` context.

    ``symmetry``: ``auto`` (CRYSTAL space-group input when unambiguous, else EXTERNAL), ``spacegroup``,
    ``external`` (fort.34 with the structure's symmetry operations) or ``none`` (fort.34 with the identity only).
    """
    from pymatgen.core import Lattice, Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    numbers = [_atomic_number(s) for s in symbols]
    positions = np.asarray(positions, dtype=float).reshape(-1, 3)
    if not any(pbc):
        atoms = [{'number': n, 'x': p[0], 'y': p[1], 'z': p[2]} for n, p in zip(numbers, positions)]
        return {'kind': 'MOLECULE', 'atoms': atoms}
    if not all(pbc) and symmetry in ('auto', 'spacegroup'):
        symmetry = 'external'               # CRYSTAL's SLAB/POLYMER input takes layer groups: not generated here
    structure = Structure(Lattice(cell), symbols, positions, coords_are_cartesian=True)
    analyzer = SpacegroupAnalyzer(structure, symprec=symprec)
    number = analyzer.get_space_group_number()
    if symmetry == 'auto':
        symmetry = 'external' if number in TWO_ORIGIN_CHOICES else 'spacegroup'
    if symmetry == 'spacegroup':
        refined = analyzer.get_refined_structure()
        sites = SpacegroupAnalyzer(refined, symprec=symprec).get_symmetrized_structure().equivalent_sites
        atoms = [{'number': _atomic_number(g[0].specie.symbol), 'x': _clean(g[0].frac_coords[0]),
                  'y': _clean(g[0].frac_coords[1]), 'z': _clean(g[0].frac_coords[2])} for g in sites]
        return {'kind': 'CRYSTAL', 'space_group': number, 'atoms': atoms,
                'lattice': minimal_lattice(number, *refined.lattice.abc, *refined.lattice.angles)}
    if symmetry not in ('external', 'none'):
        raise ValueError(f'unknown symmetry mode `{symmetry}`: use auto, spacegroup, external or none')
    lattice = np.asarray(cell, dtype=float)
    if symmetry == 'none':
        rotations, translations, number = [np.eye(3)], [np.zeros(3)], 1
    else:
        dataset = analyzer.get_symmetry_dataset()
        rotations, translations = dataset.rotations, dataset.translations
    operations = []
    for rotation, translation in zip(rotations, translations):   # fractional -> Cartesian (x = A^T f)
        cart = lattice.T @ np.asarray(rotation, dtype=float) @ np.linalg.inv(lattice.T)
        operations.append({'rotation': _clean(cart).tolist(), 'translation': _clean(np.asarray(translation) @ lattice).tolist()})
    system = analyzer.get_crystal_system() if symmetry != 'none' else 'triclinic'
    atoms = [{'number': n, 'x': p[0], 'y': p[1], 'z': p[2]} for n, p in zip(numbers, positions)]
    return {'kind': 'EXTERNAL', 'fort34': {
        'dimensionality': int(sum(pbc)), 'crystal_type': CRYSTAL_TYPE[system], 'cell': lattice.tolist(),
        'operations': operations, 'atoms': atoms, 'space_group': number}}


def _clean(value):
    """Round away numerical noise (1e-17 → 0, -0.0 → 0.0) so inputs are stable and readable."""
    return np.round(np.asarray(value, dtype=float), 10) + 0.0 if np.ndim(value) else round(float(value), 10) + 0.0


def _atomic_number(symbol: str) -> int:
    from ..chemistry import atomic_number

    return atomic_number(symbol)


def shrink_from_distance(cell, distance: float) -> list[int]:
    """SHRINK ``IS ISP`` for a k-point spacing ``distance`` (1/Angstrom, 2π included), like pw's kpoints_distance."""
    reciprocal = 2 * math.pi * np.linalg.inv(np.asarray(cell, dtype=float)).T
    n = max(1, max(math.ceil(np.linalg.norm(b) / distance) for b in reciprocal))
    return [n, 2 * n]


def validate_parameters(parameters: dict) -> str | None:
    """An error message when ``parameters`` has unknown keys or values that are not plain CRYSTAL input."""
    unknown = set(parameters) - SCF_KEYS
    if unknown:
        return f'unknown CRYSTAL parameters {sorted(unknown)}; allowed: {sorted(SCF_KEYS)}'
    hamiltonian = str(parameters.get('hamiltonian', 'HF'))
    if not all(KEYWORD.match(word) for word in hamiltonian.split()) or len(hamiltonian.split()) > 2:
        return f'`hamiltonian` must be HF or one or two CRYSTAL DFT keywords (PBE, B3LYP, PBE0...), got {hamiltonian!r}'
    for key, allowed in (('mixing', MIXING), ('dft_grid', GRIDS)):
        if key in parameters and parameters[key] not in allowed:
            return f'`{key}` must be one of {allowed}'
    for key, length in (('tolinteg', 5), ('levshift', 2), ('spinlock', 2)):
        value = parameters.get(key)
        if value is not None and (len(value) != length or not all(isinstance(v, int) for v in value)):
            return f'`{key}` must be a list of {length} integers'
    shrink = parameters.get('shrink')
    if shrink is not None and not (isinstance(shrink, int) or all(isinstance(v, int) for v in shrink)):
        return '`shrink` must be an integer or a list [IS, ISP] of integers'
    optgeom = parameters.get('optgeom')
    if optgeom is not None:
        if not isinstance(optgeom, dict) or optgeom.get('type', 'FULLOPTG') not in OPTGEOM_TYPES:
            return f'`optgeom` must be a dict with `type` one of {OPTGEOM_TYPES}'
        if set(optgeom) - {'type', 'maxcycle', 'toldeg', 'toldex', 'toldee'}:
            return '`optgeom` keys: type, maxcycle, toldeg, toldex, toldee'
    title = str(parameters.get('title', ''))
    if not title.isprintable() or len(title) > 80:  # \n, \r or any control character would split the input
        return '`title` must be one line of at most 80 printable characters'
    return None


def scf_context(parameters: dict, cell, periodic: bool, guessp: bool) -> dict:
    """The ``scf`` context of the template from validated ``parameters``."""
    hamiltonian = str(parameters.get('hamiltonian', 'HF')).upper()
    shrink = parameters.get('shrink')
    if shrink is None and periodic and parameters.get('kpoints_distance'):
        shrink = shrink_from_distance(cell, float(parameters['kpoints_distance']))
    if isinstance(shrink, int):
        shrink = [shrink, 2 * shrink]
    return {
        'dft': None if hamiltonian in ('HF', 'RHF', 'UHF') else hamiltonian,
        'spin': bool(parameters.get('spin', False)), 'dft_grid': parameters.get('dft_grid'),
        'shrink': shrink if periodic else None, 'tolinteg': parameters.get('tolinteg'),
        'toldee': parameters.get('toldee'), 'maxcycle': parameters.get('maxcycle'),
        'fmixing': parameters.get('fmixing'), 'levshift': parameters.get('levshift'),
        'smear': parameters.get('smear'), 'mixing': parameters.get('mixing'),
        'spinlock': parameters.get('spinlock'), 'ppan': parameters.get('ppan', False), 'guessp': guessp,
    }


def generate_inputs(structure: orm.StructureData, parameters: dict, basis_texts: dict[str, str],
                    settings: dict | None = None, guessp: bool = False) -> dict[str, str]:
    """``{'INPUT': d12 text, 'fort.34': text (EXTERNAL only)}`` for ``structure`` (no AiiDA node is stored)."""
    settings = settings or {}
    symbols, positions = structure_symbols_positions(structure)
    geometry = crystal_geometry(symbols, structure.cell, positions, structure.pbc,
                                symmetry=settings.get('symmetry', 'auto'), symprec=settings.get('symprec', 1e-3))
    optgeom = parameters.get('optgeom')
    if optgeom is not None:
        optgeom = {'type': 'FULLOPTG', **optgeom}
        if geometry['kind'] == 'MOLECULE' and optgeom['type'] == 'FULLOPTG':
            optgeom['type'] = 'ATOMONLY'       # a molecule has no cell to optimise
    order = sorted(set(symbols), key=lambda s: -_atomic_number(s))   # heaviest first, as in the usual inputs
    files = {'INPUT': render('crystal/main.d12.j2', title=parameters.get('title', 'grimperium CRYSTAL run'),
                             geometry=geometry, optgeom=optgeom, basis_sets=[basis_texts[s] for s in order],
                             scf=scf_context(parameters, structure.cell, geometry['kind'] != 'MOLECULE', guessp))}
    if geometry['kind'] == 'EXTERNAL':
        files['fort.34'] = render('crystal/fort.34.j2', **geometry['fort34'])
    return files


def _validate_inputs(inputs, _):
    structure = inputs.get('structure')
    basis_sets = inputs.get('basis_sets', {})
    if structure is not None:
        missing = sorted(set(structure.get_symbols_set()) - set(basis_sets))
        if missing:
            return f'no basis set given for {missing}: pass `basis_sets` with one SinglefileData per element'
    if 'parent_folder' in inputs and 'wavefunction' in inputs:
        return 'give either `parent_folder` or `wavefunction` to restart from, not both'
    return None


class CrystalCalculation(GrimperiumCalcJob):
    """CRYSTAL (``crystal`` reading ``INPUT`` on stdin, or ``Pcrystal`` reading ``INPUT``) writing ``main.out``."""

    _DEFAULT_INPUT_FILE = 'INPUT'
    _DEFAULT_OUTPUT_FILE = 'main.out'
    _DEFAULT_PARSER = 'grimperium.crystal'
    _DEFAULT_WITHMPI = False
    _RESTART_FILE = 'fort.20'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('structure', valid_type=orm.StructureData, help='Crystal or molecule (pbc all False).')
        spec.input('parameters', valid_type=orm.Dict, validator=lambda node, _: validate_parameters(node.get_dict()),
                   help='Hamiltonian, SCF and OPTGEOM options (see `SCF_KEYS` and docs/crystal.md).')
        spec.input_namespace('basis_sets', valid_type=orm.SinglefileData, dynamic=True,
                             help='One basis-set block per element symbol (see `aiida_grimperium.basis_sets`).')
        spec.input('settings', valid_type=orm.Dict, required=False, help='`symmetry` (auto/spacegroup/external/none), `symprec`.')
        spec.input('parent_folder', valid_type=orm.RemoteData, required=False,
                   help='A previous run whose fort.9 is read as fort.20 (GUESSP).')
        spec.input('wavefunction', valid_type=orm.SinglefileData, required=False,
                   help='A fort.9 wave function file read as fort.20 (GUESSP).')
        spec.inputs.validator = _validate_inputs
        spec.output('output_parameters', valid_type=orm.Dict, help='Energy, band gap, convergence flags, version.')
        spec.output('output_structure', valid_type=orm.StructureData, required=False,
                    help='The last geometry of a geometry optimisation (primitive cell in CRYSTAL orientation).')
        spec.default_output_node = 'output_parameters'
        cls.declare_exit_codes(spec, EXIT_CODES)

    def prepare_for_submission(self, folder):
        basis_texts = {}
        for element, node in self.inputs.basis_sets.items():
            basis_texts[element] = node.get_content('r').strip() + '\n'
        restart = 'parent_folder' in self.inputs or 'wavefunction' in self.inputs
        settings = self.inputs.settings.get_dict() if 'settings' in self.inputs else {}
        files = generate_inputs(self.inputs.structure, self.inputs.parameters.get_dict(), basis_texts, settings, restart)
        for name, text in files.items():
            with folder.open(name, 'w', encoding='utf-8') as handle:
                handle.write(text)

        calcinfo = datastructures.CalcInfo()
        calcinfo.local_copy_list = []
        calcinfo.remote_copy_list = []
        if 'parent_folder' in self.inputs:
            parent = self.inputs.parent_folder
            calcinfo.remote_copy_list.append((parent.computer.uuid, f'{parent.get_remote_path()}/fort.9', self._RESTART_FILE))
        if 'wavefunction' in self.inputs:
            node = self.inputs.wavefunction
            calcinfo.local_copy_list.append((node.uuid, node.filename, self._RESTART_FILE))

        codeinfo = datastructures.CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.stdin_name = self.inputs.metadata.options.input_filename
        codeinfo.stdout_name = self.inputs.metadata.options.output_filename
        codeinfo.withmpi = self.inputs.metadata.options.withmpi
        calcinfo.codes_info = [codeinfo]
        calcinfo.retrieve_list = [self.inputs.metadata.options.output_filename, 'fort.34', 'OPTINFO.DAT']
        return calcinfo
