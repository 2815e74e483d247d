"""VASP raw parser (AiiDA-free): vasprun.xml first, OUTCAR and the standard output as fallbacks.

``parse_path`` takes ``vasprun.xml``, an ``OUTCAR``, a standard output file or a run folder holding any of
them, and returns one dict (see :func:`combine`) with the energies in eV:

* ``energy_extrapolated`` (sigma -> 0, VASP's ``energy(sigma->0)`` / ``e_0_energy``; also ``energy``),
* ``energy_free`` (``free energy TOTEN`` / ``e_fr_energy``), ``energy_no_entropy`` (``e_wo_entrp``),

taken from the last completed ionic step, plus band gap, Fermi energy, forces, stress, final structure,
``electronic_converged`` / ``ionic_converged`` and ``exit_label``.

VASP's own messages (error, warning and advice boxes, ``VERY BAD NEWS!`` lines; see :mod:`.vasp_messages`) are in
``vasp_messages``; when the run did not end and VASP printed a fatal one, the verdict is that message's exit code
and ``exit_detail`` holds VASP's words. Read from VASP 5.4.x and 6.x outputs (see tests/test_vasp_versions.py).
"""
from __future__ import annotations

import math
import pathlib
from collections.abc import Iterable, Iterator

from ...exit_codes import ExitCodeSpec, make_table
from . import failure, find_output, iter_lines, looks_binary
from .vasp_messages import EXIT_CODES as MESSAGE_EXIT_CODES
from .vasp_outcar import parse_text_lines
from .vasp_xml import parse_chunks, parse_vasprun

EXIT_CODES = make_table(
    ExitCodeSpec(350, 'ERROR_VASP_CRASHED', 'VASP stopped with an error message before the end of the run.'),
    ExitCodeSpec(410, 'ERROR_ELECTRONIC_NOT_CONVERGED', 'The electronic minimisation did not converge within NELM steps.'),
    ExitCodeSpec(500, 'ERROR_IONIC_NOT_CONVERGED', 'The ionic relaxation did not converge within NSW steps.'),
    *MESSAGE_EXIT_CODES.values(),
)

#: Names the CalcJob gives the files; ``vasp_output`` is the standard output (the name aiida-vasp uses too).
VASPRUN, OUTCAR, STDOUT = 'vasprun.xml', 'OUTCAR', 'vasp_output'
STDOUT_CANDIDATES = (STDOUT, '*.stdout', 'stdout', '_scheduler-stdout.txt')
#: IBRION values of a structural relaxation, for which ionic convergence is meaningful (0 is MD).
RELAXING_IBRION = (1, 2, 3)
#: Energies from two files of one run that differ by more than this (eV) are reported as a warning.
ENERGY_AGREEMENT = 1e-5


def parse_lines(lines: Iterable[str]) -> dict:
    """Parse one VASP output given as lines: vasprun.xml (sniffed by its ``<``) or OUTCAR / standard output."""
    iterator = iter(lines)
    head: list[str] = []
    for line in iterator:
        head.append(line)
        if line.strip():
            break

    def chained() -> Iterator[str]:
        yield from head
        yield from iterator

    if not any(h.strip() for h in head):
        return failure('ERROR_OUTPUT_READ')
    if head[-1].lstrip().startswith('<'):
        return combine(xml=parse_chunks(chained()))
    text = parse_text_lines(chained())
    return combine(outcar=text) if text['has_outcar_blocks'] or text['parameters'] else combine(stdout=text)


def _read(path: pathlib.Path | None, reader):
    """Run ``reader`` on ``path`` when it is a non-empty, non-binary file; else ``None`` (with a reason)."""
    if path is None or not path.is_file():
        return None, 'missing'
    try:
        if path.stat().st_size == 0 or looks_binary(path):
            return None, 'unreadable'
        return reader(path), None
    except OSError:
        return None, 'unreadable'


