"""The AiiDA-free pw.x parsers (stdout and data-file-schema.xml) on real pw.x outputs, truncated and garbage files.

Real outputs: Debian's pw.x 6.7 (tests/fixtures/pw/*, debian_xml/) and pw.x 6.3 to 7.5 from aiida-quantumespresso's
test data (aiida-qe/); sources in tests/fixtures/README.md. Each version test reads the numbers pw.x printed with
its own regex, independently of the parser, and compares them with the parser's result.
"""
from __future__ import annotations

import json
import pathlib
import random
import re

import pytest

from aiida_grimperium.exit_codes import resolve, table_for
from aiida_grimperium.parsers.raw import pw, pw_xml

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


# --------------------------------------------------------------------------------------------------------------------
# pw.x 6.x and 7.x, stdout and XML: one case per version (folder, the version pw.x prints in its banner)
# --------------------------------------------------------------------------------------------------------------------
VERSIONS = [
    ('aiida-qe/default_xml_190304', '6.3'), ('aiida-qe/default_xml_191206', '6.5'),
    ('aiida-qe/relax_success', '6.6'), ('aiida-qe/tot_magnetization', '6.6'),
    ('debian_xml/si_scf', '6.7MaX'), ('debian_xml/al_smearing', '6.7MaX'), ('debian_xml/si_scf_not_converged', '6.7MaX'),
    ('aiida-qe/default_xml_210716', '6.8'), ('aiida-qe/default_xml_211101', '7.0'), ('aiida-qe/default_xml_220603', '7.1'),
    ('aiida-qe/default_xml_230310', '7.2'), ('aiida-qe/default_xml_240411', '7.3.1'),
    ('aiida-qe/default_xml_241015', '7.4'), ('aiida-qe/default_xml_241104', '7.4.1'),
    ('aiida-qe/default_xml_250521', '7.5'),
]
NUM = r'[-+]?\d+\.\d+(?:[eE][-+]?\d+)?'


def flat(rows) -> list[float]:
    """Nested rows as one list, for pytest.approx."""
    return [x for row in rows for x in row]


def printed(text: str, pattern: str) -> list[str]:
    """Every match of ``pattern`` (one group) in what pw.x printed."""
    return re.findall(pattern, text, re.M)


def printed_forces(text: str) -> list[list[float]]:
    """The last 'Forces acting on atoms' block, up to the first line that is not an atom's force."""
    blocks = text.split('Forces acting on atoms')
    if len(blocks) < 2:
        return []
    rows = []
    for line in blocks[-1].splitlines()[2:]:
        match = re.match(rf'\s+atom\s+\d+\s+type\s+\d+\s+force =\s+({NUM})\s+({NUM})\s+({NUM})', line)
        if not match:
            break
        rows.append([float(x) for x in match.groups()])
    return rows


def printed_final_positions(text: str) -> list[list[float]]:
    block = text.split('Begin final coordinates')[-1].split('End final coordinates')[0]
    block = block.split('ATOMIC_POSITIONS')[-1]
    return [[float(x) for x in row] for row in re.findall(rf'^[A-Z][a-z]?\w*\s+({NUM})\s+({NUM})\s+({NUM})', block, re.M)]


def xml_output(path: pathlib.Path) -> str:
    """The <output> element of data-file-schema.xml as text (read by regex, not by the parser)."""
    text = path.read_text()
    return text[text.index('<output>'):text.index('</output>')]


