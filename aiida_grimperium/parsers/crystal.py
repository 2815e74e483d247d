"""AiiDA parser of ``grimperium.crystal``: a thin layer over :mod:`aiida_grimperium.parsers.raw.crystal`."""
from __future__ import annotations

from aiida import orm

from ..structures import molecule_structure
from .base import GrimperiumParser
from .raw import crystal as raw

#: Exit status AiiDA's scheduler parser sets when the job ran out of walltime.
SCHEDULER_OUT_OF_WALLTIME = 120


def structure_node(data: dict) -> orm.StructureData:
    """A ``StructureData`` of the raw parser's ``structure`` dict (a molecule gets a box, see ``structures``)."""
    if data.get('cell') is None or not any(data['pbc']):
        return molecule_structure(data['symbols'], data['positions'])
    structure = orm.StructureData(cell=data['cell'], pbc=tuple(data['pbc']))
    for symbol, position in zip(data['symbols'], data['positions']):
        structure.append_atom(position=tuple(position), symbols=symbol)
    return structure


class CrystalParser(GrimperiumParser):
    """Outputs ``output_parameters`` (energy in eV and Hartree, band gap, convergence, version) and, for a
    geometry optimisation, ``output_structure`` (the last geometry, also when the optimisation failed, so that a
    restart can continue from it)."""

    CODE = 'crystal'

    def parse(self, **kwargs):
        main = self.node.get_option('output_filename')
        if main not in self.retrieved_names():
            return self.exit_for('ERROR_OUTPUT_MISSING')
        result = self.parse_retrieved(raw.parse_path, [main], main)
        label = result.pop('exit_label', None)
        structure = result.pop('structure', None)
        self.out('output_parameters', self.dict_node(result))
        if structure and result.get('geometry_optimization'):
            try:
                self.out('output_structure', structure_node(structure))
            except (ValueError, TypeError, KeyError) as exc:   # an odd geometry must not hide the verdict
                self.logger.warning(f'could not build the output structure: {exc}')
        if label == 'ERROR_OUTPUT_INCOMPLETE' and self.node.exit_status == SCHEDULER_OUT_OF_WALLTIME:
            label = 'ERROR_OUT_OF_WALLTIME'   # the scheduler killed it: say so, so the workchain can restart
        return self.exit_for(label)
