"""Conversions between molecules (RDKit, XYZ, symbol/position lists) and AiiDA data nodes.

The **ensemble** node layout is shared by every conformer engine (CREST, RDKit + xtb) and read by MOPAC:
a ``TrajectoryData`` with one frame per conformer, ordered from the lowest energy up, holding

* ``positions`` (N, atoms, 3) in Angstrom, ``symbols`` and ``cells`` (each frame's box, as for a ``StructureData``);
* attributes ``energies_hartree``, ``relative_energies_kcal_mol`` and ``populations`` (lists of N, Boltzmann at
  the ``temperature`` attribute), when energies are known: the QueryBuilder can filter and project them, and an
  ensemble stores and hashes three files fewer. Ensembles stored by earlier versions hold them as arrays of the
  same names: :func:`conformer_values` reads either;
* attributes ``num_conformers``, ``temperature``, ``charge``, ``multiplicity`` and ``engine``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from aiida import orm

from .chemistry import HARTREE_TO_KCAL_MOL, boltzmann_populations

#: The per-conformer values of an ensemble (attributes, in frame order).
CONFORMER_VALUES = ('energies_hartree', 'relative_energies_kcal_mol', 'populations')
#: Vacuum kept around a molecule in the box AiiDA needs for ``StructureData`` (Angstrom).
MOLECULE_VACUUM = 10.0


def molecule_structure(symbols: Sequence[str], positions: Sequence[Sequence[float]],
                       vacuum: float = MOLECULE_VACUUM, center: bool = False) -> orm.StructureData:
    """A non-periodic ``StructureData`` in a box ``vacuum`` Angstrom wider than the molecule on every side.

    Positions are kept as the code printed them unless ``center``: codes that treat a molecule in a periodic
    box (pw.x) need it in the middle of the box, so that its density does not wrap around the box edges.
    """
    positions = np.asarray(positions, dtype=float).reshape(-1, 3)
    low = positions.min(axis=0) if len(positions) else np.zeros(3)
    high = positions.max(axis=0) if len(positions) else np.zeros(3)
    edges = (high - low) + 2 * vacuum
    if center:
        positions = positions - (low + high) / 2 + edges / 2
    structure = orm.StructureData(cell=np.diag(edges).tolist(), pbc=(False, False, False))
    for symbol, position in zip(symbols, positions):
        structure.append_atom(position=tuple(position), symbols=symbol)
    return structure


def structure_symbols_positions(structure: orm.StructureData) -> tuple[list[str], np.ndarray]:
    symbols = [structure.get_kind(site.kind_name).symbol for site in structure.sites]
    positions = np.array([site.position for site in structure.sites], dtype=float)
    return symbols, positions


def structure_from_smiles(smiles: str) -> orm.StructureData:
    """RDKit ETKDG geometry of ``smiles`` as a molecule ``StructureData``."""
    from .chemistry import molecule_symbols_positions, smiles_to_molecule

    return molecule_structure(*molecule_symbols_positions(smiles_to_molecule(smiles)))


def make_ensemble(
    symbols: Sequence[str],
    frames: Sequence[Sequence[Sequence[float]]],
    energies_hartree: Sequence[float] | None = None,
    *,
    temperature: float = 298.15,
    charge: int = 0,
    multiplicity: int = 1,
    engine: str = '',
    sort: bool = True,
) -> orm.TrajectoryData:
    """Build the ensemble ``TrajectoryData`` (see the module docstring); frames sorted by energy when known."""
    frames = np.asarray(frames, dtype=float).reshape(len(frames), len(symbols), 3)
    energies = None if energies_hartree is None else np.asarray(energies_hartree, dtype=float)
    if energies is not None and sort:
        order = np.argsort(energies, kind='stable')
        frames, energies = frames[order], energies[order]
    trajectory = orm.TrajectoryData()
    # each frame's box (the molecule with MOLECULE_VACUUM around it): ``verdi data core.trajectory export`` needs cells
    spans = frames.max(axis=1) - frames.min(axis=1) if len(frames) else np.zeros((0, 3))
    cells = np.array([np.diag(span + 2 * MOLECULE_VACUUM) for span in spans]).reshape(len(frames), 3, 3)
    trajectory.set_trajectory(
        symbols=list(symbols), positions=frames, stepids=np.arange(len(frames)), cells=cells
    )
    values = {}
    if energies is not None and len(energies):
        values = {'energies_hartree': energies.tolist(),
                  'relative_energies_kcal_mol': ((energies - energies.min()) * HARTREE_TO_KCAL_MOL).tolist(),
                  'populations': boltzmann_populations(energies.tolist(), temperature)}
    trajectory.base.attributes.set_many(
        {
            **values,
            'num_conformers': len(frames),
            'temperature': float(temperature),
            'charge': int(charge),
            'multiplicity': int(multiplicity),
            'engine': engine,
        }
    )
    return trajectory


def conformer_values(ensemble: orm.TrajectoryData, name: str) -> np.ndarray | None:
    """One value per conformer of ``ensemble`` (``name``: one of :data:`CONFORMER_VALUES`), or ``None`` when the
    energies are not known. From its attribute, or from its array in an ensemble stored before they moved."""
    values = ensemble.base.attributes.get(name, None)
    if values is None and name in ensemble.get_arraynames():
        return ensemble.get_array(name)
    return None if values is None else np.asarray(values, dtype=float)


def ensemble_frames(ensemble: orm.TrajectoryData) -> tuple[list[str], np.ndarray]:
    """Symbols and the (N, atoms, 3) positions of an ensemble node."""
    return list(ensemble.symbols), np.asarray(ensemble.get_positions(), dtype=float)
