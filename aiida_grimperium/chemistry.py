"""Chemistry helpers without AiiDA: electron counting, SMILES to 3D, Boltzmann weights, XYZ text.

Units: energies in Hartree unless the name says otherwise; lengths in Angstrom.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

HARTREE_TO_EV = 27.211386245988
HARTREE_TO_KCAL_MOL = 627.509474
KCAL_MOL_TO_EV = 0.0433641043
BOLTZMANN_KCAL_MOL_K = 0.0019872041


def atomic_number(symbol: str) -> int:
    from rdkit import Chem

    return Chem.GetPeriodicTable().GetAtomicNumber(symbol)


def check_charge_multiplicity(symbols: Sequence[str], charge: int, multiplicity: int) -> None:
    """Raise ``ValueError`` when no electron configuration has this charge and spin multiplicity.

    The number of electrons is ``sum(Z) - charge``; ``multiplicity - 1`` of them are unpaired, and the rest must
    pair up, so ``electrons - (multiplicity - 1)`` has to be even and non-negative.
    """
    if int(multiplicity) != multiplicity or multiplicity < 1:
        raise ValueError(f'multiplicity must be a positive integer, got {multiplicity!r}')
    if int(charge) != charge:
        raise ValueError(f'charge must be an integer, got {charge!r}')
    electrons = sum(atomic_number(s) for s in symbols) - int(charge)
    unpaired = int(multiplicity) - 1
    formula = ''.join(symbols) if len(symbols) < 12 else f'{len(symbols)} atoms'
    if electrons < 0 or unpaired > electrons:
        raise ValueError(
            f'charge {charge} and multiplicity {multiplicity} are impossible for {formula}: '
            f'{electrons} electrons cannot have {unpaired} unpaired'
        )
    if (electrons - unpaired) % 2:
        parity = 'odd' if electrons % 2 else 'even'
        allowed = '2, 4, 6 ... (doublet, quartet)' if electrons % 2 else '1, 3, 5 ... (singlet, triplet)'
        raise ValueError(
            f'charge {charge} and multiplicity {multiplicity} are impossible for {formula}: it has {electrons} '
            f'electrons ({parity}), so the multiplicity must be one of {allowed}'
        )


def boltzmann_populations(energies_hartree: Sequence[float], temperature: float = 298.15) -> list[float]:
    """Boltzmann populations of conformers at ``temperature`` (K); they sum to 1."""
    if not energies_hartree:
        return []
    lowest = min(energies_hartree)
    kt = BOLTZMANN_KCAL_MOL_K * temperature
    weights = [math.exp(-(e - lowest) * HARTREE_TO_KCAL_MOL / kt) for e in energies_hartree]
    total = sum(weights)
    return [w / total for w in weights]


def smiles_to_molecule(smiles: str, seed: int = 0xF00D):
    """Return an RDKit molecule with explicit hydrogens and one 3D conformer (ETKDG + MMFF clean-up).

    Raises ``ValueError`` naming the SMILES when it cannot be parsed or embedded.
    """
    from rdkit import Chem
    from rdkit.Chem import AllChem

    if not smiles or not smiles.strip():
        raise ValueError('empty SMILES')
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f'RDKit cannot parse the SMILES `{smiles}`')
    mol = Chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    if AllChem.EmbedMolecule(mol, params) != 0:
        params.useRandomCoords = True
        if AllChem.EmbedMolecule(mol, params) != 0:
            raise ValueError(f'RDKit could not embed `{smiles}` in 3D')
    if AllChem.MMFFHasAllMoleculeParams(mol):
        AllChem.MMFFOptimizeMolecule(mol, maxIters=500)
    return mol


def molecule_symbols_positions(mol, conf_id: int = -1) -> tuple[list[str], list[list[float]]]:
    """Element symbols and Cartesian positions (Angstrom) of one conformer of an RDKit molecule."""
    conf = mol.GetConformer(conf_id)
    symbols = [atom.GetSymbol() for atom in mol.GetAtoms()]
    positions = [list(conf.GetAtomPosition(i)) for i in range(mol.GetNumAtoms())]
    return symbols, positions


def smiles_symbols(smiles: str) -> list[str]:
    """Element symbols of ``smiles`` with its implicit hydrogens, without embedding it in 3D (cheap)."""
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles) if smiles and smiles.strip() else None
    if mol is None:
        raise ValueError(f'RDKit cannot parse the SMILES `{smiles}`')
    return [atom.GetSymbol() for atom in Chem.AddHs(mol).GetAtoms()]


def formal_charge(smiles: str) -> int:
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f'RDKit cannot parse the SMILES `{smiles}`')
    return Chem.GetFormalCharge(mol)


def xyz_text(symbols: Sequence[str], positions: Sequence[Sequence[float]], comment: str = '') -> str:
    """One XYZ frame."""
    lines = [str(len(symbols)), comment.replace('\n', ' ')]
    lines += [f'{s:<2} {x: .8f} {y: .8f} {z: .8f}' for s, (x, y, z) in zip(symbols, positions)]
    return '\n'.join(lines) + '\n'
