"""Raw parser of CREST (2.x, 3.x) runs: stdout, ``crest.energies``, ``crest_conformers.xyz``; no AiiDA import.

Tested on CREST 2.12 conformer searches and on CREST 3.0.1 / 3.0.2 stdout (banner, ``runtype = "optimize"``:
``TOTAL ENERGY``, the 3.x wall-time summary) and a CREST 3 ``crest_conformers.xyz``.

CREST's own exit status is not a reliable signal (it can exit 0 after failing), so a run counts as a success
only with all three of: the ``CREST terminated normally.`` line, a non-empty ``crest_conformers.xyz``, and as
many frames there as lines in ``crest.energies``. Absolute energies come from the XYZ comment lines (Hartree),
relative energies from ``crest.energies`` (kcal/mol), and conformer populations (which include CREST's rotamer
degeneracies) from the CREGEN table of stdout when it is printed.
"""
from __future__ import annotations

import math
import pathlib
import re
from collections.abc import Iterable

from ...chemistry import HARTREE_TO_EV
from ...exit_codes import ExitCodeSpec, make_table
from . import FLOAT, find_output, floats, looks_binary, parse_file, to_float

EXIT_CODES = make_table(
    ExitCodeSpec(320, 'ERROR_ENSEMBLE_MISSING', 'CREST wrote no conformer ensemble (crest_conformers.xyz or crest.energies missing or empty).'),
    ExitCodeSpec(321, 'ERROR_ENSEMBLE_MISMATCH', 'crest_conformers.xyz and crest.energies do not hold the same number of conformers.'),
    ExitCodeSpec(322, 'ERROR_ENSEMBLE_READ', 'The conformer ensemble files could not be read.'),
    ExitCodeSpec(410, 'ERROR_INITIAL_OPTIMIZATION_FAILED', 'The initial xtb optimisation of the input geometry failed.'),
)

STDOUT_CANDIDATES = ('crest.out', 'aiida.out', '*.stdout', '*.out', '*.log')
ENERGIES = 'crest.energies'
CONFORMERS = 'crest_conformers.xyz'
BEST = 'crest_best.xyz'

_KEYS = {
    'temperature': re.compile(rf'^T /K\s*:\s*({FLOAT})'),
    'lowest_energy_hartree_stdout': re.compile(rf'^E lowest\s*:\s*({FLOAT})'),
    'ensemble_average_energy_kcal_mol': re.compile(rf'^ensemble average energy \(kcal\)\s*:\s*({FLOAT})'),
    'ensemble_free_energy_kcal_mol': re.compile(rf'^ensemble free energy \(kcal/mol\)\s*:\s*({FLOAT})'),
    'population_lowest_percent': re.compile(rf'^population of lowest in %\s*:\s*({FLOAT})'),
    'num_unique_conformers_stdout': re.compile(r'number of unique conformers for further calc\s+(\d+)'),
}
_ENTROPY = re.compile(rf'^ensemble entropy \(J/mol K, cal/mol K\)\s*:\s*({FLOAT})\s+({FLOAT})')
_VERSION = re.compile(r'^\s*Version\s+([\w.\-]+)')
_COMMIT = re.compile(r'^commit \((\w+)\)')
_TOTAL_ENERGY = re.compile(rf'^TOTAL ENERGY\s+({FLOAT})\s+Eh')  # CREST 3 singlepoint / optimize
# wall time: CREST 2 ``Overall wall time  : 0h : 0m :28s``, CREST 3 ``CREST runtime (total)  0 d,  0 h,  0 min,  0.145 sec``
_WALL_2 = re.compile(rf'^Overall wall time\s*:\s*(\d+)h\s*:\s*(\d+)m\s*:\s*({FLOAT})s')
_WALL_3 = re.compile(rf'^CREST runtime \(total\)\s+(\d+) d,\s*(\d+) h,\s*(\d+) min,\s*({FLOAT}) sec')
# A CREGEN table row that opens a new conformer: index, Erel, Etot, weight, conformer weight, set, degeneracy.
_CREGEN_ROW = re.compile(rf'^\s*\d+\s+{FLOAT}\s+{FLOAT}\s+{FLOAT}\s+({FLOAT})\s+(\d+)\s+(\d+)\b')


