"""Raw parser of MOPAC's main output (``<name>.out``), AiiDA-free: MOPAC2016 (``Version: 16.xxxM`` to ``21.xxxM``),
v22 and v23.

One output may hold several jobs (one per geometry, as the CalcJob writes an ensemble into one input). Each
job starts at the program banner (``**  MOPAC2016  **``, ``**  MOPAC v22.0.6  **``) and gets its own entry in ``jobs``:

``heat_of_formation_kcal_mol``, ``total_energy_ev`` / ``electronic_energy_ev`` / ``core_core_repulsion_ev``
(only where MOPAC prints them), ``ionization_potential_ev``, ``homo_ev`` / ``lumo_ev`` (closed shell) or
``alpha_somo_ev`` / ``alpha_lumo_ev`` / ``beta_somo_ev`` / ``beta_lumo_ev`` (open shell), ``gradient_norm``,
``dipole_debye``, ``point_group``, ``symbols`` / ``positions`` (the last geometry printed, Angstrom),
``keywords`` (from the keyword box), ``scf_converged``, ``zero_point_energy_kcal_mol`` and ``thermochemistry``
(FORCE/THERMO: one row per temperature; ``enthalpy_cal_mol``, ``heat_capacity_cal_k_mol``, ``entropy_cal_k_mol``
of the first temperature, 298 K by default, at the job's top level), ``errors`` (the labels of
:data:`EXIT_CODES` met in this job), ``messages`` (MOPAC's own words of those errors), ``notes`` (messages
that end a job on purpose, e.g. ``ADD-H: SYSTEM HAS BEEN HYDROGENATED``), ``ended_normally``.

MOPAC writes each error message twice: in the job's body where it happens, and again in the summary box at the
end of the file (``Error and normal termination messages reported in this calculation``). Body lines tie a
message to its job (and are all there is in a file cut short); the summary box gives MOPAC's complete list,
each message then assigned to the job whose body printed it. ``JOB ENDED NORMALLY`` closes every complete
file, failed jobs included: ``file_complete`` says that the file ended, top-level ``ended_normally`` that it
ended and every job succeeded. ``exit_detail`` holds MOPAC's words for the verdict ``exit_label``.
"""
from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable

from . import FLOAT, find_output, floats, parse_file, to_float
from .mopac_messages import BODY, EXIT_CODES, PRIORITY, classify, clean

__all__ = ['EXIT_CODES', 'parse_lines', 'parse_path']

#: The line of the banner box that names the program; a new job starts there.
BANNER = re.compile(r'^\s*\*\*\s+MOPAC\s*(?:v\s*\d|20\d\d\b)')
#: ``** MOPAC v22.0.6 **`` / ``MOPAC v23.1.2 Linux``; MOPAC2016's ``Cite this program as: MOPAC2016, Version: 21.298M``
#: and ``MOPAC2016 (Version: 16.093M)``.
VERSION_V = re.compile(r'MOPAC\s+v(\d+\.\d+(?:\.\d+)?)')
VERSION_2016 = re.compile(r'MOPAC(20\d\d),?\s*\(?Version:\s*(\d+\.\d+\w*)')
BOX_LINE = re.compile(r'^\s*\*.*\*\s*$')
KEYWORD_LINE = re.compile(r'^\s*\*\s+([A-Z0-9][\w.+()-]*=?)\s+-\s')
HEAT = re.compile(rf'FINAL HEAT OF FORMATION\s*=\s*({FLOAT})\s*KCAL')
#: FORCE runs (no ``FINAL HEAT``) print the heat of their reference point as ``HEAT OF FORMATION = -57.79 KCALS/MOLE``.
FORCE_HEAT = re.compile(rf'^\s*HEAT OF FORMATION\s*=\s*({FLOAT})\s*KCALS?/MOLE')
ZPE = re.compile(rf'ZERO POINT ENERGY\s+({FLOAT})\s+KCAL')
THERMO_T = re.compile(rf'^\s*({FLOAT})\s+VIB\.')
SUMMARY_HEADER = 'Error and normal termination messages reported'
#: Atom lines of MOPAC's geometry blocks: "1  O  0.0  0.0  0.1" (Cartesian table) or "O  0.0 +1  0.0 +1  0.1 +1"
#: (input-style block, also with ``*`` flags).
CART_ROW = re.compile(rf'^\s*\d+\s+([A-Z][a-z]?)\s+({FLOAT})\s+({FLOAT})\s+({FLOAT})\s*$')
INPUT_ROW = re.compile(rf'^\s*(?:\d+\s+)?([A-Z][a-z]?)\s+({FLOAT})\s+[*+]?\d?\s*({FLOAT})\s+[*+]?\d?\s*({FLOAT})\s+[*+]?\d?\s*$')
#: ``mopend`` writes a blank line, then ten spaces and the message: such lines are kept (the last
#: :data:`CANDIDATES` of each job) to find which job printed each message of the summary box.
CANDIDATE = re.compile(r'^ {9,}[A-Za-z(]')
CANDIDATES = 64
SCALARS = {
    'TOTAL ENERGY': 'total_energy_ev',
    'ELECTRONIC ENERGY': 'electronic_energy_ev',
    'CORE-CORE REPULSION': 'core_core_repulsion_ev',
    'IONIZATION POTENTIAL': 'ionization_potential_ev',
    'GRADIENT NORM': 'gradient_norm',
}
LUMO_PREFIX = {'HOMO LUMO ENERGIES (EV)': '', 'SOMO LUMO (EV)': '', 'ALPHA SOMO LUMO (EV)': 'alpha_',
               'BETA  SOMO LUMO (EV)': 'beta_', 'BETA SOMO LUMO (EV)': 'beta_'}
