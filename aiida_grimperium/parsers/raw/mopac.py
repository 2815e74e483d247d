"""Raw parser of MOPAC's main output (``<name>.out``), AiiDA-free.

One output may hold several jobs (one per geometry, as the CalcJob writes an ensemble into one input). Each
job starts at the program banner (``**  MOPAC v22.0.6  **``) and gets its own entry in ``jobs``:

``heat_of_formation_kcal_mol``, ``total_energy_ev`` / ``electronic_energy_ev`` / ``core_core_repulsion_ev``
(only where MOPAC prints them), ``ionization_potential_ev``, ``homo_ev`` / ``lumo_ev`` (closed shell) or
``alpha_somo_ev`` / ``alpha_lumo_ev`` / ``beta_somo_ev`` / ``beta_lumo_ev`` (open shell), ``gradient_norm``,
``dipole_debye``, ``point_group``, ``symbols`` / ``positions`` (the last geometry printed, Angstrom),
``scf_converged``, ``errors`` (the labels of :data:`EXIT_CODES` met in this job), ``ended_normally``.

MOPAC writes its error messages twice: in the job's body where they happen, and again in a summary box at
the end of the file (``* MESSAGE *``). Only the body lines are used, so each message is tied to its job.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

from ...exit_codes import make_table, ExitCodeSpec
from . import FLOAT, find_output, floats, parse_file, to_float

EXIT_CODES = make_table(
    ExitCodeSpec(410, 'ERROR_SCF_NOT_CONVERGED', 'MOPAC could not achieve a self-consistent field.'),
    ExitCodeSpec(420, 'ERROR_MAX_CYCLES', 'The geometry optimisation stopped at the cycle limit (CYCLES).'),
    ExitCodeSpec(421, 'ERROR_GEOMETRY_NOT_CONVERGED', 'The geometry optimisation could not lower the gradient any more.'),
    ExitCodeSpec(430, 'ERROR_INVALID_CHARGE_MULTIPLICITY', 'MOPAC refused the charge / spin state of the system.'),
    ExitCodeSpec(431, 'ERROR_INPUT_REJECTED', 'MOPAC refused the input (unknown keyword or bad geometry).'),
    ExitCodeSpec(500, 'ERROR_MOPAC_FAILED', 'MOPAC stopped with an error message.'),
)

#: Body messages → exit label. Checked in this order; the first match of a line wins.
MESSAGES: tuple[tuple[re.Pattern, str], ...] = tuple(
    (re.compile(pattern), label)
    for pattern, label in (
        (r'NOT ENOUGH TIME FOR ANOTHER CYCLE|TIME LIMIT', 'ERROR_OUT_OF_WALLTIME'),
        (r'UNABLE TO ACHIEVE SELF-CONSISTENCE|SCF CALCULATION FAILED|FAILED TO ACHIEVE SCF', 'ERROR_SCF_NOT_CONVERGED'),
        (r'EXCESS NUMBER OF OPTIMIZATION CYCLES', 'ERROR_MAX_CYCLES'),
        (r'GRADIENT IS TOO LARGE|HEAT OF FORMATION IS NOT DECREASING|FAILED TO LOCATE|GEOMETRY NOT CONVERGED',
         'ERROR_GEOMETRY_NOT_CONVERGED'),
        (r'SPECIFIED WITH (EVEN|ODD) NUMBER OF ELECTRONS|IMPOSSIBLE NUMBER OF OPEN SHELL|CHARGE ON SYSTEM IS INCORRECT'
         r'|NUMBER OF ELECTRONS .* IS (ODD|EVEN)', 'ERROR_INVALID_CHARGE_MULTIPLICITY'),
        (r'UNRECOGNIZED KEY-?WORDS|ERROR IN READ|UNRECOGNI[SZ]ED ELEMENT|ATOMS .* TOO CLOSE|GEOMETRY IS UNREASONABLE'
         r'|(?i:DATA ARE NOT AVAILABLE FOR)', 'ERROR_INPUT_REJECTED'),
        (r'\bJOB STOPPED\b|\bFATAL\b|CALCULATION ABANDONED', 'ERROR_MOPAC_FAILED'),
    )
)

#: When one job has several problems, the one that explains the others is reported.
PRIORITY = (
    'ERROR_INVALID_CHARGE_MULTIPLICITY', 'ERROR_INPUT_REJECTED', 'ERROR_OUT_OF_WALLTIME', 'ERROR_SCF_NOT_CONVERGED',
    'ERROR_MAX_CYCLES', 'ERROR_GEOMETRY_NOT_CONVERGED', 'ERROR_MOPAC_FAILED', 'ERROR_OUTPUT_INCOMPLETE',
)

BANNER = re.compile(r'^\s*\*\*\s+MOPAC\b')
VERSION = re.compile(r'MOPAC\s*v?(\d[\w.]*)')
BOX_LINE = re.compile(r'^\s*\*.*\*\s*$')
HEAT = re.compile(rf'FINAL HEAT OF FORMATION\s*=\s*({FLOAT})\s*KCAL')
#: Atom lines of MOPAC's geometry blocks: "1  O  0.0  0.0  0.1" (Cartesian table) or "O  0.0 +1  0.0 +1  0.1 +1"
#: (input-style block, also with ``*`` flags).
CART_ROW = re.compile(rf'^\s*\d+\s+([A-Z][a-z]?)\s+({FLOAT})\s+({FLOAT})\s+({FLOAT})\s*$')
INPUT_ROW = re.compile(rf'^\s*(?:\d+\s+)?([A-Z][a-z]?)\s+({FLOAT})\s+[*+]?\d?\s*({FLOAT})\s+[*+]?\d?\s*({FLOAT})\s+[*+]?\d?\s*$')
SCALARS = {
    'TOTAL ENERGY': 'total_energy_ev',
    'ELECTRONIC ENERGY': 'electronic_energy_ev',
    'CORE-CORE REPULSION': 'core_core_repulsion_ev',
    'IONIZATION POTENTIAL': 'ionization_potential_ev',
    'GRADIENT NORM': 'gradient_norm',
}


def _new_job() -> dict:
    return {'errors': [], 'scf_converged': None, 'ended_normally': False}


class _Geometry:
    """Collects the atom rows of a geometry block; a finished block replaces the job's geometry.

    Collection is armed only by a geometry header, because other tables (atomic charges of hydrogens, for
    instance) also have rows of an index, a symbol and three numbers. Up to :attr:`MAX_PREAMBLE` lines between
    the header and the first row are skipped (column titles, and the keyword and title lines that MOPAC
    repeats in ``CURRENT VALUE OF GEOMETRY``).
    """

    HEADERS = ('CARTESIAN COORDINATES', 'CURRENT VALUE OF GEOMETRY', '(ANGSTROMS)')
    MAX_PREAMBLE = 6

    def __init__(self):
        self.rows: list[tuple[str, list[float]]] = []
        self.armed = False
        self.preamble = 0

    def feed(self, line: str, job: dict) -> bool:
        """Consume ``line`` if it belongs to a geometry block; return whether it did."""
        if any(header in line for header in self.HEADERS):
            self.flush(job)
            self.armed, self.preamble = True, 0
            return True
        if not self.armed:
            return False
        match = CART_ROW.match(line) or INPUT_ROW.match(line)
        if match:
            self.rows.append((match.group(1), [to_float(match.group(i)) for i in (2, 3, 4)]))
            return True
        if not self.rows and self.preamble < self.MAX_PREAMBLE:
            self.preamble += 1
            return True
        self.flush(job)
        return False

    def flush(self, job: dict) -> None:
        if self.rows:
            job['symbols'] = [s for s, _ in self.rows]
            job['positions'] = [p for _, p in self.rows]
        self.rows = []
        self.armed = False


def _scan_line(line: str, job: dict) -> None:
    """Read one non-geometry line of a job's body into ``job``."""
    if match := HEAT.search(line):
        job['heat_of_formation_kcal_mol'] = to_float(match.group(1))
        return
    if 'SCF FIELD WAS ACHIEVED' in line:
        job['scf_converged'] = True
    if '=' in line:
        key, _, value = line.partition('=')
        key = key.strip()
        if key in SCALARS and (values := floats(value)):
            job[SCALARS[key]] = values[0]
            return
        if 'LUMO' in key and (values := floats(value)):
            prefix = {'HOMO LUMO ENERGIES (EV)': '', 'SOMO LUMO (EV)': '', 'ALPHA SOMO LUMO (EV)': 'alpha_',
                      'BETA  SOMO LUMO (EV)': 'beta_', 'BETA SOMO LUMO (EV)': 'beta_'}.get(key)
            if prefix is not None and len(values) >= 2:
                occupied = 'somo' if 'SOMO' in key else 'homo'
                job[f'{prefix}{occupied}_ev'], job[f'{prefix}lumo_ev'] = values[0], values[1]
            return
    if line.lstrip().startswith('SUM ') and job.get('_in_dipole'):
        values = floats(line)
        if values:
            job['dipole_debye'] = values[-1]
        job['_in_dipole'] = False
        return
    if line.lstrip().startswith('DIPOLE') and 'TOTAL' in line:
        job['_in_dipole'] = True
    if 'POINT GROUP' in line and ':' in line:
        job['point_group'] = line.rsplit(':', 1)[1].split()[0] if line.rsplit(':', 1)[1].split() else None
    if line.lstrip().startswith('CYCLE:') and 'HEAT:' in line:
        values = floats(line.split('HEAT:')[1])
        if values:
            job['last_cycle_heat_kcal_mol'] = values[0]
    if 'COMPUTATION TIME' in line and (values := floats(line)):
        job['computation_time_s'] = values[0]
    for pattern, label in MESSAGES:
        if pattern.search(line):
            if label == 'ERROR_SCF_NOT_CONVERGED':
                job['scf_converged'] = False
            if label not in job['errors']:
                job['errors'].append(label)
            break