def parse_lines(lines: Iterable[str]) -> dict:
    """Parse CREST's stdout. Never raises; the ensemble files are judged by :func:`parse_path`."""
    result: dict = {'normal_termination': False, 'initial_optimization_failed': False}
    populations: dict[int, float] = {}
    degeneracies: dict[int, int] = {}
    command = False
    for raw in lines:
        line = raw.strip()
        if command:
            result['command_line'] = line.lstrip('>$ ').strip()  # CREST 2 prints '> ', CREST 3 '$ '
            command = False
        if not line:
            continue
        try:  # a mangled number (5000 digits, ``1D+400``) skips its line instead of stopping the parser
            if line.startswith('Command line input'):
                command = True
            elif 'CREST terminated normally' in line:
                result['normal_termination'] = True
            elif 'Initial geometry optimization failed' in line:
                result['initial_optimization_failed'] = True
            elif line.startswith('Version') and 'crest_version' not in result:
                match = _VERSION.match(line)
                if match:
                    result['crest_version'] = match.group(1).rstrip(',')
            elif line.startswith('commit (') and (match := _COMMIT.match(line)):
                result['crest_commit'] = match.group(1)
            elif line.startswith('TOTAL ENERGY') and (match := _TOTAL_ENERGY.match(line)):
                result['total_energy_hartree'] = to_float(match.group(1))
            elif (match := _WALL_2.match(line)) is not None:
                h, m, sec = match.groups()
                result['wall_time_seconds'] = int(h) * 3600 + int(m) * 60 + to_float(sec)
            elif (match := _WALL_3.match(line)) is not None:
                d, h, m, sec = match.groups()
                result['wall_time_seconds'] = int(d) * 86400 + int(h) * 3600 + int(m) * 60 + to_float(sec)
            elif line.startswith('ensemble entropy'):
                match = _ENTROPY.match(line)
                if match:
                    result['ensemble_entropy_j_mol_k'] = to_float(match.group(1))
                    result['ensemble_entropy_cal_mol_k'] = to_float(match.group(2))
            else:
                match = _CREGEN_ROW.match(raw)
                if match:
                    populations[int(match.group(2))] = to_float(match.group(1))
                    degeneracies[int(match.group(2))] = int(match.group(3))
                    continue
                for key, regex in _KEYS.items():
                    match = regex.search(line)
                    if match:
                        value = match.group(1)
                        result[key] = int(value) if key.startswith('num_') else to_float(value)
                        break
        except (ValueError, OverflowError):
            continue
    if populations:
        result['cregen_populations'] = populations
        result['cregen_degeneracies'] = degeneracies
    if result['initial_optimization_failed']:
        result['exit_label'] = 'ERROR_INITIAL_OPTIMIZATION_FAILED'
    elif not result['normal_termination']:
        result['exit_label'] = 'ERROR_OUTPUT_INCOMPLETE'
    else:
        result['exit_label'] = None
    return result


def read_energies(path: pathlib.Path) -> list[float] | None:
    """Relative energies (kcal/mol) of ``crest.energies``; ``None`` when missing/unreadable.

    CREST 2 writes ``index Erel``; other versions add the absolute energy. The relative energy is the value that
    is 0 for the first conformer and never negative; a line that cannot be read makes the whole file unreadable.
    """
    if not path.is_file() or looks_binary(path):
        return None
    rows = []
    try:
        with open(path, encoding='utf-8', errors='replace') as handle:
            for line in handle:
                if not line.strip():
                    continue
                values = floats(line)
                # 1e999 reads as inf: a non-finite field is as unreadable as a missing one
                if len(values) < 2 or not all(math.isfinite(v) for v in values) or values[0] != int(values[0]):
                    return None
                rows.append(values[1:])
    except OSError:
        return None
    if not rows:
        return []
    column = next((c for c in range(len(rows[0])) if all(len(r) > c and r[c] >= 0 for r in rows)), None)
    if column is None:
        return None
    return [r[column] for r in rows]


