"""Exit codes of every grimperium code, AiiDA-free.

The same numbers are declared on the CalcJobs (``spec.exit_code``), returned by the AiiDA parsers and printed
by ``grimperium parse``, so a failure reads the same whether it came through the daemon or from a file on disk.
Bands follow aiida-quantumespresso: 3xx missing/unreadable output, 4xx-5xx recoverable physics, 7xx warnings.

Each code's own codes live beside its raw parser, as ``EXIT_CODES`` in ``parsers/raw/<code>.py``.
A raw parser reports its verdict as ``result['exit_label']`` (``None`` on success);
:func:`resolve` turns that label into the number and message.
"""
from __future__ import annotations

import importlib
from typing import NamedTuple


class ExitCodeSpec(NamedTuple):
    status: int
    label: str
    message: str


def make_table(*specs: ExitCodeSpec) -> dict[str, ExitCodeSpec]:
    return {spec.label: spec for spec in specs}


#: Codes every CalcJob of the package declares.
COMMON = make_table(
    ExitCodeSpec(302, 'ERROR_OUTPUT_MISSING', 'The main output file was not retrieved or does not exist.'),
    ExitCodeSpec(310, 'ERROR_OUTPUT_READ', 'The main output file could not be read (empty or not text).'),
    ExitCodeSpec(311, 'ERROR_OUTPUT_PARSE', 'The main output file could not be parsed.'),
    ExitCodeSpec(312, 'ERROR_OUTPUT_INCOMPLETE', 'The main output file is incomplete: the run did not end.'),
    ExitCodeSpec(400, 'ERROR_OUT_OF_WALLTIME', 'The calculation stopped because it ran out of walltime.'),
    ExitCodeSpec(401, 'ERROR_SCHEDULER_CANCELLED',
                 'The scheduler cancelled the job (scancel, preemption) before the code finished.'),
)

def table_for(code: str) -> dict[str, ExitCodeSpec]:
    """Return the common codes merged with those of ``code`` (``EXIT_CODES`` in ``parsers/raw/<code>.py``)."""
    module = importlib.import_module(f'aiida_grimperium.parsers.raw.{code}')
    return {**COMMON, **getattr(module, 'EXIT_CODES', {})}


def resolve(code: str, label: str | None) -> tuple[int, str]:
    """Return ``(exit_status, exit_message)`` for a raw parser's ``exit_label``; ``(0, '')`` for success."""
    if label is None:
        return 0, ''
    spec = table_for(code).get(label)
    if spec is None:  # a raw parser used a label nobody declared: report it as a parse failure, not a crash
        spec = COMMON['ERROR_OUTPUT_PARSE']
    return spec.status, spec.label