def parse_path(path) -> dict:
    """Parse a vasprun.xml, OUTCAR, standard output, or a run folder that holds them."""
    path = pathlib.Path(path)
    if path.is_dir():
        files = {
            'xml': find_output(path, (VASPRUN,)),
            'outcar': find_output(path, (OUTCAR,)),
            'stdout': find_output(path, STDOUT_CANDIDATES),
        }
    else:
        if not path.is_file():
            return failure('ERROR_OUTPUT_MISSING', path=str(path))
        files = {'xml': None, 'outcar': None, 'stdout': None}
        files[_kind(path)] = path
    text = lambda p: parse_text_lines(iter_lines(p))  # noqa: E731
    results, problems = {}, {}
    for key, reader in (('xml', parse_vasprun), ('outcar', text), ('stdout', text)):
        results[key], problems[key] = _read(files[key], reader)
    if not any(results.values()):
        label = 'ERROR_OUTPUT_READ' if 'unreadable' in problems.values() else 'ERROR_OUTPUT_MISSING'
        return failure(label, path=str(path))
    return combine(**results)


def _kind(path: pathlib.Path) -> str:
    if path.suffix == '.xml':
        return 'xml'
    try:
        with open(path, 'rb') as handle:
            head = handle.read(512).lstrip()
    except OSError:
        return 'stdout'
    if head.startswith(b'<'):
        return 'xml'
    return 'outcar' if path.name.upper().startswith('OUTCAR') or head.startswith(b'vasp.') else 'stdout'


