"""AiiDA parser of ``grimperium.crest``: the ensemble as one ``TrajectoryData``, the lowest conformer, a summary."""
from __future__ import annotations

from ..structures import make_ensemble, molecule_structure
from .base import GrimperiumParser
from .raw import crest as raw
from .raw.crest import BEST, CONFORMERS, ENERGIES

#: Keys of the raw result that are bulky or internal, left out of ``output_parameters``.
DROPPED = ('frames', 'symbols', 'exit_label')


class CrestParser(GrimperiumParser):
    """Success needs the termination line, a non-empty ``crest_conformers.xyz`` and matching ``crest.energies``."""

    CODE = 'crest'

    def parse(self, **kwargs):
        main = self.node.get_option('output_filename')
        result = self.parse_retrieved(raw.parse_path, [main, ENERGIES, CONFORMERS, BEST, 'xtb.out'], main)
        label = result.get('exit_label')
        frames, symbols = result.get('frames'), result.get('symbols')
        energies = [c.get('energy_hartree') for c in result.get('conformers', [])]
        if label is None and frames:
            temperature = result.get('temperature', 298.15)
            known = None if any(e is None for e in energies) else energies
            self.out('output_ensemble', make_ensemble(
                symbols, frames, known, temperature=temperature, charge=self.inputs.charge.value,
                multiplicity=self.inputs.multiplicity.value, engine='crest',
            ))
            lowest = min(range(len(frames)), key=lambda i: energies[i]) if known else 0
            self.out('output_structure', molecule_structure(symbols, frames[lowest]))
            if result.get('population_lowest_percent') is not None:
                result['population_lowest'] = result['population_lowest_percent'] / 100.0
        self.out('output_parameters', self.dict_node({k: v for k, v in result.items() if k not in DROPPED}))
        return self.exit_for(label)
