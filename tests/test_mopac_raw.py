"""The MOPAC raw parser and ``grimperium parse mopac`` on outputs the real ``mopac`` writes during the test.

Broken outputs (truncated at every line, empty, binary, byte-mutated) must give an exit code, never raise.
"""
from __future__ import annotations

import json
import pathlib
import random
import re
import subprocess

import pytest
from click.testing import CliRunner

from aiida_grimperium.cli import cmd_root
from aiida_grimperium.parsers.raw import mopac as raw

JOBS = """PM7 1SCF CHARGE=0
water
 
O  0.000000 0  0.000000 0  0.117790 0
H  0.000000 0  0.755453 0 -0.471161 0
H  0.000000 0 -0.755453 0 -0.471161 0

PM7 CHARGE=0 DOUBLET
hydroxyl radical

O  0.000000 1  0.000000 1  0.000000 1
H  0.000000 1  0.000000 1  0.980000 1

PM7 1SCF CHARGE=-1
hydroxide

O  0.000000 0  0.000000 0  0.000000 0
H  0.000000 0  0.000000 0  0.970000 0
"""


@pytest.fixture(scope='module')
def real_output(tmp_path_factory):
    """A three-job output (closed shell, optimised doublet radical, anion) written by the real mopac."""
    folder = tmp_path_factory.mktemp('mopac_raw')
    (folder / 'aiida.mop').write_text(JOBS)
    subprocess.run(['mopac', 'aiida.mop'], cwd=folder, check=True, capture_output=True, timeout=120)
    return folder / 'aiida.out'


def test_every_job_is_read(real_output):
    text = real_output.read_text()
    expected = [float(x) for x in re.findall(r'FINAL HEAT OF FORMATION =\s+(-?\d+\.\d+)', text)]
    result = raw.parse_path(real_output)
    assert result['exit_label'] is None
    assert result['num_jobs'] == 3
    assert result['heats_of_formation_kcal_mol'] == pytest.approx(expected, abs=1e-5)
    assert [job['ended_normally'] for job in result['jobs']] == [True, True, True]
    closed, radical, anion = result['jobs']
    assert {'homo_ev', 'lumo_ev'} <= set(closed) and 'homo_ev' not in radical
    assert {'alpha_somo_ev', 'beta_somo_ev'} <= set(radical) or 'somo_ev' in radical
    ip = [float(x) for x in re.findall(r'IONIZATION POTENTIAL\s+=\s+(-?\d+\.\d+)', text)]
    assert [job['ionization_potential_ev'] for job in result['jobs']] == pytest.approx(ip, abs=1e-6)
    dipoles = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(' SUM ')]
    assert [job['dipole_debye'] for job in result['jobs']] == pytest.approx(dipoles, abs=1e-3)
    assert [job['symbols'] for job in result['jobs']] == [['O', 'H', 'H'], ['O', 'H'], ['O', 'H']]
    # the radical was optimised: its final O-H distance is the one printed in the last CARTESIAN block
    (o, h) = radical['positions']
    assert sum((a - b) ** 2 for a, b in zip(o, h)) ** 0.5 != pytest.approx(0.98, abs=1e-4)


def test_cli_contract(real_output):
    result = CliRunner().invoke(cmd_root, ['parse', 'mopac', str(real_output.parent)])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document['code'] == 'mopac' and document['exit_status'] == 0 and document['exit_message'] == ''
    assert len(document['jobs']) == 3
    assert all('heat_of_formation_kcal_mol' in job and job['ended_normally'] for job in document['jobs'])


