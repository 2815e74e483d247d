"""Raw parser of xtb (6.x) runs: stdout, the stderr termination line and ``xtbopt.xyz``; no AiiDA import.

xtb prints its results on stdout but ``normal termination of xtb`` on **stderr**, so a run is judged from both
streams: the stdout summary box (``TOTAL ENERGY``, ``GRADIENT NORM``, ``HOMO-LUMO GAP``), the fatal-error block
(``[ERROR] Program stopped due to fatal error``) and the termination line. A run folder may hold several
geometries run with ``--namespace confNNNN`` (one stdout ``confNNNN.out`` and stderr ``confNNNN.err`` each);
:func:`parse_path` then returns one entry per geometry under ``geometries``.

Read from xtb 6.4 to 6.7 (GFN2-xTB, GFN1-xTB, GFN-FF; ``method`` from the summary header). A ``--hess`` /
``--ohess`` run adds ``enthalpy_hartree``, ``free_energy_hartree``, ``zero_point_energy_hartree`` and
``thermo_temperature_k``. xtb's fatal messages (the ``-N-`` lines of its error block, e.g. ``ANC generation
failed!``) are kept in xtb's words in ``fatal_errors`` and, for a failed run, in ``exit_detail``.
"""
from __future__ import annotations

import pathlib
import re
from collections.abc import Iterable

from ...chemistry import HARTREE_TO_EV
from ...exit_codes import ExitCodeSpec, make_table
from . import FLOAT, find_output, iter_lines, looks_binary, parse_file, to_float_or_none

EXIT_CODES = make_table(
    ExitCodeSpec(313, 'ERROR_OPTIMIZED_GEOMETRY_MISSING', 'The optimised geometry (xtbopt.xyz) is missing or unreadable.'),
    ExitCodeSpec(320, 'ERROR_FATAL_ERROR', 'xtb stopped with a fatal error: {message}'),
    ExitCodeSpec(410, 'ERROR_SCC_NOT_CONVERGED', 'The self-consistent charge iterations did not converge.'),
    ExitCodeSpec(500, 'ERROR_OPTIMIZATION_NOT_CONVERGED', 'The geometry optimisation did not converge.'),
)

#: Names the AiiDA CalcJob gives the streams of a single-geometry run.
STDOUT_NAME = 'aiida.out'
STDERR_NAME = 'aiida.err'

_SUMMARY = {
    'total_energy_hartree': re.compile(rf'\|\s*TOTAL ENERGY\s+({FLOAT})\s+Eh'),
    'gradient_norm_hartree_bohr': re.compile(rf'\|\s*GRADIENT NORM\s+({FLOAT})\s+Eh'),
    'homo_lumo_gap_ev': re.compile(rf'\|\s*HOMO-LUMO GAP\s+({FLOAT})\s+eV'),
}
# The "::" block of every single point; the last one is kept as a fallback when the final box is missing.
_SP_BLOCK = {
    'total_energy_hartree': re.compile(rf'::\s*total energy\s+({FLOAT})\s+Eh'),
    'gradient_norm_hartree_bohr': re.compile(rf'::\s*gradient norm\s+({FLOAT})\s+Eh'),
    'homo_lumo_gap_ev': re.compile(rf'::\s*HOMO-LUMO gap\s+({FLOAT})\s+eV'),
}
_THERMO = {
    'enthalpy_hartree': re.compile(rf'\|\s*TOTAL ENTHALPY\s+({FLOAT})\s+Eh'),
    'free_energy_hartree': re.compile(rf'\|\s*TOTAL FREE ENERGY\s+({FLOAT})\s+Eh'),
}
_ZPE = re.compile(rf'::\s*zero point energy\s+({FLOAT})\s+Eh')
_THERMO_ROW = re.compile(rf'^\s*({FLOAT})\s+VIB\b')
#: The box that opens the calculation: ``|  G F N 2 - x T B  |`` or ``|  G F N - F F  |``.
_METHOD = re.compile(r'\|\s+(G F N (?:\d - x T B|- F F))\s+\|')
#: ``-2- optimizer_ancopt: ANC generation failed!``: one message of xtb's fatal-error block.
_FATAL_LINE = re.compile(r'^\s*-\d+-\s*(.*\S)')
_VERSION = re.compile(r'\*\s*xtb version\s+(\S+)')
_CALL = re.compile(r'program call\s*:\s*(.+)$')
_NAMESPACE = re.compile(r'calculation namespace\s*:\s*(\S+)')
_CHARGE = re.compile(rf'::\s*total charge\s+({FLOAT})\s+e')
_SCC_FAILED = re.compile(r'did not converge|cannot be satisfied within', re.IGNORECASE)
_OPT_FAILED = re.compile(r'FAILED TO CONVERGE GEOMETRY OPTIMIZATION')
_OPT_DONE = re.compile(r'GEOMETRY OPTIMIZATION CONVERGED')


