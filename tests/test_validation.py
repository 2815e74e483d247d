"""The campaign CSV validation rules (aiida_grimperium.campaign.molecules): pure Python, no AiiDA profile needed.

Each test writes a small CSV, reads it with ``read_csv`` and checks the message (file, row, mol_id, field) and
the outcome (which molecules are kept, with which values).
"""
from __future__ import annotations

import os
import threading
import time

import pytest

from aiida_grimperium.campaign.molecules import (
    OUTPUT_COLUMNS, CsvFileError, Molecule, RowError, read_csv, write_validation_log,
)

HEADER = 'mol_id,smiles,charge,multiplicity,nheavy,H298_cbs,batch_id\n'


def write(tmp_path, body: str, header: str = HEADER, name: str = 'campaign.csv'):
    path = tmp_path / name
    path.write_text(header + body, encoding='utf-8')
    return path


def only_error(validation, row: int) -> RowError:
    errors = [error for error in validation.errors if error.row == row]
    assert len(errors) == 1, validation.report()
    return errors[0]


def kept(validation) -> dict[str, Molecule]:
    return {molecule.mol_id: molecule for molecule in validation.molecules}


# ------------------------------------------------------------------------------------------ message format

def test_message_names_file_row_mol_id_and_field(tmp_path):
    path = write(tmp_path, 'good,CCO,0,1,3,-56.1,b\nbad,CCO,one,1,3,,b\n')
    validation = read_csv(path)
    error = only_error(validation, 3)
    assert str(error) == f'{path}: row 3 (mol_id bad), field `charge`: charge must be an integer, got `one`'
    assert validation.bad_rows == [3] and validation.rows_read == 2 and list(kept(validation)) == ['good']
    assert f'  {error}' in validation.report()


# ------------------------------------------------------------------------------------------ finite numbers

@pytest.mark.parametrize('value', ['inf', '-inf', 'Infinity', '1e400', '-1e999', '-nan', '+nan'])
def test_non_finite_reference_is_an_error(tmp_path, value):
    path = write(tmp_path, f'ok,C,0,1,1,-17.9,b\nhot,CC,0,1,2,{value},b\n')
    validation = read_csv(path)
    error = only_error(validation, 3)
    assert (error.field, error.mol_id) == ('H298_cbs', 'hot')
    assert str(error) == (f'{path}: row 3 (mol_id hot), field `H298_cbs`: '
                          f'H298_cbs must be a finite number, got `{value}`')
    assert list(kept(validation)) == ['ok']


@pytest.mark.parametrize('value', ['', 'nan', 'NaN', 'NA', 'n/a', 'null'])
def test_missing_markers_mean_no_reference(tmp_path, value):
    validation = read_csv(write(tmp_path, f'zero,C,0,1,1,0,b\nnone,CC,0,1,2,{value},b\n'))
    assert validation.errors == []
    molecules = kept(validation)
    assert molecules['none'].H298_cbs is None and molecules['zero'].H298_cbs == 0.0


@pytest.mark.parametrize('column, row', [
    ('charge', 'x,C,inf,1,1,,b'), ('multiplicity', 'x,C,0,1e400,1,,b'), ('nheavy', 'x,C,0,1,-inf,,b'),
])
def test_every_numeric_field_must_be_finite(tmp_path, column, row):
    path = write(tmp_path, row + '\n')
    error = only_error(read_csv(path), 2)
    assert (error.field, error.mol_id) == (column, 'x')
    assert 'must be a finite number' in error.message


# ------------------------------------------------------------------------------------------ fragments

def test_salt_refused_by_default_naming_the_fragments(tmp_path):
    path = write(tmp_path, 'ok,CCO,0,1,3,,b\nnaoac,CC(=O)[O-].[Na+],0,1,,,b\n')
    validation = read_csv(path)
    error = only_error(validation, 3)
    assert (error.field, error.mol_id) == ('smiles', 'naoac')
    assert '2 disconnected fragments (`CC(=O)[O-]`, `[Na+]`)' in error.message and "fragments='largest'" in str(error)
    assert list(kept(validation)) == ['ok']


