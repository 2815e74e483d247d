"""Streaming reader of VASP's ``vasprun.xml``, AiiDA-free.

The file goes through expat (:class:`xml.etree.ElementTree.XMLParser`) with :class:`_Reader` as its *target*:
expat calls ``start``/``data``/``end`` and no element tree is ever built, so peak memory does not depend on
the number of ionic steps, k-points or DOS points. Text is only gathered for the few leaves that are read
(energies, vectors of the structures and forces, eigenvalue rows, a handful of INCAR values); every other
element costs two trivial calls. A truncated or corrupt file never raises: the result holds what was read
before the damage and ``xml_complete`` / ``xml_error`` say what happened.

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
#: Elements whose text is read (when wanted); and those whose closing tag needs handling.
_LEAVES = frozenset(('i', 'v', 'r', 'c'))
_CONTAINERS = frozenset(('varray', 'rc', 'scstep', 'energy', 'structure', 'calculation',
                         'array', 'parameters'))
#: Put before and after each eigenvalue row: NUL cannot occur in XML text, so it splits the rows safely.
ROW_MARK = '\x00'
#: Buffered pieces of text (about four per row) after which eigenvalue rows are read: bounds the buffer.
ROW_BATCH = 4096
#: Feeding expat tiny pieces (``parse_lines`` hands over lines) costs a Python round trip each: batch them.
FEED_SIZE = 1 << 16


def _number(text: str | None):
    text = (text or '').strip()
    # float first when int() must fail anyway: saves raising an exception for every energy
    for cast in (float, int) if '.' in text else (int, float):
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


class _Reader:
    """expat target: what has been read so far; only the last ionic step is kept in full."""

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
        self.tags: list[str] = []  # the open elements, root first
        # Character data goes straight into a list: ``data`` is the list's C ``append``, so the text of the
        # many elements that are not read costs no Python call. ``end`` empties it, so it holds at most the
        # text since the previous closing tag (the rows of one k-point, for the eigenvalues).
        self.buffer: list[str] = []
        self.data = self.buffer.append
        self.wanted = False  # the open leaf (<i>, <v>, <r>, <c>) is read
        self.name: str | None = None  # its name="..." attribute
        # context flags, kept up to date on start/end so that no call has to search ``tags``
        self.in_parameters = self.in_calc = self.in_scstep = self.in_atoms_array = False
        self.eigenvalues = 0  # depth of <eigenvalues> nesting inside the calculation
        self.atom_row: list[str] | None = None  # the <rc> of the atominfo "atoms" array being read
        self.varray: list | None = None  # the vectors of a <varray> that is read, and where they go
        self.varray_key: str | None = None
        self.structure: dict = {}
        self.structure_name: str | None = None
        # the ionic step being read
        self.scsteps: list[dict] = []
        self.calc: dict = {}
        self.vbm: float | None = None
        self.cbm: float | None = None

    def start(self, tag: str, attrib: dict) -> None:
        tags = self.tags
        if tag == 'r':  # the most frequent element by far (eigenvalue, DOS and projection rows): first
            tags.append(tag)
            self.wanted = self.eigenvalues > 0
            if self.wanted:
                self.buffer.append(ROW_MARK)
            return
        parent = tags[-1] if tags else ''
        tags.append(tag)
        if tag in _LEAVES:  # decide whether its text is read (a nested leaf, in a damaged file, resets it)
            if tag == 'i':
                name = self.name = attrib.get('name')
                self.wanted = (self.in_calc and (name in ENERGY_KEYS or name == 'efermi')
                               or self.in_parameters and name in PARAMETER_KEYS or parent in ('incar', 'generator'))
            elif tag == 'v':
                self.wanted = self.varray is not None
            else:
                self.wanted = self.atom_row is not None
            if self.wanted:  # only whitespace precedes it in a sound file; stray text in a damaged one
                self.buffer.clear()
        elif tag == 'varray':
            name = attrib.get('name')
            if parent == 'crystal' and name == 'basis':
                self.varray_key = 'cell'
            elif parent == 'structure' and name == 'positions':
                self.varray_key = 'positions'
            elif parent == 'calculation' and name in ('forces', 'stress'):
                self.varray_key = name
            else:
                self.varray = None
                return
            self.varray = []
        elif tag == 'scstep':
            self.in_scstep = True
            self.scsteps.append({})
        elif tag == 'calculation':
            self.in_calc = True
            self.calc, self.scsteps, self.vbm, self.cbm = {}, [], None, None
        elif tag == 'structure':
            self.structure, self.structure_name = {}, attrib.get('name')
        elif tag == 'eigenvalues' and self.in_calc:
            self.eigenvalues += 1
        elif tag == 'rc' and self.in_atoms_array:
            self.atom_row = []
        elif tag == 'array' and 'atominfo' in tags and attrib.get('name') == 'atoms':
            self.in_atoms_array = True
        elif tag == 'parameters':
            self.in_parameters = True

    def end(self, tag: str) -> None:
        self.tags.pop()
        if self.wanted:
            self.wanted = False
            if tag == 'r':
                self.buffer.append(ROW_MARK)
                return
            self._leaf(tag, ''.join(self.buffer))
        elif self.eigenvalues:
            # the buffer gathers the rows of several k-points (one <set> each), read in one go
            if tag == 'set' and len(self.buffer) < ROW_BATCH:
                return
            rows = ''.join(self.buffer).split(ROW_MARK)[1::2]  # between the marks: rows, then whitespace
            if rows:
                self._band_edges(rows)
            if tag == 'eigenvalues':
                self.eigenvalues -= 1
            elif tag in _CONTAINERS:
                self._end_container(tag)
        elif tag in _CONTAINERS:
            self._end_container(tag)
        self.buffer.clear()

    def close(self) -> None:
        pass

    def _end_container(self, tag: str) -> None:
        tags = self.tags
        if tag == 'varray':
            if self.varray is not None:
                target = self.calc if self.varray_key in ('forces', 'stress') else self.structure
                target[self.varray_key] = self.varray
            self.varray = None
        elif tag == 'rc':
            # a row of the "atoms" array is (element, atomtype): keep the element symbol
            if self.atom_row:
                self.result['symbols'].append(self.atom_row[0])
            self.atom_row = None
        elif tag == 'scstep':
            self.in_scstep = False
        elif tag == 'energy':
            if tags and tags[-1] == 'calculation':
                # the ionic step's closing energy block: its electronic loop is over, so it counts as completed
                self._commit_ionic_step()
        elif tag == 'structure':
            self._end_structure(tags[-1] if tags else '')
        elif tag == 'calculation':
            self._commit_ionic_step(final=True)
            self.in_calc = False
        elif tag == 'array':
            self.in_atoms_array = False
        elif tag == 'parameters':
            self.in_parameters = False

    def _leaf(self, tag: str, text: str) -> None:
        res, name, parent = self.result, self.name, self.tags[-1] if self.tags else ''
        if tag == 'v':
            self.varray.append(_vector(text))
        elif tag == 'c':
            self.atom_row.append(text.strip())
        elif parent == 'generator':
            if name == 'version':
                res['vasp_version'] = text.strip()
        elif parent == 'incar':
            if name:
                res['incar'][name] = _number(text)
        elif self.in_parameters and name in PARAMETER_KEYS:
            # the first occurrence is the real one: later sections (e.g. linear response) reuse some names
            res['parameters'].setdefault(name, _number(text))
        elif parent == 'energy' and name in ENERGY_KEYS:
            target = self.scsteps[-1] if self.in_scstep and self.scsteps else self.calc.setdefault('energy', {})
            target[name] = _number(text)
        elif name == 'efermi':
            self.calc['efermi'] = _number(text)

    def _band_edges(self, rows: list[str]) -> None:
        """Fold ``(energy, occupation)`` rows (of one or more k-points) into the band edges."""
        values = ' '.join(rows).split()
        try:
            if len(values) != 2 * len(rows):
                raise ValueError('not two columns')
            pairs = list(zip(map(float, values[0::2]), map(float, values[1::2])))
        except ValueError:  # odd rows or ******** overflows: row by row, skipping what does not read
            pairs = [v[:2] for v in map(_vector, rows) if v and len(v) >= 2]
        occupied = [energy for energy, occupation in pairs if occupation >= OCCUPIED]
        empty = [energy for energy, occupation in pairs if occupation < OCCUPIED]
        if occupied:
            self.vbm = max(occupied) if self.vbm is None else max(self.vbm, max(occupied))
        if empty:
            self.cbm = min(empty) if self.cbm is None else min(self.cbm, min(empty))

    def _end_structure(self, parent: str) -> None:
        structure, self.structure = self.structure, {}
        if 'cell' in structure and 'positions' in structure:
            if parent == 'calculation':
                self.calc['structure'] = structure
            elif self.structure_name == 'finalpos':
                self.result['structure'] = structure
            elif self.structure_name == 'initialpos':
                self.result['initial_structure'] = structure

    def _commit_ionic_step(self, final: bool = False) -> None:
        res = self.result
        steps = [s for s in self.scsteps if all(k in s for k in ENERGY_KEYS)]
        if not self.calc.get('committed'):
            res['num_ionic_steps'] += 1
            res['num_electronic_steps'] = len(self.scsteps)
            res['energies'] = dict(steps[-1]) if steps else dict(self.calc.get('energy', {})) or None
            res['electronic_energies'] = [s['e_fr_energy'] for s in steps]
            self.calc['committed'] = True
        for key in ('forces', 'stress'):
            if key in self.calc:
                res[key] = self.calc[key]
        if 'structure' in self.calc:
            res['structure'] = self.calc['structure']
        if final:
            if 'efermi' in self.calc:
                res['fermi_energy'] = self.calc['efermi']
            if self.vbm is not None or self.cbm is not None:
                res['band_edges'] = (self.vbm, self.cbm)
            self.calc, self.scsteps, self.vbm, self.cbm = {}, [], None, None


def _batched(chunks: Iterable[bytes | str]):
    pending, size = [], 0
    for chunk in chunks:
        pending.append(chunk)
        size += len(chunk)
        if size >= FEED_SIZE:
            yield pending[0][:0].join(pending)
            pending, size = [], 0
    if pending:
        yield pending[0][:0].join(pending)


def parse_chunks(chunks: Iterable[bytes | str]) -> dict:
    """Parse vasprun.xml fed as chunks (bytes or str); never raises on bad XML."""
    reader = _Reader()
    try:
        parser = ET.XMLParser(target=reader)
        for chunk in _batched(chunks):
            parser.feed(chunk)
        parser.close()
        reader.result['xml_complete'] = True
    except ET.ParseError as exc:
        message = str(exc)
        kind = 'truncated' if any(m in message for m in TRUNCATION_ERRORS) else 'corrupt'
        reader.result['xml_error'] = f'{kind}: {message}'
    except Exception as exc:  # noqa: BLE001 - a raw parser reports, it never raises
        reader.result['xml_error'] = f'corrupt: {type(exc).__name__}: {exc}'
    return _finish(reader.result)


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
