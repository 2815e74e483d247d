"""Ensemble tools: Boltzmann weights, energy window, heavy-atom RMSD de-duplication, top-N, RDKit embedding.

Each tool exists twice: a plain function on ``(symbols, frames, energies)`` that tests and scripts can call, and a
``calcfunction`` on ensemble nodes (layout of :func:`aiida_grimperium.structures.make_ensemble`) so the provenance
of every pruned ensemble is kept. :func:`refine_ensemble` chains all of them in **one** calcfunction, which is what
the CREST conformer search uses. The rdkit-xtb search needs no process for them: its xtb job embeds the SMILES
(:func:`embed_conformers`) and its parser applies :func:`refine` (``XtbCalculation``'s ``smiles``, ``embedding``
and ``refine`` inputs).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from .chemistry import HARTREE_TO_EV, HARTREE_TO_KCAL_MOL, check_charge_multiplicity, molecule_symbols_positions
from .structures import conformer_values, ensemble_frames, make_ensemble, molecule_structure
from .structures import structure_symbols_positions

DEFAULT_TEMPERATURE = 298.15


# ----------------------------------------------------------------------------------------------- plain functions


def window_indices(energies_hartree: Sequence[float], window_kcal_mol: float) -> list[int]:
    """Indices of the conformers within ``window_kcal_mol`` of the lowest (the boundary is included)."""
    energies = np.asarray(energies_hartree, dtype=float)
    if not len(energies):
        return []
    relative = (energies - energies.min()) * HARTREE_TO_KCAL_MOL
    return [int(i) for i in np.flatnonzero(relative <= window_kcal_mol + 1e-9)]


def rmsd_molecule(symbols: Sequence[str], positions, charge: int = 0, *, polar_hydrogens: bool = True):
    """The RDKit molecule the RMSD is measured on, and the indices of its atoms in the full molecule.

    It holds the heavy atoms and, with ``polar_hydrogens``, the hydrogens bound to a heteroatom: an O-H or N-H
    rotamer is a conformer of its own (ethanol's trans and gauche), whereas a C-H rotamer is not. The connectivity,
    perceived from the geometry, lets :func:`rdkit.Chem.rdMolAlign.GetBestRMS` try the symmetry-equivalent atom
    orders (the two ends of n-butane, the oxygens of a carboxylate).
    """
    from rdkit import Chem
    from rdkit.Chem import rdDetermineBonds

    from .chemistry import xyz_text

    mol = Chem.MolFromXYZBlock(xyz_text(symbols, positions))
    rdDetermineBonds.DetermineConnectivity(mol, charge=int(charge))
    keep = []
    for atom in mol.GetAtoms():
        if atom.GetSymbol() != 'H':
            keep.append(atom.GetIdx())
        elif polar_hydrogens and any(n.GetSymbol() not in ('C', 'H') for n in atom.GetNeighbors()):
            keep.append(atom.GetIdx())
    editable = Chem.RWMol(mol)
    for index in sorted(set(range(mol.GetNumAtoms())) - set(keep), reverse=True):
        editable.RemoveAtom(index)
    sub = editable.GetMol()
    sub.UpdatePropertyCache(strict=False)
    return sub, keep


def conformer_rmsd(template, keep, positions, *, mirror: bool = False) -> float:
    """Symmetry-aware RMSD (Angstrom) of ``positions`` to ``template`` (from :func:`rmsd_molecule`) after optimal
    superposition; ``mirror`` reflects ``positions`` first. Fewer than three atoms have no conformations: 0."""
    from rdkit import Chem
    from rdkit.Chem import rdMolAlign
    from rdkit.Geometry import Point3D

    if len(keep) < 3:
        return 0.0
    probe_positions = np.asarray(positions, dtype=float)[keep] * ([-1.0, 1.0, 1.0] if mirror else 1.0)
    probe = Chem.Mol(template)
    conformer = probe.GetConformer()
    for k, xyz in enumerate(probe_positions):
        conformer.SetAtomPosition(k, Point3D(*map(float, xyz)))
    return float(rdMolAlign.GetBestRMS(probe, template))


def unique_indices(symbols, frames, threshold: float, *, mirror_images: bool = True, polar_hydrogens: bool = True,
                   charge: int = 0) -> list[int]:
    """Indices of the frames kept by greedy de-duplication: a frame is dropped when its heavy-atom RMSD (see
    :func:`rmsd_molecule`) to a frame kept before it is below ``threshold``. Frames are visited in the order given,
    so pass them lowest energy first to keep the lowest of each group. With ``mirror_images`` a conformer and its
    mirror image count as one (as CREST's CREGEN does): same energy, and the same molecule when it is achiral.
    """
    kept: list[int] = []
    templates: dict[int, tuple] = {}
    for i, frame in enumerate(frames):
        duplicate = False
        for j in kept:
            if j not in templates:
                templates[j] = rmsd_molecule(symbols, frames[j], charge, polar_hydrogens=polar_hydrogens)
            template, keep = templates[j]
            if conformer_rmsd(template, keep, frame) < threshold or (
                mirror_images and conformer_rmsd(template, keep, frame, mirror=True) < threshold
            ):
                duplicate = True
                break
        if not duplicate:
            kept.append(i)
    return kept


def embed_conformers(smiles_or_mol, num_conformers: int, seed: int = 0xF00D, *, prune_rmsd: float = 0.1):
    """RDKit ETKDGv3 multi-conformer embedding (with H), each conformer cleaned up with MMFF94 when possible.

    Returns ``(symbols, frames)``; raises ``ValueError`` for an unparsable SMILES or a failed embedding.
    """
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = smiles_or_mol
    if isinstance(smiles_or_mol, str):
        mol = Chem.MolFromSmiles(smiles_or_mol)
        if mol is None:
            raise ValueError(f'RDKit cannot parse the SMILES `{smiles_or_mol}`')
        mol = Chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed)
    params.pruneRmsThresh = float(prune_rmsd)
    ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=int(num_conformers), params=params))
    if not ids:
        params.useRandomCoords = True
        ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=int(num_conformers), params=params))
    if not ids:
        raise ValueError('RDKit could not embed the molecule in 3D')
    if AllChem.MMFFHasAllMoleculeParams(mol):
        AllChem.MMFFOptimizeMoleculeConfs(mol, maxIters=500)
    symbols = molecule_symbols_positions(mol, ids[0])[0]
    return symbols, [molecule_symbols_positions(mol, i)[1] for i in ids]


def boltzmann_average(values_kcal_mol: Sequence[float], temperature: float = DEFAULT_TEMPERATURE) -> float | None:
    """The Boltzmann-weighted mean of energies in kcal/mol at ``temperature`` (K), each weighted by its own value
    (the weights of a PM7 heat-of-formation ensemble); ``None`` for no values."""
    values = np.asarray([v for v in values_kcal_mol if v is not None], dtype=float)
    if not len(values):
        return None
    kt = 0.0019872043 * temperature  # the gas constant in kcal/(mol K)
    weights = np.exp(-(values - values.min()) / kt)
    return float(np.dot(weights, values) / weights.sum())


def molecule_from_structure(symbols, positions, charge: int = 0):
    """An RDKit molecule with bond orders perceived from a geometry (for embedding from a structure)."""
    from rdkit import Chem
    from rdkit.Chem import rdDetermineBonds

    from .chemistry import xyz_text

    mol = Chem.MolFromXYZBlock(xyz_text(symbols, positions))
    rdDetermineBonds.DetermineBonds(mol, charge=int(charge))
    return Chem.Mol(mol)


# ----------------------------------------------------------------------------------------------- on ensemble nodes


def _unpack(ensemble: orm.TrajectoryData):
    symbols, frames = ensemble_frames(ensemble)
    energies = conformer_values(ensemble, 'energies_hartree')
    attributes = {k: ensemble.base.attributes.get(k, d) for k, d in
                  (('temperature', DEFAULT_TEMPERATURE), ('charge', 0), ('multiplicity', 1), ('engine', ''))}
    return symbols, frames, energies, attributes


def _subset(symbols, frames, energies, attributes, indices, **changes) -> orm.TrajectoryData:
    chosen = frames[indices] if len(indices) else np.zeros((0, len(symbols), 3))
    return make_ensemble(symbols, chosen, None if energies is None else energies[indices], **{**attributes, **changes})


def refine(ensemble: orm.TrajectoryData, *, energy_window: float | None = None, rmsd_threshold: float | None = None,
           top_n: int | None = None, temperature: float | None = None, mirror_images: bool = True,
           engine: str | None = None) -> orm.TrajectoryData:
    """Energy window → RMSD de-duplication → top-N → Boltzmann weights at ``temperature``; a new (unstored) node."""
    symbols, frames, energies, attributes = _unpack(ensemble)
    if energies is not None:  # the layout is sorted by energy already, but a hand-made node may not be
        order = np.argsort(energies, kind='stable')
        frames, energies = frames[order], energies[order]
    indices = list(range(len(frames)))
    if energy_window is not None and energies is not None:
        indices = window_indices(energies, energy_window)
    if rmsd_threshold is not None and rmsd_threshold > 0:
        kept = unique_indices(symbols, frames[indices], rmsd_threshold, mirror_images=mirror_images, charge=attributes['charge'])
        indices = [indices[k] for k in kept]
    if top_n is not None and top_n > 0:
        indices = indices[: int(top_n)]
    if temperature is not None:
        attributes['temperature'] = float(temperature)
    if engine is not None:
        attributes['engine'] = engine
    return _subset(symbols, frames, energies, attributes, np.asarray(indices, dtype=int))


@calcfunction
def boltzmann_weights(ensemble: orm.TrajectoryData, temperature: orm.Float) -> orm.TrajectoryData:
    """The ensemble with Boltzmann populations at ``temperature`` (K)."""
    return refine(ensemble, temperature=temperature.value)


@calcfunction
def energy_window(ensemble: orm.TrajectoryData, window_kcal_mol: orm.Float) -> orm.TrajectoryData:
    """The conformers within ``window_kcal_mol`` of the lowest; populations renormalised."""
    return refine(ensemble, energy_window=window_kcal_mol.value)


@calcfunction
def deduplicate(ensemble: orm.TrajectoryData, rmsd_threshold: orm.Float, mirror_images: orm.Bool = lambda: orm.Bool(True)) -> orm.TrajectoryData:
    """One conformer (the lowest) per group closer than ``rmsd_threshold`` Angstrom in heavy-atom RMSD."""
    return refine(ensemble, rmsd_threshold=rmsd_threshold.value, mirror_images=mirror_images.value)


@calcfunction
def top_n(ensemble: orm.TrajectoryData, n: orm.Int) -> orm.TrajectoryData:
    """The ``n`` lowest conformers."""
    return refine(ensemble, top_n=n.value)


def refine_summary(refined: orm.TrajectoryData, num_input_conformers: int, settings: dict) -> dict:
    """What a conformer search reports of a refinement (its ``output_parameters``): ``settings`` (the arguments of
    :func:`refine`), the number of conformers before and after, temperature, engine, and with energies the lowest
    energy, the relative energies and the populations. The CREST search (:func:`refine_ensemble`) and the xtb job
    that refines its own conformers (``XtbCalculation``'s ``refine``) both report these keys."""
    summary = {
        **settings,
        'num_conformers': refined.numsteps,
        'num_input_conformers': num_input_conformers,
        'temperature': refined.base.attributes.get('temperature'),
        'engine': refined.base.attributes.get('engine'),
    }
    energies = conformer_values(refined, 'energies_hartree')
    if energies is not None and refined.numsteps:
        summary['lowest_energy_hartree'] = float(energies[0])
        summary['relative_energies_kcal_mol'] = conformer_values(refined, 'relative_energies_kcal_mol').tolist()
        summary['populations'] = conformer_values(refined, 'populations').tolist()
        summary['population_lowest'] = summary['populations'][0]
    return summary


@calcfunction
def refine_ensemble(ensemble: orm.TrajectoryData, parameters: orm.Dict):
    """All the tools in one process: ``parameters`` may hold ``energy_window`` (kcal/mol), ``rmsd_threshold``
    (Angstrom), ``mirror_images`` (bool), ``top_n`` and ``temperature`` (K).

    ``engine`` relabels the ensemble. Returns ``ensemble``, ``lowest_structure`` and ``output_parameters``
    (:func:`refine_summary`, and ``energy``: the lowest in eV).
    """
    p = parameters.get_dict()
    refined = refine(ensemble, energy_window=p.get('energy_window'), rmsd_threshold=p.get('rmsd_threshold'),
                     top_n=p.get('top_n'), temperature=p.get('temperature'), mirror_images=p.get('mirror_images', True),
                     engine=p.get('engine'))
    summary = refine_summary(refined, ensemble.numsteps, p)
    if 'lowest_energy_hartree' in summary:
        summary['energy'] = summary['lowest_energy_hartree'] * HARTREE_TO_EV
    outputs = {'ensemble': refined, 'output_parameters': orm.Dict(summary)}
    if refined.numsteps:
        symbols, frames = ensemble_frames(refined)
        outputs['lowest_structure'] = molecule_structure(symbols, frames[0])
    return outputs


@calcfunction
def embed_ensemble(parameters: orm.Dict, structure: orm.StructureData | None = None, smiles: orm.Str | None = None):
    """RDKit 3D embedding: ``ensemble`` (no energies) of ``num_conformers`` ETKDG conformers of ``smiles`` (or of the
    molecule perceived from ``structure``) and ``structure``, the first of them. ``parameters``: ``num_conformers``,
    ``seed``, ``charge``, ``multiplicity``, ``engine``, ``temperature``."""
    p = parameters.get_dict()
    charge, multiplicity = int(p.get('charge', 0)), int(p.get('multiplicity', 1))
    if smiles is not None:
        source = smiles.value
    else:
        source = molecule_from_structure(*structure_symbols_positions(structure), charge=charge)
    symbols, frames = embed_conformers(source, int(p.get('num_conformers', 1)), int(p.get('seed', 0xF00D)))
    check_charge_multiplicity(symbols, charge, multiplicity)
    ensemble = make_ensemble(symbols, frames, None, charge=charge, multiplicity=multiplicity, engine=p.get('engine', 'rdkit'),
                             temperature=float(p.get('temperature', DEFAULT_TEMPERATURE)))
    return {'ensemble': ensemble, 'structure': molecule_structure(symbols, frames[0])}
