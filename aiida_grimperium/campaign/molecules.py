"""The campaign CSV: reading and validating molecules, row by row, in the seed's ``thermo_pm7.csv`` schema.

Required columns: ``mol_id, smiles, charge, multiplicity``; optional: ``nheavy, H298_cbs, batch_id`` and any
extra columns (kept as they are). Each row is checked with pydantic and RDKit; every problem is reported
with the file, the row (its line number in the file: the header is row 1) and the field.

* **strict**: any error refuses the whole file (every error is listed);
* **permissive**: bad rows are reported and skipped, the others go on.

Zero is a value, not "missing"; an empty or NaN reference (``H298_cbs``) means "no reference", not an error.
"""
from __future__ import annotations

import csv
import math
import pathlib
from dataclasses import dataclass, field

import pydantic

REQUIRED_COLUMNS = ('mol_id', 'smiles', 'charge', 'multiplicity')
OPTIONAL_COLUMNS = ('nheavy', 'H298_cbs', 'batch_id')
MISSING = {'', 'nan', 'none', 'null', 'na', 'n/a'}


@dataclass(frozen=True)
class RowError:
    file: str
    row: int
    field: str
    message: str

    def __str__(self) -> str:
        return f'{self.file}: row {self.row}, field `{self.field}`: {self.message}'


@dataclass
class Validation:
    """The outcome of reading a campaign CSV."""

    path: str
    molecules: list['Molecule'] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    rows_read: int = 0

    @property
    def bad_rows(self) -> list[int]:
        return sorted({error.row for error in self.errors})

    def report(self) -> str:
        lines = [f'{self.path}: {self.rows_read} rows, {len(self.molecules)} valid, {len(self.bad_rows)} with errors']
        lines += [f'  {error}' for error in self.errors]
        return '\n'.join(lines)


def _integer(value, name: str) -> int:
    """An integer from a CSV cell: ``1``, ``-1``, ``1.0`` are fine; ``1.5``, ``one`` and empty are not."""
    if value is None or (isinstance(value, str) and value.strip().lower() in MISSING):
        raise ValueError(f'{name} is missing')
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ValueError(f'{name} must be an integer, got `{value}`') from None
    if not number.is_integer():
        raise ValueError(f'{name} must be an integer, got `{value}`')
    return int(number)


class Molecule(pydantic.BaseModel):
    """One validated campaign row."""

    model_config = pydantic.ConfigDict(extra='allow')

    mol_id: str
    smiles: str
    charge: int
    multiplicity: int
    nheavy: int | None = None
    H298_cbs: float | None = None
    batch_id: str | None = None
    row: int = 0

    @pydantic.field_validator('mol_id', 'smiles', mode='before')
    @classmethod
    def _not_empty(cls, value, info):
        if value is None or not str(value).strip():
            raise ValueError(f'{info.field_name} is empty')
        value = str(value).strip()
        if any(not ch.isprintable() for ch in value):
            raise ValueError(f'{info.field_name} must not contain control characters: {value!r}')
        # RDKit stops reading a SMILES at the first blank, so `C $(cmd)` would pass as methane: refuse instead
        if info.field_name == 'smiles' and any(ch.isspace() for ch in value):
            raise ValueError(f'a SMILES has no blanks: {value!r}')
        return value

    @pydantic.field_validator('charge', mode='before')
    @classmethod
    def _charge(cls, value):
        return _integer(value, 'charge')

    @pydantic.field_validator('multiplicity', mode='before')
    @classmethod
    def _multiplicity(cls, value):
        number = _integer(value, 'multiplicity')
        if number < 1:
            raise ValueError(f'multiplicity must be 1 or more, got {number}')
        return number

    @pydantic.field_validator('nheavy', mode='before')
    @classmethod
    def _nheavy(cls, value):
        if value is None or str(value).strip().lower() in MISSING:
            return None
        return _integer(value, 'nheavy')

    @pydantic.field_validator('H298_cbs', mode='before')
    @classmethod
    def _reference(cls, value):
        if value is None or str(value).strip().lower() in MISSING:
            return None  # no reference: the molecule still runs, its deltas stay empty
        try:
            number = float(str(value).strip())
        except ValueError:
            raise ValueError(f'reference H298_cbs must be a number, got `{value}`') from None
        if math.isnan(number) or math.isinf(number):
            return None
        return number

    @pydantic.field_validator('batch_id', mode='before')
    @classmethod
    def _batch(cls, value):
        if value is None or str(value).strip().lower() in MISSING:
            return None
        return str(value).strip()


def chemistry_errors(molecule: Molecule) -> list[tuple[str, str]]:
    """RDKit checks of a row that pydantic accepted: SMILES, formal charge, electron parity, heavy atoms."""
    from rdkit import Chem, RDLogger

    from ..chemistry import check_charge_multiplicity

    RDLogger.DisableLog('rdApp.*')  # the row error below says it better than RDKit's stderr
    mol = Chem.MolFromSmiles(molecule.smiles)
    if mol is None:
        return [('smiles', f'RDKit cannot parse the SMILES `{molecule.smiles}`')]
    errors = []
    formal = Chem.GetFormalCharge(mol)
    if formal != molecule.charge:
        errors.append(('charge', f'charge {molecule.charge} differs from the formal charge {formal} of the SMILES'))
    symbols = [atom.GetSymbol() for atom in Chem.AddHs(mol).GetAtoms()]
    try:
        check_charge_multiplicity(symbols, molecule.charge, molecule.multiplicity)
    except ValueError as exc:
        errors.append(('multiplicity', str(exc)))
    heavy = mol.GetNumHeavyAtoms()
    if molecule.nheavy is not None and molecule.nheavy != heavy:
        errors.append(('nheavy', f'nheavy {molecule.nheavy} differs from the {heavy} heavy atoms of the SMILES'))
    return errors


def validate_rows(rows: list[dict], path: str) -> Validation:
    """Validate rows read from ``path``; see the module docstring."""
    result = Validation(path=path, rows_read=len(rows))
    seen: dict[str, int] = {}
    for number, row in enumerate(rows, start=2):  # line numbers of the file: the header is line 1
        try:
            molecule = Molecule.model_validate({**row, 'row': number})
        except pydantic.ValidationError as exc:
            for error in exc.errors():
                name = str(error['loc'][0]) if error['loc'] else '?'
                message = str(error.get('ctx', {}).get('error') or error['msg']).removeprefix('Value error, ')
                result.errors.append(RowError(path, number, name, message))
            continue
        problems = chemistry_errors(molecule)
        if molecule.mol_id in seen:
            problems.append(('mol_id', f'duplicate mol_id `{molecule.mol_id}` (first on row {seen[molecule.mol_id]})'))
        else:
            seen[molecule.mol_id] = number
        if problems:
            result.errors += [RowError(path, number, name, message) for name, message in problems]
        else:
            result.molecules.append(molecule)
    return result


def read_csv(path: str | pathlib.Path) -> Validation:
    """Read and validate a campaign CSV. A file that cannot be read at all raises ``ValueError`` naming it."""
    path = pathlib.Path(path)
    try:
        with open(path, newline='', encoding='utf-8-sig') as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise ValueError(f'{path}: missing required column(s) {", ".join(missing)}; found {", ".join(columns)}')
            rows = [{k: v for k, v in row.items() if k is not None} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f'{path}: cannot read the CSV: {exc}') from exc
    return validate_rows(rows, str(path))
