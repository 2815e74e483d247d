"""Raw parser of Quantum ESPRESSO ``pw.x`` standard output (tested on 6.1 to 7.5), AiiDA-free.

Reads the stdout line by line and returns energies (eV, plus the native Ry value), the energy terms, Fermi
energy or HOMO/LUMO, the band gap, forces, stress, every ionic step (positions and cell as printed by pw.x)
and the final structure of a relax / vc-relax, the SCF and ionic convergence flags and the wall time.
The verdict is ``exit_label``: ``None`` when the run finished as asked, else a label of :data:`EXIT_CODES`
(or of :data:`aiida_grimperium.exit_codes.COMMON`).
"""
from __future__ import annotations

import itertools
import pathlib
import re
from collections.abc import Iterable

from ...exit_codes import ExitCodeSpec, make_table
from . import FLOAT, find_output, floats, iter_lines, looks_binary, parse_file, to_float

RY_TO_EV = 13.605693122994
BOHR_TO_ANGSTROM = 0.529177210903
#: Ry/bohr -> eV/Angstrom, the force unit of the output dictionaries.
RY_BOHR_TO_EV_ANGSTROM = RY_TO_EV / BOHR_TO_ANGSTROM

EXIT_CODES = make_table(
    ExitCodeSpec(320, 'ERROR_CODE_ERROR_MESSAGE', 'pw.x stopped with an error message this parser does not know (see `error_messages`).'),
    ExitCodeSpec(410, 'ERROR_SCF_NOT_CONVERGED', 'The electronic self-consistency was not reached within `electron_maxstep`.'),
    ExitCodeSpec(462, 'ERROR_DIAGONALIZATION_CHOLESKY', 'The diagonalisation failed: problems computing the Cholesky decomposition.'),
    ExitCodeSpec(463, 'ERROR_DIAGONALIZATION_EIGENVECTORS', 'The diagonalisation failed: eigenvectors not converged or S matrix not positive definite.'),
    ExitCodeSpec(500, 'ERROR_IONIC_NOT_CONVERGED', 'The ionic minimisation stopped at `nstep` before reaching the thresholds.'),
    ExitCodeSpec(501, 'ERROR_IONIC_BFGS_HISTORY_FAILURE', 'The BFGS history failed twice in a row: pw.x stopped the ionic minimisation.'),
    ExitCodeSpec(502, 'ERROR_IONIC_FINAL_SCF_FAILED', 'The ionic minimisation converged but the final SCF at the relaxed structure did not.'),
)

#: Known messages of pw.x error blocks (lower case) and their exit labels; the first match wins.
KNOWN_ERRORS = (
    ('cholesky', 'ERROR_DIAGONALIZATION_CHOLESKY'),
    ('s matrix not positive definite', 'ERROR_DIAGONALIZATION_EIGENVECTORS'),
    ('eigenvectors failed to converge', 'ERROR_DIAGONALIZATION_EIGENVECTORS'),
    ('too many bands are not converged', 'ERROR_DIAGONALIZATION_EIGENVECTORS'),
)

