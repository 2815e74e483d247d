"""The AiiDA-free pw.x parser on recorded real pw.x 6.7 runs (tests/fixtures/pw), truncated and garbage files."""
from __future__ import annotations

import json
import pathlib
import random
import re

import pytest

from aiida_grimperium.exit_codes import resolve, table_for
from aiida_grimperium.parsers.raw import pw

FIX = pathlib.Path(__file__).parent / 'fixtures' / 'pw'


def bang_energies(path: pathlib.Path) -> list[float]:
    """The '!    total energy' values pw.x printed, read independently of the parser."""
    return [float(m) for m in re.findall(r'^!\s+total energy\s+=\s+(\S+) Ry', path.read_text(), re.M)]


def test_si_scf():
    result = pw.parse_path(FIX / 'si_scf')
    assert result['exit_label'] is None
    assert result['energy_ry'] == bang_energies(FIX / 'si_scf' / 'aiida.out')[-1] == -15.82525716
    assert result['energy'] == pytest.approx(-15.82525716 * 13.605693122994, abs=1e-9)
    assert result['scf_converged'] is True and result['scf_iterations'] == 7
    assert result['homo'] == 6.1137 and result['lumo'] is None and result['band_gap'] is None
    assert result['ewald_energy_ry'] == -16.79894374
    assert result['pressure_kbar'] == -27.32 and result['stress_kbar'][0][0] == -27.32
    assert len(result['forces']) == 2
    assert result['wall_time_seconds'] == 0.12


def test_si_vc_relax_final_cell():
    out = FIX / 'si_vc_relax' / 'aiida.out'
    result = pw.parse_path(out)
    assert result['exit_label'] is None
    assert result['ionic_converged'] is True
    assert result['energy_ry'] == bang_energies(out)[-1]
    assert [s['energy_ry'] for s in result['trajectory']] == bang_energies(out)
    assert result['final_enthalpy_ry'] == -15.8259537436
    final = result['final_structure']
    assert final['cell'][0] == [-0.000005990, 2.689898930, 2.689899373]
    assert final['positions'][1] == [1.3661922787, 1.3461997597, 1.3449489613]
    # HOMO/LUMO of the final SCF (8 bands)
    assert (result['homo'], result['lumo']) == (6.4077, 6.9980)
    assert result['band_gap'] == pytest.approx(6.9980 - 6.4077)


def test_si_relax_trajectory_positions():
    result = pw.parse_path(FIX / 'si_relax')
    assert result['exit_label'] is None and result['ionic_converged'] is True
    steps = result['trajectory']
    assert 'positions' not in steps[0]  # the input geometry is not printed in Angstrom by pw.x
    assert steps[1]['positions'][1] == [1.3879513872, 1.3592887667, 1.357579239]
    assert result['final_structure']['cell'] is None


def test_h2o_molecule_gap():
    result = pw.parse_path(FIX / 'h2o')
    assert result['exit_label'] is None
    assert result['energy_ry'] == -34.13837043
    assert result['band_gap'] == pytest.approx(-1.6774 - -7.4014)


@pytest.mark.parametrize(('folder', 'label', 'status'), [
    ('si_scf_not_converged', 'ERROR_SCF_NOT_CONVERGED', 410),
    ('si_walltime', 'ERROR_OUT_OF_WALLTIME', 400),
    ('o2_typo', 'ERROR_CODE_ERROR_MESSAGE', 320),
    ('aiida-qe/failed_computing_cholesky', 'ERROR_DIAGONALIZATION_CHOLESKY', 462),
])
def test_failures(folder, label, status):
    result = pw.parse_path(FIX / folder)
    assert result['exit_label'] == label
    assert resolve('pw', label)[0] == status


def test_error_message_read_from_crash_file():
    result = pw.parse_path(FIX / 'o2_typo')
    assert result['error_messages'] == [
        'Error in routine read_namelists (1): bad line in namelist &system: "  ecutwfx = 20" '
        '(error could be in the previous line)'
    ]
    assert len(result['error_messages']) == 1  # the same block in stdout and CRASH counted once


def test_missing_empty_binary(tmp_path):
    assert pw.parse_path(tmp_path / 'nope.out')['exit_label'] == 'ERROR_OUTPUT_MISSING'
    (tmp_path / 'empty.out').write_text('')
    assert pw.parse_path(tmp_path / 'empty.out')['exit_label'] == 'ERROR_OUTPUT_READ'
    (tmp_path / 'bin.out').write_bytes(b'\x00\x01\x02' * 100)
    assert pw.parse_path(tmp_path / 'bin.out')['exit_label'] == 'ERROR_OUTPUT_READ'
    (tmp_path / 'text.out').write_text('hello\nworld\n')
    assert pw.parse_path(tmp_path / 'text.out')['exit_label'] == 'ERROR_OUTPUT_PARSE'


@pytest.mark.parametrize('fraction', [0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 0.97])
def test_truncated_vc_relax(fraction):
    text = (FIX / 'si_vc_relax' / 'aiida.out').read_text()
    lines = text.splitlines(keepends=True)
    result = pw.parse_lines(lines[: int(len(lines) * fraction)])
    assert result['exit_label'] == 'ERROR_OUTPUT_INCOMPLETE'
    json.dumps(result)  # what `grimperium parse` prints must be serialisable


def test_byte_mutations_never_raise():
    data = bytearray((FIX / 'si_vc_relax' / 'aiida.out').read_bytes())
    rng = random.Random(4)
    labels = set(table_for('pw'))
    for _ in range(60):
        mutated = bytearray(data)
        for _ in range(200):
            mutated[rng.randrange(len(mutated))] = rng.randrange(32, 127)
        cut = rng.randrange(len(mutated) // 2, len(mutated) + 1)
        result = pw.parse_lines(mutated[:cut].decode('ascii', errors='replace').splitlines())
        assert result['exit_label'] is None or result['exit_label'] in labels
        json.dumps(result)


def test_cli_parse_json():
    from click.testing import CliRunner

    from aiida_grimperium.cli import cmd_root

    result = CliRunner().invoke(cmd_root, ['parse', 'pw', str(FIX / 'si_vc_relax')])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data['code'] == 'pw' and data['exit_status'] == 0 and data['exit_message'] == ''
    assert data['energy'] == pytest.approx(-15.82468786 * 13.605693122994)
    assert data['ionic_converged'] is True and data['scf_converged'] is True
    failed = json.loads(CliRunner().invoke(cmd_root, ['parse', 'pw', str(FIX / 'si_scf_not_converged')]).output)
    assert (failed['exit_status'], failed['exit_message']) == (410, 'ERROR_SCF_NOT_CONVERGED')
