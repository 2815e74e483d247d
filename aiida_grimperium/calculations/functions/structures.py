"""Structures made by a calcfunction from a job's results, so that they have a creator in the graph."""
from __future__ import annotations

from aiida import orm
from aiida.engine import calcfunction

from ...structures import molecule_structure


@calcfunction
def lowest_structure(results: orm.Dict) -> orm.StructureData:
    """The most stable conformer of a molecule of a MOPAC batch job, from its ``results.<key>`` (the attribute
    ``lowest_structure``: symbols and positions in Angstrom), as a ``StructureData`` with the molecule's ``mol_id``."""
    geometry = results['lowest_structure']
    structure = molecule_structure(geometry['symbols'], geometry['positions'])
    structure.base.attributes.set('mol_id', results.get('mol_id'))
    return structure
