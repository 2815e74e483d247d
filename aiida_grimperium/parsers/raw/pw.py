"""pw.x outputs read by aiida-quantumespresso's own raw parsers, for ``grimperium parse pw`` and the tests.

aiida-quantumespresso does the reading (``parse_raw.pw.parse_stdout`` for the text output, ``parse_xml.parse``
for ``data-file-schema.xml``); this module only finds the files of a run folder, turns the parsers' logs into
an ``exit_label`` of :class:`aiida_quantumespresso.calculations.pw.PwCalculation` (the numbers the AiiDA parser
returns) and adds what they do not read: the HOMO/LUMO levels and the gap (:func:`frontier_levels`).
Unlike the other raw parsers it imports aiida (through aiida-quantumespresso), but needs no profile.
A file that cannot be read or parsed gives an ``exit_label``, never an exception.
"""
from __future__ import annotations

import io
import pathlib
import re
from collections.abc import Iterable

import numpy as np

from ...exit_codes import ExitCodeSpec
from . import find_output, looks_binary



def _exit_codes() -> dict[str, ExitCodeSpec]:
    from aiida_quantumespresso.calculations.pw import PwCalculation

    return {
        label: ExitCodeSpec(code.status, label, code.message)
        for label, code in PwCalculation.exit_codes.items() if code.status >= 300
    }


#: The exit codes of aiida-quantumespresso's PwCalculation that a parser returns (3xx-7xx), by label.
EXIT_CODES = _exit_codes()

#: pw.x prints its fatal errors between lines of '%' (in stdout and in the CRASH file).
_ERROR_BLOCK = re.compile(r'^ *%{20,}\s*$(.*?)^ *%{20,}\s*$', re.M | re.S)
#: The frontier levels pw.x prints for fixed occupations (aiida-quantumespresso's stdout parser skips them).
_LEVELS = re.compile(r'highest occupied(?:, lowest unoccupied)? level \(ev\):[ \t]+([-+]?\d+\.\d+)(?:[ \t]+([-+]?\d+\.\d+))?')


def frontier_levels(eigenvalues, occupations) -> dict:
    """HOMO, LUMO and gap (eV) of a fixed-occupation run from its band energies (eV) and occupations.

    Only when every occupation is empty or full: with smearing there is a Fermi energy, not a gap. A state counts
    as occupied above half of the largest occupation (1 per spin channel in the XML, 2 without spin).
    """
    eigenvalues, occupations = np.asarray(eigenvalues, float), np.asarray(occupations, float)
    if eigenvalues.size == 0 or eigenvalues.shape != occupations.shape:
        return {}
    full = occupations.max()
    if full <= 0 or not np.all(np.isclose(occupations, 0, atol=1e-6) | np.isclose(occupations, full, atol=1e-6)):
        return {}
    occupied, empty = eigenvalues[occupations > full / 2], eigenvalues[occupations <= full / 2]
    levels = {'highest_occupied_level': float(occupied.max())} if occupied.size else {}
    if empty.size:
        levels['lowest_unoccupied_level'] = float(empty.min())
    return with_band_gap(levels)


def with_band_gap(parameters: dict) -> dict:
    """``parameters`` plus ``band_gap`` = LUMO - HOMO (eV) when both levels are there."""
    if parameters.get('highest_occupied_level') is not None and parameters.get('lowest_unoccupied_level') is not None:
        parameters['band_gap'] = parameters['lowest_unoccupied_level'] - parameters['highest_occupied_level']
    return parameters


def error_message(*texts: str | None) -> str | None:
    """pw.x's own words for a fatal error: the first ``%%%%`` block of stdout or CRASH, on one line."""
    for text in texts:
        match = _ERROR_BLOCK.search(text or '')
        if match:
            return ' '.join(line.strip() for line in match.group(1).splitlines() if line.strip())
    return None


def _exit_label(errors: list[str]) -> str | None:
    """The exit label of the most telling error the parsers logged (their log order varies from run to run).

    As in aiida-quantumespresso's parser: what stopped pw.x (walltime, a diagonalisation or symmetry failure, the
    4xx codes and 360/531/541/542) first, then an incomplete or unreadable file (3xx), then the ionic cycle (5xx).
    """
    def rank(label):
        status = EXIT_CODES[label].status
        stopped = 400 <= status < 500 or status in (360, 531, 541, 542)
        return (0 if stopped else 1 if status < 400 else 2, status)

    return min((label for label in errors if label in EXIT_CODES), key=rank, default=None)


def _final_frame(parsed: dict) -> dict:
    """aiida-quantumespresso's output parameters: the parsed scalars plus the last frame of the trajectory."""
    from aiida_quantumespresso.parsers.pw import PwParser

    trajectory = parsed.pop('trajectory', {}) or {}
    parsed.pop('structure', None)
    bands = parsed.pop('bands', {}) or {}
    PwParser.final_trajectory_frame_to_parameters(parsed, trajectory)
    if parsed.get('occupations') == 'fixed' and 'bands' in bands:
        parsed.update(frontier_levels(bands['bands'], bands['occupations']))
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in parsed.items()}