@pytest.mark.parametrize(('folder', 'version'), VERSIONS)
def test_stdout_of_each_version(folder, version):
    """stdout: values equal what pw.x printed (same decimals, so exact; eV/Angstrom conversions to 1e-12)."""
    out = FIX / folder / 'aiida.out'
    text = out.read_text()
    result = pw.parse_path(out)
    assert result['code_version'] == version == printed(text, r'Program PWSCF v\.(\S+) starts')[0]
    converged = printed(text, r'convergence has been achieved in\s+(\d+) iterations')
    if converged:
        assert result['exit_label'] is None and result['scf_converged'] is True
        assert result['scf_iterations'] == int(converged[-1])
        assert result['energy_ry'] == float(printed(text, rf'^!\s+total energy\s+=\s+({NUM}) Ry')[-1])
    else:
        assert result['exit_label'] == 'ERROR_SCF_NOT_CONVERGED' and result['scf_converged'] is False
    fermi = printed(text, rf'the Fermi energy is\s+({NUM}) ev')
    updw = re.findall(rf'the spin up/dw Fermi energies are\s+({NUM})\s+({NUM}) ev', text)
    homo = printed(text, rf'highest occupied(?:, lowest unoccupied)? level \(ev\):\s+({NUM})')
    assert result['fermi_energy'] == (float(fermi[-1]) if fermi else max(map(float, updw[-1])) if updw else None)
    assert result['homo'] == (float(homo[-1]) if homo else None)
    assert (fermi or updw or homo) or not converged, 'each converged fixture prints a Fermi energy or a HOMO'
    forces = printed_forces(text)
    nat = int(printed(text, r'number of atoms/cell\s+=\s+(\d+)')[0])
    if forces:
        assert len(forces) == len(result['forces']) == nat  # not the contributions printed by verbosity='high'
        assert flat(result['forces']) == pytest.approx([x * pw.RY_BOHR_TO_EV_ANGSTROM for x in flat(forces)], abs=1e-12)
    pressure = printed(text, rf'total\s+stress\s+\(Ry/bohr\*\*3\)\s+\(kbar\)\s+P=\s*({NUM})')
    assert result['pressure_kbar'] == (float(pressure[-1]) if pressure else None)
    wall = printed(text, r'PWSCF\s*:.*CPU\s+(.*)\s+WALL')
    if wall:  # some upstream files had their timing section removed
        assert result['wall_time_seconds'] == pytest.approx(pw._wall_seconds(wall[-1]))
        seconds = re.fullmatch(r'(?:(\d+)m)?\s*([\d.]+)s', wall[-1].strip())
        assert result['wall_time_seconds'] == pytest.approx(int(seconds.group(1) or 0) * 60 + float(seconds.group(2)))
    if 'Begin final coordinates' in text:
        assert result['ionic_converged'] is True
        assert result['final_structure']['positions'] == printed_final_positions(text)


@pytest.mark.parametrize(('folder', 'version'), VERSIONS)
def test_xml_of_each_version(folder, version):
    """data-file-schema.xml: the XML's own values (regex on the file, Hartree) and the stdout of the same run.

    Tolerances against stdout: energy 1e-7 Ry (8 decimals printed), Fermi/HOMO 1e-4 eV (4 decimals), pressure
    0.01 kbar (2 decimals), forces 2e-6 eV/Angstrom (8 decimals in Ry/bohr), positions 1e-8 Angstrom.
    """
    xml, out = FIX / folder / 'data-file-schema.xml', (FIX / folder / 'aiida.out').read_text()
    result = pw_xml.parse_path(FIX / folder)
    output = xml_output(xml)
    creator = re.search(r'<creator NAME="PWSCF" VERSION="([^"]+)"', xml.read_text()).group(1)
    assert result['code_version'] == creator == version
    etot = float(re.search(rf'<total_energy>\s*<etot>({NUM})</etot>', output).group(1))
    assert result['energy_ry'] == pytest.approx(etot * 2, abs=1e-12)
    assert result['energy'] == pytest.approx(etot * 27.211386245988, rel=1e-12)
    scf = re.search(r'<scf_conv>\s*(?:<convergence_achieved>(\w+)</convergence_achieved>\s*)?<n_scf_steps>(\d+)', output)
    assert result['scf_iterations'] == int(scf.group(2))
    assert result['scf_converged'] == ({'true': True, 'false': False}.get(scf.group(1)))
    bang = printed(out, rf'^!\s+total energy\s+=\s+({NUM}) Ry')
    if result['scf_converged'] is False:
        assert result['exit_label'] == 'ERROR_SCF_NOT_CONVERGED'
    else:
        assert result['exit_label'] is None
        assert result['energy_ry'] == pytest.approx(float(bang[-1]), abs=1e-7)
    for tag, key in (('fermi_energy', 'fermi_energy'), ('highestOccupiedLevel', 'homo'), ('lowestUnoccupiedLevel', 'lumo')):
        found = re.search(rf'<{tag}>({NUM})</{tag}>', output)
        if key == 'fermi_energy' and 'two_fermi_energies' in output:
            continue  # checked below: the higher of the two
        assert result[key] == (pytest.approx(float(found.group(1)) * 27.211386245988, rel=1e-12) if found else None)
    fermi = printed(out, rf'the Fermi energy is\s+({NUM}) ev') or printed(out, rf'highest occupied.*level \(ev\):\s+({NUM})')
    if fermi and result['scf_converged']:
        assert (result['fermi_energy'] or result['homo']) == pytest.approx(float(fermi[-1]), abs=1e-4)
    text_result = pw.parse_path(FIX / folder)
    if text_result['pressure_kbar'] is not None:
        assert result['pressure_kbar'] == pytest.approx(text_result['pressure_kbar'], abs=0.01)
    if text_result['forces']:
        assert flat(result['forces']) == pytest.approx(flat(text_result['forces']), abs=2e-6)
    if text_result['final_structure']:
        assert flat(result['final_structure']['positions']) == pytest.approx(flat(text_result['final_structure']['positions']), abs=1e-8)
        assert result['final_structure']['symbols'] == re.findall(r'^(\w+)\s', '\n'.join(
            line for line in out.split('Begin final coordinates')[-1].splitlines() if re.match(rf'^\w+\s+{NUM}', line)), re.M)
    if 'two_fermi_energies' in output:
        up, down = map(float, re.search(r'<two_fermi_energies>(\S+) (\S+)<', output).groups())
        assert (result['fermi_energy_up'], result['fermi_energy_down']) == pytest.approx((up * 27.211386245988, down * 27.211386245988))
        assert result['fermi_energy'] == max(result['fermi_energy_up'], result['fermi_energy_down'])
    wall = re.search(rf'<total label="PWSCF">\s*<cpu>{NUM}</cpu>\s*<wall>({NUM})</wall>', xml.read_text())
    assert result['wall_time_seconds'] == (float(wall.group(1)) if wall else None)  # 6.3 writes no timing_info
    json.dumps(result)


