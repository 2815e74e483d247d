"""``grimperium parse pw`` on aiida-quantumespresso's raw pw.x parsers: real outputs, truncated and garbage files.

Real outputs: Debian's pw.x 6.7 (tests/fixtures/pw/*, debian_xml/) and pw.x 6.3 to 7.5 from aiida-quantumespresso's
test data (aiida-qe/); sources in tests/fixtures/README.md. Each version test reads the numbers pw.x printed with
its own regex, independently of the parser, and compares them with the parser's result. Tolerances: energies 1e-6 eV
against the printed Ry (8 decimals, converted with aiida-quantumespresso's qe_tools constant), levels 1e-4 eV
(4 decimals printed), forces 1e-6 eV/Angstrom.
"""
from __future__ import annotations

import json
import pathlib
import random
import re

import pytest
from qe_tools import CONSTANTS

from aiida_grimperium.exit_codes import resolve, table_for
from aiida_grimperium.parsers.raw import pw

FIX = pathlib.Path(__file__).parent / 'fixtures' / 'pw'
RY = CONSTANTS.ry_to_ev


def bang_energies(path: pathlib.Path) -> list[float]:
    """The '!    total energy' values (Ry) pw.x printed, read independently of the parser."""
    return [float(m) for m in re.findall(r'^!\s+total energy\s+=\s+(\S+) Ry', path.read_text(), re.M)]


def test_si_scf():
    result = pw.parse_path(FIX / 'si_scf')
    assert result['exit_label'] is None
    assert result['energy'] == pytest.approx(bang_energies(FIX / 'si_scf' / 'aiida.out')[-1] * RY, abs=1e-6)
    assert result['energy'] == pytest.approx(-15.82525716 * RY, abs=1e-6)
    assert result['scf_iterations'] == 7
    assert result['highest_occupied_level'] == 6.1137 and 'band_gap' not in result  # no empty band computed
    assert result['wall_time_seconds'] == 0.12


def test_si_vc_relax():
    out = FIX / 'si_vc_relax' / 'aiida.out'
    result = pw.parse_path(out)
    assert result['exit_label'] is None
    assert result['energy'] == pytest.approx(bang_energies(out)[-1] * RY, abs=1e-6)
    # HOMO/LUMO of the final SCF (8 bands), as printed
    assert (result['highest_occupied_level'], result['lowest_unoccupied_level']) == (6.4077, 6.9980)
    assert result['band_gap'] == pytest.approx(6.9980 - 6.4077)


def test_h2o_molecule_gap():
    result = pw.parse_path(FIX / 'h2o')
    assert result['exit_label'] is None
    assert result['energy'] == pytest.approx(-34.13837043 * RY, abs=1e-6)
    assert result['band_gap'] == pytest.approx(-1.6774 - -7.4014)


@pytest.mark.parametrize(('folder', 'label', 'status'), [
    ('si_scf_not_converged', 'ERROR_ELECTRONIC_CONVERGENCE_NOT_REACHED', 410),
    ('si_walltime', 'ERROR_OUT_OF_WALLTIME', 400),
    ('o2_typo', 'ERROR_OUTPUT_STDOUT_INCOMPLETE', 312),
    ('aiida-qe/failed_computing_cholesky', 'ERROR_COMPUTING_CHOLESKY', 462),
])
def test_failures(folder, label, status):
    result = pw.parse_path(FIX / folder)
    assert result['exit_label'] == label
    assert resolve('pw', label)[0] == status


def test_error_message_read_from_crash_file():
    result = pw.parse_path(FIX / 'o2_typo')
    assert 'bad line in namelist &system: "  ecutwfx = 20"' in result['exit_detail']
    assert 'read_namelists' in result['exit_detail']


def test_missing_empty_binary(tmp_path):
    assert pw.parse_path(tmp_path / 'nope.out')['exit_label'] == 'ERROR_OUTPUT_STDOUT_MISSING'
    (tmp_path / 'empty.out').write_text('')
    assert pw.parse_path(tmp_path / 'empty.out')['exit_label'] == 'ERROR_OUTPUT_STDOUT_READ'
    (tmp_path / 'bin.out').write_bytes(b'\x00\x01\x02' * 100)
    assert pw.parse_path(tmp_path / 'bin.out')['exit_label'] == 'ERROR_OUTPUT_STDOUT_READ'
    (tmp_path / 'text.out').write_text('hello\nworld\n')
    # no 'JOB DONE': aiida-quantumespresso's parser calls any other text an interrupted run
    assert pw.parse_path(tmp_path / 'text.out')['exit_label'] in ('ERROR_OUTPUT_STDOUT_INCOMPLETE', 'ERROR_OUTPUT_STDOUT_PARSE')


