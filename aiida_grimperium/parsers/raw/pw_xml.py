"""Raw parser of Quantum ESPRESSO's XML output ``data-file-schema.xml`` (the ``qes-1.0`` schema), AiiDA-free.

Tested on the files written by pw.x 6.3 to 7.5 (``QEXSD`` formats 19.03.04 to 25.05.21; sources in
``tests/fixtures/README.md``). It reads the elements aiida-quantumespresso's ``PwParser`` reads:
``output/total_energy/etot``, ``output/band_structure/fermi_energy`` (or ``two_fermi_energies``,
``highestOccupiedLevel`` / ``lowestUnoccupiedLevel``), ``output/convergence_info/scf_conv`` and ``opt_conv``,
forces, stress, the final ``atomic_structure``, the total magnetisation, ``exit_status`` (``status`` in 6.x) and
the wall time. Values are converted from Hartree atomic units to the units of :mod:`.pw`: eV, Angstrom,
eV/Angstrom, kbar, plus ``energy_ry`` / ``*_energy_ry`` in Rydberg as pw.x prints them.

The file goes through expat with :class:`_Reader` as the target: no element tree is built, only the text of the
few leaves below is kept. Never raises: a truncated or corrupt file gives what was read before the damage, with
``xml_error`` and an ``exit_label`` of ``ERROR_OUTPUT_INCOMPLETE`` or ``ERROR_OUTPUT_PARSE``. The older
``data-file.xml`` format (pw.x < 6.2) is not read.
"""
from __future__ import annotations

import math
import pathlib
import xml.etree.ElementTree as ET
from collections.abc import Iterable

from . import find_output, floats, to_float_or_none
from .pw import BOHR_TO_ANGSTROM, RY_TO_EV

HARTREE_TO_EV = 2 * RY_TO_EV
HARTREE_TO_RY = 2.0
#: Hartree/bohr^3 -> kbar (QE's ``AU_GPA`` from CODATA 2018 values, times 10).
HARTREE_BOHR3_TO_KBAR = 4.3597447222071e-18 / (BOHR_TO_ANGSTROM * 1e-10) ** 3 / 1e9 * 10
CANDIDATES = ('data-file-schema.xml', '*.save/data-file-schema.xml', 'out/*.save/data-file-schema.xml')

#: Leaves whose text is read, by path below the root (namespace prefixes removed), and the key they feed.
_TEXT = {
    'general_info/creator': None, 'input/control_variables/calculation': 'calculation',
    'output/convergence_info/scf_conv/convergence_achieved': 'scf_converged',
    'output/convergence_info/scf_conv/n_scf_steps': 'scf_iterations',
    'output/convergence_info/scf_conv/scf_error': 'scf_error',
    'output/convergence_info/opt_conv/convergence_achieved': 'ionic_converged',
    'output/convergence_info/opt_conv/n_opt_steps': 'number_ionic_steps',
    'output/convergence_info/opt_conv/grad_norm': 'grad_norm',
    'output/total_energy/etot': 'energy_hartree', 'output/total_energy/ehart': 'hartree_energy_ry',
    'output/total_energy/etxc': 'xc_energy_ry', 'output/total_energy/ewald': 'ewald_energy_ry',
    'output/total_energy/demet': 'smearing_energy_ry',
    'output/band_structure/fermi_energy': 'fermi_energy', 'output/band_structure/two_fermi_energies': None,
    'output/band_structure/highestOccupiedLevel': 'homo', 'output/band_structure/lowestUnoccupiedLevel': 'lumo',
    'output/band_structure/nbnd': 'number_of_bands', 'output/band_structure/nelec': 'number_of_electrons',
    'output/band_structure/occupations_kind': 'occupations',
    'output/band_structure/ks_energies/eigenvalues': None,
    'output/magnetization/total': 'total_magnetization', 'output/magnetization/absolute': 'absolute_magnetization',
    'output/atomic_structure/atomic_positions/atom': None, 'output/atomic_structure/cell/a1': None,
    'output/atomic_structure/cell/a2': None, 'output/atomic_structure/cell/a3': None,
    'output/forces': None, 'output/stress': None, 'exit_status': 'exit_status', 'status': 'exit_status',
    'timing_info/total/wall': 'wall_time_seconds', 'timing_info/total/cpu': 'cpu_time_seconds',
    'step/total_energy/etot': None, 'step/scf_conv/convergence_achieved': None,
}
_BOOLEANS = {'scf_converged', 'ionic_converged'}
_INTEGERS = {'scf_iterations', 'number_ionic_steps', 'number_of_bands', 'exit_status'}
_STRINGS = {'calculation', 'occupations'}
_EV = {'fermi_energy', 'homo', 'lumo'}
_TO_RY = {'hartree_energy_ry', 'xc_energy_ry', 'ewald_energy_ry', 'smearing_energy_ry'}
#: pw.x's exit status (``run_pwscf``): 1 error, 2 SCF not converged, 3 ionic not converged, 255 stopped on time.
EXIT_STATUS_LABELS = {1: 'ERROR_CODE_ERROR_MESSAGE', 2: 'ERROR_SCF_NOT_CONVERGED', 3: 'ERROR_IONIC_NOT_CONVERGED',
                      255: 'ERROR_OUT_OF_WALLTIME'}


