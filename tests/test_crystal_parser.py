"""CRYSTAL raw parser on the recorded outputs (CRYSTAL17 MgO SCF and OPTGEOM, CRYSTAL14 Fe failed SCF).

Every expected number below was read by hand from the fixture file (line quoted in the comment), and each test
also re-reads that line from the file itself, so a parser that returned another line's value would fail.
Tolerances: energies in Hartree to 1e-9 Ha (the files print 11-13 significant digits), eV = Ha x 27.211386245988
(CODATA 2018) to 1e-9 relative, band gaps to 1e-4 eV (printed with 4 decimals).
"""
from __future__ import annotations

import json
import pathlib
import random
import re

import pytest
from click.testing import CliRunner

from aiida_grimperium.chemistry import HARTREE_TO_EV
from aiida_grimperium.cli.cmd_parse import cmd_parse
from aiida_grimperium.exit_codes import resolve
from aiida_grimperium.parsers.raw import crystal as raw

FIXTURES = pathlib.Path(__file__).parent / 'fixtures' / 'crystal'
SCF, OPT, FAILED = (FIXTURES / name / 'main.out' for name in ('mgo_sto3g_scf', 'mgo_sto3g_opt', 'failed_scf'))


def last_line(path, needle):
    return [line for line in path.read_text().splitlines() if needle in line][-1]


def energy_by_hand(line):
    """The number after 'TOTAL ENERGY(..)(AU)( n)' in a line of the file."""
    return float(line.split(')')[3].split()[0])


def test_scf():
    result = raw.parse_path(SCF.parent)
    # ' TOTAL ENERGY(HF)(AU)(   7) -2.7121814374931E+02 DE-4.9E-09 tst 3.5E-10 PX 3.6E-04'
    assert result['energy_hartree'] == pytest.approx(-271.21814374931, abs=1e-9)
    assert result['energy_hartree'] == pytest.approx(energy_by_hand(last_line(SCF, 'TOTAL ENERGY(HF)')), abs=1e-9)
    assert result['energy'] == pytest.approx(-271.21814374931 * HARTREE_TO_EV, rel=1e-9)
    # ' INDIRECT ENERGY BAND GAP:  12.6917 eV' (the last SCF cycle)
    assert result['band_gap'] == pytest.approx(12.6917, abs=1e-4) and result['band_gap_type'] == 'indirect'
    assert result['band_gap'] == pytest.approx(float(last_line(SCF, 'BAND GAP:').split()[-2]), abs=1e-4)
    assert result['scf_converged'] is True and result['scf_cycles'] == 7
    assert result['geometry_optimization'] is False and result['terminated_normally'] is True
    assert (result['program'], result['program_version']) == ('CRYSTAL17', '17')
    assert result['program_version_detail'] == 'public : 1.0.1 - Feb 1st, 2017'
    assert result['space_group'] == 'F M 3 M' and result['num_electrons'] == 20 and result['num_ao'] == 14
    structure = result['structure']
    assert structure['symbols'] == ['Mg', 'O']
    assert structure['cell'] == [[0.0, 2.105, 2.105], [2.105, 0.0, 2.105], [2.105, 2.105, 0.0]]
    assert structure['positions'][1] == pytest.approx([2.105] * 3)
    assert result['exit_label'] is None


def test_optimisation():
    result = raw.parse_path(OPT)
    # ' TOTAL ENERGY(HF)(AU)(   3) -2.7125962068879E+02     DE (AU)   -1.028E-05' (point 6, the last)
    # ' * OPT END - CONVERGED * E(AU):  -2.712596206888E+02  POINTS    6 *'
    assert result['energy_hartree'] == pytest.approx(-271.25962068879, abs=1e-9)
    opt_end = float(re.search(r'E\(AU\):\s*(\S+)', last_line(OPT, 'OPT END')).group(1))
    assert result['energy_hartree'] == pytest.approx(opt_end, abs=1e-9)
    assert result['energy'] == pytest.approx(-271.25962068879 * HARTREE_TO_EV, rel=1e-9)
    # '   BAND GAP:                     17.4781  eV '
    assert result['band_gap'] == pytest.approx(17.4781, abs=1e-4)
    assert result['geometry_optimization'] and result['geometry_converged'] is True
    assert result['optimization_steps'] == 6 and result['scf_converged'] is True
    # FINAL OPTIMIZED GEOMETRY: '   0.000000000000E+00   0.194218061274E+01   0.194218061274E+01' ...
    h = 1.94218061274
    assert sum(result['structure']['cell'], []) == pytest.approx([0, h, h, h, 0, h, h, h, 0], abs=1e-10)
    assert result['structure']['positions'][1] == pytest.approx([1.942180612737] * 3, abs=1e-10)
    assert result['lattice_parameters']['a'] == pytest.approx(2.74665816, abs=1e-8)
    assert result['exit_label'] is None


def test_failed_scf():
    result = raw.parse_path(FAILED)
    assert result['exit_label'] == 'ERROR_SCF_FAILED'
    assert resolve('crystal', result['exit_label']) == (411, 'ERROR_SCF_FAILED')
    assert result['errors'] == ['ERROR **** OPTGEOM **** SCF FAILED - OPTGEOM STOP']
    assert (result['program'], result['program_version']) == ('CRYSTAL14', '14')
    # the last energy printed, point 6: ' TOTAL ENERGY(DFT)(AU)( 41) -1.2636682731664E+03     DE (AU)   -1.261E-03'
    assert result['energy_hartree'] == pytest.approx(-1263.6682731664, abs=1e-9)
    assert result['energy_hartree'] == pytest.approx(energy_by_hand(last_line(FAILED, 'TOTAL ENERGY(DFT)')), abs=1e-9)
    assert result['scf_converged'] is False and result['terminated_normally'] is False
    assert result['conducting'] is True and result['band_gap'] == 0.0   # 'POSSIBLY CONDUCTING STATE - EFERMI(AU)'
    # point 7, the geometry whose SCF failed: '     2.24752969     2.24752969     2.24752969   109.471221 ...'
    assert result['lattice_parameters']['a'] == pytest.approx(2.24752969) and result['structure']['symbols'] == ['Fe']