def parse_lines(lines: Iterable[str]) -> dict:
    """Parse xtb's stdout (stderr lines may be mixed in: ``2>&1`` runs are understood too). Never raises."""
    result: dict = {'normal_termination': None, 'fatal_error': None}
    summary: dict = {}
    last_sp: dict = {}
    fatal: list[str] | None = None
    in_fatal = False
    scc_failed = opt_failed = opt_done = finished = False
    for line in lines:
        if in_fatal:
            if line.startswith('####'):
                in_fatal = False
            else:
                fatal.append(line.strip())
            continue
        if '[ERROR] Program stopped' in line:
            in_fatal, fatal = True, []
            continue
        if '|' in line:
            for key, regex in _SUMMARY.items():
                match = regex.search(line)
                if match:
                    summary[key] = to_float_or_none(match.group(1))
            for key, regex in _THERMO.items():
                if match := regex.search(line):
                    result[key] = to_float_or_none(match.group(1))
        elif '::' in line:
            for key, regex in _SP_BLOCK.items():
                match = regex.search(line)
                if match:
                    last_sp[key] = to_float_or_none(match.group(1))
            match = _CHARGE.search(line)
            if match:
                result['total_charge'] = to_float_or_none(match.group(1))
            if match := _ZPE.search(line):
                result['zero_point_energy_hartree'] = to_float_or_none(match.group(1))
        if 'VIB' in line and 'thermo_temperature_k' not in result and (match := _THERMO_ROW.match(line)):
            result['thermo_temperature_k'] = to_float_or_none(match.group(1))
        if 'method' not in result and 'G F N' in line and (match := _METHOD.search(line)):
            result['method'] = match.group(1).replace(' ', '')
        if 'xtb version' in line and 'xtb_version' not in result:
            match = _VERSION.search(line)
            if match:
                result['xtb_version'] = match.group(1)
        elif 'program call' in line and 'program_call' not in result:
            match = _CALL.search(line)
            if match:
                result['program_call'] = match.group(1).strip()
        elif 'calculation namespace' in line:
            match = _NAMESPACE.search(line)
            if match:
                result['namespace'] = match.group(1)
        elif _OPT_FAILED.search(line):
            opt_failed = True
        elif _OPT_DONE.search(line):
            opt_done = True
        elif '***' in line and 'convergence criteria cannot be satisfied' in line:
            # fatal for a single point; an optimisation step may survive it, so the verdict waits for the end
            result['scc_warnings'] = result.get('scc_warnings', 0) + 1
        elif 'finished run on' in line:
            finished = True
        elif 'abnormal termination of xtb' in line:
            result['normal_termination'] = False
        elif 'normal termination of xtb' in line:
            result['normal_termination'] = True
    values = summary or last_sp
    result.update(values)
    if result.get('total_energy_hartree') is not None:
        result['energy'] = result['total_energy_hartree'] * HARTREE_TO_EV
    if opt_failed or opt_done:
        result['optimization_converged'] = opt_done and not opt_failed
    result['finished'] = finished
    if fatal is not None:
        result['fatal_error'] = ' / '.join(x for x in fatal if x)
        result['fatal_errors'] = fatal_messages(fatal)
        if any(_SCC_FAILED.search(x) and ('scf' in x.lower() or 'scc' in x.lower()) for x in fatal):
            scc_failed = True
    if result.get('scc_warnings') and not summary:
        scc_failed = True
    result['scc_converged'] = not scc_failed
    result['exit_label'] = _verdict(result, summary_found=bool(summary))
    _set_detail(result)
    return result


