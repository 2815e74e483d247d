"""Streaming reader of VASP's ``vasprun.xml``, AiiDA-free.

The file is read with :class:`xml.etree.ElementTree.XMLPullParser` and every element is detached from its
parent as soon as it has been read, so peak memory does not grow with the number of ionic steps, k-points or
DOS points. A truncated or corrupt file never raises: the result holds what was read before the damage and
``xml_complete`` / ``xml_error`` say what happened.

Energies come from the last electronic step (``<scstep>``) of the last *completed* ionic step
(``<calculation>``), not from the ``<energy>`` block that closes the ionic step: VASP 5.x writes wrong values
there (``e_0_energy`` holds garbage and ``e_wo_entrp`` holds the sigma->0 energy; see the VASP forum thread
16942 and pymatgen's ``Vasprun.final_energy``). The last ``<scstep>`` carries the same numbers as the
``free energy TOTEN`` block of OUTCAR.
"""
from __future__ import annotations

import pathlib
import xml.etree.ElementTree as ET
from collections.abc import Iterable

#: Occupation above which a state counts as occupied when locating the band edges (states are 0..1 in the XML).
OCCUPIED = 0.5
#: INCAR parameters (from the full ``<parameters>`` section) that the convergence checks need.
PARAMETER_KEYS = ('NELM', 'NSW', 'IBRION', 'EDIFF', 'EDIFFG', 'ISPIN', 'NELECT', 'ISMEAR', 'SIGMA', 'ISIF', 'IALGO')
ENERGY_KEYS = ('e_fr_energy', 'e_wo_entrp', 'e_0_energy')
#: Errors of expat that mean the file simply stops (as opposed to damaged bytes in the middle).
TRUNCATION_ERRORS = ('no element found', 'unclosed token', 'unclosed CDATA')


def _number(text: str | None):
    text = (text or '').strip()
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text in ('T', 'F'):
        return text == 'T'
    return text


def _vector(text: str | None) -> list[float] | None:
    try:
        return [float(x) for x in (text or '').split()]
    except ValueError:  # VASP prints ******** for overflows
        return None


class _State:
    """What has been read so far; only the last ionic step is kept in full."""

    def __init__(self):
        self.result: dict = {
            'xml_complete': False,
            'xml_error': None,
            'vasp_version': None,
            'incar': {},
            'parameters': {},
            'symbols': [],
            'num_ionic_steps': 0,
            'num_electronic_steps': None,
            'energies': None,
            'electronic_energies': None,
            'forces': None,
            'stress': None,
            'structure': None,
            'initial_structure': None,
            'fermi_energy': None,
            'band_edges': None,
        }
        # the ionic step being read
        self.scsteps: list[dict] = []
        self.calc: dict = {}
        self.varray: list = []
        self.structure: dict = {}
        self.row: list[str] = []
        self.vbm: float | None = None
        self.cbm: float | None = None


def _end(state: _State, elem: ET.Element, path: list[str], in_atoms_array: bool) -> None:
    """Handle one closed element; ``path`` holds the tags of its ancestors (root first)."""
    tag, parent = elem.tag, (path[-1] if path else '')
    res = state.result
    name = elem.get('name')

    if tag == 'i':
        if parent == 'generator' and name == 'version':
            res['vasp_version'] = (elem.text or '').strip()
        elif parent == 'incar' and name:
            res['incar'][name] = _number(elem.text)
        elif 'parameters' in path and name in PARAMETER_KEYS:
            # the first occurrence is the real one: later sections (e.g. linear response) reuse some names
            res['parameters'].setdefault(name, _number(elem.text))
        elif parent == 'energy' and name in ENERGY_KEYS and 'calculation' in path:
            target = state.scsteps[-1] if 'scstep' in path and state.scsteps else state.calc.setdefault('energy', {})
            target[name] = _number(elem.text)
        elif name == 'efermi' and 'calculation' in path:
            state.calc['efermi'] = _number(elem.text)
    elif tag == 'v' and parent == 'varray':
        state.varray.append(_vector(elem.text))
    elif tag == 'varray':
        if parent == 'crystal' and name == 'basis':
            state.structure['cell'] = state.varray
        elif parent == 'structure' and name == 'positions':
            state.structure['positions'] = state.varray
        elif parent == 'calculation' and name in ('forces', 'stress'):
            state.calc[name] = state.varray
        state.varray = []
    elif tag == 'structure':
        structure, state.structure = state.structure, {}
        if 'cell' in structure and 'positions' in structure:
            if parent == 'calculation':
                state.calc['structure'] = structure
            elif elem.get('name') == 'finalpos':
                res['structure'] = structure
            elif elem.get('name') == 'initialpos':
                res['initial_structure'] = structure
    elif tag == 'scstep' or (tag == 'energy' and parent == 'scstep'):
        pass
    elif tag == 'c' and parent == 'rc' and in_atoms_array:
        state.row.append((elem.text or '').strip())
    elif tag == 'rc' and in_atoms_array:
        # a row of the "atoms" array is (element, atomtype): keep the element symbol
        if state.row:
            res['symbols'].append(state.row[0])
        state.row = []
    elif tag == 'r' and 'eigenvalues' in path and 'calculation' in path:
        values = _vector(elem.text)
        if values and len(values) >= 2:
            energy, occupation = values[0], values[1]
            if occupation >= OCCUPIED:
                state.vbm = energy if state.vbm is None else max(state.vbm, energy)
            else:
                state.cbm = energy if state.cbm is None else min(state.cbm, energy)
    elif tag == 'energy' and parent == 'calculation':
        # the ionic step's closing energy block: its electronic loop is over, so it counts as completed
        _commit_ionic_step(state)
    elif tag == 'calculation':
        _commit_ionic_step(state, final=True)