def _number(text: str) -> float | None:
    values = text.split()
    return to_float_or_none(values[0]) if values else None


class _Reader:
    """expat target: tracks the element path and keeps the text of the wanted leaves."""

    def __init__(self):
        self.result: dict = {
            'code_version': None, 'xml_format': None, 'calculation': None, 'energy': None, 'energy_ry': None,
            'energy_hartree': None, 'fermi_energy': None, 'homo': None, 'lumo': None, 'band_gap': None,
            'scf_converged': None, 'scf_iterations': None, 'ionic_converged': None, 'number_ionic_steps': None,
            'forces': None, 'stress_kbar': None, 'pressure_kbar': None, 'final_structure': None,
            'exit_status': None, 'wall_time_seconds': None, 'trajectory': [], 'xml_complete': False,
        }
        self.path: list[str] = []
        self.text: list[str] | None = None
        self.attrib: dict = {}
        self.eigenvalues: list[float] = []
        self.symbols: list[str] = []
        self.positions: list[list[float]] = []
        self.cell: dict[str, list[float]] = {}
        self.alat: float | None = None
        self.seen_root = self.seen_output = False

    def start(self, tag, attrib):
        name = tag.rsplit('}', 1)[-1].rsplit(':', 1)[-1]
        if not self.seen_root:
            self.seen_root = True
            return
        self.path.append(name)
        joined = '/'.join(self.path)
        if joined == 'general_info/xml_format':
            self.result['xml_format'] = attrib.get('VERSION')
        elif joined == 'general_info/creator':
            self.result['code_version'] = attrib.get('VERSION')
        elif joined == 'output':
            self.seen_output = True
        elif joined == 'output/atomic_structure':
            self.alat = to_float_or_none(attrib.get('alat', ''))
        elif joined == 'step':
            self.result['trajectory'].append({})
        if joined in _TEXT:
            self.text, self.attrib = [], attrib

    def data(self, text):
        if self.text is not None:
            self.text.append(text)

    def end(self, tag):
        if not self.path:
            self.result['xml_complete'] = True
            return
        joined = '/'.join(self.path)
        self.path.pop()
        if self.text is None:
            return
        text, self.text = ''.join(self.text), None
        try:
            self._leaf(joined, text)
        except (ValueError, OverflowError, IndexError, TypeError):
            pass  # a mangled value is skipped, the rest of the file is still read

    def _leaf(self, path: str, text: str):  # noqa: C901 - one flat dispatch
        result, key = self.result, _TEXT[path]
        if key in _BOOLEANS:
            result[key] = text.strip().lower() == 'true'
        elif key in _INTEGERS:
            result[key] = int(text.strip())
        elif key in _STRINGS:
            result[key] = text.strip()
        elif key is not None:
            value = _number(text)
            if key in _EV and value is not None:
                value *= HARTREE_TO_EV
            elif key in _TO_RY and value is not None:
                value *= HARTREE_TO_RY
            result[key] = value
        elif path.endswith('two_fermi_energies'):
            up, down = (x * HARTREE_TO_EV for x in floats(text)[:2])
            result['fermi_energy_up'], result['fermi_energy_down'] = up, down
            result['fermi_energy'] = max(up, down)
        elif path.endswith('eigenvalues'):
            self.eigenvalues.extend(x * HARTREE_TO_EV for x in floats(text))
        elif path.endswith('/atom'):
            values = floats(text)
            if len(values) == 3:
                self.symbols.append(self.attrib.get('name', 'X'))
                self.positions.append([x * BOHR_TO_ANGSTROM for x in values])
        elif '/cell/' in path:
            values = floats(text)
            if len(values) == 3:
                self.cell[path[-2:]] = [x * BOHR_TO_ANGSTROM for x in values]
        elif path == 'output/forces':
            values = floats(text)
            scale = HARTREE_TO_EV / BOHR_TO_ANGSTROM
            result['forces'] = [[x * scale for x in values[i:i + 3]] for i in range(0, len(values) - 2, 3)]
        elif path == 'output/stress':
            values = floats(text)
            if len(values) == 9:
                result['stress_kbar'] = [[x * HARTREE_BOHR3_TO_KBAR for x in values[i:i + 3]] for i in (0, 3, 6)]
                result['pressure_kbar'] = sum(result['stress_kbar'][i][i] for i in range(3)) / 3
        elif path == 'step/total_energy/etot' and result['trajectory']:
            result['trajectory'][-1]['energy_ry'] = _number(text) * HARTREE_TO_RY
        elif path == 'step/scf_conv/convergence_achieved' and result['trajectory']:
            result['trajectory'][-1]['scf_converged'] = text.strip().lower() == 'true'

    def close(self):
        return self.result


