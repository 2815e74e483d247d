"""VASP raw parser on the real outputs in tests/fixtures/vasp (VASP 5.4.4 and 6.2.0, aiida-vasp test data).

Every expected number is read from the fixture files by the test itself (regex on OUTCAR, ElementTree on
vasprun.xml, pymatgen's Vasprun) and compared to the parser's result to a stated tolerance.
"""
from __future__ import annotations

import json
import pathlib
import random
import re
import shutil
import tracemalloc
import xml.etree.ElementTree as ET

import pytest

from aiida_grimperium.cli.cmd_parse import parse_to_dict
from aiida_grimperium.parsers.raw import vasp as raw
from aiida_grimperium.parsers.raw.vasp_xml import parse_vasprun

FIXTURES = pathlib.Path(__file__).parent / 'fixtures' / 'vasp'
RUNS = {
    'converged': FIXTURES / 'converged',
    'elec-unconverged': FIXTURES / 'elec-unconverged',
    'ionic-unconverged': FIXTURES / 'ionic-unconverged',
    'unfinished': FIXTURES / 'unfinished',
    'si-simple': FIXTURES / 'si-simple' / 'outputs',
}
EXPECTED_EXIT = {
    'converged': (0, ''),
    'si-simple': (0, ''),
    'elec-unconverged': (410, 'ERROR_ELECTRONIC_NOT_CONVERGED'),
    'ionic-unconverged': (500, 'ERROR_IONIC_NOT_CONVERGED'),
    'unfinished': (312, 'ERROR_OUTPUT_INCOMPLETE'),
}
#: OUTCAR prints energies with 8 decimals, vasprun.xml too: the same numbers must come out.
ENERGY_TOL = 1e-8
FINISHED = [name for name in RUNS if name != 'unfinished']


def outcar_final_energies(outcar: pathlib.Path) -> tuple[float, float, float]:
    """(free, without entropy, sigma->0) of the last 'FREE ENERGIE OF THE ION-ELECTRON SYSTEM' block."""
    text = outcar.read_text()
    free = re.findall(r'free  energy   TOTEN  =\s+(\S+) eV', text)[-1]
    wo, s0 = re.findall(r'energy  without entropy=\s+(\S+)\s+energy\(sigma->0\) =\s+(\S+)', text)[-1]
    return float(free), float(wo), float(s0)


def xml_last_scstep(vasprun: pathlib.Path) -> dict:
    calculation = ET.parse(vasprun).getroot().findall('calculation')[-1]
    energy = calculation.findall('scstep')[-1].find('energy')
    return {i.get('name'): float(i.text) for i in energy.findall('i')}


@pytest.mark.parametrize('name', FINISHED)
def test_energies_match_outcar_and_xml(name):
    result = raw.parse_path(RUNS[name])
    free, wo, s0 = outcar_final_energies(RUNS[name] / 'OUTCAR')
    assert result['energy_free'] == pytest.approx(free, abs=ENERGY_TOL)
    assert result['energy_no_entropy'] == pytest.approx(wo, abs=ENERGY_TOL)
    assert result['energy_extrapolated'] == pytest.approx(s0, abs=ENERGY_TOL)
    assert result['energy'] == result['energy_extrapolated']
    assert result['energy_source'] == 'vasprun.xml'
    scstep = xml_last_scstep(RUNS[name] / 'vasprun.xml')
    assert result['energy_extrapolated'] == pytest.approx(scstep['e_0_energy'], abs=ENERGY_TOL)


@pytest.mark.parametrize('name', FINISHED)
def test_energies_match_pymatgen(name):
    from pymatgen.io.vasp import Vasprun

    run = Vasprun(RUNS[name] / 'vasprun.xml', parse_potcar_file=False, parse_dos=False)
    result = raw.parse_path(RUNS[name] / 'vasprun.xml')
    assert result['energy_extrapolated'] == pytest.approx(run.final_energy, abs=1e-7)  # pymatgen's bug-fixed value
    assert result['energy_free'] == pytest.approx(run.ionic_steps[-1]['e_fr_energy'], abs=1e-7)
    assert result['num_ionic_steps'] == len(run.ionic_steps)
    assert result['electronic_converged'] == run.converged_electronic