_RE_TOTAL = re.compile(rf'^!\s+total energy\s+=\s+({FLOAT})\s+Ry')
_RE_TERMS = {
    'one_electron_energy_ry': re.compile(rf'one-electron contribution\s+=\s+({FLOAT})\s+Ry'),
    'hartree_energy_ry': re.compile(rf'hartree contribution\s+=\s+({FLOAT})\s+Ry'),
    'xc_energy_ry': re.compile(rf'xc contribution\s+=\s+({FLOAT})\s+Ry'),
    'ewald_energy_ry': re.compile(rf'ewald contribution\s+=\s+({FLOAT})\s+Ry'),
    'smearing_energy_ry': re.compile(rf'smearing contrib. \(-TS\)\s+=\s+({FLOAT})\s+Ry'),
    'one_center_paw_energy_ry': re.compile(rf'one-center paw contrib.\s+=\s+({FLOAT})\s+Ry'),
    'total_all_electron_energy_ry': re.compile(rf'total all-electron energy\s+=\s+({FLOAT})\s+Ry'),
}
_RE_FERMI = re.compile(rf'the Fermi energy is\s+({FLOAT})\s+ev', re.I)
_RE_FERMI_UPDW = re.compile(rf'the spin up/dw Fermi energies are\s+({FLOAT})\s+({FLOAT})\s+ev', re.I)
_RE_HOMO_LUMO = re.compile(rf'highest occupied, lowest unoccupied level \(ev\):\s+({FLOAT})\s+({FLOAT})')
_RE_HOMO = re.compile(rf'highest occupied level \(ev\):\s+({FLOAT})')
_RE_CONVERGED = re.compile(r'convergence has been achieved in\s+(\d+)\s+iterations')
_RE_NOT_CONVERGED = re.compile(r'convergence NOT achieved after\s+(\d+)\s+iterations')
_RE_FORCE = re.compile(rf'atom\s+\d+\s+type\s+\d+\s+force =\s+({FLOAT})\s+({FLOAT})\s+({FLOAT})')
_RE_TOTAL_FORCE = re.compile(rf'Total force =\s+({FLOAT})')
_RE_STRESS = re.compile(rf'total\s+stress\s+\(Ry/bohr\*\*3\)\s+\(kbar\)\s+P=\s*({FLOAT})')
_RE_WALL = re.compile(r'PWSCF\s*:.*CPU\s+(.*)\s+WALL')
_RE_ALAT = re.compile(rf'lattice parameter \(alat\)\s+=\s+({FLOAT})\s+a\.u\.')
_RE_ENTHALPY = re.compile(rf'Final (?:enthalpy|energy)\s+=\s+({FLOAT})\s+Ry')
_RE_BFGS_DONE = re.compile(r'bfgs converged in\s+(\d+)\s+scf cycles and\s+(\d+)\s+bfgs steps')
_RE_VERSION = re.compile(r'Program PWSCF v\.(\S+) starts')
_RE_BANDS = re.compile(r'^\s*k =.*bands \(ev\)')
_BANDS_END = ('highest', 'the Fermi', 'the spin', '!', 'convergence', 'total energy', 'Writing', 'End of')
_RE_NOT_CONV_EIG = re.compile(r'c_bands:\s+(\d+) eigenvalues not converged')


def _wall_seconds(text: str) -> float | None:
    """``1h 2m``, ``3m25.31s`` or ``0.12s`` as printed in the PWSCF timing line, in seconds."""
    total, found = 0.0, False
    for value, unit in re.findall(r'(\d+(?:\.\d*)?)\s*([hms])', text):
        total += float(value) * {'h': 3600.0, 'm': 60.0, 's': 1.0}[unit]
        found = True
    return total if found else None


def _block_unit(line: str) -> tuple[str, float | None]:
    """Unit of a ``CELL_PARAMETERS`` / ``ATOMIC_POSITIONS`` header: ``angstrom``, ``bohr``, ``alat``, ``crystal``."""
    low = line.lower()
    for unit in ('angstrom', 'bohr', 'crystal', 'alat'):
        if unit in low:
            numbers = floats(low.split('alat', 1)[1]) if unit == 'alat' else []
            return unit, (numbers[0] if numbers else None)
    return 'alat', None


