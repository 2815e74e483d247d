"""VASP raw parser on real outputs of VASP 5.4.x and 6.x (tests/fixtures/vasp/versions, see
tests/fixtures/README-vasp-crystal.md for where each file comes from).

Every expected number is read from the file by the test itself: the OUTCAR's own lines by regex, vasprun.xml
by pymatgen's ``Vasprun`` and by ElementTree, the standard output's error boxes as plain text. Tolerances:
energies 1e-8 eV (VASP prints 8 decimals in OUTCAR and vasprun.xml), band gaps 1e-6 eV against pymatgen (the
same eigenvalues, printed with 4 decimals), forces and stress 1e-8, lattice and fractional positions 1e-8.
"""
from __future__ import annotations

import gzip
import pathlib
import re
import shutil
import xml.etree.ElementTree as ET

import pytest

from aiida_grimperium.exit_codes import resolve
from aiida_grimperium.parsers.raw import vasp as raw

VERSIONS = pathlib.Path(__file__).parent / 'fixtures' / 'vasp' / 'versions'
ERRORS = VERSIONS / 'stdout_errors'
E_TOL = 1e-8


def run_folder(name: str, tmp_path: pathlib.Path) -> pathlib.Path:
    """The fixture folder, with ``*.gz`` files (kept compressed as published) unpacked into ``tmp_path``."""
    source = VERSIONS / name
    if not any(p.suffix == '.gz' for p in source.iterdir()):
        return source
    for path in source.iterdir():
        target = tmp_path / path.name.removesuffix('.gz')
        with (gzip.open(path) if path.suffix == '.gz' else open(path, 'rb')) as a, open(target, 'wb') as b:
            shutil.copyfileobj(a, b)
    return tmp_path


def outcar_last(outcar: pathlib.Path) -> dict:
    text = outcar.read_text(errors='replace')
    free = re.findall(r'free {2}energy {3}TOTEN {2}=\s+(\S+) eV', text)[-1]
    wo, s0 = re.findall(r'energy {2}without entropy=\s+(\S+)\s+energy\(sigma->0\) =\s+(\S+)', text)[-1]
    version = re.search(r'^\s*vasp\.(\S+)', text, re.M).group(1)
    fermi = re.findall(r'E-fermi :\s+(\S+)', text)[-1]
    return {'free': float(free), 'wo': float(wo), 's0': float(s0), 'version': version, 'fermi': float(fermi),
            'ended': 'General timing and accounting informations for this job' in text}


def xml_efermi(vasprun: pathlib.Path) -> float:
    return float(ET.parse(vasprun).getroot().findall('calculation')[-1].find('dos/i[@name="efermi"]').text)


# -- complete runs: vasprun.xml (+ OUTCAR) of 6.4.2, 6.2.1 and 6.2.0 --------------------------------------------
@pytest.mark.parametrize('name, version', [('vasp642_relax', '6.4.2'), ('vasp620_relax', '6.2.0'),
                                           ('vasp621_vasprun', '6.2.1')])
def test_complete_runs_match_pymatgen(name, version, tmp_path):
    from pymatgen.io.vasp import Vasprun

    folder = run_folder(name, tmp_path)
    run = Vasprun(folder / 'vasprun.xml', parse_potcar_file=False, parse_dos=False)
    result = raw.parse_path(folder)
    assert run.vasp_version.startswith(version) and result['vasp_version'].startswith(version)
    assert result['energy_extrapolated'] == pytest.approx(run.final_energy, abs=E_TOL)
    assert result['energy_free'] == pytest.approx(run.ionic_steps[-1]['e_fr_energy'], abs=E_TOL)
    assert result['num_ionic_steps'] == len(run.ionic_steps)
    assert result['num_electronic_steps'] == len(run.ionic_steps[-1]['electronic_steps'])
    assert result['electronic_converged'] == run.converged_electronic
    if result['is_relaxation']:
        assert result['ionic_converged'] == run.converged_ionic
    gap, cbm, vbm, _ = run.eigenvalue_band_properties
    assert result['band_gap'] == pytest.approx(gap, abs=1e-6)
    if gap > 0:
        assert (result['vbm'], result['cbm']) == pytest.approx((vbm, cbm), abs=1e-6)
    assert result['fermi_energy'] == pytest.approx(xml_efermi(folder / 'vasprun.xml'), abs=E_TOL)
    assert result['forces'] == pytest.approx(run.ionic_steps[-1]['forces'], abs=E_TOL)
    assert np_list(result['stress']) == pytest.approx(np_list(run.ionic_steps[-1]['stress']), abs=E_TOL)
    final = run.final_structure
    assert result['structure']['symbols'] == [site.specie.symbol for site in final]
    assert sum(result['structure']['cell'], []) == pytest.approx(final.lattice.matrix.flatten().tolist(), abs=E_TOL)
    assert sum(result['structure']['frac_positions'], []) == pytest.approx(final.frac_coords.flatten().tolist(), abs=E_TOL)
    assert result['exit_label'] is None and 'exit_detail' not in result