def test_vasp5_final_block_bug_is_avoided():
    """VASP 5.4.4 writes a wrong e_0_energy in the block that closes the ionic step: it must not be used."""
    vasprun = RUNS['converged'] / 'vasprun.xml'
    closing = ET.parse(vasprun).getroot().findall('calculation')[-1].find('energy')
    wrong = float(closing.find("i[@name='e_0_energy']").text)
    result = raw.parse_path(vasprun)
    assert abs(wrong - result['energy_extrapolated']) > 1.0  # the closing block says -0.00106 eV
    assert result['energy_extrapolated'] == pytest.approx(outcar_final_energies(RUNS['converged'] / 'OUTCAR')[2], abs=1e-8)


@pytest.mark.parametrize('name', list(RUNS))
def test_exit_codes_of_fixtures(name):
    document = parse_to_dict('vasp', RUNS[name])
    assert (document['exit_status'], document['exit_message']) == EXPECTED_EXIT[name]
    json.dumps(document)  # the CLI prints it as JSON


def test_convergence_flags():
    elec = raw.parse_path(RUNS['elec-unconverged'])
    assert elec['electronic_converged'] is False and elec['num_electronic_steps'] == elec['nelm'] == 8
    ionic = raw.parse_path(RUNS['ionic-unconverged'])
    assert ionic['electronic_converged'] is True
    assert ionic['ionic_converged'] is False and ionic['is_relaxation'] and ionic['num_ionic_steps'] == ionic['nsw'] == 5
    converged = raw.parse_path(RUNS['converged'])
    assert converged['electronic_converged'] is True and converged['ionic_converged'] is None  # NSW=-1: one step


@pytest.mark.parametrize('name', FINISHED)
def test_band_gap_forces_stress_structure(name):
    """Band edges recomputed here from <eigenvalues> (occupation 0.5 threshold), forces/stress/structure by ET."""
    root = ET.parse(RUNS[name] / 'vasprun.xml').getroot()
    calculation = root.findall('calculation')[-1]
    rows = [[float(x) for x in r.text.split()] for r in calculation.find('eigenvalues').iter('r')]
    vbm = max(e for e, occ in rows if occ >= 0.5)
    cbm = min(e for e, occ in rows if occ < 0.5)
    result = raw.parse_path(RUNS[name])
    assert result['band_gap'] == pytest.approx(max(0.0, cbm - vbm), abs=1e-6)
    forces = [[float(x) for x in v.text.split()] for v in calculation.find("varray[@name='forces']")]
    stress = [[float(x) for x in v.text.split()] for v in calculation.find("varray[@name='stress']")]
    assert result['forces'] == forces and result['stress'] == stress
    final = root.find("structure[@name='finalpos']")
    positions = [[float(x) for x in v.text.split()] for v in final.find("varray[@name='positions']")]
    assert result['structure']['frac_positions'] == positions
    assert result['structure']['symbols'] == ['Si', 'Si']


def test_band_gap_and_fermi_match_pymatgen_on_si():
    """Si (tetrahedron method, ISMEAR=-5): no partial occupations, so pymatgen's edges are the same."""
    from pymatgen.io.vasp import Vasprun

    run = Vasprun(RUNS['si-simple'] / 'vasprun.xml', parse_potcar_file=False)
    gap, cbm, vbm, _ = run.eigenvalue_band_properties
    result = raw.parse_path(RUNS['si-simple'])
    assert result['band_gap'] == pytest.approx(gap, abs=1e-6)
    assert (result['vbm'], result['cbm']) == pytest.approx((vbm, cbm), abs=1e-6)
    assert result['fermi_energy'] == pytest.approx(run.efermi, abs=1e-8)


@pytest.mark.parametrize('name', FINISHED)
def test_eigenvalue_batches_and_feeding_do_not_change_the_result(name, monkeypatch):
    """The eigenvalue rows are read in batches of k-points and the file may come in any pieces (lines, bytes):
    a batch of one k-point, single-byte chunks and lines must all give the result of a plain parse."""
    from aiida_grimperium.parsers.raw import vasp_xml

    path = RUNS[name] / 'vasprun.xml'
    expected = parse_vasprun(path)
    data = path.read_bytes()
    assert vasp_xml.parse_chunks([data[i:i + 1] for i in range(len(data))]) == expected
    assert vasp_xml.parse_chunks(path.read_text(encoding='latin-1').splitlines(keepends=True)) == expected
    monkeypatch.setattr(vasp_xml, 'ROW_BATCH', 1)
    assert parse_vasprun(path) == expected