def test_truncated_at_every_line_gives_an_exit_code(real_output, tmp_path):
    lines = real_output.read_text().splitlines(keepends=True)
    last_heat = max(i for i, line in enumerate(lines) if 'FINAL HEAT OF FORMATION' in line)
    for cut in range(0, len(lines) - 1):
        result = raw.parse_lines(iter(lines[:cut]))
        if cut <= last_heat + 1:
            assert result['exit_label'] is not None, cut  # a run cut before its end is never a success
    truncated = tmp_path / 'aiida.out'
    truncated.write_text(''.join(lines[: len(lines) // 2]))
    document = json.loads(CliRunner().invoke(cmd_root, ['parse', 'mopac', str(truncated)]).output)
    assert document['exit_status'] == 312 and document['exit_message'] == 'ERROR_OUTPUT_INCOMPLETE'


@pytest.mark.parametrize('content, status', [(b'', 310), (b'\x00\x01\x02binary\x00' * 50, 310)])
def test_empty_and_binary_files(tmp_path, content, status):
    path = tmp_path / 'aiida.out'
    path.write_bytes(content)
    result = CliRunner().invoke(cmd_root, ['parse', 'mopac', str(path)])
    assert result.exit_code == 0 and 'Traceback' not in result.output
    assert json.loads(result.output)['exit_status'] == status


def test_missing_file(tmp_path):
    document = json.loads(CliRunner().invoke(cmd_root, ['parse', 'mopac', str(tmp_path / 'nothing.out')]).output)
    assert document['exit_status'] == 302


def test_byte_mutations_never_raise(real_output):
    data = bytearray(real_output.read_bytes())
    rng = random.Random(20261122)
    for _ in range(300):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 40)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        result = raw.parse_lines(iter(mutated.decode('utf-8', errors='replace').splitlines(keepends=True)))
        assert 'exit_label' in result


# --- real outputs of other MOPAC versions (tests/fixtures/mopac, sources in tests/fixtures/README.md) ---------------

FIXTURES = pathlib.Path(__file__).parent / 'fixtures' / 'mopac'


def printed_heats(path):
    return [float(x) for x in re.findall(r'FINAL HEAT OF FORMATION =\s+(-?\d+\.\d+)', path.read_text())]


@pytest.mark.parametrize('name, edition, version, jobs', [
    ('openmopac/keywords/NONET.out', 'MOPAC2016', '21.298M', 4),
    ('openmopac/keywords/MICROS.out', 'MOPAC2016', '21.178M', 2),
    ('cclib/benzene.out', 'MOPAC2016', '16.093M', 1),
    ('openmopac/keywords/EXTERNAL.out', 'v22', '22.0.4', 1),
    ('openmopac/erratic3.out', 'v22', '22.0.6', 1),
    ('openmopac/keywords/EXCITED.out', 'v23', '23.1.2', 2),
    ('openmopac/Locate_TS.out', 'v23', '23.1.2', 1),
])
def test_versions_and_multi_job_files(name, edition, version, jobs):
    path = FIXTURES / name
    result = raw.parse_path(path)
    assert (result['mopac_edition'], result['mopac_version'], result['num_jobs']) == (edition, version, jobs)
    assert result['exit_label'] is None and result['ended_normally'] and result['file_complete']
    assert result['heats_of_formation_kcal_mol'] == pytest.approx(printed_heats(path), abs=1e-5)
    assert all(job['symbols'] and len(job['symbols']) == len(job['positions']) for job in result['jobs'])


def test_uhf_and_ci_runs():
    uhf = raw.parse_path(FIXTURES / 'cclib' / 'o2_trip.out')['jobs'][0]
    assert 'UHF' in uhf['keywords'] and {'alpha_somo_ev', 'beta_somo_ev'} <= set(uhf)
    cis = raw.parse_path(FIXTURES / 'openmopac' / 'keywords' / 'CIS.out')
    assert cis['exit_label'] is None and 'CIS' in cis['jobs'][1]['keywords']
    ci = raw.parse_path(FIXTURES / 'debian' / 'cis_formaldehyde.out')
    assert ci['exit_label'] is None and ci['heats_of_formation_kcal_mol'] == printed_heats(
        FIXTURES / 'debian' / 'cis_formaldehyde.out')


def test_force_thermo():
    path = FIXTURES / 'debian' / 'water_force_thermo.out'
    job = raw.parse_path(path)['jobs'][0]
    total = re.search(r'^\s*298\.00\s+VIB\.(?:.*\n){4}\s*TOT\.\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)', path.read_text(), re.M)
    hof, h, cp, s = (float(x) for x in total.groups())
    assert job['thermo_temperature_k'] == 298.0
    assert (job['enthalpy_cal_mol'], job['heat_capacity_cal_k_mol'], job['entropy_cal_k_mol']) == (h, cp, s)
    assert job['thermochemistry'][0]['heat_of_formation_kcal_mol'] == hof
    assert len(job['thermochemistry']) == path.read_text().count('TOT.')
    assert job['zero_point_energy_kcal_mol'] > 0
    force = raw.parse_path(FIXTURES / 'cclib' / 'h2o-force.out')  # MOPAC2016 FORCE without THERMO
    assert force['exit_label'] is None and force['heats_of_formation_kcal_mol'][0] == pytest.approx(-57.798979)


@pytest.mark.parametrize('name, label, status, words', [
    ('debian/o2_triplet_1scf.out', 'ERROR_ACTIVE_SPACE', 433, 'SPECIFIED SPIN COMPONENT NOT SPANNED BY ACTIVE SPACE'),
    ('debian/poh2_no_vdw.out', 'ERROR_MISSING_PARAMETERS', 432, 'MISSING VAN DER WAALS RADIUS FOR PO'),
    ('openmopac/INDO-dev/co_fail.out', 'ERROR_INPUT_REJECTED', 431, 'FORCE is incompatible with INDO'),
    ('openmopac/INDO-dev/noparam.out', 'ERROR_MISSING_PARAMETERS', 432, 'Parameters for some elements are missing'),
    ('openmopac/INDO-dev/no_cis_quar.out', 'ERROR_ACTIVE_SPACE', 433, 'ROOT REQUESTED DOES NOT EXIST IN C.I.'),
])
def test_mopac_failures_in_its_own_words(name, label, status, words):
    path = FIXTURES / name
    assert words in path.read_text()  # the words are MOPAC's, not ours
    result = raw.parse_path(path)
    assert result['exit_label'] == label and result['exit_detail'] == words
    assert result['file_complete'] is True and result['ended_normally'] is False  # ended, but not normally
    assert result['jobs'][-1]['errors'] == [label] and result['jobs'][-1]['ended_normally'] is False
    document = json.loads(CliRunner().invoke(cmd_root, ['parse', 'mopac', str(path)]).output)
    assert document['exit_status'] == status and document['exit_message'] == f'{label}: {words}'


def test_a_failed_job_among_good_ones():
    result = raw.parse_path(FIXTURES / 'debian' / 'mixed_jobs.out')
    radical, o2, water = result['jobs']
    assert radical['ended_normally'] and water['ended_normally'] and not o2['ended_normally']
    assert o2['messages'] == ['SPECIFIED SPIN COMPONENT NOT SPANNED BY ACTIVE SPACE'] and not radical['messages']
    assert 'UHF' in radical['keywords'] and 'alpha_somo_ev' in radical
    assert result['heats_of_formation_kcal_mol'][1] is None and result['lowest_index'] == 2
    assert result['exit_label'] == 'ERROR_ACTIVE_SPACE'


def test_notes_are_not_failures():
    path = FIXTURES / 'openmopac' / 'IONIZE.out'
    result = raw.parse_path(path)
    assert result['exit_label'] is None and result['jobs'][0]['notes'] == [
        'CHARGES MODIFIED BY SITE COMMAND', 'HYDROGEN ATOMS ADDED OR DELETED']
    assert all(note in path.read_text() for note in result['jobs'][0]['notes'])


def test_incomplete_only_when_the_file_ends_early():
    path = FIXTURES / 'debian' / 'o2_triplet_1scf.out'
    lines = path.read_text().splitlines(keepends=True)
    end = max(i for i, line in enumerate(lines) if 'JOB ENDED NORMALLY' in line)
    assert raw.parse_lines(iter(lines))['exit_label'] == 'ERROR_ACTIVE_SPACE'
    cut = raw.parse_lines(iter(lines[:end]))  # the error was printed, the file did not end: still MOPAC's error
    assert cut['exit_label'] == 'ERROR_ACTIVE_SPACE' and cut['file_complete'] is False
    header = next(i for i, line in enumerate(lines) if 'Empirical Formula' in line)
    assert raw.parse_lines(iter(lines[:header]))['exit_label'] == 'ERROR_OUTPUT_INCOMPLETE'


def test_exit_code_message_carries_mopac_words():
    from aiida.engine import ExitCode

    from aiida_grimperium.parsers.base import with_detail
    generic = raw.EXIT_CODES['ERROR_MOPAC_FAILED']
    code = with_detail(ExitCode(generic.status, generic.message), 'BUG IN SELMOS')
    assert code.status == 500 and code.message == 'MOPAC stopped with an error: BUG IN SELMOS'
    active = raw.EXIT_CODES['ERROR_ACTIVE_SPACE']
    code = with_detail(ExitCode(active.status, active.message), 'SPECIFIED SPIN COMPONENT NOT SPANNED BY ACTIVE SPACE')
    assert code.message.startswith(active.message) and code.message.endswith('NOT SPANNED BY ACTIVE SPACE')
    assert with_detail(ExitCode(generic.status, generic.message), None).message.endswith('no message printed')
