"""The campaign CSV: reading and validating molecules, row by row, in the seed's ``thermo_pm7.csv`` schema.

Required columns: ``mol_id, smiles, charge, multiplicity``; optional: ``nheavy, H298_cbs, batch_id`` and any
extra columns (kept as they are). Each row is checked with pydantic and RDKit; every problem is reported as
``FILE: row N (mol_id X), field `F`: reason``, N being the line number in the file (the header is line 1) and
X the row's ``mol_id`` as written (left out when the row has none).

* **strict** (``read_csv(path, strict=True)``, the default): every error is listed and the caller refuses the
  whole file; two rows holding the same molecule are an error;
* **permissive** (``strict=False``): bad rows are reported and skipped, the others go on; of two rows holding the
  same molecule the first is kept and the other is skipped with a warning.

The rules:

* **The file as a whole** is refused (:class:`CsvFileError`, a ``ValueError`` naming the file, in either mode) when
  it cannot be read, is empty, has a header and no molecule rows, lacks a required column (with a hint when the
  header looks separated by ``;`` or tabs: such files are not sniffed and accepted, since ``;`` files usually
  come with decimal commas too), names a column twice, has a column without a name, or has a column named like
  an output column of the export (:data:`OUTPUT_COLUMNS`) or a field the validation sets (``row``, ``inchikey``,
  ``smiles_input``). The file is read once, in text mode: a pipe (``<(cat file.csv)``) works.
* **A ragged row** (more or fewer values than the header has columns) is an error: values are never dropped
  nor guessed. Blank lines are skipped (and still counted as lines).
* **Numbers** must be finite: ``inf``, ``-inf``, ``1e400``, ``-nan`` are errors ("must be a finite number") in
  every numeric field. Zero is a value, not "missing". Only the missing markers (empty, ``nan``, ``NA``,
  ``N/A``, ``none``, ``null``, any case) mean "no value": for ``H298_cbs`` that is "no reference" (the molecule
  runs, its deltas stay empty), for ``nheavy`` and ``batch_id`` "not given"; ``charge`` and ``multiplicity``
  must be given.
* **Chemistry**: the SMILES is parsed by RDKit once per row (RDKit's own reason is shown when it refuses it);
  the charge must equal its formal charge, the multiplicity must fit the electron count, ``nheavy`` (if given)
  must equal its heavy atoms. The InChIKey is stored on the molecule (``inchikey``).
* **Salts and mixtures** (a SMILES with disconnected fragments, ``CC(=O)[O-].[Na+]``), policy ``fragments``:
  ``'refuse'`` (default): an error naming the fragments. ``'largest'``: the largest organic fragment
  (RDKit's ``LargestFragmentChooser``) is kept, with a warning naming what was dropped; the charge of the row
  must match the whole SMILES and becomes the kept fragment's formal charge; the multiplicity is kept and checked
  against the fragment; ``nheavy`` may count the whole SMILES or the fragment and becomes the fragment's;
  ``smiles`` becomes the fragment's canonical SMILES, the SMILES as written is kept in ``smiles_input``; a
  ``H298_cbs`` reference (which was for the whole SMILES) is dropped.
* **Identity**: two rows with the same InChIKey (``OCC``, ``CCO``, ``C(C)O``) are the same molecule: strict, an
  error on the later row naming the first row and mol_id; permissive, the later row is skipped with a warning
  (kept in ``Validation.skipped``). A ``mol_id`` used twice is an error in both modes. Rows with other errors
  take no part in the identity check.

:func:`write_validation_log` writes the report to a log file every time, also when the file is valid.
"""
from __future__ import annotations

import csv
import io
import pathlib
from dataclasses import dataclass, field

import pydantic

from .columns import COMPUTED_FIELDS, OPTIONAL_COLUMNS, OUTPUT_COLUMNS, REQUIRED_COLUMNS
from .validation_rules import FRAGMENT_POLICIES, MISSING, check_chemistry, finite_number, header_problems
from .validation_rules import integer as _integer
from .validation_rules import is_missing

__all__ = ['REQUIRED_COLUMNS', 'OPTIONAL_COLUMNS', 'OUTPUT_COLUMNS', 'MISSING', 'RowError', 'Validation',
           'CsvFileError', 'Molecule', 'read_csv', 'validate_rows', 'write_validation_log']

RESERVED_COLUMNS = {
    **{name: 'is an output column of the export (it would be overwritten there)' for name in OUTPUT_COLUMNS},
    **{name: 'is a field the validation sets itself' for name in COMPUTED_FIELDS},
}


@dataclass(frozen=True)
class RowError:
    """A problem of one row (``row`` = its line in the file; 0 for the file as a whole). Also used for warnings."""

    file: str
    row: int
    field: str
    message: str
    mol_id: str | None = None

    def __str__(self) -> str:
        if self.row == 0:
            return f'{self.file}: {self.message}'
        where = f'row {self.row} (mol_id {self.mol_id})' if self.mol_id else f'row {self.row}'
        return f'{self.file}: {where}, field `{self.field}`: {self.message}'