@pytest.mark.parametrize('fraction', [0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 0.97])
def test_truncated_vc_relax(fraction):
    text = (FIX / 'si_vc_relax' / 'aiida.out').read_text()
    lines = text.splitlines(keepends=True)
    result = pw.parse_lines(lines[: int(len(lines) * fraction)])
    assert result['exit_label'] in ('ERROR_OUTPUT_STDOUT_INCOMPLETE', 'ERROR_OUTPUT_STDOUT_PARSE')
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
        result = pw.parse_lines(mutated[:cut].decode('ascii', errors='replace').splitlines(keepends=True))
        assert result['exit_label'] is None or result['exit_label'] in labels
        json.dumps(result)


def test_cli_parse_json():
    from click.testing import CliRunner

    from aiida_grimperium.cli import cmd_root

    result = CliRunner().invoke(cmd_root, ['parse', 'pw', str(FIX / 'si_vc_relax')])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data['code'] == 'pw' and data['exit_status'] == 0 and data['exit_message'] == ''
    assert data['energy'] == pytest.approx(-15.82468786 * RY, abs=1e-6)
    failed = json.loads(CliRunner().invoke(cmd_root, ['parse', 'pw', str(FIX / 'si_scf_not_converged')]).output)
    assert (failed['exit_status'], failed['exit_message']) == (410, 'ERROR_ELECTRONIC_CONVERGENCE_NOT_REACHED')
    typo = json.loads(CliRunner().invoke(cmd_root, ['parse', 'pw', str(FIX / 'o2_typo')]).output)
    assert typo['exit_status'] == 312 and 'bad line in namelist' in typo['exit_message']
    xml = json.loads(CliRunner().invoke(cmd_root, ['parse', 'pw', str(FIX / 'debian_xml' / 'al_smearing' / 'data-file-schema.xml')]).output)
    assert xml['exit_status'] == 0 and xml['fermi_energy'] == pytest.approx(8.3515, abs=1e-4)


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


def printed(text: str, pattern: str) -> list[str]:
    """Every match of ``pattern`` (one group) in what pw.x printed."""
    return re.findall(pattern, text, re.M)


def xml_output(path: pathlib.Path) -> str:
    """The <output> element of data-file-schema.xml as text (read by regex, not by the parser)."""
    text = path.read_text()
    return text[text.index('<output>'):text.index('</output>')]


@pytest.mark.parametrize(('folder', 'version'), VERSIONS)
def test_stdout_of_each_version(folder, version):
    """stdout: the values equal what pw.x printed (energy 1e-6 eV, levels as printed, iterations exactly)."""
    text = (FIX / folder / 'aiida.out').read_text()
    assert printed(text, r'Program PWSCF v\.(\S+) starts')[0] == version
    result = pw.parse_stdout_text(text)
    converged = printed(text, r'convergence has been achieved in\s+(\d+) iterations')
    if converged:
        assert result['exit_label'] is None
        assert result['scf_iterations'] == int(converged[-1])
        assert result['energy'] == pytest.approx(float(printed(text, rf'^!\s+total energy\s+=\s+({NUM}) Ry')[-1]) * RY, abs=1e-6)
    else:
        assert result['exit_label'] == 'ERROR_ELECTRONIC_CONVERGENCE_NOT_REACHED'
    fermi = printed(text, rf'the Fermi energy is\s+({NUM}) ev')
    if fermi:
        assert result['fermi_energy'] == float(fermi[-1])
    homo = printed(text, rf'highest occupied(?:, lowest unoccupied)? level \(ev\):\s+({NUM})')
    assert result.get('highest_occupied_level') == (float(homo[-1]) if homo else None)
    wall = printed(text, r'PWSCF\s*:.*CPU\s+(.*)\s+WALL')
    if wall:  # some upstream files had their timing section removed
        seconds = re.fullmatch(r'(?:(\d+)m)?\s*([\d.]+)s', wall[-1].strip())
        assert result['wall_time_seconds'] == pytest.approx(int(seconds.group(1) or 0) * 60 + float(seconds.group(2)))
    json.dumps(result)


