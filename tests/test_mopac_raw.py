"""The MOPAC raw parser and ``grimperium parse mopac`` on outputs the real ``mopac`` writes during the test.

Broken outputs (truncated at every line, empty, binary, byte-mutated) must give an exit code, never raise.
"""
from __future__ import annotations

import json
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
