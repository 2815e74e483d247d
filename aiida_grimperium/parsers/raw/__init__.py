"""Raw parsers: plain text in, plain dict out, no AiiDA import.

Every module here follows one contract so that ``grimperium parse CODE PATH`` and the AiiDA parsers share it:

* ``parse_lines(lines: Iterable[str]) -> dict`` reads the main output line by line (streaming: memory does not
  grow with the file), and never raises on truncated or odd text: it returns what it found plus
  ``exit_label`` (``None`` for success, else a label of :mod:`aiida_grimperium.exit_codes`).
* ``parse_path(path) -> dict`` accepts the output file or its run folder.
* ``EXIT_CODES``: the code's own exit codes (see :func:`aiida_grimperium.exit_codes.make_table`).
"""
from __future__ import annotations

import pathlib
import re
from collections.abc import Iterator
from typing import Callable

#: A Fortran-style real, including glued numbers such as ``-24.188-11.429`` and ``1.0D-03``.
FLOAT = r'[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eEdD][-+]?\d+)?'
FLOAT_RE = re.compile(FLOAT)


def to_float(text: str) -> float:
    """``float`` that also reads Fortran ``D`` exponents (``1.0D-03``)."""
    return float(text.replace('D', 'E').replace('d', 'e'))


def to_float_or_none(text: str) -> float | None:
    """:func:`to_float`, or ``None`` for a field that is not a number (``*****``, a mangled value)."""
    try:
        return to_float(text)
    except ValueError:
        return None


def floats(text: str) -> list[float]:
    """Return every real number in ``text`` (``D`` exponents accepted); ``****`` overflow fields are skipped."""
    return [to_float(x) for x in FLOAT_RE.findall(text)]


def looks_binary(path: pathlib.Path, probe: int = 4096) -> bool:
    """True when the start of the file has NUL bytes, i.e. it is not a text output."""
    with open(path, 'rb') as handle:
        return b'\x00' in handle.read(probe)


def iter_lines(path: pathlib.Path) -> Iterator[str]:
    """Yield the lines of a text file without loading it whole; undecodable bytes become U+FFFD."""
    with open(path, encoding='utf-8', errors='replace') as handle:
        yield from handle


def failure(label: str, **extra) -> dict:
    """A result that holds only a failure verdict."""
    return {'exit_label': label, **extra}


def parse_file(path: pathlib.Path, parse_lines: Callable[[Iterator[str]], dict]) -> dict:
    """Run ``parse_lines`` on a file with the common checks: missing → 302, empty or binary → 310."""
    path = pathlib.Path(path)
    if not path.is_file():
        return failure('ERROR_OUTPUT_MISSING', path=str(path))
    if path.stat().st_size == 0 or looks_binary(path):
        return failure('ERROR_OUTPUT_READ', path=str(path))
    try:
        return parse_lines(iter_lines(path))
    except OSError:
        return failure('ERROR_OUTPUT_READ', path=str(path))
    except Exception as exc:  # last line of defence: the fuzz tests call parse_lines directly to find these
        return failure('ERROR_OUTPUT_PARSE', path=str(path), error=f'{type(exc).__name__}: {exc}')


def find_output(path: pathlib.Path, candidates: tuple[str, ...]) -> pathlib.Path:
    """Return ``path`` itself if it is a file, else the first of ``candidates`` (names or globs) inside it."""
    path = pathlib.Path(path)
    if not path.is_dir():
        return path
    for pattern in candidates:
        matches = sorted(path.glob(pattern))
        if matches:
            return matches[0]
    return path / candidates[0]