@pytest.mark.parametrize(('folder', 'version'), VERSIONS)
def test_xml_of_each_version(folder, version):
    """data-file-schema.xml: the XML's own values (regex on the file, Hartree) and the stdout of the same run.

    Tolerances: the XML's own numbers 1e-9 relative (same value, one unit conversion); against stdout: energy
    1e-6 eV (8 decimals of Ry printed), Fermi energy / HOMO 1e-4 eV (4 decimals printed).
    """
    xml, out = FIX / folder / 'data-file-schema.xml', (FIX / folder / 'aiida.out').read_text()
    result = pw.parse_path(xml)
    output = xml_output(xml)
    creator = re.search(r'<creator NAME="PWSCF" VERSION="([^"]+)"', xml.read_text()).group(1)
    assert result['creator_version'] == creator == version
    etot = float(re.search(rf'<total_energy>\s*<etot>({NUM})</etot>', output).group(1))
    assert result['energy'] == pytest.approx(etot * CONSTANTS.hartree_to_ev, rel=1e-9)
    scf = re.search(r'<scf_conv>\s*(?:<convergence_achieved>(\w+)</convergence_achieved>\s*)?<n_scf_steps>(\d+)', output)
    assert result['scf_iterations'] == int(scf.group(2))
    if scf.group(1) == 'false':
        assert result['exit_label'] == 'ERROR_ELECTRONIC_CONVERGENCE_NOT_REACHED'
    else:
        assert result['exit_label'] is None
        assert result['energy'] == pytest.approx(float(printed(out, rf'^!\s+total energy\s+=\s+({NUM}) Ry')[-1]) * RY, abs=1e-6)
    for tag, key in (('highestOccupiedLevel', 'highest_occupied_level'), ('lowestUnoccupiedLevel', 'lowest_unoccupied_level')):
        found = re.search(rf'<{tag}>({NUM})</{tag}>', output)
        if found:  # derived from the band energies and occupations, equal to the level pw.x wrote
            assert result[key] == pytest.approx(float(found.group(1)) * CONSTANTS.hartree_to_ev, abs=1e-6)
    if 'highest_occupied_level' in result and 'lowest_unoccupied_level' in result:
        assert result['band_gap'] == pytest.approx(result['lowest_unoccupied_level'] - result['highest_occupied_level'])
    fermi = re.search(rf'<fermi_energy>({NUM})</fermi_energy>', output)
    if fermi:
        assert result['fermi_energy'] == pytest.approx(float(fermi.group(1)) * CONSTANTS.hartree_to_ev, rel=1e-9)
    printed_fermi = printed(out, rf'the Fermi energy is\s+({NUM}) ev') or printed(out, rf'highest occupied.*level \(ev\):\s+({NUM})')
    if printed_fermi and scf.group(1) != 'false':
        assert (result.get('fermi_energy') or result['highest_occupied_level']) == pytest.approx(float(printed_fermi[-1]), abs=1e-4)
    if 'two_fermi_energies' in output:
        up, down = map(float, re.search(r'<two_fermi_energies>(\S+) (\S+)<', output).groups())
        assert (result['fermi_energy_up'], result['fermi_energy_down']) == pytest.approx((up * CONSTANTS.hartree_to_ev, down * CONSTANTS.hartree_to_ev))
    both = pw.parse_path(FIX / folder)  # the folder: stdout and XML together, the XML's numbers win
    assert both['energy'] == result['energy'] and both['exit_label'] == result['exit_label']
    json.dumps(result)


@pytest.mark.parametrize('fraction', [0.0, 0.05, 0.3, 0.6, 0.9, 0.999])
def test_xml_truncated_and_garbage(fraction):
    data = (FIX / 'debian_xml' / 'si_scf' / 'data-file-schema.xml').read_bytes()
    result = pw.parse_xml_chunks([data[: int(len(data) * fraction)]])
    assert result['exit_label'] in ('ERROR_OUTPUT_XML_READ', 'ERROR_OUTPUT_XML_PARSE', 'ERROR_OUTPUT_XML_FORMAT',
                                    'ERROR_UNEXPECTED_PARSER_EXCEPTION')
    json.dumps(result)


def test_xml_missing_empty_and_not_xml(tmp_path):
    (tmp_path / 'data-file-schema.xml').write_text('')
    assert pw.parse_path(tmp_path / 'data-file-schema.xml')['exit_label'] == 'ERROR_OUTPUT_XML_READ'
    (tmp_path / 'data-file-schema.xml').write_text('this is not xml\n')
    assert pw.parse_path(tmp_path / 'data-file-schema.xml')['exit_label'] == 'ERROR_OUTPUT_XML_PARSE'
    # the usual place: out/<prefix>.save/
    save = tmp_path / 'run' / 'out' / 'aiida.save'
    save.mkdir(parents=True)
    (save / 'data-file-schema.xml').write_bytes((FIX / 'debian_xml' / 'al_smearing' / 'data-file-schema.xml').read_bytes())
    assert pw.parse_path(tmp_path / 'run')['exit_label'] is None