def test_salt_largest_fragment_kept_with_a_warning(tmp_path):
    path = write(tmp_path, 'naoac,CC(=O)[O-].[Na+],0,1,5,-170.0,b\nmebr,C[N+](C)(C)C.[Br-],0,1,5,,b\n')
    validation = read_csv(path, fragments='largest')
    assert validation.errors == []
    acetate, ammonium = kept(validation)['naoac'], kept(validation)['mebr']
    assert (acetate.smiles, acetate.charge, acetate.multiplicity, acetate.nheavy) == ('CC(=O)[O-]', -1, 1, 4)
    assert acetate.smiles_input == 'CC(=O)[O-].[Na+]' and acetate.H298_cbs is None  # the salt's reference dropped
    assert acetate.inchikey == 'QTBSBXVTEAMEQO-UHFFFAOYSA-M'
    assert (ammonium.smiles, ammonium.charge, ammonium.nheavy) == ('C[N+](C)(C)C', 1, 5)
    warning = validation.warnings[0]
    assert (warning.row, warning.mol_id, warning.field) == (2, 'naoac', 'smiles')
    assert 'kept the largest organic fragment `CC(=O)[O-]`, dropped `[Na+]`; charge 0 -> -1' in warning.message
    assert 'reference' in warning.message
    assert f'warning: {path}: row 2 (mol_id naoac), field `smiles`' in validation.report()


def test_salt_largest_still_checks_the_charge_of_the_whole_smiles(tmp_path):
    validation = read_csv(write(tmp_path, 'naoac,CC(=O)[O-].[Na+],-1,1,,,b\n'), fragments='largest')
    error = only_error(validation, 2)
    assert (error.field, error.mol_id) == ('charge', 'naoac') and validation.molecules == []


def test_unknown_fragment_policy_is_refused(tmp_path):
    with pytest.raises(ValueError, match='fragments must be one of refuse, largest'):
        read_csv(write(tmp_path, 'ok,C,0,1,,,b\n'), fragments='smallest')


# ------------------------------------------------------------------------------------------ identity

def test_same_molecule_written_differently_is_an_error_in_strict_mode(tmp_path):
    path = write(tmp_path, 'eth_a,CCO,0,1,3,,b\neth_b,OCC,0,1,3,,b\nmeoh,CO,0,1,2,,b\neth_c,C(C)O,0,1,3,,b\n')
    validation = read_csv(path)
    assert validation.bad_rows == [3, 5]
    error = only_error(validation, 3)
    assert (error.field, error.mol_id) == ('smiles', 'eth_b')
    assert 'same molecule as row 2 (mol_id eth_a)' in error.message
    assert 'InChIKey LFQSCWFLJHTTHZ-UHFFFAOYSA-N' in error.message
    assert 'same molecule as row 2 (mol_id eth_a)' in only_error(validation, 5).message
    assert kept(validation)['eth_a'].inchikey == 'LFQSCWFLJHTTHZ-UHFFFAOYSA-N'


def test_same_molecule_in_permissive_mode_keeps_the_first(tmp_path):
    path = write(tmp_path, 'eth_a,CCO,0,1,3,,b\neth_b,OCC,0,1,3,,b\neth_c,C(C)O,0,1,3,,b\n')
    validation = read_csv(path, strict=False)
    assert validation.errors == [] and list(kept(validation)) == ['eth_a']
    assert validation.skipped == [3, 4]
    assert [(w.row, w.mol_id, w.field) for w in validation.warnings] == [(3, 'eth_b', 'smiles'), (4, 'eth_c', 'smiles')]
    assert all('same molecule as row 2 (mol_id eth_a)' in w.message and 'skipped' in w.message
               for w in validation.warnings)


def test_duplicate_mol_id_stays_an_error(tmp_path):
    for strict in (True, False):
        validation = read_csv(write(tmp_path, 'x,CCO,0,1,3,,b\nx,CCN,0,1,3,,b\n'), strict=strict)
        error = only_error(validation, 3)
        assert (error.field, error.mol_id) == ('mol_id', 'x') and 'first on row 2' in error.message


def test_model_dump_round_trips_with_the_new_fields(tmp_path):
    molecule = read_csv(write(tmp_path, 'e,CCO,0,1,3,-56.1,b\n')).molecules[0]
    again = Molecule.model_validate(molecule.model_dump())
    assert again == molecule and again.inchikey == 'LFQSCWFLJHTTHZ-UHFFFAOYSA-N' and again.row == 2


