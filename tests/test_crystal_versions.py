"""CRYSTAL raw parser on real outputs of CRYSTAL14, CRYSTAL17 and CRYSTAL22 (tests/fixtures/crystal/versions;
where each file comes from: tests/fixtures/README-vasp-crystal.md). No public CRYSTAL23 output with a licence
that allows redistribution was found, so CRYSTAL23 is not covered by a real file here.

Every expected value is read from the file by the test itself (regex on the lines CRYSTAL printed), then
compared to the parser. Tolerances: energies 1e-9 Hartree (printed with 14 significant digits), band gaps
1e-4 eV (printed with 4 decimals), eV = Hartree x HARTREE_TO_EV to 1e-12 relative.
"""
from __future__ import annotations

import pathlib
import re

import pytest

from aiida_grimperium.chemistry import HARTREE_TO_EV
from aiida_grimperium.exit_codes import resolve
from aiida_grimperium.parsers.raw import crystal as raw

VERSIONS = pathlib.Path(__file__).parent / 'fixtures' / 'crystal' / 'versions'
FLOAT = r'[-+]?\d+\.\d+(?:E[-+]\d+)?'


def printed(path: pathlib.Path) -> dict:
    """What CRYSTAL printed, read with plain regexes (independent of the parser)."""
    text = path.read_text(errors='replace')
    banner = re.search(r'^\s*\*\s+(CRYSTAL\d\d)\s+\*\s*$', text, re.M)
    detail = re.search(r'^\s*\*\s+(public : [^*]*?)\s*\*\s*$', text, re.M)
    totals = re.findall(rf'TOTAL ENERGY\([^)]*\)\(AU\)\(\s*\d+\)\s*({FLOAT})', text)
    opt_end = re.findall(rf'OPT END - (\w+)\s*\*\s*E\(AU\):\s*({FLOAT})', text)
    gaps = re.findall(rf'^\s*(?:(?:IN)?DIRECT ENERGY )?BAND GAP:\s*({FLOAT})', text, re.M)
    states = re.findall(r'(INSULATING STATE|CONDUCTING STATE)', text)
    return {
        'text': text, 'program': banner.group(1), 'detail': detail.group(1),
        'energy': float(totals[-1]) if totals else None,
        'opt_end': (opt_end[-1][0], float(opt_end[-1][1])) if opt_end else None,
        'gap': float(gaps[-1]) if gaps else None, 'last_state': states[-1] if states else None,
        'terminated': re.search(r'^\s*E{10} TERMINATION', text, re.M) is not None,
        'errors': [' '.join(l.split()) for l in text.splitlines() if re.match(r'^\s*ERROR \*{4}', l)],
    }


#: file -> (version, exit label): the label is the parser's verdict under test; everything else is read above.
RUNS = {
    'crystal22_mgo_opt.out': ('CRYSTAL22', None),
    'crystal22_graphene_slab.out': ('CRYSTAL22', None),
    'crystal17_test39_dft.out': ('CRYSTAL17', None),
    'crystal14_mgo_hf_scf.out': ('CRYSTAL14', None),
    'crystal17_scf_maxcyc.out': ('CRYSTAL17', 'ERROR_SCF_NOT_CONVERGED'),
    'crystal17_scf_failed_optgeom.out': ('CRYSTAL17', 'ERROR_SCF_FAILED'),
    'crystal17_geom_failed_cut.out': ('CRYSTAL17', 'ERROR_GEOMETRY_NOT_CONVERGED'),
    'crystal17_error_inp12b.out': ('CRYSTAL17', 'ERROR_CRYSTAL_ERROR'),
}