def _finite(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def _energies(source: dict | None) -> dict | None:
    """The three energies of a source as floats, or None when the source has no usable free energy."""
    if not source or not source.get('energies'):
        return None
    energies = {key: _finite(source['energies'].get(key)) for key in ('e_fr_energy', 'e_wo_entrp', 'e_0_energy')}
    return energies if energies['e_fr_energy'] is not None else None


def _matrix(rows) -> list[list[float]] | None:
    if not rows or any(row is None or len(row) != 3 or any(_finite(x) is None for x in row) for row in rows):
        return None
    return rows


def combine(xml: dict | None = None, outcar: dict | None = None, stdout: dict | None = None) -> dict:
    """Merge what the three files said into the result dict and decide the exit label."""
    sources = [s for s in (xml, outcar, stdout) if s]
    warnings: list[str] = []
    params: dict = {}
    for source in reversed(sources):  # vasprun.xml wins, then OUTCAR, then stdout
        params.update(source.get('parameters') or {})

    energies, energy_source = None, None
    for name, source in (('vasprun.xml', xml), ('OUTCAR', outcar), ('stdout', stdout)):
        energies = _energies(source)
        if energies:
            energy_source = name
            break
    if energies and energy_source == 'vasprun.xml' and _energies(outcar):
        other = _energies(outcar)
        if abs(other['e_fr_energy'] - energies['e_fr_energy']) > ENERGY_AGREEMENT:
            warnings.append(f'vasprun.xml and OUTCAR disagree on the free energy: {energies} vs {other}')

    xml_complete = bool(xml and xml.get('xml_complete'))
    if xml and not xml_complete:
        warnings.append(f'vasprun.xml is not complete ({xml.get("xml_error")}): values may come from OUTCAR/stdout')
    finished = xml_complete or bool(outcar and outcar.get('finished'))
    if not finished and not xml and not outcar:
        finished = None  # the standard output alone does not say whether the run ended
        warnings.append('only the standard output was read: whether the run ended is unknown')

    def first(key):
        for source in sources:
            if source.get(key) is not None:
                return source[key]
        return None

    num_ionic = max([s.get('num_ionic_steps') or 0 for s in sources] or [0])
    # the electronic step count must come from the same completed ionic step as the energies
    num_electronic = (xml or {}).get('num_electronic_steps') if energy_source == 'vasprun.xml' else first('num_electronic_steps')
    nelm, nsw, ibrion = params.get('NELM'), params.get('NSW'), params.get('IBRION')
    nelm_message = any(s.get('nelm_reached_message') for s in sources)
    electronic_converged = None
    if nelm_message:
        electronic_converged = False
    elif isinstance(nelm, int) and isinstance(num_electronic, int) and energies:
        electronic_converged = num_electronic < nelm  # VASP stops the loop early only when EDIFF is reached
    is_relaxation = isinstance(nsw, int) and nsw > 0 and ibrion in RELAXING_IBRION
    accuracy = any(s.get('reached_required_accuracy') for s in sources)
    ionic_converged = None
    if is_relaxation and energies:
        ionic_converged = accuracy or num_ionic < nsw

    xml = xml or {}
    structure = xml.get('structure')
    if structure and xml.get('symbols') and len(xml['symbols']) == len(structure.get('positions') or []):
        structure = {'cell': _matrix(structure.get('cell')), 'symbols': xml['symbols'],
                     'frac_positions': _matrix(structure.get('positions'))}
        structure = structure if structure['cell'] and structure['frac_positions'] else None
    else:
        structure = None
    forces = _matrix(xml.get('forces'))
    gap = _finite(xml.get('band_gap'))
    fermi = _finite(xml.get('fermi_energy')) if xml.get('fermi_energy') is not None else _finite(first('fermi_energy'))
    errors = [e for s in sources for e in s.get('errors', [])]
    messages: list[dict] = []
    for source in (outcar, stdout):  # OUTCAR and stdout print the same boxes: keep each text once
        for message in (source or {}).get('messages') or []:
            if all(m['text'] != message['text'] for m in messages):
                messages.append(message)

    result = {
        'energy': energies['e_0_energy'] if energies else None,
        'energy_extrapolated': energies['e_0_energy'] if energies else None,
        'energy_free': energies['e_fr_energy'] if energies else None,
        'energy_no_entropy': energies['e_wo_entrp'] if energies else None,
        'energy_source': energy_source,
        'band_gap': gap,
        'vbm': _finite(xml.get('vbm')),
        'cbm': _finite(xml.get('cbm')),
        'fermi_energy': fermi,
        'electronic_converged': electronic_converged,
        'ionic_converged': ionic_converged,
        'is_relaxation': is_relaxation,
        'num_ionic_steps': num_ionic,
        'num_electronic_steps': num_electronic,
        'nelm': nelm,
        'nsw': nsw,
        'ibrion': ibrion,
        'finished': finished,
        'vasprun_complete': xml_complete if xml else None,
        'vasp_version': first('vasp_version'),
        'potcars': (outcar or {}).get('potcars') or None,
        'forces': forces,
        'max_force': max(math.sqrt(sum(x * x for x in row)) for row in forces) if forces else None,
        'stress': _matrix(xml.get('stress')),
        'structure': structure,
        'warnings': warnings,
        'errors': errors,
        'vasp_messages': messages,
    }
    fatal = [m for m in messages if m['fatal']]
    if fatal and finished:
        warnings.append(f'VASP printed an error message but the run ended: {fatal[-1]["text"]}')
    result['exit_label'] = label = _verdict(result, xml, energies, fatal)
    detail = None
    if label and fatal and not finished:
        detail = fatal[-1]['text']   # the last one: VASP stops at the message that killed the run
    elif label == 'ERROR_VASP_CRASHED' and errors:
        detail = errors[-1]
    elif label == 'ERROR_ELECTRONIC_NOT_CONVERGED':
        detail = next((m['text'] for m in reversed(messages) if 'NELM' in m['text'] or 'EDIFF' in m['text']), None)
    if detail:
        result['exit_detail'] = detail
    return result


def _verdict(result: dict, xml: dict, energies: dict | None, fatal: list[dict]) -> str | None:
    if fatal and result['finished'] is not True:
        return fatal[-1]['label']
    if result['finished'] is False:
        if result['errors']:
            return 'ERROR_VASP_CRASHED'
        if xml and str(xml.get('xml_error', '')).startswith('corrupt'):
            return 'ERROR_OUTPUT_PARSE'
        return 'ERROR_OUTPUT_INCOMPLETE'
    if not energies:
        return 'ERROR_OUTPUT_PARSE'
    if result['electronic_converged'] is False:
        return 'ERROR_ELECTRONIC_NOT_CONVERGED'
    if result['ionic_converged'] is False:
        return 'ERROR_IONIC_NOT_CONVERGED'
    return None