# ------------------------------------------------------------------------------------------ shape of the file

def test_ragged_row_is_an_error(tmp_path):
    path = write(tmp_path, 'ok,C,0,1,1,,b\nlong,CC,0,1,2,,b,surplus\nshort,CCC,0\n')
    validation = read_csv(path)
    error = only_error(validation, 3)
    assert (error.field, error.mol_id) == ('(row)', 'long')
    assert '8 values but the header has 7 columns' in error.message and '`surplus`' in error.message
    assert only_error(validation, 4).mol_id == 'short'
    assert list(kept(validation)) == ['ok'] and validation.rows_read == 3


def test_blank_lines_are_skipped_and_counted_as_lines(tmp_path):
    validation = read_csv(write(tmp_path, '\nok,C,0,1,1,,b\n,,,,,,\n\nbad,C1CC,0,1,,,b\n'))
    assert validation.rows_read == 2 and only_error(validation, 6).mol_id == 'bad'


def test_duplicated_header_name_is_an_error(tmp_path):
    path = write(tmp_path, 'ok,C,0,1,1,2\n', header='mol_id,smiles,charge,multiplicity,note,note\n')
    with pytest.raises(CsvFileError) as info:
        read_csv(path)
    (error,) = info.value.validation.errors
    assert (error.row, error.field) == (1, 'note')
    assert str(error) == (f'{path}: row 1, field `note`: column `note` appears 2 times in the header (columns 5, 6); '
                          'every column needs its own name')


@pytest.mark.parametrize('column', ['status', 'pk', 'boltzmann_hof', 'dft_energy_ev', 'row', 'inchikey'])
def test_column_colliding_with_the_export_is_refused(tmp_path, column):
    path = write(tmp_path, 'ok,C,0,1,x\n', header=f'mol_id,smiles,charge,multiplicity,{column}\n')
    with pytest.raises(CsvFileError) as info:
        read_csv(path)
    assert str(info.value).startswith(f'{path}: row 1, field `{column}`: column `{column}` is ')
    assert 'rename or drop it' in str(info.value)


def test_output_columns_constant():
    assert len(OUTPUT_COLUMNS) == 31 and len(set(OUTPUT_COLUMNS)) == 31
    assert {'status', 'crest_conformers_kept', 'boltzmann_hof', 'dft_time', 'uuid', 'shell_status'} <= set(OUTPUT_COLUMNS)


def test_header_only_file_has_no_molecule_rows(tmp_path):
    path = write(tmp_path, '\n\n')
    with pytest.raises(CsvFileError, match='no molecule rows') as info:
        read_csv(path)
    assert str(info.value).startswith(f'{path}: row 1, field `(rows)`')


@pytest.mark.parametrize('text', ['', '\n', '  \n\n'])
def test_empty_file_is_said_to_be_empty(tmp_path, text):
    path = write(tmp_path, text, header='')
    with pytest.raises(ValueError, match='the file is empty') as info:
        read_csv(path)
    assert str(path) in str(info.value) and 'found' not in str(info.value)


@pytest.mark.parametrize('separator, label', [(';', '`;`'), ('\t', 'tabs')])
def test_other_separator_gets_a_hint(tmp_path, separator, label):
    header = separator.join(['mol_id', 'smiles', 'charge', 'multiplicity']) + '\n'
    path = write(tmp_path, separator.join(['ok', 'C', '0', '1']) + '\n', header=header)
    with pytest.raises(CsvFileError) as info:
        read_csv(path)
    message = str(info.value)
    assert message.startswith(f'{path}: row 1, field `(header)`: missing required column(s) '
                              'mol_id, smiles, charge, multiplicity')
    assert f'The file looks separated by {label}, not by commas' in message


def test_case_of_a_column_name_gets_a_hint(tmp_path):
    path = write(tmp_path, 'ok,C,0,1\n', header='mol_id,SMILES,charge,multiplicity\n')
    with pytest.raises(CsvFileError, match='missing required column.s. smiles.*`SMILES` for `smiles`'):
        read_csv(path)


# ------------------------------------------------------------------------------------------ RDKit's reason

