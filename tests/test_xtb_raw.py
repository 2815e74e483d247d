"""The raw xtb parser on outputs of real xtb runs made by this test module (xtb 6.x from Debian)."""
from __future__ import annotations

import json
import random
import re
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from aiida_grimperium.chemistry import HARTREE_TO_EV, xyz_text
from aiida_grimperium.parsers.raw import xtb as raw

WATER = (['O', 'H', 'H'], [[0.0, 0.0, 0.1], [0.0, 0.76, -0.45], [0.0, -0.76, -0.45]])
OVERLAP = (['O', 'H', 'H'], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.1]])


def xtb(folder, args, geometry=WATER, stem='aiida'):
    """Run xtb in ``folder`` like the CalcJob does: stdout to <stem>.out, stderr to <stem>.err."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f'{stem}.xyz').write_text(xyz_text(*geometry))
    with open(folder / f'{stem}.out', 'w') as out, open(folder / f'{stem}.err', 'w') as err:
        subprocess.run(['xtb', f'{stem}.xyz', *args], cwd=folder, stdout=out, stderr=err,
                       env={'OMP_NUM_THREADS': '1', 'PATH': '/usr/bin:/bin'})
    return folder


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    if shutil.which('xtb') is None:
        pytest.fail('xtb is not on PATH: run scripts/setup.sh')
    base = tmp_path_factory.mktemp('xtb-runs')
    return {
        'sp': xtb(base / 'sp', ['--gfn', '2']),
        'opt': xtb(base / 'opt', ['--gfn', '2', '--opt', 'tight']),
        'opt_unconverged': xtb(base / 'optnc', ['--opt', '--cycles', '2']),
        'scc': xtb(base / 'scc', ['--iterations', '2']),
        'fatal': xtb(base / 'fatal', [], OVERLAP),
        'gfnff': xtb(base / 'gfnff', ['--gfnff']),
    }


def box(folder, label):
    return float(re.search(rf'\|\s*{label}\s+(\S+)', (folder / 'aiida.out').read_text()).group(1))


def test_single_point(runs):
    result = raw.parse_path(runs['sp'])
    assert result['exit_label'] is None and result['normal_termination'] is True
    assert result['total_energy_hartree'] == box(runs['sp'], 'TOTAL ENERGY')
    assert result['homo_lumo_gap_ev'] == box(runs['sp'], 'HOMO-LUMO GAP')
    assert result['gradient_norm_hartree_bohr'] == box(runs['sp'], 'GRADIENT NORM')
    assert result['energy'] == pytest.approx(result['total_energy_hartree'] * HARTREE_TO_EV)
    assert 'optimization_converged' not in result


def test_optimisation_and_geometry(runs):
    result = raw.parse_path(runs['opt'] / 'aiida.out')
    assert result['exit_label'] is None and result['optimization_converged'] is True
    lines = (runs['opt'] / 'xtbopt.xyz').read_text().splitlines()
    assert result['total_energy_hartree'] == pytest.approx(float(lines[1].split()[1]), abs=1e-12)
    assert result['positions'][1] == [float(x) for x in lines[3].split()[1:4]]


def test_failures(runs):
    assert raw.parse_path(runs['opt_unconverged'])['exit_label'] == 'ERROR_OPTIMIZATION_NOT_CONVERGED'
    scc = raw.parse_path(runs['scc'])
    assert scc['exit_label'] == 'ERROR_SCC_NOT_CONVERGED' and scc['normal_termination'] is False
    fatal = raw.parse_path(runs['fatal'])
    assert fatal['exit_label'] == 'ERROR_FATAL_ERROR' and 'short distance' in fatal['fatal_error']


def test_gfnff_has_no_gap(runs):
    result = raw.parse_path(runs['gfnff'])
    assert result['exit_label'] is None and 'homo_lumo_gap_ev' not in result
    assert result['total_energy_hartree'] == box(runs['gfnff'], 'TOTAL ENERGY')


def test_termination_is_read_from_stderr(runs, tmp_path):
    folder = tmp_path / 'run'
    shutil.copytree(runs['sp'], folder)
    (folder / 'aiida.err').write_text('')  # stdout complete, but xtb never said it terminated normally
    assert raw.parse_path(folder)['exit_label'] == 'ERROR_OUTPUT_INCOMPLETE'
    (folder / 'aiida.err').write_text('abnormal termination of xtb\n')
    assert raw.parse_path(folder)['exit_label'] == 'ERROR_FATAL_ERROR'


def test_missing_optimised_geometry(runs, tmp_path):
    folder = tmp_path / 'run'
    shutil.copytree(runs['opt'], folder)
    (folder / 'xtbopt.xyz').unlink()
    assert raw.parse_path(folder)['exit_label'] == 'ERROR_OPTIMIZED_GEOMETRY_MISSING'


def test_truncated_empty_binary_mutated(runs, tmp_path):
    folder = tmp_path / 'run'
    shutil.copytree(runs['opt'], folder)
    text = (folder / 'aiida.out').read_text()
    # anything cut before xtb's closing "finished run" line is incomplete (only the timings follow it)
    for cut in range(0, text.index('finished run on'), max(1, len(text) // 50)):
        (folder / 'aiida.out').write_text(text[:cut])
        assert raw.parse_path(folder)['exit_label'] is not None, cut
    (folder / 'aiida.out').write_bytes(b'\x00\xff' * 50)
    assert raw.parse_path(folder)['exit_label'] == 'ERROR_OUTPUT_READ'
    rng = random.Random(7)
    original = text.encode()
    for _ in range(50):
        data = bytearray(original)
        for _ in range(rng.randint(1, 30)):
            data[rng.randrange(len(data))] = rng.randrange(32, 256)
        (folder / 'aiida.out').write_bytes(bytes(data))
        json.dumps(raw.parse_path(folder), default=str)
    (folder / 'aiida.out').unlink()
    assert raw.parse_path(folder)['exit_label'] == 'ERROR_OUTPUT_MISSING'


def test_batch_folder(tmp_path):
    folder = tmp_path / 'batch'
    xtb(folder, ['--namespace', 'conf0001'], stem='conf0001')
    xtb(folder, ['--namespace', 'conf0002'], OVERLAP, stem='conf0002')
    result = raw.parse_path(folder)
    assert result['exit_label'] is None and result['num_geometries'] == 2
    assert result['failed_geometries'] == [1] and result['failures'] == {'1': 'ERROR_FATAL_ERROR'}
    energy = float(re.search(r'TOTAL ENERGY\s+(\S+)', (folder / 'conf0001.out').read_text()).group(1))
    assert result['total_energies_hartree'] == [energy, None] and result['lowest_index'] == 0


def test_grimperium_parse_xtb_cli(runs):
    from aiida_grimperium.cli import cmd_root

    out = CliRunner().invoke(cmd_root, ['parse', 'xtb', str(runs['sp'])])
    data = json.loads(out.output)
    assert data['exit_status'] == 0
    assert data['total_energy_hartree'] == box(runs['sp'], 'TOTAL ENERGY')
    assert data['homo_lumo_gap_ev'] == box(runs['sp'], 'HOMO-LUMO GAP')
    bad = json.loads(CliRunner().invoke(cmd_root, ['parse', 'xtb', str(runs['scc'] / 'aiida.out')]).output)
    assert bad['exit_status'] == 410 and 'did not converge' in bad['exit_detail']  # xtb's own words
    assert bad['exit_message'] == f"ERROR_SCC_NOT_CONVERGED: {bad['exit_detail']}"


# --- real outputs of other xtb versions and methods (tests/fixtures/xtb, sources in tests/fixtures/README.md) -----

import pathlib  # noqa: E402

from aiida_grimperium.cli import cmd_root  # noqa: E402

XTB_FIXTURES = pathlib.Path(__file__).parent / 'fixtures' / 'xtb'


def printed(folder, pattern):
    out = next(folder.glob('*.out'))
    return float(re.search(pattern, out.read_text()).group(1))


@pytest.mark.parametrize('name, version, method', [
    ('cclib/dvb_sp', '6.6.1', 'GFN2-xTB'),
    ('cclib/dvb_opt', '6.6.1', 'GFN2-xTB'),
    ('cclib/dvb_ir', '6.6.1', 'GFN2-xTB'),
    ('debian/gfn1_sp', '6.5.1', 'GFN1-xTB'),
    ('debian/gfnff_sp', '6.5.1', 'GFN-FF'),
    ('debian/gfn2_ohess', '6.5.1', 'GFN2-xTB'),
])
def test_recorded_versions_and_methods(name, version, method):
    folder = XTB_FIXTURES / name
    result = raw.parse_path(folder)
    assert (result['xtb_version'], result['method'], result['exit_label']) == (version, method, None)
    assert result['total_energy_hartree'] == printed(folder, r'\|\s*TOTAL ENERGY\s+(\S+) Eh')


@pytest.mark.parametrize('name', ['cclib/dvb_ir', 'debian/gfn2_ohess'])
def test_hessian_thermochemistry(name):
    folder = XTB_FIXTURES / name
    result = raw.parse_path(folder)
    assert result['enthalpy_hartree'] == printed(folder, r'\|\s*TOTAL ENTHALPY\s+(\S+) Eh')
    assert result['free_energy_hartree'] == printed(folder, r'\|\s*TOTAL FREE ENERGY\s+(\S+) Eh')
    assert result['zero_point_energy_hartree'] == printed(folder, r'::\s*zero point energy\s+(\S+) Eh')
    assert result['thermo_temperature_k'] == 298.15


def test_fatal_error_in_xtbs_words():
    folder = XTB_FIXTURES / 'debian' / 'fatal_overlap'
    text = (folder / 'aiida.out').read_text()
    words = re.findall(r'^-\d+- (.*\S)', text, re.M)
    result = raw.parse_path(folder)
    assert result['exit_label'] == 'ERROR_FATAL_ERROR' and result['fatal_errors'] == words and words
    assert result['exit_detail'] == '; '.join(words)
    document = json.loads(CliRunner().invoke(cmd_root, ['parse', 'xtb', str(folder)]).output)
    assert document['exit_status'] == 320 and document['exit_message'] == f"ERROR_FATAL_ERROR: {'; '.join(words)}"


def test_fatal_block_tags_and_generic_line_are_dropped():
    lines = ['########\n', '[ERROR] Program stopped due to fatal error\n', '-2- Global environment terminated\n',
             '-1- type_anc: ANC generation failed!\n', '########\n']
    result = raw.parse_lines(iter(lines))
    assert result['fatal_errors'] == ['type_anc: ANC generation failed!']
    assert result['exit_detail'] == 'type_anc: ANC generation failed!'