def _commit_ionic_step(state: _State, final: bool = False) -> None:
    res = state.result
    steps = [s for s in state.scsteps if all(k in s for k in ENERGY_KEYS)]
    if not state.calc.get('committed'):
        res['num_ionic_steps'] += 1
        res['num_electronic_steps'] = len(state.scsteps)
        res['energies'] = dict(steps[-1]) if steps else dict(state.calc.get('energy', {})) or None
        res['electronic_energies'] = [s['e_fr_energy'] for s in steps]
        state.calc['committed'] = True
    for key in ('forces', 'stress'):
        if key in state.calc:
            res[key] = state.calc[key]
    if 'structure' in state.calc:
        res['structure'] = state.calc['structure']
    if final:
        if 'efermi' in state.calc:
            res['fermi_energy'] = state.calc['efermi']
        if state.vbm is not None or state.cbm is not None:
            res['band_edges'] = (state.vbm, state.cbm)
        state.calc, state.scsteps, state.vbm, state.cbm = {}, [], None, None


def _start(state: _State, elem: ET.Element) -> None:
    if elem.tag == 'scstep':
        state.scsteps.append({})
    elif elem.tag == 'calculation':
        state.calc, state.scsteps, state.vbm, state.cbm = {}, [], None, None


def parse_chunks(chunks: Iterable[bytes | str]) -> dict:
    """Parse vasprun.xml fed as chunks (bytes or str); never raises on bad XML."""
    state = _State()
    parser = ET.XMLPullParser(events=('start', 'end'))
    stack: list[ET.Element] = []
    tags: list[str] = []

    def drain():
        for event, elem in parser.read_events():
            if event == 'start':
                stack.append(elem)
                tags.append(elem.tag)
                _start(state, elem)
                continue
            stack.pop()
            tags.pop()
            in_atoms = 'atominfo' in tags and any(e.tag == 'array' and e.get('name') == 'atoms' for e in stack)
            _end(state, elem, tags, in_atoms)
            # detach the element from its parent so memory stays bounded on large files
            if stack and len(stack[-1]) and stack[-1][-1] is elem:
                del stack[-1][-1]
            elem.clear()

    try:
        for chunk in chunks:
            parser.feed(chunk)
            drain()
        parser.close()
        drain()
        state.result['xml_complete'] = True
    except ET.ParseError as exc:
        message = str(exc)
        kind = 'truncated' if any(m in message for m in TRUNCATION_ERRORS) else 'corrupt'
        state.result['xml_error'] = f'{kind}: {message}'
    except Exception as exc:  # noqa: BLE001 - a raw parser reports, it never raises
        state.result['xml_error'] = f'corrupt: {type(exc).__name__}: {exc}'
    return _finish(state.result)


def _finish(res: dict) -> dict:
    edges = res.pop('band_edges')
    res['vbm'], res['cbm'] = edges if edges else (None, None)
    if edges and None not in edges:
        res['band_gap'] = max(0.0, edges[1] - edges[0])
    else:
        res['band_gap'] = None
    return res


def parse_vasprun(path: pathlib.Path, chunk_size: int = 1 << 16) -> dict:
    """Stream ``vasprun.xml`` from disk in binary chunks (the XML declares its own encoding)."""

    def chunks():
        with open(path, 'rb') as handle:
            while block := handle.read(chunk_size):
                yield block

    return parse_chunks(chunks())
