"""The AiiDA-free CREST parser on real CREST 2.12 and 3.0.x outputs (tests/fixtures/crest; sources in
tests/fixtures/README.md).

Every number the parser returns is compared with what CREST wrote, read here by separate regexes: the comment lines
of ``crest_conformers.xyz`` (Hartree, same decimals, so exact), the second column of ``crest.energies`` (kcal/mol,
exact), the CREGEN table and summary lines of stdout (exact: same decimals), ``TOTAL ENERGY`` and the wall time.
"""
from __future__ import annotations

import json
import pathlib
import re

import pytest

from aiida_grimperium.parsers.raw import crest

FIX = pathlib.Path(__file__).parent / 'fixtures' / 'crest'
NUM = r'[-+]?\d+\.\d+(?:[eE][-+]?\d+)?'
RUNS_2_12 = ['acetate', 'butane', 'ethanol', 'propanol']


def xyz_comment_energies(path: pathlib.Path) -> list[float]:
    """The first number of each frame's comment line, walking the frames by their atom counts."""
    lines, energies, i = path.read_text().splitlines(), [], 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        count = int(lines[i])
        energies.append(float(lines[i + 1].split()[0]))
        i += count + 2
    return energies


def cregen_rows(text: str) -> list[tuple[int, float, int, int]]:
    """(first index, conformer weight, set, degeneracy) of the rows that open a conformer in the last CREGEN table."""
    table = text.split('Erel/kcal        Etot weight/tot  conformer     set   degen     origin')[-1].split('T /K')[0]
    return [(int(a), float(b), int(c), int(d)) for a, b, c, d in
            re.findall(rf'^\s*(\d+)\s+{NUM}\s+{NUM}\s+{NUM}\s+({NUM})\s+(\d+)\s+(\d+)', table, re.M)]


def summary(text: str, label: str) -> float:
    return float(re.findall(rf'^{re.escape(label)}\s*:\s*({NUM})', text, re.M)[-1])


@pytest.mark.parametrize('run', RUNS_2_12)
def test_crest_2_12_conformer_search(run):
    folder = FIX / run
    text = (folder / 'crest.out').read_text()
    result = crest.parse_path(folder)
    assert re.search(r'^\s*Version (\S+),', text, re.M).group(1) == '2.12' == result['crest_version']
    assert result['exit_label'] is None and result['normal_termination'] is True
    # crest_conformers.xyz: the comment-line energies, frame by frame
    assert [c['energy_hartree'] for c in result['conformers']] == xyz_comment_energies(folder / 'crest_conformers.xyz')
    # crest.energies: index and relative energy in kcal/mol
    relative = [float(m) for m in re.findall(rf'^\s*\d+\s+({NUM})', (folder / 'crest.energies').read_text(), re.M)]
    assert [c['relative_energy_kcal_mol'] for c in result['conformers']] == relative
    assert result['num_conformers'] == len(relative) == int(
        re.search(r'number of unique conformers for further calc\s+(\d+)', text).group(1))
    # CREGEN: the population and degeneracy of each conformer set
    rows = cregen_rows(text)
    assert [(c['population'], c['degeneracy']) for c in result['conformers']] == [(w, d) for _, w, _, d in rows]
    assert [s for _, _, s, _ in rows] == list(range(1, len(rows) + 1))
    for key, label in (('temperature', 'T /K'), ('lowest_energy_hartree_stdout', 'E lowest'),
                       ('ensemble_average_energy_kcal_mol', 'ensemble average energy (kcal)'),
                       ('ensemble_free_energy_kcal_mol', 'ensemble free energy (kcal/mol)'),
                       ('population_lowest_percent', 'population of lowest in %')):
        assert result[key] == summary(text, label), key
    h, m, s = re.search(r'Overall wall time\s*:\s*(\d+)h\s*:\s*(\d+)m\s*:\s*(\d+)s', text).groups()
    assert result['wall_time_seconds'] == int(h) * 3600 + int(m) * 60 + int(s)
    json.dumps(result)


def test_crest_3_0_1_banner():
    """CREST 3.0.1's new banner (box-drawing logo, ``commit (...)`` line); the file upstream stops after the banner."""
    text = (FIX / 'qccodec' / 'v3_0_1_banner' / 'crest.out').read_text()
    result = crest.parse_path(FIX / 'qccodec' / 'v3_0_1_banner')
    assert result['crest_version'] == re.search(r'Version (\d+\.\d+\.\d+),', text).group(1) == '3.0.1'
    assert result['crest_commit'] == re.search(r'commit \((\w+)\)', text).group(1)
    assert result['exit_label'] == 'ERROR_OUTPUT_INCOMPLETE'  # no 'CREST terminated normally.' in it


def test_crest_3_0_2_optimize_run():
    """A complete CREST 3.0.2 stdout (``crest input.toml``, runtype optimize): version, energy, wall time, end."""
    text = (FIX / 'qccodec' / 'v3_0_2_optimize' / 'crest.out').read_text()
    result = crest.parse_lines(text.splitlines())
    assert result['crest_version'] == re.search(r'Version (\d+\.\d+\.\d+),', text).group(1) == '3.0.2'
    assert result['normal_termination'] is True and result['exit_label'] is None
    assert result['command_line'] == 'crest input.toml'
    assert result['total_energy_hartree'] == float(re.search(rf'TOTAL ENERGY\s+({NUM}) Eh', text).group(1))
    d, h, m, s = re.search(rf'CREST runtime \(total\)\s+(\d+) d,\s+(\d+) h,\s+(\d+) min,\s+({NUM}) sec', text).groups()
    assert result['wall_time_seconds'] == pytest.approx(int(d) * 86400 + int(h) * 3600 + int(m) * 60 + float(s), abs=1e-12)
    # as a conformer search it has no ensemble: the run folder is judged by its files, not by the exit status
    assert crest.parse_path(FIX / 'qccodec' / 'v3_0_2_optimize')['exit_label'] == 'ERROR_ENSEMBLE_MISSING'


@pytest.mark.parametrize('name', ['crest_conformers.xyz', 'crest_rotamers.xyz'])
def test_crest_3_ensemble_files(name):
    """CREST 3 ensembles: ``crest_rotamers.xyz`` comments hold ``energy weight !``; the energy is the first number."""
    path = FIX / 'qccodec' / 'v3_ensemble' / name
    symbols, frames, energies = crest.read_frames(path)
    assert energies == xyz_comment_energies(path)
    counts = [int(line) for line in path.read_text().splitlines() if re.fullmatch(r'\s*\d+\s*', line)]
    assert len(frames) == len(counts) and all(len(f) == counts[0] == len(symbols) for f in frames)
    first_atom = re.search(rf'^\s*([A-Za-z]+)\s+({NUM})\s+({NUM})\s+({NUM})', path.read_text(), re.M)
    assert symbols[0] == first_atom.group(1).capitalize() and frames[0][0] == [float(x) for x in first_atom.groups()[1:]]


def test_failure_without_ensemble():
    result = crest.parse_path(FIX / 'fail_overlap')
    assert result['exit_label'] == 'ERROR_INITIAL_OPTIMIZATION_FAILED'
    assert result['crest_version'] == '2.12'
