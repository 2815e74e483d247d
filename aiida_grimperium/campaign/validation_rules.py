"""The rules behind :mod:`aiida_grimperium.campaign.molecules`: numbers, the header, and the chemistry of a row.

Kept apart from the pydantic model so that each rule is a small function of plain values. The policies are
documented in the docstring of :mod:`~aiida_grimperium.campaign.molecules`.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from .columns import COST_FIELD
from .planning import cost_terms

#: cells that mean "no value" (compared stripped and lower-cased); anything else must parse
MISSING = frozenset({'', 'nan', 'none', 'null', 'na', 'n/a'})
FRAGMENT_POLICIES = ('refuse', 'largest')
_TIMESTAMP = re.compile(r'^\[\d\d:\d\d:\d\d\]\s*')


# ------------------------------------------------------------------------------------------------ numbers

def is_missing(value) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in MISSING)


def finite_number(value, name: str) -> float:
    """A finite float from a cell; ``inf``, ``-inf``, ``1e400``, ``-nan`` ... are errors."""
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ValueError(f'{name} must be a number, got `{value}`') from None
    if not math.isfinite(number):
        raise ValueError(f'{name} must be a finite number, got `{value}`')
    return number


def integer(value, name: str) -> int:
    """An integer from a CSV cell: ``1``, ``-1``, ``1.0`` are fine; ``1.5``, ``one``, ``inf`` and empty are not."""
    if is_missing(value):
        raise ValueError(f'{name} is missing')
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        number = finite_number(value, name)
    except ValueError as exc:
        if 'finite' in str(exc):
            raise
        raise ValueError(f'{name} must be an integer, got `{value}`') from None
    if not number.is_integer():
        raise ValueError(f'{name} must be an integer, got `{value}`')
    return int(number)


# ------------------------------------------------------------------------------------------------- header

def header_problems(names: list[str], required, reserved: dict[str, str]) -> list[tuple[str, str]]:
    """``(field, message)`` for each problem of the header: no name, a name twice, reserved, required missing."""
    problems = []
    seen: dict[str, list[int]] = {}
    for position, name in enumerate(names, start=1):
        seen.setdefault(name, []).append(position)
    for name, positions in seen.items():
        if not name:
            hint = ' (a pandas index? write the table with index=False)' if positions[0] == 1 else ''
            problems.append(('(header)', f'column(s) {", ".join(map(str, positions))} have no name{hint}'))
        elif len(positions) > 1:
            problems.append((name, f'column `{name}` appears {len(positions)} times in the header '
                                   f'(columns {", ".join(map(str, positions))}); every column needs its own name'))
        elif name in reserved:
            problems.append((name, f'column `{name}` {reserved[name]}; rename or drop it'))
    missing = [column for column in required if column not in seen]
    if missing:
        message = f'missing required column(s) {", ".join(missing)}; found {", ".join(f"`{n}`" for n in names)}'
        lower = {name.lower(): name for name in names}
        near = [f'`{lower[c.lower()]}` for `{c}`' for c in missing if c.lower() in lower]
        if near:
            message += f' (column names are case-sensitive: {", ".join(near)})'
        for separator, label in ((';', '`;`'), ('\t', 'tabs')):
            if any(separator in name for name in names):
                message += (f'. The file looks separated by {label}, not by commas: save it as comma-separated '
                            'values (CSV)')
                break
        problems.append(('(header)', message))
    return problems


# ---------------------------------------------------------------------------------------------- chemistry

def rdkit_reason(messages: str) -> str:
    """RDKit's error log of a failed parse as one line: timestamps, the echoed input and the caret line dropped."""
    lines = []
    for line in messages.splitlines():
        line = _TIMESTAMP.sub('', line).strip().removeprefix('SMILES Parse Error:').strip()
        if ' ' in line and line not in lines:  # the echoed SMILES and the `~~^` line have no blanks
            lines.append(line)
    if len(lines) > 1:
        lines = [line for line in lines if not line.startswith('Failed parsing SMILES')] or lines
    return '; '.join(lines).rstrip(':') or 'no reason given'


def parse_smiles(smiles: str):
    """``(mol, None)`` or ``(None, RDKit's reason)``: the SMILES is parsed once, its errors captured."""
    from rdkit import Chem, rdBase

    with rdBase.CaptureErrorLog() as capture:
        mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None, rdkit_reason(capture.messages)
    return mol, None


@dataclass
class Chemistry:
    """What the RDKit checks of one row found: errors and warnings as ``(field, message)``, values to update."""

    errors: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    updates: dict = field(default_factory=dict)
    identity: str | None = None  # 'InChIKey ...', or 'canonical SMILES ...' when RDKit gives no InChIKey


_ELEMENT = re.compile(r'([A-Z][a-z]?|\*)(\d*)')
_Z: dict[str, int] = {}