@dataclass
class Validation:
    """The outcome of reading a campaign CSV."""

    path: str
    molecules: list['Molecule'] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    rows_read: int = 0
    warnings: list[RowError] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)  # rows left out with a warning (permissive duplicates)

    @property
    def bad_rows(self) -> list[int]:
        return sorted({error.row for error in self.errors})

    def report(self) -> str:
        if self.errors:
            head = f'{self.path}: {self.rows_read} rows, {len(self.molecules)} valid, {len(self.bad_rows)} with errors'
        else:
            head = f'{self.path}: {self.rows_read} rows, all valid: the file is valid'
            if self.skipped:
                head = f'{self.path}: {self.rows_read} rows, no errors, {len(self.molecules)} molecules'
        if self.skipped:
            head += f', {len(self.skipped)} skipped'
        if self.warnings:
            head += f', {len(self.warnings)} warning(s)'
        lines = [head] + [f'  {error}' for error in self.errors]
        lines += [f'  warning: {warning}' for warning in self.warnings]
        return '\n'.join(lines)


class CsvFileError(ValueError):
    """The file as a whole is refused (see the module docstring); ``validation`` holds its errors."""

    def __init__(self, validation: Validation):
        self.validation = validation
        super().__init__('\n'.join(str(error) for error in validation.errors))


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
    inchikey: str | None = None  # set by the validation
    smiles_input: str | None = None  # the SMILES as written, when fragments='largest' kept a fragment of it
    cost_terms: list[int] | None = None  # set by the validation, for the batches (campaign/planning.py)

    @pydantic.field_validator('mol_id', 'smiles', mode='before')
    @classmethod
    def _not_empty(cls, value, info):
        if value is None or not str(value).strip():
            raise ValueError(f'{info.field_name} is empty')
        value = str(value).strip()
        if not value.isprintable():
            raise ValueError(f'{info.field_name} must not contain control characters: {value!r}')
        # RDKit stops reading a SMILES at the first blank, so `C $(cmd)` would pass as methane: refuse instead
        if info.field_name == 'smiles' and ' ' in value:  # the only printable blank
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
        if is_missing(value):
            return None
        return _integer(value, 'nheavy')

    @pydantic.field_validator('H298_cbs', mode='before')
    @classmethod
    def _reference(cls, value):
        if value is None or str(value).strip().lower() in MISSING:
            return None  # no reference: the molecule still runs, its deltas stay empty
        return finite_number(value, 'H298_cbs')

    @pydantic.field_validator('batch_id', mode='before')
    @classmethod
    def _batch(cls, value):
        if is_missing(value):
            return None
        return str(value).strip()


def _label(value) -> str | None:
    """The mol_id of a raw row as the messages show it (``None`` when there is none)."""
    if value is None or not str(value).strip():
        return None
    text = str(value).strip()
    return text if text.isprintable() else repr(text)


def _pydantic_errors(exc: pydantic.ValidationError) -> list[tuple[str, str]]:
    problems = []
    for error in exc.errors():
        name = str(error['loc'][0]) if error['loc'] else '?'
        problems.append((name, str(error.get('ctx', {}).get('error') or error['msg']).removeprefix('Value error, ')))
    return problems


def _validate(result: Validation, rows, strict: bool, fragments: str) -> Validation:
    """Validate ``rows``, pairs of (line number, {column: value}), into ``result``."""
    if fragments not in FRAGMENT_POLICIES:
        raise ValueError(f'fragments must be one of {", ".join(FRAGMENT_POLICIES)}, got {fragments!r}')
    from rdkit import rdBase

    with rdBase.BlockLogs():  # RDKit's warnings (InChI's stereo notes ...) would flood stderr; errors are captured
        return _validate_rows(result, rows, strict, fragments)


def _validate_rows(result: Validation, rows, strict: bool, fragments: str) -> Validation:
    path = result.path
    mol_ids: dict[str, int] = {}
    identities: dict[str, tuple[int, str, str]] = {}  # InChIKey -> (row, mol_id, smiles) of its first row
    for number, raw in rows:
        label = _label(raw.get('mol_id'))
        try:
            molecule = Molecule.model_validate({**raw, 'row': number})
        except pydantic.ValidationError as exc:
            result.errors += [RowError(path, number, name, message, label) for name, message in _pydantic_errors(exc)]
            continue
        chemistry = check_chemistry(molecule.smiles, molecule.charge, molecule.multiplicity, molecule.nheavy,
                                    fragments, molecule.H298_cbs is not None)
        problems = chemistry.errors
        before = mol_ids.setdefault(molecule.mol_id, number)
        if before != number:
            problems.append(('mol_id', f'duplicate mol_id `{molecule.mol_id}` (first on row {before})'))
        if problems:
            result.errors += [RowError(path, number, name, message, label) for name, message in problems]
            continue
        result.warnings += [RowError(path, number, name, message, label) for name, message in chemistry.warnings]
        first = identities.get(chemistry.identity)
        if first is not None:
            message = (f'same molecule as row {first[0]} (mol_id {first[1]}): `{molecule.smiles}` and `{first[2]}` '
                       f'have the same {chemistry.identity}')
            if strict:
                result.errors.append(RowError(path, number, 'smiles', f'{message}; keep one of them', label))
            else:
                result.warnings.append(RowError(path, number, 'smiles', f'{message}; skipped, row {first[0]} kept',
                                                label))
                result.skipped.append(number)
            continue
        identities[chemistry.identity] = (number, molecule.mol_id, molecule.smiles)
        for name, value in chemistry.updates.items():
            setattr(molecule, name, value)
        result.molecules.append(molecule)
    return result