def read_frames(path: pathlib.Path) -> tuple[list[str], list[list[list[float]]], list[float | None]] | None:
    """Symbols, frames (Angstrom) and comment-line energies (Hartree) of a multi-frame XYZ; ``None`` if unreadable."""
    if not path.is_file() or looks_binary(path):
        return None
    symbols: list[str] = []
    frames, energies = [], []
    try:
        with open(path, encoding='utf-8', errors='replace') as handle:
            while True:
                head = handle.readline()
                if not head:
                    break
                if not head.strip():
                    continue
                count = int(head.split()[0])
                comment = floats(handle.readline())
                frame, names = [], []
                for _ in range(count):
                    fields = handle.readline().split()
                    names.append(fields[0].capitalize())
                    frame.append([float(x) for x in fields[1:4]])
                    if len(frame[-1]) != 3:
                        return None
                if symbols and names != symbols:
                    return None
                symbols = names
                frames.append(frame)
                energies.append(comment[0] if comment else None)
    except (OSError, ValueError, IndexError):
        return None
    return symbols, frames, energies


def parse_path(path) -> dict:
    """Parse a CREST run folder (or its stdout, with the ensemble files beside it)."""
    path = pathlib.Path(path)
    stdout = find_output(path, STDOUT_CANDIDATES)
    folder = path if path.is_dir() else path.parent
    result = parse_file(stdout, parse_lines)
    if result.get('exit_label') in ('ERROR_OUTPUT_MISSING', 'ERROR_OUTPUT_READ', 'ERROR_INITIAL_OPTIMIZATION_FAILED'):
        return result
    relative = read_energies(folder / ENERGIES)
    ensemble = read_frames(folder / CONFORMERS)
    verdict = result.get('exit_label')
    if relative is None and not (folder / ENERGIES).is_file() or ensemble is None and not (folder / CONFORMERS).is_file():
        verdict = verdict or 'ERROR_ENSEMBLE_MISSING'
    elif relative is None or ensemble is None:
        verdict = verdict or 'ERROR_ENSEMBLE_READ'
    elif not relative or not ensemble[1]:
        verdict = verdict or 'ERROR_ENSEMBLE_MISSING'
    elif len(relative) != len(ensemble[1]):
        verdict = verdict or 'ERROR_ENSEMBLE_MISMATCH'
    result['exit_label'] = verdict
    if ensemble is not None:
        symbols, frames, absolute = ensemble
        result['num_atoms'] = len(symbols)
        result['symbols'], result['frames'] = symbols, frames
        result['num_conformers'] = len(frames)
        populations = result.pop('cregen_populations', {})
        degeneracies = result.pop('cregen_degeneracies', {})
        conformers = []
        for i, energy in enumerate(absolute):
            entry = {'energy_hartree': energy}
            if relative is not None and i < len(relative):
                entry['relative_energy_kcal_mol'] = relative[i]
            if i + 1 in populations:
                entry['population'] = populations[i + 1]
                entry['degeneracy'] = degeneracies[i + 1]
            conformers.append(entry)
        result['conformers'] = conformers
        known = [e for e in absolute if e is not None]
        if known:
            result['lowest_energy_hartree'] = min(known)
            result['energy'] = min(known) * HARTREE_TO_EV
    else:
        result.pop('cregen_populations', None)
        result.pop('cregen_degeneracies', None)
    return result


__all__ = ['EXIT_CODES', 'parse_lines', 'parse_path', 'read_energies', 'read_frames']