def _electron_check(mol, charge: int, multiplicity: int, errors: list) -> None:
    """Append an error when no electron configuration has this charge and multiplicity (see
    :func:`~aiida_grimperium.chemistry.check_charge_multiplicity`, which words it). The atoms are counted from
    RDKit's formula, one C++ call, rather than atom by atom in Python (several times slower)."""
    from rdkit.Chem import GetPeriodicTable, rdMolDescriptors

    counts = _ELEMENT.findall(rdMolDescriptors.CalcMolFormula(mol))
    electrons = -charge
    for symbol, count in counts:
        z = _Z.get(symbol)
        if z is None:
            z = _Z[symbol] = 0 if symbol == '*' else GetPeriodicTable().GetAtomicNumber(symbol)
        electrons += z * (int(count) if count else 1)
    unpaired = multiplicity - 1
    if electrons >= 0 and unpaired <= electrons and (electrons - unpaired) % 2 == 0:
        return
    from ..chemistry import check_charge_multiplicity

    symbols = [symbol for symbol, count in counts for _ in range(int(count) if count else 1)]
    try:
        check_charge_multiplicity(symbols, charge, multiplicity)
    except (ValueError, KeyError, RuntimeError) as exc:
        errors.append(('multiplicity', str(exc).strip('"\'')))
    else:  # cannot happen: the same arithmetic; say it plainly all the same
        errors.append(('multiplicity', f'charge {charge} and multiplicity {multiplicity} are impossible '
                                       f'({electrons} electrons)'))


def check_chemistry(smiles: str, charge: int, multiplicity: int, nheavy: int | None, fragments: str = 'refuse',
                    has_reference: bool = False) -> Chemistry:
    """The RDKit checks of a row pydantic accepted, all derived from one parse of the SMILES.

    Formal charge, electron parity, heavy atoms, fragments (``fragments`` policy) and the identity (InChIKey).
    """
    from rdkit import Chem

    result = Chemistry()
    mol, reason = parse_smiles(smiles)
    if mol is None:
        result.errors.append(('smiles', f'RDKit cannot parse the SMILES `{smiles}`: {reason}'))
        return result
    formal = Chem.GetFormalCharge(mol)
    if formal != charge:
        result.errors.append(('charge', f'charge {charge} differs from the formal charge {formal} of the SMILES'))
    heavy = mol.GetNumHeavyAtoms()
    pieces = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=False) if '.' in smiles else (mol,)
    if len(pieces) > 1:
        names = [Chem.MolToSmiles(piece) for piece in pieces]
        listed = ', '.join(f'`{name}`' for name in names)
        if fragments != 'largest':
            result.errors.append(('smiles', f'the SMILES has {len(pieces)} disconnected fragments ({listed}): a salt '
                                            "or a mixture; write one molecule, or read with fragments='largest'"))
            return result
        if result.errors:  # the charge of the whole SMILES is wrong: no fragment to choose from it
            return result
        from rdkit.Chem.MolStandardize import rdMolStandardize

        kept = rdMolStandardize.LargestFragmentChooser(preferOrganic=True).choose(mol)
        kept_smiles = Chem.MolToSmiles(kept)
        dropped = list(names)
        if kept_smiles in dropped:
            dropped.remove(kept_smiles)
        kept_charge = Chem.GetFormalCharge(kept)
        kept_heavy = kept.GetNumHeavyAtoms()
        if nheavy is not None and nheavy not in (heavy, kept_heavy):
            result.errors.append(('nheavy', f'nheavy {nheavy} differs from the {heavy} heavy atoms of the SMILES and '
                                            f'the {kept_heavy} of its largest fragment `{kept_smiles}`'))
        _electron_check(kept, kept_charge, multiplicity, result.errors)
        if result.errors:
            return result
        note = f'; charge {charge} -> {kept_charge}' if kept_charge != charge else ''
        note += '; its H298_cbs reference (of the whole SMILES) dropped' if has_reference else ''
        result.warnings.append(('smiles', f'the SMILES has {len(pieces)} disconnected fragments ({listed}): kept the '
                                          f'largest organic fragment `{kept_smiles}`, dropped '
                                          f'{", ".join(f"`{d}`" for d in dropped)}{note}'))
        result.updates = {'smiles': kept_smiles, 'smiles_input': smiles, 'charge': kept_charge, 'nheavy': kept_heavy}
        if has_reference:
            result.updates['H298_cbs'] = None
        mol = kept
    else:
        if nheavy is not None and nheavy != heavy:
            result.errors.append(('nheavy', f'nheavy {nheavy} differs from the {heavy} heavy atoms of the SMILES'))
        _electron_check(mol, charge, multiplicity, result.errors)
        if result.errors:
            return result
    result.updates[COST_FIELD] = cost_terms(mol)
    key = Chem.MolToInchiKey(mol)
    if key:
        result.updates['inchikey'] = key
        result.identity = f'InChIKey {key}'
    else:  # RDKit gives no InChIKey (a dummy atom ...): the canonical SMILES stands for it
        result.identity = f'canonical SMILES {Chem.MolToSmiles(mol)}'
    return result