def test_xml_relax_flags_and_steps():
    """vc-relax (7.3.1): opt_conv, n_opt_steps and one trajectory entry per <step>, as the XML holds them."""
    xml = (FIX / 'aiida-qe' / 'default_xml_240411' / 'data-file-schema.xml').read_text()
    result = pw_xml.parse_path(FIX / 'aiida-qe' / 'default_xml_240411')
    assert result['calculation'] == 'vc-relax' and result['ionic_converged'] is True
    assert result['number_ionic_steps'] == int(re.search(r'<n_opt_steps>(\d+)<', xml).group(1))
    steps = re.findall(rf'<step[ >].*?<etot>({NUM})</etot>', xml, re.S)
    assert [s['energy_ry'] for s in result['trajectory']] == pytest.approx([float(e) * 2 for e in steps], abs=1e-12)
    cell = re.search(rf'<output>.*?<a1>({NUM})\s+({NUM})\s+({NUM})</a1>', xml, re.S).groups()
    assert result['final_structure']['cell'][0] == pytest.approx([float(x) * pw.BOHR_TO_ANGSTROM for x in cell])


@pytest.mark.parametrize('fraction', [0.0, 0.05, 0.3, 0.6, 0.9, 0.999])
def test_xml_truncated_and_garbage(fraction, tmp_path):
    data = (FIX / 'debian_xml' / 'si_scf' / 'data-file-schema.xml').read_bytes()
    result = pw_xml.parse_chunks([data[: int(len(data) * fraction)]])
    assert result['exit_label'] in ('ERROR_OUTPUT_INCOMPLETE', 'ERROR_OUTPUT_PARSE')
    assert 'xml_error' in result
    json.dumps(result)


def test_xml_missing_empty_and_not_xml(tmp_path):
    assert pw_xml.parse_path(tmp_path)['exit_label'] == 'ERROR_OUTPUT_MISSING'
    (tmp_path / 'data-file-schema.xml').write_text('')
    assert pw_xml.parse_path(tmp_path)['exit_label'] == 'ERROR_OUTPUT_READ'
    (tmp_path / 'data-file-schema.xml').write_text('this is not xml\n')
    assert pw_xml.parse_path(tmp_path)['exit_label'] == 'ERROR_OUTPUT_PARSE'
    # the usual place: out/<prefix>.save/
    save = tmp_path / 'run' / 'out' / 'aiida.save'
    save.mkdir(parents=True)
    (save / 'data-file-schema.xml').write_bytes((FIX / 'debian_xml' / 'al_smearing' / 'data-file-schema.xml').read_bytes())
    assert pw_xml.parse_path(tmp_path / 'run')['exit_label'] is None