def fatal_messages(lines: list[str]) -> list[str]:
    """xtb's own words from its fatal-error block: the ``-N-`` tags removed, xtb's generic closing line
    (``Global environment terminated``) dropped when there is anything else."""
    messages = []
    for line in lines:
        match = _FATAL_LINE.match(line)
        text = match.group(1) if match else line.strip()
        if text and text not in messages:
            messages.append(text)
    specific = [m for m in messages if 'Global environment terminated' not in m]
    return specific or messages


def _set_detail(result: dict) -> None:
    """``exit_detail``: xtb's words for a fatal error (its block on stdout, else the runtime's stderr line)."""
    if result.get('exit_label') not in ('ERROR_FATAL_ERROR', 'ERROR_SCC_NOT_CONVERGED'):
        result.pop('exit_detail', None)
        return
    words = result.get('fatal_errors') or ([result['fatal_error']] if result.get('fatal_error') else [])
    if words:
        result['exit_detail'] = '; '.join(words)


def _verdict(result: dict, *, summary_found: bool) -> str | None:
    if not result['scc_converged']:
        return 'ERROR_SCC_NOT_CONVERGED'
    if result['fatal_error'] is not None or result['normal_termination'] is False:
        return 'ERROR_FATAL_ERROR'
    if not summary_found or not result['finished'] or result.get('total_energy_hartree') is None:
        return 'ERROR_OUTPUT_INCOMPLETE'
    if result.get('optimization_converged') is False:
        return 'ERROR_OPTIMIZATION_NOT_CONVERGED'
    return None


def parse_stderr(path: pathlib.Path) -> tuple[bool | None, str | None]:
    """xtb's stderr: ``(True/False, None)`` for normal/abnormal termination, ``(None, None)`` when it says neither.

    A crash of the Fortran runtime (``Error termination``, e.g. a failed allocation) gives ``(False, message)``
    with the runtime's error line, which stdout never shows.
    """
    path = pathlib.Path(path)
    if not path.is_file() or looks_binary(path):
        return None, None
    verdict, message = None, None
    for line in iter_lines(path):
        if 'abnormal termination of xtb' in line:
            verdict = False
        elif 'normal termination of xtb' in line:
            verdict = True
        elif 'Error termination' in line:
            verdict = False if verdict is None else verdict
        elif message is None and 'error' in line.lower() and not line.startswith(('#', 'Note:')):
            message = line.strip()
    return verdict, (message if verdict is False else None)


def read_xyz(path: pathlib.Path) -> tuple[list[str], list[list[float]], str] | None:
    """Symbols, positions (Angstrom) and comment of the first frame of an XYZ file; ``None`` when unreadable."""
    try:
        with open(path, encoding='utf-8', errors='replace') as handle:
            count = int(handle.readline().split()[0])
            comment = handle.readline().rstrip('\n')
            symbols, positions = [], []
            for _ in range(count):
                fields = handle.readline().split()
                symbols.append(fields[0].capitalize())
                positions.append([float(x) for x in fields[1:4]])
    except (OSError, ValueError, IndexError):
        return None
    if not symbols:
        return None
    return symbols, positions, comment


def read_xyz_frames(text: str) -> dict[str, tuple[list[str], list[list[float]]]]:
    """``{comment: (symbols, positions)}`` of every complete frame of a multi-frame XYZ text; stops at the first
    frame it cannot read (never raises)."""
    frames, lines, index = {}, text.splitlines(), 0
    while index < len(lines):
        try:
            count = int(lines[index].split()[0])
            atoms = [line.split() for line in lines[index + 2:index + 2 + count]]
            symbols = [fields[0].capitalize() for fields in atoms]
            positions = [[float(x) for x in fields[1:4]] for fields in atoms]
        except (ValueError, IndexError):
            break
        if len(atoms) != count or any(len(p) != 3 for p in positions):
            break
        frames[lines[index + 1].strip()] = (symbols, positions)
        index += 2 + count
    return frames