def parse_stdout_text(text: str, crash: str | None = None) -> dict:
    """The text output of pw.x (and its CRASH file) → output parameters and ``exit_label``."""
    from aiida_quantumespresso.parsers.parse_raw.pw import parse_stdout

    detail = error_message(crash, text)
    try:
        parsed, logs = parse_stdout(text, {}, crash_file=crash)
    except Exception as exc:  # the upstream parser raises on what it cannot read (no header, a typo'd input)
        label = 'ERROR_OUTPUT_STDOUT_INCOMPLETE' if detail else 'ERROR_OUTPUT_STDOUT_PARSE'
        return {'exit_label': label, 'exit_detail': detail or f'{type(exc).__name__}: {exc}'}
    result = _final_frame(parsed)
    printed = _LEVELS.findall(text)
    if printed:  # the last SCF's levels, as printed (4 decimals)
        homo, lumo = printed[-1]
        levels = {'highest_occupied_level': float(homo), 'lowest_unoccupied_level': float(lumo) if lumo else None}
        result.update(with_band_gap({k: v for k, v in levels.items() if v is not None}))
    result['exit_label'] = _exit_label(logs.error)
    if detail:
        result['exit_detail'] = detail
    return result


def parse_lines(lines: Iterable[str]) -> dict:
    """:func:`parse_stdout_text` on the lines of a pw.x text output."""
    try:
        return parse_stdout_text(''.join(lines))
    except Exception as exc:  # noqa: BLE001 - the contract: a verdict, not an exception
        return {'exit_label': 'ERROR_OUTPUT_STDOUT_PARSE', 'exit_detail': f'{type(exc).__name__}: {exc}'}


def parse_xml_chunks(chunks: Iterable[bytes]) -> dict:
    """``data-file-schema.xml`` (as byte chunks) → output parameters and ``exit_label``."""
    from aiida_quantumespresso.parsers.parse_xml.exceptions import XMLParseError, XMLUnsupportedFormatError
    from aiida_quantumespresso.parsers.parse_xml.parse import parse_xml

    data = b''.join(chunks)
    if not data.strip():
        return {'exit_label': 'ERROR_OUTPUT_XML_READ'}
    try:
        parsed, logs = parse_xml(io.BytesIO(data))
        result = _final_frame(parsed)
    except XMLUnsupportedFormatError as exc:
        return {'exit_label': 'ERROR_OUTPUT_XML_FORMAT', 'exit_detail': str(exc)}
    except Exception as exc:  # noqa: BLE001 - XMLParseError, or anything the schema reader trips on
        label = 'ERROR_OUTPUT_XML_PARSE' if isinstance(exc, XMLParseError) else 'ERROR_UNEXPECTED_PARSER_EXCEPTION'
        return {'exit_label': label, 'exit_detail': f'{type(exc).__name__}: {exc}'}
    converged = result.get('convergence_info', {}).get('scf_conv', {}).get('convergence_achieved')
    errors = list(logs.error) + (['ERROR_ELECTRONIC_CONVERGENCE_NOT_REACHED'] if converged is False else [])
    result['exit_label'] = _exit_label(errors)
    return result


def find_xml(path: pathlib.Path) -> pathlib.Path | None:
    """``data-file-schema.xml`` of a run: ``path`` itself, in the folder, or in ``out/<prefix>.save/``."""
    path = pathlib.Path(path)
    if path.is_file():
        return path if path.suffix == '.xml' else None
    for pattern in ('data-file-schema.xml', 'out/*.save/data-file-schema.xml', '*.save/data-file-schema.xml'):
        found = sorted(path.glob(pattern))
        if found:
            return found[0]
    return None


def parse_path(path: str | pathlib.Path) -> dict:
    """A pw.x run folder (stdout, CRASH, XML), a text output or a ``data-file-schema.xml``.

    With both files the XML's values win (as in aiida-quantumespresso's parser); the stdout's verdict stands
    when it found a failure the XML does not record (walltime, a pw.x error).
    """
    path = pathlib.Path(path)
    xml = find_xml(path)
    stdout = None if xml == path else find_output(path, ('aiida.out', '*.out'))
    if stdout is not None and not stdout.is_file():
        stdout = None
    if xml is None and stdout is None:
        crash = path / 'CRASH' if path.is_dir() else None
        if crash is not None and crash.is_file():
            return {'exit_label': 'ERROR_OUTPUT_STDOUT_MISSING', 'exit_detail': error_message(crash.read_text(errors='replace'))}
        return {'exit_label': 'ERROR_OUTPUT_STDOUT_MISSING', 'path': str(path)}
    result = {}
    if stdout is not None:
        if stdout.stat().st_size == 0 or looks_binary(stdout):
            return {'exit_label': 'ERROR_OUTPUT_STDOUT_READ', 'path': str(stdout)}
        crash_path = stdout.parent / 'CRASH'
        crash = crash_path.read_text(errors='replace') if crash_path.is_file() else None
        result = parse_stdout_text(stdout.read_text(errors='replace'), crash)
    if xml is not None:
        from_xml = parse_xml_chunks([xml.read_bytes()])
        label = result.get('exit_label') or from_xml['exit_label']
        result = {**result, **from_xml, 'exit_label': label}
    return result
