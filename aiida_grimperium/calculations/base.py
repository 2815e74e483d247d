"""The base class of every grimperium CalcJob: common options and the shared exit codes.

Subclasses set the class attributes below, call ``super().define(spec)`` and then declare their own inputs,
outputs and ``EXIT_CODES`` (from ``parsers/raw/<code>.py``) with :meth:`declare_exit_codes`.
"""
from __future__ import annotations

import re

from aiida.engine import CalcJob

from ..exit_codes import COMMON, ExitCodeSpec

#: What a label or file name supplied by a user may contain; everything else is refused.
SAFE_NAME = re.compile(r'^[A-Za-z0-9_.+-]{1,128}$')


def validate_filename(name: str) -> str | None:
    """Return an error message when ``name`` is not a plain file name (no ``/``, no ``..``, no shell characters)."""
    if not SAFE_NAME.match(name) or name in {'.', '..'} or '..' in name:
        return f'`{name}` is not an allowed file name: use letters, digits, `_`, `-`, `+` and single dots only'
    return None


class GrimperiumCalcJob(CalcJob):
    """Common spec of the package's CalcJobs."""

    #: Name of the input file the code reads and of its main output (stdout or the code's own file).
    _DEFAULT_INPUT_FILE = 'aiida.in'
    _DEFAULT_OUTPUT_FILE = 'aiida.out'
    #: Entry point of the parser (``grimperium.<code>``).
    _DEFAULT_PARSER = ''
    #: Serial codes run one process with all cores of the job as threads; MPI codes override this.
    _DEFAULT_WITHMPI = False

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.inputs['metadata']['options']['resources'].default = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}
        spec.inputs['metadata']['options']['input_filename'].default = cls._DEFAULT_INPUT_FILE
        spec.inputs['metadata']['options']['output_filename'].default = cls._DEFAULT_OUTPUT_FILE
        spec.inputs['metadata']['options']['withmpi'].default = cls._DEFAULT_WITHMPI
        if cls._DEFAULT_PARSER:
            spec.inputs['metadata']['options']['parser_name'].default = cls._DEFAULT_PARSER
        cls.declare_exit_codes(spec, COMMON)

    @staticmethod
    def declare_exit_codes(spec, table: dict[str, ExitCodeSpec]) -> None:
        for code in table.values():
            spec.exit_code(code.status, code.label, message=code.message)