class _State:
    """Mutable parse state; a class so that the block readers below stay small."""

    def __init__(self):
        self.result: dict = {
            'code_version': None, 'energy': None, 'energy_ry': None, 'fermi_energy': None, 'homo': None,
            'lumo': None, 'band_gap': None, 'scf_converged': None, 'scf_iterations': None,
            'ionic_converged': None, 'number_ionic_steps': 0, 'forces': None, 'total_force': None,
            'stress_kbar': None, 'pressure_kbar': None, 'final_enthalpy_ry': None, 'wall_time_seconds': None,
            'job_done': False, 'interrupted_walltime': False, 'unconverged_eigenvalue_warnings': 0,
            'error_messages': [], 'trajectory': [], 'final_structure': None,
        }
        self.alat_bohr: float | None = None
        self.cell: list[list[float]] | None = None  # current cell, Angstrom
        self.block: str | None = None
        self.block_rows: list[list[float]] = []
        self.block_symbols: list[str] = []
        self.block_unit: tuple[str, float | None] = ('alat', None)
        self.in_final = False
        self.error_lines: list[str] | None = None
        self.eigenvalues: list[float] = []
        self.reading_bands = False
        self.reading_occupations = False
        self.bfgs_failed = False
        self.max_steps_reached = False
        self.final_scf = False
        self.final_scf_failed = False
        self.forces_open = False

    # -- ionic step bookkeeping ---------------------------------------------------------------------------
    def step(self) -> dict:
        """The current ionic step; a new one starts at each ``!`` total energy."""
        trajectory = self.result['trajectory']
        if not trajectory:
            trajectory.append({})
        return trajectory[-1]

    def close_block(self):
        """Finish a ``CELL_PARAMETERS`` or ``ATOMIC_POSITIONS`` block: convert it to Angstrom."""
        unit, alat = self.block_unit
        rows = self.block_rows
        if not self.in_final and 'energy_ry' in self.step() and rows:
            # coordinates printed after a '!' energy are the geometry of the *next* ionic step
            self.result['trajectory'].append({})
        if self.block == 'cell' and len(rows) == 3:
            scale = {'angstrom': 1.0, 'bohr': BOHR_TO_ANGSTROM}.get(unit)
            if scale is None:  # alat units, with the alat printed in the header or the one of the run
                scale = (alat or self.alat_bohr or 0.0) * BOHR_TO_ANGSTROM
            self.cell = [[x * scale for x in row] for row in rows]
            if not self.in_final:
                self.step()['cell'] = self.cell
        elif self.block == 'positions' and rows:
            if unit == 'crystal' and self.cell:
                rows = [[sum(r[i] * self.cell[i][j] for i in range(3)) for j in range(3)] for r in rows]
            elif unit == 'bohr':
                rows = [[x * BOHR_TO_ANGSTROM for x in r] for r in rows]
            elif unit == 'alat':
                rows = [[x * (self.alat_bohr or 0.0) * BOHR_TO_ANGSTROM for x in r] for r in rows]
            if not self.in_final:
                self.step()['positions'] = rows
                self.step()['symbols'] = list(self.block_symbols)
            else:
                self.result['final_structure'] = {'symbols': list(self.block_symbols), 'positions': rows, 'cell': self.cell}
        self.block, self.block_rows, self.block_symbols = None, [], []