def np_list(rows):
    return [float(x) for row in rows for x in row]


@pytest.mark.parametrize('name', ['vasp642_relax', 'vasp620_relax'])
def test_outcar_lines_of_6x(name, tmp_path):
    folder = run_folder(name, tmp_path)
    printed = outcar_last(folder / 'OUTCAR')
    for target in (folder, folder / 'OUTCAR'):
        result = raw.parse_path(target)
        assert (result['energy_free'], result['energy_no_entropy'], result['energy_extrapolated']) == \
            pytest.approx((printed['free'], printed['wo'], printed['s0']), abs=E_TOL)
        assert result['vasp_version'] == printed['version'] and result['finished'] is printed['ended'] is True
    assert raw.parse_path(folder / 'OUTCAR')['fermi_energy'] == pytest.approx(printed['fermi'], abs=E_TOL)
    assert raw.parse_path(folder / 'OUTCAR')['exit_label'] is None


def test_620_nelm_breach_in_an_early_ionic_step_is_not_a_failure():
    """VASP 6.2.0 relaxation: ionic step 1 hit NELM (VASP says so), the last step converged (as pymatgen says)."""
    folder = VERSIONS / 'vasp620_relax'
    outcar = (folder / 'OUTCAR').read_text()
    breach = outcar.index('EDIFF was not reached')
    assert re.search(r'Iteration\s+2\(\s*1\)', outcar[breach:])          # the breach is not in the last step
    result = raw.parse_path(folder)
    assert result['electronic_converged'] is True and result['exit_label'] is None
    stdout = (folder / 'vasp_output').read_text()
    assert 'BRIONS problems: POTIM should be increased' in stdout
    notes = [m for m in result['vasp_messages'] if 'BRIONS problems' in m['text'] or 'NELM' in m['text']]
    assert len(notes) == 2 and not any(m['fatal'] for m in notes)


def test_641_cut_outcar_with_advice_box():
    """VASP 6.4.1 OUTCAR cut during the run: incomplete, and VASP's NBANDS notice is kept as a non-fatal message."""
    outcar = VERSIONS / 'vasp641_outcar_cut' / 'OUTCAR'
    text = outcar.read_text()
    result = raw.parse_path(outcar)
    assert result['vasp_version'] == re.search(r'^\s*vasp\.(\S+)', text, re.M).group(1) == '6.4.1'
    assert result['exit_label'] == 'ERROR_OUTPUT_INCOMPLETE' and result['finished'] is False
    found = re.search(r'I found NBANDS = (\d+)\. Now, NBANDS = (\d+)\.', text).group(0)
    assert any(found in m['text'] and not m['fatal'] for m in result['vasp_messages'])


