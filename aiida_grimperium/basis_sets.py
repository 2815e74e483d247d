"""Basis-set libraries for CRYSTAL: one folder per library, one ``<Element>.basis`` file per element.

A basis file holds the element's block of a CRYSTAL ``.d12`` input exactly as CRYSTAL reads it: the line
``Z NSHELL`` (``Z`` may be ``200 + Z`` for an effective core potential, or ``Z + 100`` per CRYSTAL's
conventions) followed by the shells. Libraries are looked up, in order, as

1. a path to a folder (``/home/me/basis/pob-tzvp``);
2. a folder of that name under each entry of the ``GRIMPERIUM_BASIS_SETS`` environment variable
   (``os.pathsep``-separated);
3. a folder of that name shipped in ``aiida_grimperium/data/basis_sets/`` (only ``sto-3g`` for Mg and O, from
   the test fixtures: see its README).

The AiiDA side (:func:`get_basis_sets`) wraps each element's file in a ``SinglefileData`` so that the basis
set of every calculation is part of its provenance, like a pseudopotential.
"""
from __future__ import annotations

import io
import os
import pathlib
from collections.abc import Iterable

PACKAGE_LIBRARIES = pathlib.Path(__file__).parent / 'data' / 'basis_sets'
ENVIRONMENT_VARIABLE = 'GRIMPERIUM_BASIS_SETS'
SUFFIX = '.basis'


def search_path() -> list[pathlib.Path]:
    """Folders searched for libraries by name: ``$GRIMPERIUM_BASIS_SETS`` entries first, then the package's."""
    extra = [pathlib.Path(p).expanduser() for p in os.environ.get(ENVIRONMENT_VARIABLE, '').split(os.pathsep) if p]
    return [*extra, PACKAGE_LIBRARIES]


def available_libraries() -> list[str]:
    """Names of the libraries found on :func:`search_path`."""
    names = set()
    for root in search_path():
        if root.is_dir():
            names.update(p.name for p in root.iterdir() if p.is_dir() and any(p.glob(f'*{SUFFIX}')))
    return sorted(names)


def library_path(library: str | os.PathLike) -> pathlib.Path:
    """The folder of ``library`` (a path or a name); ``ValueError`` when it cannot be found."""
    path = pathlib.Path(library).expanduser()
    if path.is_dir():
        return path
    name = str(library)
    if '/' not in name and name not in {'.', '..'}:
        for root in search_path():
            if (root / name).is_dir():
                return root / name
    raise ValueError(f'basis-set library `{library}` not found; known: {available_libraries()} '
                     f'(add folders with ${ENVIRONMENT_VARIABLE})')


def basis_atomic_number(text: str) -> int:
    """The element of a basis block: its first number modulo 100 (CRYSTAL adds 100/200 for variants/ECPs)."""
    first = text.split()
    if not first:
        raise ValueError('empty basis block')
    return int(first[0]) % 100


def read_basis(library: str | os.PathLike, element: str) -> str:
    """The basis block of ``element`` in ``library``, checked to be for that element, ending with a newline."""
    from .chemistry import atomic_number

    path = library_path(library) / f'{element}{SUFFIX}'
    if not path.is_file():
        raise ValueError(f'basis-set library `{library}` has no basis for {element} (expected {path})')
    text = path.read_text(encoding='utf-8').strip() + '\n'
    if basis_atomic_number(text) != atomic_number(element):
        raise ValueError(f'{path} starts with `{text.split()[0]}`, which is not the atomic number of {element}')
    return text


def get_basis_sets(library: str | os.PathLike, elements: Iterable[str]) -> dict:
    """``{element: SinglefileData}`` of ``library`` for ``elements`` (unstored nodes; filename ``<El>.basis``)."""
    from aiida import orm

    nodes = {}
    for element in sorted(set(elements)):
        text = read_basis(library, element)
        node = orm.SinglefileData(io.BytesIO(text.encode('utf-8')), filename=f'{element}{SUFFIX}')
        node.base.attributes.set('library', str(library))
        node.base.attributes.set('element', element)
        nodes[element] = node
    return nodes