#: Keywords of jobs that print no heat of formation by design (INDO gives electronic energies only).
NO_HEAT_KEYWORDS = frozenset({'0SCF', 'INDO'})
THERMO_KEYS = ('heat_of_formation_kcal_mol', 'enthalpy_cal_mol', 'heat_capacity_cal_k_mol', 'entropy_cal_k_mol')


def _new_job() -> dict:
    return {'errors': [], 'messages': [], 'notes': [], 'scf_converged': None, 'ended_normally': False,
            '_candidates': deque(maxlen=CANDIDATES), '_blank': False}


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


def add_message(job: dict, text: str) -> None:
    """Record MOPAC's message ``text`` in ``job``: an error label plus its words, or a note."""
    text = clean(text)
    if not text or text in job['messages'] or text in job['notes']:
        return
    label = classify(text)
    if label is None:
        job['notes'].append(text)
        return
    job['messages'].append(text)
    if label == 'ERROR_SCF_NOT_CONVERGED':
        job['scf_converged'] = False
    if label not in job['errors']:
        job['errors'].append(label)


def _scan_thermo(line: str, job: dict) -> bool:
    """Rows of the ``CALCULATED THERMODYNAMIC PROPERTIES`` table; return whether ``line`` was one."""
    if (match := THERMO_T.match(line)) is not None:
        job['_thermo_t'] = to_float(match.group(1))
        return True
    if '_thermo_t' in job and line.lstrip().startswith('TOT.'):
        values = floats(line.split('TOT.', 1)[1])
        if len(values) == 4:
            row = {'temperature_k': job['_thermo_t'], **dict(zip(THERMO_KEYS, values))}
            job.setdefault('thermochemistry', []).append(row)
            if len(job['thermochemistry']) == 1:
                job['thermo_temperature_k'] = row['temperature_k']
                job.update({key: row[key] for key in THERMO_KEYS[1:]})
        return True
    return False


def _scan_line(line: str, job: dict) -> None:
    """Read one non-geometry line of a job's body into ``job``."""
    if match := HEAT.search(line):
        job['heat_of_formation_kcal_mol'] = to_float(match.group(1))
        return
    if match := FORCE_HEAT.match(line):
        job['_force_heat'] = to_float(match.group(1))
        return
    if 'SCF FIELD WAS ACHIEVED' in line:
        job['scf_converged'] = True
    if 'THERMODYNAMIC PROPERTIES' in line:
        job['_thermo_t'] = None
        return
    if 'VIB.' in line or 'TOT.' in line:
        if _scan_thermo(line, job):
            return
    if match := ZPE.search(line):
        job['zero_point_energy_kcal_mol'] = to_float(match.group(1))
        return
    if '=' in line:
        key, _, value = line.partition('=')
        key = key.strip()
        if key in SCALARS and (values := floats(value)):
            job[SCALARS[key]] = values[0]
            return
        if 'LUMO' in key and (values := floats(value)):
            prefix = LUMO_PREFIX.get(key)
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
    if BODY.search(line):
        add_message(job, line)
    elif job['_blank'] and CANDIDATE.match(line) and '=' not in line:
        job['_candidates'].append(clean(line))


def _assign_summary(jobs: list[dict], summary: list[str]) -> None:
    """Give each message of the summary box to the job(s) whose body printed it, else to the last job."""
    for text in summary:
        owners = [job for job in jobs if text in job['messages'] or text in job['notes']
                  or any(c == text or (len(text) > 60 and c.startswith(text)) for c in job['_candidates'])]
        if not owners and jobs:
            failed = [job for job in jobs if 'heat_of_formation_kcal_mol' not in job]
            owners = [(failed or jobs)[-1]]
        for job in owners:
            add_message(job, text)


