"""Raw parser of the CRYSTAL main output (what ``crystal``/``Pcrystal`` print on stdout), AiiDA-free.

Reads CRYSTAL14/17/22/23 outputs, and any ``CRYSTALnn`` banner it has not seen: the version is reported, never
refused. One pass over the lines; each section is recognised by its heading and the values after it are read
by a small state machine, so memory does not grow with the file and a truncated file returns what it had.

Keys: ``energy`` (eV) and ``energy_hartree`` (the last total energy: the end of the SCF, or of the geometry
optimisation), ``band_gap`` (eV, the last one printed; 0 for a conducting state), ``band_gap_type``
(``direct``/``indirect`` as printed), ``scf_converged``, ``geometry_converged``, ``structure`` (the last
geometry printed, primitive cell, Angstrom) and the program version read from the banner.
``exit_detail`` holds CRYSTAL's own words for a failure verdict (the ``ERROR ****`` line, the ``SCF ENDED - TOO
MANY CYCLES`` or ``OPT END - FAILED`` line, ``CONVERGENCE TESTS UNSATISFIED ...``).
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable

from ...chemistry import HARTREE_TO_EV
from ...exit_codes import ExitCodeSpec, make_table
from . import FLOAT, find_output, floats, parse_file

EXIT_CODES = make_table(
    ExitCodeSpec(350, 'ERROR_CRYSTAL_ERROR', 'CRYSTAL stopped with an ERROR message that no other exit code covers.'),
    ExitCodeSpec(410, 'ERROR_SCF_NOT_CONVERGED', 'The SCF stopped after too many cycles (SCF ENDED - TOO MANY CYCLES).'),
    ExitCodeSpec(411, 'ERROR_SCF_FAILED', 'CRYSTAL stopped because an SCF failed (SCF FAILED).'),
    ExitCodeSpec(420, 'ERROR_BASIS_SET_LINEARLY_DEPENDENT', 'The basis set is linearly dependent for this geometry.'),
    ExitCodeSpec(500, 'ERROR_GEOMETRY_NOT_CONVERGED', 'The geometry optimisation ended without converging (OPT END - FAILED).'),
)

#: Names the main output may have in a run folder (the CalcJob writes ``main.out``; replays name it ``*.stdout``).
OUTPUT_NAMES = ('main.out', 'main.out.stdout', '*.out', '*.stdout')

_BANNER = re.compile(r'^\s*\*\s+(CRYSTAL\s?(\d+)\w*)\s+\*\s*$')
_BANNER_DETAIL = re.compile(r'^\s*\*\s+(\w[\w ]*:.*?)\s*\*\s*$')
_TOTAL_ENERGY = re.compile(rf'TOTAL ENERGY\s*\(([^)]*)\)\s*\(AU\)\s*\(\s*(\d+)\)\s*({FLOAT})')
_DISP_ENERGY = re.compile(rf'TOTAL ENERGY \+ DISP \(AU\)\s+({FLOAT})')
_SCF_ENDED = re.compile(rf'SCF ENDED - (.*?)\s+E\(AU\)\s*({FLOAT})\s+CYCLES\s+(\d+)')
_OPT_END = re.compile(rf'OPT END - (CONVERGED|FAILED)\s*\*\s*E\(AU\):\s*({FLOAT})\s+POINTS\s+(\d+)')
_CYCLE_GAP = re.compile(rf'^\s*(DIRECT|INDIRECT) ENERGY BAND GAP:\s*({FLOAT})')
_FINAL_GAP = re.compile(rf'^\s*(ALPHA |BETA )?BAND GAP:\s*({FLOAT})\s*eV')
_CONDUCTING = re.compile(rf'CONDUCTING STATE - EFERMI\(AU\)\s*({FLOAT})')
_WALLTIME = re.compile(r'DUE TO TIME LIMIT|TIME LIMIT EXCEEDED|walltime.*exceed|exceed.*walltime', re.IGNORECASE)
_ATOM_LINE = re.compile(rf'^\s*\d+\s+(?:[TF]\s+)?(\d+)\s+([A-Za-z]{{1,3}})\s+({FLOAT})\s*({FLOAT})\s*({FLOAT})\s*$')


def cell_from_parameters(a, b, c, alpha, beta, gamma) -> list[list[float]]:
    """Lattice vectors (rows, Angstrom) from cell parameters: ``a`` along x, ``b`` in the xy plane."""
    ca, cb, cg = (math.cos(math.radians(x)) for x in (alpha, beta, gamma))
    sg = math.sin(math.radians(gamma))
    cx = c * cb
    cy = c * (ca - cb * cg) / sg
    cz = math.sqrt(max(c * c - cx * cx - cy * cy, 0.0))
    return [[a, 0.0, 0.0], [b * cg, b * sg, 0.0], [cx, cy, cz]]


def _symbol(label: str) -> str:
    return label[:1].upper() + label[1:].lower()


class _Reader:
    """The state of one pass over the output; :meth:`feed` takes one line."""

    def __init__(self):
        self.r: dict = {
            'program': None, 'program_version': None, 'program_version_detail': None,
            'energy_hartree': None, 'energy_method': None, 'scf_converged': None, 'scf_cycles': None,
            'geometry_optimization': False, 'geometry_converged': None, 'optimization_steps': None,
            'band_gap': None, 'band_gap_type': None, 'conducting': None, 'fermi_energy': None,
            'calculation_type': None, 'space_group': None, 'dimensionality': None,
            'num_electrons': None, 'num_ao': None, 'wall_time_seconds': None,
            'terminated_normally': False, 'errors': [], 'warnings': [],
        }
        self.started = False
        self.scf_too_many = False
        self.scf_failed = False
        self.linear_dependence = False
        self.out_of_walltime = False
        self.opt_end_energy = None
        self.words: dict[str, str] = {}      # CRYSTAL's own line for each kind of failure met (first one)
        self.gaps: dict[str, tuple] = {}     # spin channel -> (gap eV, type) or (0.0, 'conducting')
        self.channel = 'all'
        self.mode = None                     # the section being read, with `self.count` lines left or read
        self.count = 0
        self.cell = None                     # Cartesian lattice vectors last printed
        self.params = None                   # cell parameters last printed (primitive cell)
        self.columns = None                  # per column: True if fractional
        self.atoms: list = []
        self.structure = None
        self.lattice_parameters = None

    # -- sections spanning several lines -----------------------------------------------------------------
    def _section(self, line: str) -> bool:
        """Consume ``line`` if a multi-line section is open; return True when it was consumed."""
        mode = self.mode
        if mode == 'banner':                 # the line under the banner: 'public : 1.0.1 - Feb 1st, 2017'
            self.mode = None
            match = _BANNER_DETAIL.match(line)
            if match:
                self.r['program_version_detail'] = match.group(1)
            return bool(match)
        if mode == 'cell':                   # 'X Y Z' header, then three vectors
            values = floats(line)
            if len(values) == 3:
                self.atoms.append(values)
                if len(self.atoms) == 3:
                    self.cell, self.atoms, self.mode = self.atoms, [], None
            elif self.atoms:
                self.mode, self.atoms = None, []
            return True
        if mode == 'params':                 # 'PRIMITIVE CELL ...', header, then a b c alpha beta gamma
            values = floats(line)
            if 'ALPHA' in line or 'CENTRING' in line or 'VOLUME' in line and len(values) < 6:
                return True
            if len(values) >= 6:
                self.params = values[:6]
            self.mode = None
            return True
        if mode in ('atoms_cart', 'atoms_frac'):
            if not self.atoms and ('*' in line or 'ATOM' in line or not line.strip()):
                if 'X/A' in line or 'ANGSTROM' in line:
                    self.columns = ['ANG' not in part for part in re.split(r'\s+(?=[XYZ][/(])', line.strip())[1:4]]
                return True
            match = _ATOM_LINE.match(line)
            if match:
                number, label = int(match.group(1)), match.group(2)
                self.atoms.append((number, _symbol(label), [float(match.group(i)) for i in (3, 4, 5)]))
                return True
            self._close_atoms(mode)
            return False                     # the line that ended the block may start another section
        return False

    def _close_atoms(self, mode: str) -> None:
        atoms, self.atoms, self.mode = self.atoms, [], None
        if not atoms:
            return
        columns = self.columns if self.columns and len(self.columns) == 3 else [True, True, True]
        if mode == 'atoms_cart' or not any(columns):   # Cartesian block, or a molecule's X(ANGSTROM) columns
            cell, positions = (self.cell if mode == 'atoms_cart' else None), [a[2] for a in atoms]
        else:
            if self.params is None:
                return
            cell = cell_from_parameters(*self.params)
            positions = []
            for _, _, coords in atoms:
                position = [0.0, 0.0, 0.0]
                for axis, (value, fractional) in enumerate(zip(coords, columns)):
                    if fractional:
                        position = [p + value * v for p, v in zip(position, cell[axis])]
                    else:
                        position[axis] += value
                positions.append(position)
            self.lattice_parameters = dict(zip(('a', 'b', 'c', 'alpha', 'beta', 'gamma'), self.params))
        dim = self.r['dimensionality']
        pbc = [True, True, True] if dim is None else [axis < dim for axis in range(3)]
        self.structure = {
            'cell': cell, 'pbc': pbc, 'symbols': [a[1] for a in atoms],
            'atomic_numbers': [a[0] % 100 for a in atoms], 'positions': positions,
        }

    # -- one line ----------------------------------------------------------------------------------------
    def feed(self, line: str) -> None:
        if self.mode and self._section(line):
            return
        r = self.r
        if 'DIRECT LATTICE VECTORS CARTESIAN COMPONENTS (ANGSTROM)' in line:
            self.mode, self.atoms = 'cell', []
        elif 'CARTESIAN COORDINATES - PRIMITIVE CELL' in line:
            self.mode, self.atoms = 'atoms_cart', []
        elif line.lstrip().startswith('LATTICE PARAMETERS') and 'BOHR' in line:
            self.mode = 'params'
        elif 'ATOMS IN THE ASYMMETRIC UNIT' in line:
            self.mode, self.atoms, self.columns = 'atoms_frac', [], None
        elif 'DIMENSIONALITY OF THE SYSTEM' in line:
            values = floats(line.split('SYSTEM')[-1])
            if values:
                r['dimensionality'] = int(values[0])
        elif (match := _BANNER.match(line)) and r['program'] is None:
            r['program'], r['program_version'] = match.group(1).replace(' ', ''), match.group(2)
            self.mode = 'banner'
        elif 'EEEEEEEEEE STARTING' in line:
            self.started = True
        elif re.match(r'^\s*E{10}\s+TERMINATION', line):
            r['terminated_normally'] = True
        elif 'SPACE GROUP' in line and ':' in line and r['space_group'] is None:
            r['space_group'] = ' '.join(line.split(':', 1)[1].split())
        elif 'TYPE OF CALCULATION :' in line:
            r['calculation_type'] = line.split(':', 1)[1].strip()
        elif 'N. OF ELECTRONS PER CELL' in line:
            r['num_electrons'] = int(floats(line.split('CELL', 1)[1])[0])
        elif 'NUMBER OF AO' in line:
            r['num_ao'] = int(floats(line.split('AO', 1)[1])[0])
        elif line.lstrip().startswith('CYC '):
            self.channel = 'all'
        elif 'ALPHA      ELECTRONS' in line or 'BETA       ELECTRONS' in line:
            self.channel = line.split()[0].lower()
        elif match := _CYCLE_GAP.match(line):
            if self.channel != 'all':
                self.gaps.pop('all', None)   # an open shell: the spin channels replace an earlier closed verdict
            self.gaps[self.channel] = (float(match.group(2)), match.group(1).lower())
        elif match := _FINAL_GAP.match(line):
            channel = (match.group(1) or 'all').strip().lower()
            if channel == 'all':
                self.gaps = {}
            self.gaps[channel] = (float(match.group(2)), None)
        elif match := _CONDUCTING.search(line):
            if self.channel == 'all':
                self.gaps = {}
            else:
                self.gaps.pop('all', None)
            self.gaps[self.channel] = (0.0, 'conducting')
            r['fermi_energy'] = float(match.group(1)) * HARTREE_TO_EV
        elif 'INSULATING STATE' in line and self.channel == 'all':
            r['fermi_energy'] = None
        elif match := _SCF_ENDED.search(line):
            r['scf_converged'], r['scf_cycles'] = 'CONVERGENCE' in match.group(1), int(match.group(3))
            self.scf_too_many = self.scf_too_many or 'TOO MANY CYCLES' in match.group(1)
            if 'CONVERGENCE' not in match.group(1):
                self._words('scf', line)
            r['energy_hartree'] = float(match.group(2))   # the TOTAL ENERGY line that follows, if any, wins
        elif match := _TOTAL_ENERGY.search(line):
            r['energy_method'] = match.group(1).strip()
            r['energy_hartree'], r['scf_cycles'] = float(match.group(3)), int(match.group(2))
            if r['scf_converged'] is None or r['geometry_optimization']:
                r['scf_converged'] = True   # CRYSTAL prints a point's total energy only once its SCF converged
        elif match := _DISP_ENERGY.search(line):
            r['energy_hartree'], r['dispersion_correction'] = float(match.group(1)), True
        elif match := _OPT_END.search(line):
            r['geometry_converged'] = match.group(1) == 'CONVERGED'
            r['optimization_steps'] = int(match.group(3))
            if match.group(1) == 'FAILED':
                self._words('geometry', line)
            self.opt_end_energy = float(match.group(2))
        elif 'OPTIMIZATION - POINT' in line:
            r['geometry_optimization'] = True
            point = floats(line.split('POINT')[-1])
            r['optimization_steps'] = int(point[0]) if point else r['optimization_steps']
        elif 'CONVERGENCE TESTS UNSATISFIED' in line.upper():
            r['geometry_converged'] = False
            self._words('geometry', line)
        elif 'TELAPSE' in line:
            values = floats(line.split('TELAPSE', 1)[1])
            if values:
                r['wall_time_seconds'] = values[0]
        elif 'ERROR' in line and '****' in line or 'SCF abnormal end' in line:
            self._error(line)
        elif 'WARNING' in line and '****' in line:
            text = ' '.join(line.split())
            if text not in r['warnings'] and len(r['warnings']) < 50:
                r['warnings'].append(text)
        elif _WALLTIME.search(line):
            self.out_of_walltime = True
            self._words('walltime', line)
        if 'SCF FAILED' in line:
            self.scf_failed = True
            self._words('scf_failed', line)

    def _words(self, kind: str, line: str) -> None:
        text = ' '.join(line.replace('*', ' ').split()) if kind == 'geometry' else ' '.join(line.split())
        text = text.strip('= ')
        if kind in self.words:
            if kind == 'geometry' and text not in self.words[kind]:
                self.words[kind] = f'{self.words[kind]}; {text}'   # UNSATISFIED ... then OPT END - FAILED
            return
        self.words[kind] = text

    def _error(self, line: str) -> None:
        text = ' '.join(line.split())
        if len(self.r['errors']) < 50:
            self.r['errors'].append(text)
        if 'LINEARLY DEPENDENT' in text.upper():
            self.linear_dependence = True
            self._words('linear', line)
        if 'SCF FAILED' in text:
            self.scf_failed = True

    # -- the verdict -------------------------------------------------------------------------------------
    def result(self) -> dict:
        if self.mode in ('atoms_cart', 'atoms_frac'):
            self._close_atoms(self.mode)
        r = self.r
        if r['energy_hartree'] is None and self.opt_end_energy is not None:
            r['energy_hartree'] = self.opt_end_energy
        r['energy'] = None if r['energy_hartree'] is None else r['energy_hartree'] * HARTREE_TO_EV
        if self.gaps:
            if 'alpha' in self.gaps or 'beta' in self.gaps:
                for channel in ('alpha', 'beta'):
                    if channel in self.gaps:
                        r[f'band_gap_{channel}'] = self.gaps[channel][0]
            gap, kind = min(self.gaps.values(), key=lambda item: item[0])
            r['band_gap'], r['band_gap_type'] = gap, kind
            r['conducting'] = kind == 'conducting'
        if self.scf_failed:
            r['scf_converged'] = False
        r['structure'] = self.structure
        r['lattice_parameters'] = self.lattice_parameters if self.structure else None
        r['exit_label'] = label = self.verdict()
        detail = self._detail(label)
        if detail:
            r['exit_detail'] = detail
        return r

    def _detail(self, label: str | None) -> str | None:
        """CRYSTAL's words for ``label``: the line that caused it, then any ERROR line after it."""
        kinds = {'ERROR_OUT_OF_WALLTIME': 'walltime', 'ERROR_BASIS_SET_LINEARLY_DEPENDENT': 'linear',
                 'ERROR_SCF_FAILED': 'scf_failed', 'ERROR_SCF_NOT_CONVERGED': 'scf',
                 'ERROR_GEOMETRY_NOT_CONVERGED': 'geometry'}
        if label is None or label not in kinds and label != 'ERROR_CRYSTAL_ERROR':
            return None
        words = [self.words[kinds[label]]] if kinds.get(label) in self.words else []
        errors = [e for e in self.r['errors'] if e.startswith('ERROR') and e not in words]
        text = '; '.join(words + errors[:2])
        return text or None

    def verdict(self) -> str | None:
        r = self.r
        if r['program'] is None and not self.started and r['energy_hartree'] is None:
            return 'ERROR_OUTPUT_PARSE' if not self.out_of_walltime else 'ERROR_OUT_OF_WALLTIME'
        if self.out_of_walltime:
            return 'ERROR_OUT_OF_WALLTIME'
        if self.linear_dependence:
            return 'ERROR_BASIS_SET_LINEARLY_DEPENDENT'
        if self.scf_failed:
            return 'ERROR_SCF_FAILED'
        if self.scf_too_many or r['scf_converged'] is False:
            return 'ERROR_SCF_NOT_CONVERGED'
        if r['geometry_converged'] is False:
            return 'ERROR_GEOMETRY_NOT_CONVERGED'
        if r['errors']:
            return 'ERROR_CRYSTAL_ERROR'
        if not r['terminated_normally']:
            return 'ERROR_OUTPUT_INCOMPLETE'
        if r['energy_hartree'] is None:
            return 'ERROR_OUTPUT_PARSE'
        if r['geometry_optimization'] and r['geometry_converged'] is None:
            return 'ERROR_GEOMETRY_NOT_CONVERGED'
        return None


def parse_lines(lines: Iterable[str]) -> dict:
    """Parse the CRYSTAL main output, line by line; never raises on odd text (see the module docstring)."""
    reader = _Reader()
    for line in lines:
        try:
            reader.feed(line)
        except (ValueError, IndexError, ArithmeticError):
            reader.mode, reader.atoms = None, []   # a mangled line inside a section: drop that section only
    try:
        return reader.result()
    except (ValueError, IndexError, ArithmeticError, TypeError) as exc:
        return {'exit_label': 'ERROR_OUTPUT_PARSE', 'error': f'{type(exc).__name__}: {exc}'}


def parse_path(path) -> dict:
    """Parse ``path``: the main output file, or a run folder holding ``main.out`` (or a replayed ``*.stdout``)."""
    return parse_file(find_output(path, OUTPUT_NAMES), parse_lines)
