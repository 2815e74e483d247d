"""``grimperium.pw``: aiida-quantumespresso's ``PwCalculation``, parsed by ``grimperium.pw`` (which adds the gap).

Everything else (the input file, the namelist checks, pseudopotentials, k-points, restarts, exit codes) is
aiida-quantumespresso's. A molecule is a structure with ``pbc`` all False; ``grimperium.pw.base`` gives it a box,
``assume_isolated = 'mt'`` and the Gamma point (``settings = {'gamma_only': True}``).
"""
from __future__ import annotations

import re

from aiida_quantumespresso.calculations.pw import PwCalculation as QePwCalculation

from .base import KeepsRemoteFolder, guard_options


#: a namelist variable, with optional Fortran indices: ``ecutwfc``, ``starting_magnetization(1)``, ``Hubbard_U(2,1)``
NAMELIST_KEY = re.compile(r'^[A-Za-z][A-Za-z0-9_]*(\(\s*\d+(\s*,\s*\d+)*\s*\))?$')


def validate_namelists(value, port_namespace=None) -> str | None:
    """Keys are namelist variables and text values one line without a quote: the input file takes nothing but
    what was asked for (a newline or a quote in ``title`` would add text of its own, as aiida-quantumespresso
    writes text between single quotes as it is). Then aiida-quantumespresso's own checks."""
    for namelist, variables in (value.get_dict() if value is not None else {}).items():
        for key, item in (variables.items() if isinstance(variables, dict) else ()):
            if not NAMELIST_KEY.match(str(key)):
                return f'`{namelist}.{key}` is not a namelist variable name'
            if isinstance(item, str) and ('\n' in item or '\r' in item):
                return f'`{namelist}.{key}` must be one line'
            if isinstance(item, str) and "'" in item:  # written between single quotes, without Fortran's ''
                return f'`{namelist}.{key}` may not contain a single quote'
    return QePwCalculation.spec().inputs['parameters'].validator(value, port_namespace)


class PwCalculation(KeepsRemoteFolder, QePwCalculation):
    """aiida-quantumespresso's pw.x CalcJob with this package's parser as the default, the option checks of
    every grimperium CalcJob (file names, scheduler words, environment: see docs/security.md) and its workaround
    of a worker killed after the upload (:class:`~.base.KeepsRemoteFolder`)."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('metadata.options.parser_name', valid_type=str, default='grimperium.pw')
        guard_options(spec)
        spec.inputs['parameters'].validator = validate_namelists