@pytest.mark.parametrize('path', [SCF, OPT, FAILED])
def test_truncated_never_raises(path, tmp_path):
    """Every cut of the file gives a dict with an exit label; a cut before the end is never a success."""
    lines = path.read_text().splitlines(keepends=True)
    for fraction in [i / 25 for i in range(25)]:
        cut = lines[: int(len(lines) * fraction)]
        result = raw.parse_lines(cut)
        assert result['exit_label'] is not None, fraction
        assert resolve('crystal', result['exit_label'])[0] in {311, 312, 411}


@pytest.mark.parametrize('path', [SCF, OPT, FAILED])
def test_byte_mutations_never_raise(path, tmp_path):
    data = bytearray(path.read_bytes())
    rng = random.Random(1234)
    for trial in range(20):
        mutated = bytearray(data)
        for _ in range(200):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        target = tmp_path / f'm{trial}.out'
        target.write_bytes(bytes(mutated))
        result = raw.parse_path(target)
        assert 'exit_label' in result
        json.dumps(result)


def test_empty_binary_missing(tmp_path):
    (tmp_path / 'main.out').write_text('')
    assert raw.parse_path(tmp_path)['exit_label'] == 'ERROR_OUTPUT_READ'
    (tmp_path / 'main.out').write_bytes(b'\x00\x01' * 100)
    assert raw.parse_path(tmp_path)['exit_label'] == 'ERROR_OUTPUT_READ'
    assert raw.parse_path(tmp_path / 'nothing')['exit_label'] == 'ERROR_OUTPUT_MISSING'
    (tmp_path / 'main.out').write_text('segmentation fault\n')
    assert raw.parse_path(tmp_path)['exit_label'] == 'ERROR_OUTPUT_PARSE'


@pytest.mark.parametrize('banner, version', [('CRYSTAL23', '23'), ('CRYSTAL22', '22'), ('CRYSTAL27', '27')])
def test_other_versions_read_not_refused(banner, version):
    """Banner edited to other versions (mutation of the CRYSTAL17 file): read, and the run still parses."""
    text = SCF.read_text().replace('CRYSTAL17', banner)
    result = raw.parse_lines(text.splitlines(keepends=True))
    assert result['program'] == banner and result['program_version'] == version and result['exit_label'] is None


def mutate(path, old, new):
    text = path.read_text()
    assert old in text
    return raw.parse_lines(text.replace(old, new).splitlines(keepends=True))


def test_failure_messages_map_to_exit_codes():
    """CRYSTAL's failure lines, put into the recorded files (mutations), give their exit codes."""
    assert mutate(SCF, 'SCF ENDED - CONVERGENCE ON ENERGY     ', 'SCF ENDED - TOO MANY CYCLES')['exit_label'] == \
        'ERROR_SCF_NOT_CONVERGED'
    assert mutate(OPT, 'OPT END - CONVERGED', 'OPT END - FAILED')['exit_label'] == 'ERROR_GEOMETRY_NOT_CONVERGED'
    cut = ''.join(SCF.read_text().splitlines(keepends=True)[:240])
    for tail, label in [(' ERROR **** CHOLSK **** BASIS SET LINEARLY DEPENDENT\n', 'ERROR_BASIS_SET_LINEARLY_DEPENDENT'),
                        ('slurmstepd: error: *** JOB 12 ON n1 CANCELLED AT 2024-01-01T00:00:00 DUE TO TIME LIMIT ***\n',
                         'ERROR_OUT_OF_WALLTIME'),
                        (' ERROR **** NEIGHBOUR **** UNEXPECTED\n', 'ERROR_CRYSTAL_ERROR'),
                        ('', 'ERROR_OUTPUT_INCOMPLETE')]:
        assert raw.parse_lines((cut + tail).splitlines(keepends=True))['exit_label'] == label
    assert {spec.status for spec in raw.EXIT_CODES.values()} == {350, 410, 411, 420, 500}


def test_cli_parse_json():
    output = CliRunner().invoke(cmd_parse, ['crystal', str(OPT.parent)]).output
    data = json.loads(output)
    assert data['code'] == 'crystal' and data['exit_status'] == 0 and data['exit_message'] == ''
    assert data['energy_hartree'] == pytest.approx(-271.25962068879, abs=1e-9)
    assert data['energy'] == pytest.approx(-271.25962068879 * HARTREE_TO_EV, rel=1e-9)
    assert data['band_gap'] == pytest.approx(17.4781) and data['geometry_converged'] is True
    failed = json.loads(CliRunner().invoke(cmd_parse, ['crystal', str(FAILED)]).output)
    # the label, then CRYSTAL's own words (exit_detail): ' ERROR **** OPTGEOM **** SCF FAILED - OPTGEOM STOP'
    assert failed['exit_status'] == 411 and failed['exit_message'].startswith('ERROR_SCF_FAILED')
    assert failed['exit_detail'] == last_line(FAILED, 'ERROR ****').strip()
    assert failed['exit_detail'] in failed['exit_message']