def test_fermi_energy_from_outcar_when_xml_has_no_dos():
    efermi = float(re.findall(r'E-fermi :\s+(\S+)', (RUNS['converged'] / 'OUTCAR').read_text())[-1])
    assert raw.parse_path(RUNS['converged'])['fermi_energy'] == pytest.approx(efermi, abs=1e-8)


@pytest.mark.parametrize('name', ['converged', 'ionic-unconverged'])
def test_outcar_and_stdout_alone(name):
    """Each fallback file gives the same energies (stdout prints 8 significant digits)."""
    free, wo, s0 = outcar_final_energies(RUNS[name] / 'OUTCAR')
    outcar = raw.parse_path(RUNS[name] / 'OUTCAR')
    assert (outcar['energy_free'], outcar['energy_no_entropy'], outcar['energy_extrapolated']) == (free, wo, s0)
    assert outcar['energy_source'] == 'OUTCAR'
    line = [l for l in (RUNS[name] / 'vasp_output').read_text().splitlines() if ' F= ' in l][-1]
    f_stdout, e0_stdout = (float(x) for x in re.findall(r'F=\s*(\S+)\s+E0=\s*(\S+)', line)[0])
    stdout = raw.parse_path(RUNS[name] / 'vasp_output')
    assert (stdout['energy_free'], stdout['energy_extrapolated']) == (f_stdout, e0_stdout)
    assert stdout['energy_free'] == pytest.approx(free, abs=1e-6)


def test_unfinished_run():
    result = raw.parse_path(RUNS['unfinished'])
    assert result['exit_label'] == 'ERROR_OUTPUT_INCOMPLETE'
    assert result['energy'] is None and result['vasprun_complete'] is False and result['finished'] is False


def _cut(source: pathlib.Path, target: pathlib.Path, fraction: float) -> None:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])


@pytest.mark.parametrize('fraction', [0.0005, 0.05, 0.2, 0.3, 0.38, 0.5, 0.8, 0.999])
def test_truncated_vasprun_alone_gives_exit_code(tmp_path, fraction):
    _cut(RUNS['converged'] / 'vasprun.xml', tmp_path / 'vasprun.xml', fraction)
    document = parse_to_dict('vasp', tmp_path / 'vasprun.xml')
    assert document['exit_message'] == 'ERROR_OUTPUT_INCOMPLETE'
    assert document['vasprun_complete'] is False


@pytest.mark.parametrize('fraction', [0.05, 0.3, 0.6])
def test_truncated_vasprun_falls_back_to_outcar(tmp_path, fraction):
    """A cut vasprun.xml beside a complete OUTCAR: the run ended, the energies come from what is there."""
    _cut(RUNS['converged'] / 'vasprun.xml', tmp_path / 'vasprun.xml', fraction)
    shutil.copy(RUNS['converged'] / 'OUTCAR', tmp_path)
    shutil.copy(RUNS['converged'] / 'vasp_output', tmp_path)
    result = raw.parse_path(tmp_path)
    free, wo, s0 = outcar_final_energies(RUNS['converged'] / 'OUTCAR')
    assert result['exit_label'] is None
    assert (result['energy_free'], result['energy_no_entropy'], result['energy_extrapolated']) == (free, wo, s0)
    assert any('not complete' in w for w in result['warnings'])


@pytest.mark.parametrize('name', ['OUTCAR', 'vasp_output', 'vasprun.xml'])
@pytest.mark.parametrize('fraction', [0.1, 0.5, 0.9])
def test_truncated_text_files(tmp_path, name, fraction):
    _cut(RUNS['ionic-unconverged'] / name, tmp_path / name, fraction)
    document = parse_to_dict('vasp', tmp_path / name)
    assert document['exit_status'] != 0 or name == 'vasp_output'  # stdout alone cannot tell a cut run
    assert 'error' not in document


