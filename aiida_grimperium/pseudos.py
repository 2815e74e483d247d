"""Pseudopotentials for pw.x: map elements to UPF files in a directory (Debian's by default).

Debian's ``quantum-espresso-data`` puts a few dozen UPF files in :data:`DEFAULT_PSEUDO_DIR` with names like
``Si.pz-vbc.UPF`` or ``O.pbe-kjpaw.UPF``: ``<element>.<functional>-<flavour>.UPF``. :func:`find_pseudo` picks
one file per element for a functional (``pz`` = LDA, ``pbe``, ``pbesol``), and :func:`get_pseudos` turns a
structure's kinds into ``UpfData`` nodes (de-duplicated by MD5, so running twice stores nothing new).
"""
from __future__ import annotations

import pathlib
import re

DEFAULT_PSEUDO_DIR = pathlib.Path('/usr/share/espresso/pseudo')

#: Files chosen first when several match (the ones tested with the package), per (element, functional).
PREFERRED = {
    ('Si', 'pz'): 'Si.pz-vbc.UPF',
    ('Si', 'pbe'): 'Si.pbe-rrkj.UPF',
    ('H', 'pz'): 'H.pz-vbc.UPF',
    ('H', 'pbe'): 'H.pbe-kjpaw.UPF',
    ('O', 'pz'): 'O.pz-rrkjus.UPF',
    ('O', 'pbe'): 'O.pbe-rrkjus.UPF',
    ('C', 'pz'): 'C.pz-rrkjus.UPF',
    ('C', 'pbe'): 'C.pbe-rrkjus.UPF',
    ('N', 'pbe'): 'N.pbe-kjpaw.UPF',
}

_NAME = re.compile(r'^(?P<element>[A-Z][a-z]?)[._](?P<rest>.*)\.(?:upf|UPF)$')


def available_pseudos(directory: str | pathlib.Path = DEFAULT_PSEUDO_DIR) -> dict[str, list[str]]:
    """``{element: [file names]}`` of the UPF files in ``directory`` (sorted names)."""
    table: dict[str, list[str]] = {}
    for path in sorted(pathlib.Path(directory).glob('*')):
        match = _NAME.match(path.name)
        if match and path.is_file():
            table.setdefault(match.group('element'), []).append(path.name)
    return table


def find_pseudo(element: str, functional: str = 'pbe', directory: str | pathlib.Path = DEFAULT_PSEUDO_DIR) -> pathlib.Path:
    """The UPF file for ``element`` and ``functional`` in ``directory``; ``ValueError`` naming the choices if none.

    The preference: :data:`PREFERRED`, then a scalar-relativistic ``<El>.<functional>-*`` file (a name with
    ``rel-`` is fully relativistic and needs ``lspinorb``, so it comes last).
    """
    directory = pathlib.Path(directory)
    names = available_pseudos(directory).get(element, [])
    preferred = PREFERRED.get((element, functional))
    if preferred in names and directory == DEFAULT_PSEUDO_DIR:
        return directory / preferred
    candidates = [n for n in names if _NAME.match(n).group('rest').startswith(f'{functional}-')]
    if not candidates:
        raise ValueError(
            f'no `{functional}` pseudopotential for {element} in {directory}; files for {element}: {names or "none"}'
        )
    return directory / sorted(candidates, key=lambda n: (len(n), n))[0]


def get_pseudos(structure, functional: str = 'pbe', directory: str | pathlib.Path = DEFAULT_PSEUDO_DIR,
                overrides: dict[str, str] | None = None) -> dict:
    """``{kind name: UpfData}`` for ``structure``; ``overrides`` maps elements to file names in ``directory``."""
    from aiida import orm

    overrides = overrides or {}
    pseudos = {}
    for kind in structure.kinds:
        if kind.symbol in overrides:
            path = pathlib.Path(directory) / overrides[kind.symbol]
        else:
            path = find_pseudo(kind.symbol, functional, directory)
        pseudos[kind.name], _ = orm.UpfData.get_or_create(str(path), use_first=True, store_upf=True)
    return pseudos


def z_valence(path: str | pathlib.Path) -> float | None:
    """The valence charge of a UPF file (v2 ``z_valence="..."`` attribute or v1 ``Z valence`` line)."""
    with open(path, encoding='utf-8', errors='replace') as handle:
        return z_valence_of_text(handle.read())


def z_valence_of_text(text: str) -> float | None:
    """:func:`z_valence` on the content of a UPF file (e.g. ``UpfData.get_content()``)."""
    for line in text.splitlines():
        match = re.search(r'z_valence\s*=\s*"\s*([-+0-9.EeDd]+)', line, re.I)
        if match:
            return float(match.group(1).replace('D', 'E').replace('d', 'e'))
        if 'Z valence' in line:
            return float(line.split()[0].replace('D', 'E').replace('d', 'e'))
    return None