# -- VASP's own failure messages (standard output of real failed runs) -----------------------------------------
#: file -> (VASP version in its banner, exit label, a phrase of VASP's message). The label is the parser's
#: classification (the design under test); the version and the words are checked against the file itself.
FAILURES = {
    'vasp.pdsyevx': ('6.4.1', 'ERROR_VASP_ELECTRONIC_SOLVER', 'ERROR in subspace rotation PDSYEVX'),
    'vasp.pricelv': ('6.4.1', 'ERROR_VASP_SYMMETRY', 'PRICELV: current lattice and primitive lattice'),
    'vasp.eddiag': ('6.3.2', 'ERROR_VASP_ELECTRONIC_SOLVER', 'ERROR in EDDIAG'),
    'vasp.edddav2': ('6.3.0', 'ERROR_VASP_ELECTRONIC_SOLVER', 'Error EDDDAV: Call to ZHEGV failed'),
    'vasp.hnform': ('6.2.1', 'ERROR_VASP_SYMMETRY', 'HNFORM: k-point generating vectors'),
    'vasp6.bravais': ('6.2.1', 'ERROR_VASP_SYMMETRY', 'Inconsistent Bravais lattice types'),
    'vasp.nbands_not_sufficient': ('6.2.1', 'ERROR_VASP_TOO_FEW_BANDS', 'The number of bands is not sufficient'),
    'vasp.fd_ncore': ('6.2.1', 'ERROR_VASP_PARALLELISATION', 'only possible if NPAR=number of nodes'),
    'vasp.posmap': ('5.4.4', 'ERROR_VASP_SYMMETRY', 'POSMAP internal error: symmetry equivalent atom not found'),
    'vasp.point_group': ('5.4.4', 'ERROR_VASP_SYMMETRY', 'Error: point group operation missing'),
    'vasp.rhosyg': ('5.4.4', 'ERROR_VASP_SYMMETRY', 'RHOSYG internal error: stars are not distinct'),
    'vasp.gradient_not_orthogonal': ('5.4.1', 'ERROR_VASP_ELECTRONIC_SOLVER', 'the gradient is not orthogonal'),
}


def flat(text: str) -> str:
    """The file's text with box frames removed and whitespace collapsed, to find VASP's words in it."""
    return ' '.join(re.sub(r'^\s*\||\|\s*$', ' ', text, flags=re.M).split())


@pytest.mark.parametrize('name', sorted(FAILURES))
def test_failure_messages_in_vasps_words(name):
    version, label, phrase = FAILURES[name]
    text = (ERRORS / name).read_text(errors='replace')
    assert re.search(r'^\s*vasp\.(\S+)', text, re.M).group(1).startswith(version)
    assert phrase in flat(text)
    result = raw.parse_path(ERRORS / name)
    assert result['vasp_version'].startswith(version)
    assert result['exit_label'] == label and resolve('vasp', label)[1] == label
    assert phrase in result['exit_detail'] and result['exit_detail'] in flat(text)
    assert 'ASCII' not in result['exit_detail'] and 'EEEEEEE' not in result['exit_detail']  # no box art


def test_exit_message_carries_vasps_words():
    from aiida.engine import ExitCode

    from aiida_grimperium.parsers.base import with_detail

    result = raw.parse_path(ERRORS / 'vasp.hnform')
    status, label = resolve('vasp', result['exit_label'])
    spec = raw.EXIT_CODES[label]
    message = with_detail(ExitCode(status, spec.message), result['exit_detail']).message
    assert status == 420 and message.startswith(spec.message) and 'HNFORM: k-point generating vectors' in message


@pytest.mark.parametrize('name', ['vasp.too_few_bands_round_error', 'vasp.brions', 'vasp.amin'])
def test_warning_boxes_are_not_failures(name):
    """WARNING/ADVICE boxes and BRIONS notes of real 5.4.4 / 6.2.1 / 6.3.2 runs never make a VASP error code."""
    text = (ERRORS / name).read_text()
    assert 'I REFUSE' not in text and 'EEEEEEE' not in text
    result = raw.parse_path(ERRORS / name)
    assert result['exit_label'] not in raw.EXIT_CODES and 'exit_detail' not in result
    assert result['vasp_messages'] and not any(m['fatal'] for m in result['vasp_messages'])
    if name == 'vasp.too_few_bands_round_error':   # the relaxation ended: 'reached required accuracy'
        last = [l for l in text.splitlines() if ' F= ' in l][-1]
        assert result['energy_free'] == pytest.approx(float(re.search(r'F=\s*(\S+)', last).group(1)), abs=E_TOL)
        assert result['exit_label'] is None


def test_error_after_the_end_does_not_fail_a_finished_run(tmp_path):
    """A fatal-looking line in a run that ended (VASP carried on) is a warning, not the verdict."""
    folder = run_folder('vasp620_relax', tmp_path / 'run')
    for name in ('OUTCAR', 'vasprun.xml'):
        shutil.copy(folder / name, tmp_path / name)
    ibzkpt = [l for l in (ERRORS / 'vasp.point_group').read_text().splitlines(keepends=True)][39:41]
    assert 'VERY BAD NEWS' in ibzkpt[0]
    (tmp_path / 'vasp_output').write_text((folder / 'vasp_output').read_text() + ''.join(ibzkpt))
    result = raw.parse_path(tmp_path)
    assert result['exit_label'] is None and any('run ended' in w for w in result['warnings'])
