"""``grimperium export NAME --structures DIR``: each molecule's conformers and its most stable structure as files.

Per molecule of the campaign with results (its last run): ``<mol_id>.ensemble.xyz`` (every conformer of its
ensemble, lowest first; the comment line of each frame has its xtb energy in Hartree and its energy relative to
the lowest in kcal/mol) and ``<mol_id>.sdf`` (the PM7 geometry of the most stable conformer, with the bonds and
charges of the molecule's SMILES, from the ``lowest_structure`` of its MOPAC results: the atoms of every
grimperium geometry are in the order RDKit gives the SMILES with explicit hydrogens). An ensemble also exports
with ``verdi data core.trajectory export --format xsf PK`` (it carries each frame's box as a cell).
"""
from __future__ import annotations

import pathlib
import re

from aiida import orm

from ..structures import conformer_values, ensemble_frames
from .queries import batch_outputs
from .readers import read_molecules

SAFE_FILE_NAME = re.compile(r'[^A-Za-z0-9_.+-]')


def file_stem(mol_id: str) -> str:
    """A file name for ``mol_id``: anything but letters, digits and ``_.+-`` becomes ``_``."""
    return SAFE_FILE_NAME.sub('_', mol_id).strip('.') or 'molecule'


def ensemble_xyz(ensemble: orm.TrajectoryData, mol_id: str) -> str:
    """Multi-structure XYZ text of ``ensemble`` with each conformer's energies on its comment line."""
    symbols, frames = ensemble_frames(ensemble)
    energies = conformer_values(ensemble, 'energies_hartree')
    relative = conformer_values(ensemble, 'relative_energies_kcal_mol')
    blocks = []
    for index, frame in enumerate(frames):
        comment = f'{mol_id} conformer {index + 1}'
        if energies is not None:
            comment += f' E={energies[index]:.8f} Eh dE={relative[index]:.4f} kcal/mol'
        atoms = '\n'.join(f'{s:<2} {x:14.8f} {y:14.8f} {z:14.8f}' for s, (x, y, z) in zip(symbols, frame))
        blocks.append(f'{len(symbols)}\n{comment}\n{atoms}\n')
    return ''.join(blocks)


def structure_sdf(symbols, positions, smiles: str, mol_id: str) -> str | None:
    """SDF text of a geometry with the bonds of ``smiles``; ``None`` when the atoms do not match the SMILES."""
    from rdkit import Chem
    from rdkit.Geometry import Point3D

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    mol = Chem.AddHs(mol)
    if [atom.GetSymbol() for atom in mol.GetAtoms()] != list(symbols):
        return None
    conformer = Chem.Conformer(mol.GetNumAtoms())
    for index, (x, y, z) in enumerate(positions):
        conformer.SetAtomPosition(index, Point3D(float(x), float(y), float(z)))
    mol.AddConformer(conformer, assignId=True)
    mol.SetProp('_Name', mol_id)
    return Chem.MolToMolBlock(mol) + '$$$$\n'


def write_structures(group: orm.Group, folder: str | pathlib.Path) -> int:
    """Write the files of every molecule with results into ``folder``; the number of molecules written."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    molecules = read_molecules(group)
    last_batch = {mol_id: m.runs[-1].batch_pk for mol_id, m in molecules.items() if m.runs}
    smiles = {mol_id: m.row['smiles'] for mol_id, m in molecules.items()}
    written = set()
    for kind in ('ensembles', 'pm7'):
        query = batch_outputs(None, kind, project=('*',), batch_pks=sorted(set(last_batch.values())))
        for batch_pk, node in query.iterall():
            mol_id = node.base.attributes.get('mol_id', None)
            if mol_id is None or last_batch.get(mol_id) != batch_pk:
                continue
            stem = file_stem(mol_id)
            if kind == 'ensembles':
                (folder / f'{stem}.ensemble.xyz').write_text(ensemble_xyz(node, mol_id), encoding='utf-8')
            elif 'lowest_structure' in node.keys():
                geometry = node['lowest_structure']
                text = structure_sdf(geometry['symbols'], geometry['positions'], smiles[mol_id], mol_id)
                if text is not None:
                    (folder / f'{stem}.sdf').write_text(text, encoding='utf-8')
            written.add(mol_id)
    return len(written)