def _finish(job: dict, file_ended: bool) -> dict:
    for key in ('_in_dipole', '_candidates', '_blank', '_thermo_t'):
        job.pop(key, None)
    force_heat = job.pop('_force_heat', None)
    if 'heat_of_formation_kcal_mol' not in job and force_heat is not None and not job['errors']:
        job['heat_of_formation_kcal_mol'] = force_heat  # a FORCE run prints no FINAL HEAT
    if not file_ended and 'heat_of_formation_kcal_mol' not in job and not job['errors']:
        job['errors'].append('ERROR_OUTPUT_INCOMPLETE')
    job['ended_normally'] = file_ended and not job['errors']
    return job


def parse_lines(lines: Iterable[str]) -> dict:
    """Parse a MOPAC output; see the module docstring for the keys. Never raises on odd text."""
    jobs: list[dict] = []
    job: dict | None = None
    geometry = _Geometry()
    version = edition = None
    file_ended = False
    total_time = None
    summary: list[str] | None = None
    in_summary = False
    for line in lines:
        if version is None and 'MOPAC' in line:
            if match := VERSION_V.search(line):
                version, edition = match.group(1), f'v{match.group(1).split(".")[0]}'
            elif match := VERSION_2016.search(line):
                version, edition = match.group(2), f'MOPAC{match.group(1)}'
        if BANNER.match(line):
            if job is not None:
                geometry.flush(job)
                jobs.append(job)
            job = _new_job()
            in_summary = False
            continue
        if in_summary:
            text = clean(line)
            if set(line.strip()) == {'*'}:
                in_summary = False
            elif text and 'JOB ENDED NORMALLY' not in text and len(summary) < 100:
                summary.append(text)
            if 'JOB ENDED NORMALLY' in text:
                file_ended = True
            continue
        if SUMMARY_HEADER in line:
            in_summary, summary = True, []
            continue
        if 'JOB ENDED NORMALLY' in line or '== MOPAC DONE ==' in line:
            file_ended = True
        if 'TOTAL JOB TIME' in line and (values := floats(line)):
            total_time = values[0]
        if job is None:
            continue
        if BOX_LINE.match(line) or line.lstrip().startswith('*'):
            if match := KEYWORD_LINE.match(line):
                job.setdefault('keywords', []).append(match.group(1).rstrip('='))
            if 'Job stopped here' in line or 'Errors detected' in line:
                job['_stopped'] = True
            continue
        if not geometry.feed(line, job):
            _scan_line(line, job)
        job['_blank'] = not line.strip()
    if job is not None:
        geometry.flush(job)
        jobs.append(job)
    if summary:
        _assign_summary(jobs, summary)
    for j in jobs:
        if j.pop('_stopped', False) and not j['errors']:
            add_message(j, 'Errors detected in keywords.  Job stopped here to avoid wasting time.')
        _finish(j, file_ended)
    return _result(jobs, version, edition, file_ended, total_time)


def _result(jobs: list[dict], version, edition, file_ended: bool, total_time) -> dict:
    result: dict = {'mopac_version': version, 'mopac_edition': edition, 'num_jobs': len(jobs), 'jobs': jobs,
                    'total_job_time_s': total_time, 'file_complete': file_ended,
                    'ended_normally': file_ended and bool(jobs) and all(j['ended_normally'] for j in jobs)}
    heats = [j.get('heat_of_formation_kcal_mol') for j in jobs]
    result['heats_of_formation_kcal_mol'] = heats
    # no temporary list of (heat, index) pairs: only the result grows with the number of jobs
    index = min((i for i, h in enumerate(heats) if h is not None), key=heats.__getitem__, default=None)
    if index is not None:
        result['lowest_heat_of_formation_kcal_mol'] = heats[index]
        result['lowest_index'] = index
    label = result['exit_label'] = _verdict(jobs, file_ended)
    detail = next((text for j in jobs for text in j['messages'] if label in j['errors'] and classify(text) == label),
                  None)
    if detail is not None:
        result['exit_detail'] = detail
    return result


def _verdict(jobs: list[dict], file_ended: bool) -> str | None:
    if not jobs:
        return 'ERROR_OUTPUT_INCOMPLETE' if not file_ended else 'ERROR_OUTPUT_PARSE'
    labels = {label for j in jobs for label in j['errors']}
    if not file_ended:
        labels.add('ERROR_OUTPUT_INCOMPLETE')
    elif not labels and all('heat_of_formation_kcal_mol' not in j for j in jobs) \
            and not any(j['notes'] or NO_HEAT_KEYWORDS & set(j.get('keywords', ())) for j in jobs):
        labels.add('ERROR_NO_HEAT_OF_FORMATION')
    for label in PRIORITY:
        if label in labels:
            return label
    return None


def parse_path(path) -> dict:
    """Parse ``path``: a MOPAC ``.out`` file, or a run folder holding ``aiida.out`` (or any ``*.out``)."""
    return parse_file(find_output(path, ('aiida.out', '*.out')), parse_lines)
