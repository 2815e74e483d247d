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


#: The file name of the conformer a shell step's ``{lowest}`` stands for.
XYZ_FILENAME = 'lowest.xyz'


@calcfunction
def conformer_xyz(structure: orm.StructureData, molecule: orm.Dict) -> orm.SinglefileData:
    """``structure`` as an XYZ file (``lowest.xyz``, positions in Angstrom) for a shell step; its comment line is
    ``mol_id=... charge=... multiplicity=...`` from ``molecule``, which a script may read (XYZ has no charge)."""
    import io

    from ...structures import structure_symbols_positions

    symbols, positions = structure_symbols_positions(structure)
    comment = ' '.join(f'{name}={molecule[name]}' for name in ('mol_id', 'charge', 'multiplicity') if name in molecule)
    lines = [str(len(symbols)), comment]
    lines += [f'{symbol:<2} {x:16.10f} {y:16.10f} {z:16.10f}' for symbol, (x, y, z) in zip(symbols, positions)]
    return orm.SinglefileData(io.BytesIO(('\n'.join(lines) + '\n').encode()), filename=XYZ_FILENAME)