def _finish(job: dict, file_ended: bool) -> dict:
    job.pop('_in_dipole', None)
    if 'heat_of_formation_kcal_mol' not in job and not job['errors']:
        job['errors'].append('ERROR_OUTPUT_INCOMPLETE')
    job['ended_normally'] = file_ended and 'heat_of_formation_kcal_mol' in job and not job['errors']
    return job


def parse_lines(lines: Iterable[str]) -> dict:
    """Parse a MOPAC output; see the module docstring for the keys. Never raises on odd text."""
    jobs: list[dict] = []
    job: dict | None = None
    geometry = _Geometry()
    version = None
    file_ended = False
    total_time = None
    for line in lines:
        if BANNER.match(line):
            if job is not None:
                geometry.flush(job)
                jobs.append(job)
            job = _new_job()
            if version is None and (match := VERSION.search(line)):
                version = match.group(1)
            continue
        if 'JOB ENDED NORMALLY' in line:
            file_ended = True
        if 'TOTAL JOB TIME' in line and (values := floats(line)):
            total_time = values[0]
        if job is None or BOX_LINE.match(line):
            continue
        if not geometry.feed(line, job):
            _scan_line(line, job)
    if job is not None:
        geometry.flush(job)
        jobs.append(job)
    for j in jobs:
        _finish(j, file_ended)
    result: dict = {'mopac_version': version, 'num_jobs': len(jobs), 'jobs': jobs, 'total_job_time_s': total_time,
                    'ended_normally': file_ended}
    heats = [j.get('heat_of_formation_kcal_mol') for j in jobs]
    result['heats_of_formation_kcal_mol'] = heats
    # no temporary list of (heat, index) pairs: only the result grows with the number of jobs
    index = min((i for i, h in enumerate(heats) if h is not None), key=heats.__getitem__, default=None)
    if index is not None:
        result['lowest_heat_of_formation_kcal_mol'] = heats[index]
        result['lowest_index'] = index
    result['exit_label'] = _verdict(jobs, file_ended)
    return result


def _verdict(jobs: list[dict], file_ended: bool) -> str | None:
    if not jobs:
        return 'ERROR_OUTPUT_INCOMPLETE' if not file_ended else 'ERROR_OUTPUT_PARSE'
    labels = {label for j in jobs for label in j['errors']}
    if not file_ended:
        labels.add('ERROR_OUTPUT_INCOMPLETE')
    for label in PRIORITY:
        if label in labels:
            return label
    return None


def parse_path(path) -> dict:
    """Parse ``path``: a MOPAC ``.out`` file, or a run folder holding ``aiida.out`` (or any ``*.out``)."""
    return parse_file(find_output(path, ('aiida.out', '*.out')), parse_lines)