def _feed(state: _State, line: str) -> None:  # noqa: C901 - one flat dispatch keeps the parser streaming
    result = state.result
    stripped = line.strip()

    # error blocks: lines between two rows of '%' characters
    if stripped.startswith('%%%%%'):
        if state.error_lines is None:
            state.error_lines = []
        else:  # stdout and CRASH repeat a message, a restarted run too: keep each once, as it comes
            if (message := _error_message(state.error_lines)) not in result['error_messages']:
                result['error_messages'].append(message)
            state.error_lines = None
        return
    if state.error_lines is not None:
        if stripped and not stripped.startswith('task #'):
            state.error_lines.append(stripped)
        return

    # coordinate blocks
    if state.block is not None:
        parts = stripped.split()
        if state.block == 'cell' and len(parts) == 3 and len(floats(stripped)) == 3:
            state.block_rows.append(floats(stripped))
            if len(state.block_rows) == 3:
                state.close_block()
            return
        if state.block == 'positions' and len(parts) >= 4 and not parts[0][0].isdigit():
            values = floats(' '.join(parts[1:4]))
            if len(values) == 3:
                state.block_symbols.append(parts[0])
                state.block_rows.append(values)
                return
        state.close_block()
    if stripped.startswith('CELL_PARAMETERS'):
        state.block, state.block_unit, state.block_rows = 'cell', _block_unit(stripped), []
        return
    if stripped.startswith('ATOMIC_POSITIONS'):
        state.block, state.block_unit, state.block_rows = 'positions', _block_unit(stripped), []
        return
    if stripped.startswith('Begin final coordinates'):
        state.in_final = True
        return
    if stripped.startswith('End final coordinates'):
        state.in_final = False
        return

    # eigenvalues of the last electronic calculation, used for the gap when a Fermi energy is printed
    if stripped.startswith('End of self-consistent calculation') or stripped.startswith('End of band structure calculation'):
        state.eigenvalues, state.reading_bands, state.reading_occupations = [], True, False
        return
    if state.reading_bands:
        if stripped.startswith(_BANDS_END):
            state.reading_bands = False  # fall through: the line itself is parsed below
        else:
            if _RE_BANDS.match(line):
                state.reading_occupations = False
            elif stripped.startswith('occupation numbers'):
                state.reading_occupations = True
            elif stripped and not state.reading_occupations and not stripped.startswith(('---', 'SPIN')):
                state.eigenvalues.extend(floats(stripped))
            return

    if (match := _RE_TOTAL.match(line)) is not None:
        value = to_float(match.group(1))
        step = state.step()
        if 'energy_ry' in step:  # a new ionic step begins with its '!' line
            result['trajectory'].append({})
            step = state.step()
        step['energy_ry'] = value
        result['energy_ry'] = value
        result['energy'] = value * RY_TO_EV
        return
    for key, regex in _RE_TERMS.items():
        if (match := regex.search(line)) is not None:
            result[key] = float(match.group(1))
            return
    if (match := _RE_VERSION.search(line)) is not None:
        result['code_version'] = match.group(1)
    elif (match := _RE_ALAT.search(line)) is not None:
        state.alat_bohr = float(match.group(1))
    elif (match := _RE_FERMI.search(line)) is not None:
        result['fermi_energy'] = float(match.group(1))
    elif (match := _RE_FERMI_UPDW.search(line)) is not None:
        result['fermi_energy_up'], result['fermi_energy_down'] = float(match.group(1)), float(match.group(2))
        result['fermi_energy'] = max(result['fermi_energy_up'], result['fermi_energy_down'])
    elif (match := _RE_HOMO_LUMO.search(line)) is not None:
        result['homo'], result['lumo'] = float(match.group(1)), float(match.group(2))
    elif (match := _RE_HOMO.search(line)) is not None:
        result['homo'], result['lumo'] = float(match.group(1)), None
    elif (match := _RE_CONVERGED.search(line)) is not None:
        result['scf_converged'], result['scf_iterations'] = True, int(match.group(1))
    elif (match := _RE_NOT_CONVERGED.search(line)) is not None:
        result['scf_converged'], result['scf_iterations'] = False, int(match.group(1))
        if state.final_scf:
            state.final_scf_failed = True
    elif stripped.startswith('Forces acting on atoms'):
        state.step()['forces'], state.forces_open = [], True
    elif (match := _RE_FORCE.search(line)) is not None:
        if state.forces_open:  # not the contributions printed after the total (verbosity='high', 7.x)
            state.step().setdefault('forces', []).append([float(x) * RY_BOHR_TO_EV_ANGSTROM for x in match.groups()])
    elif stripped.endswith('to forces'):
        state.forces_open = False
    elif (match := _RE_TOTAL_FORCE.search(line)) is not None:
        state.step()['total_force'] = float(match.group(1)) * RY_BOHR_TO_EV_ANGSTROM
        state.forces_open = False
    elif (match := _RE_STRESS.search(line)) is not None:
        state.step()['pressure_kbar'] = float(match.group(1))
        state.step()['stress_kbar'] = []
    elif 'stress_kbar' in state.step() and len(state.step()['stress_kbar']) < 3 and len(floats(stripped)) == 6:
        state.step()['stress_kbar'].append(floats(stripped)[3:])
    elif (match := _RE_ENTHALPY.search(line)) is not None:
        result['final_enthalpy_ry'] = float(match.group(1))
    elif (match := _RE_BFGS_DONE.search(line)) is not None:
        result['ionic_converged'] = True
    elif 'The maximum number of steps has been reached' in line:
        state.max_steps_reached = True
    elif 'history already reset at previous step' in line or 'trust radius too small' in line.lower():
        state.bfgs_failed = True
    elif 'Final scf calculation at the relaxed structure' in line:
        state.final_scf = True
    elif 'Maximum CPU time exceeded' in line:
        result['interrupted_walltime'] = True
    elif (match := _RE_NOT_CONV_EIG.search(line)) is not None:
        result['unconverged_eigenvalue_warnings'] += 1
    elif (match := _RE_WALL.search(line)) is not None:
        result['wall_time_seconds'] = _wall_seconds(match.group(1))
    elif 'JOB DONE.' in line:
        result['job_done'] = True


_RE_ERR_STDOUT = re.compile(r'Error in routine\s+(\S+)\s+\((-?\d+)\):?')
_RE_ERR_CRASH = re.compile(r'from\s+(\S+)\s+:\s+error #\s+(-?\d+)')


def _error_message(lines: list[str]) -> str:
    """One error block as ``Error in routine NAME (N): message``, whether from stdout or CRASH."""
    text = ' '.join(lines)
    match = _RE_ERR_STDOUT.search(text) or _RE_ERR_CRASH.search(text)
    if match is None:
        return text
    message = (text[:match.start()] + text[match.end():]).strip()
    return f'Error in routine {match.group(1)} ({match.group(2)}): {message}'


def _band_gap(eigenvalues: list[float], fermi: float) -> float | None:
    """Gap around the Fermi energy from every printed eigenvalue; 0 when a band crosses it (a metal)."""
    below = [e for e in eigenvalues if e <= fermi]
    above = [e for e in eigenvalues if e > fermi]
    if not below or not above:
        return None
    return max(0.0, min(above) - max(below))


