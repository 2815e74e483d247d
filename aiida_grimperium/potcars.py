"""POTCAR selection from a user's POTCAR library (AiiDA-free).

VASP's PAW potentials are licensed: the package ships none and never copies them into the AiiDA repository
(the CalcJob lists ``POTCAR`` in ``provenance_exclude_list``). A user points to the folder VASP distributes,
laid out as ``<library>/<name>/POTCAR`` where ``<name>`` is an element (``Si``) or a variant (``Fe_pv``,
``O_s``, ``Ga_d``); ``POTCAR.gz`` is not read, unpack the library once. What is recorded instead, so a
calculation stays traceable, is each potential's ``TITEL`` line and the SHA-256 of its file.
"""
from __future__ import annotations

import hashlib
import pathlib
import re
from collections.abc import Mapping, Sequence

#: A library entry name: element symbol plus an optional VASP suffix (``_pv``, ``_sv_GW``, ``.5``...).
ENTRY_NAME = re.compile(r'^[A-Z][a-z]?([_.][A-Za-z0-9_.]+)?$')
#: Header keys worth keeping (they identify the potential and give the valence and default cut-off).
HEADER_KEYS = ('TITEL', 'VRHFIN', 'LEXCH', 'ZVAL', 'ENMAX', 'POMASS')


class PotcarError(ValueError):
    """A POTCAR could not be found or is not a POTCAR."""


def potcar_name(element: str, mapping: Mapping[str, str] | None = None) -> str:
    """The library entry to use for ``element``: ``mapping[element]`` when given, else the element itself."""
    name = (mapping or {}).get(element, element)
    if not ENTRY_NAME.match(name) or not name.split('_')[0].split('.')[0] == element:
        raise PotcarError(f'POTCAR `{name}` is not a variant of element `{element}`')
    return name


def find_potcar(library: str | pathlib.Path, name: str) -> pathlib.Path:
    """Path of ``<library>/<name>/POTCAR``; :class:`PotcarError` if it does not exist."""
    library = pathlib.Path(library).expanduser()
    if not library.is_dir():
        raise PotcarError(f'POTCAR library `{library}` is not a folder')
    path = library / name / 'POTCAR'
    if not path.is_file():
        raise PotcarError(f'no POTCAR for `{name}` in the library: `{path}` does not exist')
    return path


def read_header(text: str) -> dict:
    """The identifying header of one POTCAR (the first line plus ``TITEL``, ``ZVAL``, ``ENMAX``...)."""
    lines = text.splitlines()
    header: dict = {'first_line': lines[0].strip() if lines else ''}
    for line in lines[:80]:  # the PSCTR parameter block sits at the top
        for part in line.split(';'):
            key, sep, value = part.partition('=')
            key = key.strip()
            if sep and key in HEADER_KEYS and key not in header:
                value = value.strip()
                if key in ('ZVAL', 'ENMAX', 'POMASS'):
                    try:
                        value = float(value.split()[0])
                    except (ValueError, IndexError):
                        continue
                header[key] = value
    if 'TITEL' not in header:
        raise PotcarError(f'not a POTCAR: no TITEL line (starts with `{header["first_line"][:60]}`)')
    return header


def assemble(library, symbols: Sequence[str], mapping: Mapping[str, str] | None = None) -> tuple[str, list[dict]]:
    """Concatenate the POTCARs of ``symbols`` (the POSCAR species line, in order) from ``library``.

    Returns the POTCAR text and, per species, ``{'element', 'name', 'titel', 'sha256', 'zval', 'enmax'}``
    for provenance. Raises :class:`PotcarError` on a missing or malformed file.
    """
    texts, records = [], []
    for element in symbols:
        name = potcar_name(element, mapping)
        path = find_potcar(library, name)
        raw = path.read_bytes()
        text = raw.decode('utf-8', errors='replace')
        header = read_header(text)
        texts.append(text if text.endswith('\n') else text + '\n')
        records.append({
            'element': element,
            'name': name,
            'titel': header['TITEL'],
            'sha256': hashlib.sha256(raw).hexdigest(),
            'zval': header.get('ZVAL'),
            'enmax': header.get('ENMAX'),
        })
    return ''.join(texts), records