@pytest.mark.parametrize('name', sorted(RUNS))
def test_version_energy_gap_and_verdict(name):
    version, label = RUNS[name]
    expected = printed(VERSIONS / name)
    result = raw.parse_path(VERSIONS / name)
    assert result['program'] == expected['program'] == version
    assert result['program_version'] == version[-2:] and result['program_version_detail'] == expected['detail']
    if expected['energy'] is not None:
        assert result['energy_hartree'] == pytest.approx(expected['energy'], abs=1e-9)
        assert result['energy'] == pytest.approx(expected['energy'] * HARTREE_TO_EV, rel=1e-12)
    else:
        assert result['energy_hartree'] is None
    if expected['last_state'] == 'CONDUCTING STATE':
        assert result['conducting'] is True and result['band_gap'] == 0.0
    elif 'UNRESTRICTED OPEN SHELL' in expected['text'] and expected['gap'] is not None:
        # spin channels: the last ALPHA then BETA gaps; band_gap is the smaller one
        alpha, beta = (float(g) for g in re.findall(
            rf'(?:ALPHA|BETA) +ELECTRONS\s*\n\s*INSULATING STATE(?:\n.*?){{0,3}}BAND GAP:\s*({FLOAT})',
            expected['text'])[-2:])
        assert (result['band_gap_alpha'], result['band_gap_beta']) == pytest.approx((alpha, beta), abs=1e-4)
        assert result['band_gap'] == pytest.approx(min(alpha, beta), abs=1e-4)
    elif expected['gap'] is not None:
        assert result['band_gap'] == pytest.approx(expected['gap'], abs=1e-4)
    else:
        assert result['band_gap'] is None   # e.g. CRYSTAL14 HF: 'INSULATING STATE' without a gap line
    if expected['opt_end']:
        assert result['geometry_optimization'] is True
        assert result['geometry_converged'] is (expected['opt_end'][0] == 'CONVERGED')
    assert result['terminated_normally'] is expected['terminated']
    assert result['exit_label'] == label
    assert (label is None) == ('exit_detail' not in result)
    if label:
        assert resolve('crystal', label)[1] == label


def test_opt_end_energy_of_crystal22():
    expected = printed(VERSIONS / 'crystal22_mgo_opt.out')
    result = raw.parse_path(VERSIONS / 'crystal22_mgo_opt.out')
    # the last TOTAL ENERGY of the optimisation is the energy of OPT END (printed with 13 digits)
    assert expected['opt_end'][0] == 'CONVERGED'
    assert result['energy_hartree'] == pytest.approx(expected['opt_end'][1], abs=1e-9)
    assert result['optimization_steps'] == int(re.search(r'OPT END.*POINTS\s+(\d+)', expected['text']).group(1))
    assert result['structure']['symbols'] == ['Mg', 'O']


def test_graphene_slab_is_two_dimensional():
    text = (VERSIONS / 'crystal22_graphene_slab.out').read_text()
    dim = int(re.findall(r'DIMENSIONALITY OF THE SYSTEM\s+(\d)', text)[-1])
    result = raw.parse_path(VERSIONS / 'crystal22_graphene_slab.out')
    assert dim == 2 and result['dimensionality'] == 2 and result['structure']['pbc'] == [True, True, False]


@pytest.mark.parametrize('name, words', [
    ('crystal17_scf_maxcyc.out', r'SCF ENDED - TOO MANY CYCLES.*'),
    ('crystal17_scf_failed_optgeom.out', r'ERROR \*{4} OPTGEOM \*{4} SCF FAILED.*'),
    ('crystal17_error_inp12b.out', r'ERROR \*{4} INP12B \*{4}.*'),
    ('crystal17_geom_failed_cut.out', r'CONVERGENCE TESTS UNSATISFIED.*'),
])
def test_exit_detail_is_crystals_line(name, words):
    """``exit_detail`` starts with the line CRYSTAL printed for the failure (whitespace collapsed)."""
    expected = printed(VERSIONS / name)
    line = ' '.join(re.search(words, expected['text']).group(0).split()).strip('= ')
    result = raw.parse_path(VERSIONS / name)
    assert result['exit_detail'].startswith(line)
    for error in expected['errors']:        # CRYSTAL's ERROR **** lines are all kept
        assert error in result['errors']


def test_geometry_failure_keeps_opt_end_and_error_words():
    expected = printed(VERSIONS / 'crystal17_geom_failed_cut.out')
    result = raw.parse_path(VERSIONS / 'crystal17_geom_failed_cut.out')
    assert expected['opt_end'][0] == 'FAILED' and result['geometry_converged'] is False
    assert result['energy_hartree'] == pytest.approx(expected['opt_end'][1], abs=1e-9)
    assert 'OPT END - FAILED' in result['exit_detail'] and expected['errors'][-1] in result['exit_detail']