def _finish(state: _State) -> dict:
    if state.block is not None:
        state.close_block()
    result = state.result
    trajectory, kept = result['trajectory'], 0  # empty steps dropped in place: no copy as long as the run
    for step in trajectory:
        if step:
            trajectory[kept], kept = step, kept + 1
    del trajectory[kept:]
    for previous, step in zip(trajectory, itertools.islice(trajectory, 1, None)):
        # a step that printed no coordinates (the final SCF of a vc-relax, an SCF after a restart) kept them
        for key in ('positions', 'symbols', 'cell'):
            if key not in step and key in previous:
                step[key] = previous[key]
    if trajectory and result['final_structure'] and 'positions' not in trajectory[-1]:
        trajectory[-1].update({k: v for k, v in result['final_structure'].items() if v is not None})
    result['number_ionic_steps'] = sum(1 for step in trajectory if 'energy_ry' in step)
    last = next((s for s in reversed(trajectory) if 'forces' in s), {})
    result['forces'], result['total_force'] = last.get('forces'), last.get('total_force')
    last = next((s for s in reversed(trajectory) if s.get('stress_kbar')), {})
    result['stress_kbar'], result['pressure_kbar'] = last.get('stress_kbar') or None, last.get('pressure_kbar')
    if result['homo'] is not None and result['lumo'] is not None:
        result['band_gap'] = result['lumo'] - result['homo']
    elif result['fermi_energy'] is not None and state.eigenvalues:
        result['band_gap'] = _band_gap(state.eigenvalues, result['fermi_energy'])
    if state.max_steps_reached or state.bfgs_failed:
        result['ionic_converged'] = False
    result['exit_label'] = _verdict(state)
    return result


def _verdict(state: _State) -> str | None:
    """The exit label: the most specific failure first, then incompleteness."""
    result = state.result
    for message in result['error_messages']:
        low = message.lower()
        for needle, label in KNOWN_ERRORS:
            if needle in low:
                return label
    if result['error_messages']:
        return 'ERROR_CODE_ERROR_MESSAGE'
    if result['interrupted_walltime']:
        return 'ERROR_OUT_OF_WALLTIME'
    if not result['job_done']:
        return 'ERROR_OUTPUT_INCOMPLETE' if result['code_version'] else 'ERROR_OUTPUT_PARSE'
    if state.bfgs_failed:
        return 'ERROR_IONIC_BFGS_HISTORY_FAILURE'
    if state.final_scf_failed:
        return 'ERROR_IONIC_FINAL_SCF_FAILED'
    if state.max_steps_reached:
        return 'ERROR_IONIC_NOT_CONVERGED'
    if result['scf_converged'] is False:
        return 'ERROR_SCF_NOT_CONVERGED'
    if result['energy_ry'] is None:
        return 'ERROR_OUTPUT_INCOMPLETE'
    return None


def parse_lines(lines: Iterable[str]) -> dict:
    """Parse ``pw.x`` stdout line by line; never raises (see the module docstring for the keys)."""
    state = _State()
    try:
        for line in lines:
            _feed(state, line.rstrip('\n'))
    except Exception as exc:  # noqa: BLE001 - the contract: report garbage as a parse failure, never raise
        state.result['parser_error'] = f'{type(exc).__name__}: {exc}'
        result = _finish_safely(state)
        result['exit_label'] = result.get('exit_label') or 'ERROR_OUTPUT_PARSE'
        return result
    return _finish_safely(state)


def _finish_safely(state: _State) -> dict:
    try:
        return _finish(state)
    except Exception as exc:  # noqa: BLE001
        return {**state.result, 'parser_error': f'{type(exc).__name__}: {exc}', 'exit_label': 'ERROR_OUTPUT_PARSE'}


def parse_path(path) -> dict:
    """Parse a ``pw.x`` stdout file, or the main output of a run folder (``aiida.out``, ``*.out``).

    A ``CRASH`` file beside it is read too: pw.x writes its error message there, and in parallel runs
    sometimes only there.
    """
    main = find_output(pathlib.Path(path), ('aiida.out', '*.out', '*.stdout'))
    crash = main.parent / 'CRASH'

    def with_crash(lines):
        extra = iter_lines(crash) if crash.is_file() and not looks_binary(crash) else iter(())
        return parse_lines(itertools.chain(lines, ['\n'], extra))

    return parse_file(main, with_crash)