def validate_rows(rows: list[dict], path: str, *, strict: bool = True, fragments: str = 'refuse',
                  lines: list[int] | None = None) -> Validation:
    """Validate rows read from ``path`` (row ``i`` on line ``lines[i]``, by default ``i + 2``); see the module
    docstring. The header checks are :func:`read_csv`'s."""
    lines = lines if lines is not None else range(2, len(rows) + 2)
    return _validate(Validation(path=path, rows_read=len(rows)), zip(lines, rows), strict, fragments)


def _refuse(path: str, row: int, name: str, message: str):
    raise CsvFileError(Validation(path=path, errors=[RowError(path, row, name, message)]))


def _read_text(path: pathlib.Path) -> str:
    """The whole file, read once in text mode (so a pipe works); ``CsvFileError`` when it cannot be read."""
    try:
        with open(path, newline='', encoding='utf-8-sig') as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        _refuse(str(path), 0, '(file)', f'cannot read the CSV: {exc}')


def read_csv(path: str | pathlib.Path, *, strict: bool = True, fragments: str = 'refuse') -> Validation:
    """Read and validate a campaign CSV; the rules and the two policies are in the module docstring.

    ``strict``: two rows with the same molecule (InChIKey) are an error (``True``) or the later one is skipped
    with a warning (``False``). ``fragments``: ``'refuse'`` or ``'largest'`` for a SMILES with several fragments.
    A file refused as a whole (unreadable, empty, bad header, no rows) raises :class:`CsvFileError`
    (a ``ValueError`` naming the file).
    """
    if fragments not in FRAGMENT_POLICIES:
        raise ValueError(f'fragments must be one of {", ".join(FRAGMENT_POLICIES)}, got {fragments!r}')
    name = str(path)
    text = _read_text(pathlib.Path(path))
    if not text.strip():
        _refuse(name, 0, '(file)', 'the file is empty: expected a header line with the columns '
                                   f'{", ".join(REQUIRED_COLUMNS)} and one row per molecule')
    reader = csv.reader(io.StringIO(text))
    rows, lines, ragged = [], [], []
    try:
        header = next(reader)
        while not any(cell.strip() for cell in header):  # blank lines before the header
            header = next(reader)
        header_line = reader.line_num
        names = [cell.strip() for cell in header]
        problems = header_problems(names, REQUIRED_COLUMNS, RESERVED_COLUMNS)
        if problems:
            errors = [RowError(name, header_line, column, message) for column, message in problems]
            raise CsvFileError(Validation(path=name, errors=errors))
        width = len(names)
        id_index = names.index('mol_id')
        previous = reader.line_num
        for values in reader:
            number, previous = previous + 1, reader.line_num  # the row's first line (a quoted cell may span lines)
            if not any(values) or not any(cell.strip() for cell in values):
                continue  # a blank line, or a line of empty cells
            if len(values) != width:
                label = _label(values[id_index]) if id_index < len(values) else None
                if len(values) > width:
                    extra = ', '.join(f'`{value}`' for value in values[width:])
                    message = f'{len(values)} values but the header has {width} columns; extra value(s) {extra}'
                else:
                    message = f'only {len(values)} values but the header has {width} columns'
                ragged.append(RowError(name, number, '(row)', message + ': the row is refused', label))
                continue
            rows.append(dict(zip(names, values)))
            lines.append(number)
    except StopIteration:
        _refuse(name, 0, '(file)', 'the file is empty')
    except csv.Error as exc:
        _refuse(name, 0, '(file)', f'cannot read the CSV at line {reader.line_num}: {exc}')
    if not rows and not ragged:
        _refuse(name, header_line, '(rows)', 'no molecule rows: the file has a header and nothing else')
    result = Validation(path=name, rows_read=len(rows) + len(ragged), errors=ragged)
    _validate(result, zip(lines, rows), strict, fragments)
    result.errors.sort(key=lambda error: error.row)
    return result


def write_validation_log(validation: Validation, path: str | pathlib.Path | None = None) -> pathlib.Path:
    """Write (rewrite) the report of ``validation`` to ``path`` (default: the CSV's path + ``.validation.log``),
    also when there is no error: then it says that the file is valid. Returns the log's path."""
    log = pathlib.Path(path if path is not None else validation.path + '.validation.log')
    log.write_text(validation.report() + '\n', encoding='utf-8')
    return log