def _band_gap(eigenvalues: list[float], fermi: float) -> float | None:
    below = [e for e in eigenvalues if e <= fermi + 1e-9]
    above = [e for e in eigenvalues if e > fermi + 1e-9]
    if not below or not above:
        return None
    return max(0.0, min(above) - max(below))


def _finish(reader: _Reader, error: str | None) -> dict:
    result = reader.result
    if result['energy_hartree'] is not None and math.isfinite(result['energy_hartree']):
        result['energy_ry'] = result['energy_hartree'] * HARTREE_TO_RY
        result['energy'] = result['energy_hartree'] * HARTREE_TO_EV
    if reader.positions:
        cell = [reader.cell[k] for k in ('a1', 'a2', 'a3')] if len(reader.cell) == 3 else None
        result['final_structure'] = {'symbols': reader.symbols, 'positions': reader.positions, 'cell': cell}
    homo, lumo, fermi = result['homo'], result['lumo'], result['fermi_energy']
    if homo is not None and lumo is not None:
        result['band_gap'] = lumo - homo
    elif fermi is not None and reader.eigenvalues and 'fermi_energy_up' not in result:
        result['band_gap'] = _band_gap(reader.eigenvalues, fermi)
    if error:
        result['xml_error'] = error
    result['exit_label'] = _verdict(reader, error)
    return result


def _verdict(reader: _Reader, error: str | None) -> str | None:
    result = reader.result
    if not reader.seen_root:
        return 'ERROR_OUTPUT_PARSE'
    if error and not result['xml_complete']:
        return 'ERROR_OUTPUT_INCOMPLETE' if reader.seen_output or reader.path else 'ERROR_OUTPUT_PARSE'
    relax = result['calculation'] in ('relax', 'vc-relax')
    if result['exit_status'] in EXIT_STATUS_LABELS:
        return EXIT_STATUS_LABELS[result['exit_status']]
    if result['scf_converged'] is False:
        return 'ERROR_IONIC_FINAL_SCF_FAILED' if relax and result['ionic_converged'] else 'ERROR_SCF_NOT_CONVERGED'
    if result['ionic_converged'] is False:
        return 'ERROR_IONIC_NOT_CONVERGED'
    if not reader.seen_output or result['energy_ry'] is None:
        return 'ERROR_OUTPUT_INCOMPLETE'
    return None


def parse_chunks(chunks: Iterable[bytes | str]) -> dict:
    """Parse ``data-file-schema.xml`` given as pieces of bytes (or text); never raises."""
    reader = _Reader()
    error = None
    try:
        parser = ET.XMLParser(target=reader)
        for chunk in chunks:
            parser.feed(chunk)
        parser.close()
    except ET.ParseError as exc:
        error = f'ParseError: {exc}'
    except Exception as exc:  # noqa: BLE001 - the contract: report garbage as a parse failure, never raise
        error = f'{type(exc).__name__}: {exc}'
    try:
        return _finish(reader, error)
    except Exception as exc:  # noqa: BLE001
        return {**reader.result, 'xml_error': f'{type(exc).__name__}: {exc}', 'exit_label': 'ERROR_OUTPUT_PARSE'}


def find_xml(path) -> pathlib.Path:
    """The XML file itself, or ``data-file-schema.xml`` in a run folder (also inside ``*.save`` / ``out/*.save``)."""
    return find_output(pathlib.Path(path), CANDIDATES)


def parse_path(path, chunk_size: int = 1 << 16) -> dict:
    """Parse ``data-file-schema.xml`` (or the one of a run folder): missing -> 302, empty -> 310."""
    path = find_xml(path)
    if not path.is_file():
        return {'exit_label': 'ERROR_OUTPUT_MISSING', 'path': str(path)}
    try:
        if path.stat().st_size == 0:
            return {'exit_label': 'ERROR_OUTPUT_READ', 'path': str(path)}
        with open(path, 'rb') as handle:
            return parse_chunks(iter(lambda: handle.read(chunk_size), b''))
    except OSError:
        return {'exit_label': 'ERROR_OUTPUT_READ', 'path': str(path)}


__all__ = ['parse_chunks', 'parse_path', 'find_xml', 'HARTREE_TO_EV', 'HARTREE_BOHR3_TO_KBAR']
