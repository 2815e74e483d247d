"""``grimperium.pw``: aiida-quantumespresso's ``PwCalculation``, parsed by ``grimperium.pw`` (which adds the gap).

Everything else (the input file, the namelist checks, pseudopotentials, k-points, restarts, exit codes) is
aiida-quantumespresso's. A molecule is a structure with ``pbc`` all False; ``grimperium.pw.base`` gives it a box,
``assume_isolated = 'mt'`` and the Gamma point (``settings = {'gamma_only': True}``).
"""
from __future__ import annotations

from aiida_quantumespresso.calculations.pw import PwCalculation as QePwCalculation


class PwCalculation(QePwCalculation):
    """aiida-quantumespresso's pw.x CalcJob with this package's parser as the default."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('metadata.options.parser_name', valid_type=str, default='grimperium.pw')