@pytest.mark.parametrize('name', ['OUTCAR', 'vasp_output', 'vasprun.xml'])
def test_empty_and_missing(tmp_path, name):
    (tmp_path / name).write_bytes(b'')
    assert parse_to_dict('vasp', tmp_path / name)['exit_message'] == 'ERROR_OUTPUT_READ'
    assert parse_to_dict('vasp', tmp_path / 'nothing-here')['exit_message'] == 'ERROR_OUTPUT_MISSING'
    assert parse_to_dict('vasp', tmp_path / name)['exit_status'] == 310
    empty_dir = tmp_path / 'empty'
    empty_dir.mkdir()
    assert parse_to_dict('vasp', empty_dir)['exit_message'] == 'ERROR_OUTPUT_MISSING'


@pytest.mark.parametrize('seed', range(12))
def test_byte_mutated_files_never_raise(tmp_path, seed):
    rng = random.Random(seed)
    for name in ('vasprun.xml', 'OUTCAR', 'vasp_output'):
        data = bytearray((RUNS['ionic-unconverged'] / name).read_bytes())
        for _ in range(rng.choice([1, 5, 50])):
            data[rng.randrange(len(data))] = rng.randrange(256)
        (tmp_path / name).write_bytes(bytes(data))
    for target in (tmp_path, tmp_path / 'vasprun.xml', tmp_path / 'OUTCAR', tmp_path / 'vasp_output'):
        document = parse_to_dict('vasp', target)
        assert 'error' not in document, document.get('error')  # 'error' is set only when the raw parser raised
        assert isinstance(document['exit_status'], int)
        json.dumps(document)


def test_corrupt_xml_is_a_parse_error(tmp_path):
    data = (RUNS['converged'] / 'vasprun.xml').read_text(encoding='latin-1').replace('<calculation>', '<calculation><<', 1)
    (tmp_path / 'vasprun.xml').write_text(data, encoding='latin-1')
    assert parse_to_dict('vasp', tmp_path / 'vasprun.xml')['exit_message'] == 'ERROR_OUTPUT_PARSE'


def test_parse_lines_sniffs_the_format():
    from aiida_grimperium.parsers.raw import iter_lines

    for name in ('vasprun.xml', 'OUTCAR', 'vasp_output'):
        result = raw.parse_lines(iter_lines(RUNS['ionic-unconverged'] / name))
        assert result['exit_label'] == 'ERROR_IONIC_NOT_CONVERGED' or name == 'vasp_output'
        assert result['energy_free'] == pytest.approx(-10.5373184, abs=1e-6)
    assert raw.parse_lines(iter(['', '  \n']))['exit_label'] == 'ERROR_OUTPUT_READ'


def test_streaming_memory_is_bounded(tmp_path):
    """A 200-times longer vasprun.xml (the fixture's five ionic steps repeated) must not cost more memory.

    The big file is a stress input built in tmp_path from the real file's blocks, not a fixture of results.
    """
    text = (RUNS['ionic-unconverged'] / 'vasprun.xml').read_text(encoding='latin-1')
    start, end = text.index('<calculation>'), text.rindex('</calculation>') + len('</calculation>')
    big = tmp_path / 'vasprun.xml'
    with open(big, 'w', encoding='latin-1') as handle:
        handle.write(text[:start])
        for _ in range(200):
            handle.write(text[start:end])
        handle.write(text[end:])
    assert big.stat().st_size > 12e6
    tracemalloc.start()
    result = parse_vasprun(big)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert result['xml_complete'] and result['num_ionic_steps'] == 1000
    assert peak < 3e6, f'peak {peak / 1e6:.1f} MB for a {big.stat().st_size / 1e6:.0f} MB file'


def test_cli_prints_contract_keys(tmp_path):
    from click.testing import CliRunner

    from aiida_grimperium.cli import cmd_root

    output = CliRunner().invoke(cmd_root, ['parse', 'vasp', str(RUNS['elec-unconverged'] / 'vasprun.xml')]).output
    document = json.loads(output)
    for key in ('code', 'exit_status', 'exit_message', 'energy_extrapolated', 'energy_free', 'energy_no_entropy',
                'band_gap', 'electronic_converged', 'ionic_converged'):
        assert key in document
    assert document['exit_status'] == 410
