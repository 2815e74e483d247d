"""``grimperium.pw`` parser: aiida-quantumespresso's ``PwParser`` plus the HOMO/LUMO gap of fixed occupations.

``output_parameters`` gains ``highest_occupied_level``, ``lowest_unoccupied_level`` and ``band_gap`` (eV) when
every band is empty or full (fixed occupations: molecules and insulators); ``energy`` (eV) is aiida-
quantumespresso's. The levels come from the band energies and occupations of ``data-file-schema.xml``, which
aiida-quantumespresso parses but does not summarise.
"""
from __future__ import annotations

import traceback

from aiida_quantumespresso.parsers.pw import PwParser as QePwParser

from .raw.pw import frontier_levels


class PwParser(QePwParser):
    """aiida-quantumespresso's pw.x parser that also reports the HOMO-LUMO gap, and never raises."""

    def parse(self, **kwargs):
        try:
            return super().parse(**kwargs)
        except Exception as exc:  # noqa: BLE001 - a parser answers with an exit code, not a traceback
            self.logger.error(traceback.format_exc())
            return self.exit_codes.ERROR_UNEXPECTED_PARSER_EXCEPTION.format(exception=exc)

    def parse_xml(self):
        parsed, logs = super().parse_xml()
        bands = parsed.get('bands') or {}
        if parsed.get('occupations') == 'fixed' and 'bands' in bands and 'occupations' in bands:
            parsed.update(frontier_levels(bands['bands'], bands['occupations']))
        return parsed, logs