def parse_run(stdout: pathlib.Path, stderr: pathlib.Path | None = None, xtbopt: pathlib.Path | None = None) -> dict:
    """Judge one xtb run from its stdout, its stderr (the termination line) and, for optimisations, xtbopt.xyz."""
    result = parse_file(stdout, parse_lines)
    if stderr is not None:
        verdict, message = parse_stderr(stderr)
        if message and not result.get('fatal_error'):
            result['fatal_error'] = message
        if verdict is not None:
            result['normal_termination'] = verdict
        elif stderr.is_file() and result.get('exit_label') is None:
            # stdout looks complete but xtb never said it terminated normally: the run was cut off.
            result['normal_termination'] = False
            result['exit_label'] = 'ERROR_OUTPUT_INCOMPLETE'
        if verdict is False and result.get('exit_label') in (None, 'ERROR_OUTPUT_INCOMPLETE'):
            result['exit_label'] = 'ERROR_FATAL_ERROR'
        _set_detail(result)
    if 'optimization_converged' in result and xtbopt is not None:
        geometry = read_xyz(xtbopt) if xtbopt.is_file() else None
        if geometry is None:
            if result.get('exit_label') in (None, 'ERROR_OPTIMIZATION_NOT_CONVERGED'):
                result['exit_label'] = 'ERROR_OPTIMIZED_GEOMETRY_MISSING'
        else:
            result['symbols'], result['positions'] = geometry[0], geometry[1]
    return result


def run_files(folder: pathlib.Path, namespace: str | None) -> tuple[pathlib.Path, pathlib.Path, pathlib.Path]:
    """Stdout, stderr and xtbopt.xyz of the run ``namespace`` (``None``: the un-namespaced run) in ``folder``."""
    if namespace is None:
        return folder / STDOUT_NAME, folder / STDERR_NAME, folder / 'xtbopt.xyz'
    return folder / f'{namespace}.out', folder / f'{namespace}.err', folder / f'{namespace}.xtbopt.xyz'


def summarise(runs: list[dict]) -> dict:
    """One result for a batch of namespaced runs: per-geometry lists, the lowest energy, and a verdict.

    The batch succeeds when at least one geometry did; failed ones are listed in ``failed_geometries`` (their
    index) and, when every geometry failed, the verdict of the first one is the batch's.
    """
    ok = [i for i, run in enumerate(runs) if run.get('exit_label') is None]
    energies = [run.get('total_energy_hartree') if i in ok else None for i, run in enumerate(runs)]
    result: dict = {
        'num_geometries': len(runs),
        'total_energies_hartree': energies,
        'homo_lumo_gaps_ev': [run.get('homo_lumo_gap_ev') if i in ok else None for i, run in enumerate(runs)],
        'gradient_norms_hartree_bohr': [run.get('gradient_norm_hartree_bohr') if i in ok else None for i, run in enumerate(runs)],
        'failed_geometries': [i for i in range(len(runs)) if i not in ok],
        'failures': {str(i): runs[i].get('exit_label') for i in range(len(runs)) if i not in ok},
        'geometries': runs,
    }
    if ok:
        lowest = min(ok, key=lambda i: energies[i])
        result['lowest_index'] = lowest
        result['total_energy_hartree'] = energies[lowest]
        result['energy'] = energies[lowest] * HARTREE_TO_EV
        result['homo_lumo_gap_ev'] = runs[lowest].get('homo_lumo_gap_ev')
        result['xtb_version'] = runs[lowest].get('xtb_version')
        result['exit_label'] = None
    else:
        result['exit_label'] = runs[0].get('exit_label') if runs else 'ERROR_OUTPUT_MISSING'
    return result


def namespaces_in(folder: pathlib.Path) -> list[str]:
    """Namespaces ``confNNNN`` of the batched runs in ``folder``, in order."""
    return sorted(p.stem for p in folder.glob('conf*.out') if re.fullmatch(r'conf\d+', p.stem))


def parse_path(path) -> dict:
    """Parse an xtb stdout file, or a run folder (``aiida.out`` or a batch of ``confNNNN.out``)."""
    path = pathlib.Path(path)
    if path.is_dir():
        namespaces = namespaces_in(path)
        if namespaces and not (path / STDOUT_NAME).is_file():
            return summarise([parse_run(*run_files(path, ns)) for ns in namespaces])
        stdout = find_output(path, (STDOUT_NAME, '*.out'))
    else:
        stdout = path
    stem = stdout.name[: -len(stdout.suffix)] if stdout.suffix else stdout.name
    stderr = stdout.with_name(f'{stem}.err')
    namespace = stem if re.fullmatch(r'conf\d+', stem) else None
    xtbopt = run_files(stdout.parent, namespace)[2]
    return parse_run(stdout, stderr if stderr.is_file() else None, xtbopt)


__all__ = ['EXIT_CODES', 'parse_lines', 'parse_path', 'parse_run', 'summarise', 'read_xyz', 'read_xyz_frames']