@pytest.mark.parametrize('smiles, reason', [
    ('C1CC', 'unclosed ring'),
    ('C(C)(C)(C)(C)C', 'Explicit valence for atom # 0 C, 5, is greater than permitted'),
    ('c1cccc1', "Can't kekulize mol"),
    ('CC(', 'syntax error while parsing'),
])
def test_rdkit_reason_is_shown(tmp_path, smiles, reason):
    path = write(tmp_path, f'bad,{smiles},0,1,,,b\n')
    error = only_error(read_csv(path), 2)
    assert (error.field, error.mol_id) == ('smiles', 'bad')
    assert error.message.startswith(f'RDKit cannot parse the SMILES `{smiles}`: ') and reason in error.message
    assert '[' not in error.message.split(': ', 1)[1][:3]  # RDKit's timestamps are dropped


# ------------------------------------------------------------------------------------------ reading the file

def test_unreadable_file_raises_naming_it(tmp_path):
    for path in (tmp_path / 'absent.csv', tmp_path):
        with pytest.raises(ValueError, match='cannot read the CSV') as info:
            read_csv(path)
        assert str(path) in str(info.value)
    binary = tmp_path / 'binary.csv'
    binary.write_bytes(b'mol_id,smiles\n\xff\xfe\x00')
    with pytest.raises(ValueError, match='binary.csv: cannot read the CSV'):
        read_csv(binary)


def test_a_pipe_is_read_once(tmp_path):
    """As ``grimperium validate <(cat file.csv)`` gives it: a /dev/fd path that can be read only once."""
    read_end, write_end = os.pipe()
    text = (HEADER + 'ok,CCO,0,1,3,,b\nbad,CCO,0,2,3,,b\n').encode()

    def feed():
        with os.fdopen(write_end, 'wb') as handle:
            handle.write(text)

    thread = threading.Thread(target=feed)
    thread.start()
    try:
        validation = read_csv(f'/dev/fd/{read_end}')
    finally:
        thread.join()
        os.close(read_end)
    assert list(kept(validation)) == ['ok'] and only_error(validation, 3).field == 'multiplicity'


# ------------------------------------------------------------------------------------------ the log

def test_validation_log_is_rewritten_also_when_valid(tmp_path):
    path = write(tmp_path, 'ok,CCO,0,1,3,,b\nbad,C1CC,0,1,,,b\n')
    log = write_validation_log(read_csv(path))
    assert log == tmp_path / 'campaign.csv.validation.log'
    assert 'row 3 (mol_id bad), field `smiles`' in log.read_text()
    path.write_text(HEADER + 'ok,CCO,0,1,3,,b\n')
    assert write_validation_log(read_csv(path)) == log
    assert log.read_text() == f'{path}: 1 rows, all valid: the file is valid\n'
    other = write_validation_log(read_csv(path), tmp_path / 'elsewhere.log')
    assert other.read_text() == log.read_text()


def test_validation_log_of_a_file_refused_as_a_whole(tmp_path):
    path = write(tmp_path, '', header='mol_id;smiles;charge;multiplicity\n')
    with pytest.raises(CsvFileError) as info:
        read_csv(path)
    log = write_validation_log(info.value.validation, tmp_path / 'refused.log')
    assert 'missing required column(s)' in log.read_text() and 'all valid' not in log.read_text()


# ------------------------------------------------------------------------------------------ speed

def test_ten_thousand_rows_validate_quickly(tmp_path):
    """100 000 rows take ~20 s on 2 cores; 10 000 must stay far below a linear share of the 40 s budget."""
    chains = [f'{"C" * (i % 9 + 1)}{"O" if i % 2 else "N"}{"C" * (i // 18 % 60)}' for i in range(10_000)]
    body = ''.join(f'm{i},{smiles},0,1,,,b\n' for i, smiles in enumerate(chains))
    path = write(tmp_path, body)
    start = time.perf_counter()
    validation = read_csv(path, strict=False)
    elapsed = time.perf_counter() - start
    assert validation.rows_read == 10_000 and validation.errors == []
    assert len(validation.molecules) + len(validation.skipped) == 10_000 and len(validation.molecules) > 1000
    assert elapsed < 8, elapsed
