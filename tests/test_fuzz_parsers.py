"""Fuzzing every raw parser with truncated and byte-mutated REAL outputs: no exception may escape.

The seeds are real outputs: the recorded CREST (2.12, 3.0.x), pw.x (6.3-7.5 stdout and XML), VASP (5.4-6.4) and
CRYSTAL (14, 17, 22) runs in ``tests/fixtures`` and MOPAC and
xtb outputs that the real binaries write once per module. Every case is a seeded, reproducible mutation of one
seed (cut at a random byte, random bytes overwritten, lines dropped / repeated / swapped, numbers replaced by
overflow fields, ``nan``, ``1e999``, 5000-digit integers, ...). The parser's entry point is called DIRECTLY
(``parse_lines``, ``parse_chunks``, ``read_frames``...), not through ``parse_file``, whose catch-all would hide a
bug. Each result must be a dict whose ``exit_label`` is ``None`` or a label declared for that code.

``GRIMPERIUM_FUZZ_CASES`` (default 1000 per target) scales the run; the totals go to
``benchmarks/results/fuzz.json`` for ``benchmarks/reliability.py``.
"""
from __future__ import annotations

import json
import os
import pathlib
import random
import re
import shutil
import subprocess
import time
import traceback

import pytest

from aiida_grimperium.exit_codes import table_for
from aiida_grimperium.parsers.raw import crest, crystal, mopac, pw, vasp, vasp_outcar, vasp_xml, xtb
from test_mopac_raw import JOBS

FIXTURES = pathlib.Path(__file__).parent / 'fixtures'
RESULTS = pathlib.Path(__file__).parent.parent / 'benchmarks' / 'results'
CASES = int(os.environ.get('GRIMPERIUM_FUZZ_CASES', '1000'))
SEED = int(os.environ.get('GRIMPERIUM_FUZZ_SEED', '20240607'))

#: What a mutated number becomes: Fortran overflow fields, non-finite values, absurd lengths, half-numbers.
NUMBER_JUNK = ['*******', '1e999', '-1e999', 'nan', 'NaN', 'inf', '-Infinity', '1D+400', '9' * 5000, '-', '.',
               '1.2.3', '0', '-0', '', '1e-400', 'E+05', '--1', '0x1F', '½']
NUMBER = re.compile(rb'[-+]?\d+\.?\d*(?:[eEdD][-+]?\d+)?')

MOPAC_JOBS = JOBS  # the three-job MOPAC input of test_mopac_raw: closed shell, radical, anion
WATER_XYZ = '3\nwater\nO 0.0 0.0 0.1\nH 0.0 0.76 -0.45\nH 0.0 -0.76 -0.45\n'
OVERLAP_XYZ = '3\noverlap\nO 0.0 0.0 0.0\nH 0.0 0.0 0.0\nH 0.0 0.0 0.1\n'


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One seeded mutation (or two stacked) of ``data``."""
    for _ in range(rng.choice((1, 1, 1, 2))):
        data = rng.choice(MUTATIONS)(data, rng)
    return data


def _truncate(data, rng):
    return data[: rng.randrange(len(data) + 1)]


def _flip_bytes(data, rng):
    out = bytearray(data)
    for _ in range(rng.randint(1, 40)):
        if out:
            out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def _printable_bytes(data, rng):
    # printable junk keeps the file "text", so it goes deeper into the parser than a NUL would
    out = bytearray(data)
    for _ in range(rng.randint(1, 60)):
        if out:
            out[rng.randrange(len(out))] = rng.choice(b'0123456789.-+=:*eEdD \t\nxyzXYZ()[]<>/"\'&')
    return bytes(out)


def _lines(data, rng):
    lines = data.splitlines(keepends=True)
    if len(lines) < 2:
        return data
    for _ in range(rng.randint(1, 20)):
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        action = rng.randrange(4)
        if action == 0:
            del lines[i]
        elif action == 1:
            lines.insert(i, lines[j])
        elif action == 2:
            lines[i], lines[j] = lines[j], lines[i]
        else:
            lines[i] = lines[i][: rng.randrange(len(lines[i]) + 1)] + b'\n'
        if len(lines) < 2:
            break
    return b''.join(lines)


def _numbers(data, rng):
    matches = list(NUMBER.finditer(data))
    if not matches:
        return data
    out = data
    for match in sorted(rng.sample(matches, min(len(matches), rng.randint(1, 25))), key=lambda m: -m.start()):
        out = out[: match.start()] + rng.choice(NUMBER_JUNK).encode() + out[match.end():]
    return out


def _splice_tail(data, rng):
    # a restarted job appends to the same file: the output repeats a stretch of itself
    start = rng.randrange(len(data) + 1)
    return data[: rng.randrange(len(data) + 1)] + data[start:]


MUTATIONS = (_truncate, _truncate, _flip_bytes, _printable_bytes, _lines, _lines, _numbers, _numbers, _splice_tail)


def as_lines(data: bytes):
    """Decode the way :func:`aiida_grimperium.parsers.raw.iter_lines` does, as a one-shot iterator."""
    return iter(data.decode('utf-8', errors='replace').splitlines(keepends=True))


def as_chunks(data: bytes, size: int = 4096):
    return iter([data[i:i + size] for i in range(0, len(data), size)] or [b''])


class Target:
    """One parser entry point, how to feed it, and the real outputs it is fuzzed with."""

    def __init__(self, name: str, code: str, call, seeds: list[pathlib.Path], feed: str = 'lines', check=True,
                 share: float = 1.0):
        self.name, self.code, self.call, self.seeds, self.feed, self.check = name, code, call, seeds, feed, check
        self.share = share  # of the cases per target, for a slow entry point

    def run(self, data: bytes, scratch: pathlib.Path):
        if self.feed == 'lines':
            return self.call(as_lines(data))
        if self.feed == 'chunks':
            return self.call(as_chunks(data))
        scratch.write_bytes(data)
        return self.call(scratch)


def check_result(target: Target, result, labels: set) -> None:
    """The contract: a dict with an ``exit_label`` that is ``None`` or declared for the code."""
    if not target.check:  # helper readers return their own value (or None), they only must not raise
        return
    assert isinstance(result, dict), type(result)
    assert 'exit_label' in result, sorted(result)
    assert result['exit_label'] is None or result['exit_label'] in labels, result['exit_label']


@pytest.fixture(scope='module')
def real_runs(tmp_path_factory):
    """MOPAC and xtb outputs written by the real binaries (a closed-shell SP, an optimised radical; xtb
    optimisation, unconverged SCC, fatal overlap)."""
    for exe in ('mopac', 'xtb'):
        if shutil.which(exe) is None:
            pytest.fail(f'`{exe}` is not on PATH: run `bash scripts/setup.sh`')
    base = tmp_path_factory.mktemp('fuzz-seeds')
    (base / 'aiida.mop').write_text(MOPAC_JOBS)
    subprocess.run(['mopac', 'aiida.mop'], cwd=base, check=True, capture_output=True, timeout=120)
    env = {'OMP_NUM_THREADS': '1', 'PATH': '/usr/bin:/bin'}
    for name, xyz, args in (('opt', WATER_XYZ, ['--opt', 'tight']), ('scc', WATER_XYZ, ['--iterations', '2']),
                            ('fatal', OVERLAP_XYZ, [])):
        folder = base / name
        folder.mkdir()
        (folder / 'aiida.xyz').write_text(xyz)
        with open(folder / 'aiida.out', 'w') as out, open(folder / 'aiida.err', 'w') as err:
            subprocess.run(['xtb', 'aiida.xyz', *args], cwd=folder, stdout=out, stderr=err, env=env, timeout=120)
    assert 'FINAL HEAT OF FORMATION' in (base / 'aiida.out').read_text()
    assert (base / 'opt' / 'xtbopt.xyz').is_file()
    return base


#: Real outputs of other versions and formats (sources in tests/fixtures/README.md): MOPAC2016 (16.093M, 21.298M),
#: v22.0.4, v23.1.2, multi-job, UHF, C.I., FORCE/THERMO and failures; xtb 6.6.1 (cclib), GFN1, GFN-FF, --ohess.
MOPAC_SEEDS = [FIXTURES / 'mopac' / n for n in (
    'openmopac/keywords/NONET.out', 'openmopac/keywords/CIS.out', 'openmopac/keywords/EXCITED.out',
    'openmopac/keywords/EXTERNAL.out', 'openmopac/INDO-dev/co_fail.out', 'openmopac/INDO-dev/no_cis_quar.out',
    'openmopac/IONIZE.out', 'cclib/o2_trip.out', 'cclib/h2o-force.out', 'debian/water_force_thermo.out',
    'debian/mixed_jobs.out', 'debian/poh2_no_vdw.out')]
XTB_SEEDS = [FIXTURES / 'xtb' / n for n in (
    'cclib/dvb_ir/dvb_ir.out', 'cclib/dvb_opt/dvb_opt.out', 'debian/gfn1_sp/aiida.out', 'debian/gfnff_sp/aiida.out',
    'debian/gfn2_ohess/aiida.out', 'debian/fatal_overlap/aiida.out')]


def targets(runs: pathlib.Path) -> list[Target]:
    crest_runs = [FIXTURES / 'crest' / n for n in ('acetate', 'butane', 'ethanol', 'propanol')]
    pw_runs = [FIXTURES / 'pw' / n for n in ('si_scf', 'h2o', 'si_relax', 'si_scf_not_converged', 'si_walltime')]
    # pw.x 6.3-7.5 (aiida-quantumespresso's data) and Debian's 6.7, stdout and data-file-schema.xml
    pw_versions = [FIXTURES / 'pw' / n for n in (
        'aiida-qe/default_xml_190304', 'aiida-qe/tot_magnetization', 'aiida-qe/default_xml_211101',
        'aiida-qe/default_xml_230310', 'aiida-qe/default_xml_240411', 'aiida-qe/default_xml_250521',
        'debian_xml/al_smearing', 'debian_xml/si_scf_not_converged')]
    crest_3 = [FIXTURES / 'crest' / 'qccodec' / n / 'crest.out' for n in ('v3_0_1_banner', 'v3_0_2_optimize')]
    crest_3_xyz = [FIXTURES / 'crest' / 'qccodec' / 'v3_ensemble' / n for n in ('crest_conformers.xyz', 'crest_rotamers.xyz')]
    vasp_runs = [FIXTURES / 'vasp' / n for n in ('si-simple/outputs', 'elec-unconverged', 'unfinished')]
    # VASP 5.4.4-6.4.1 outputs and error messages (custodian, aiida-vasp; tests/fixtures/README-vasp-crystal.md)
    vasp_versions = FIXTURES / 'vasp' / 'versions'
    vasp_text = [vasp_versions / 'stdout_errors' / n for n in (
        'vasp.edddav2', 'vasp.hnform', 'vasp.rhosyg', 'vasp.point_group', 'vasp.too_few_bands_round_error')] + [
        vasp_versions / 'vasp620_relax' / 'OUTCAR', vasp_versions / 'vasp620_relax' / 'vasp_output',
        vasp_versions / 'vasp641_outcar_cut' / 'OUTCAR']
    vasp_xml_files = [vasp_versions / 'vasp621_vasprun' / 'vasprun.xml', vasp_versions / 'vasp620_relax' / 'vasprun.xml']
    crystal_runs = [FIXTURES / 'crystal' / n / 'main.out' for n in ('mgo_sto3g_scf', 'mgo_sto3g_opt', 'failed_scf')]
    # CRYSTAL14, 17 and 22 outputs (tests/fixtures/README-vasp-crystal.md)
    crystal_runs += [FIXTURES / 'crystal' / 'versions' / f'{n}.out' for n in (
        'crystal22_mgo_opt', 'crystal17_scf_maxcyc', 'crystal17_scf_failed_optgeom', 'crystal17_geom_failed_cut',
        'crystal17_error_inp12b')]
    return [
        Target('mopac.parse_lines', 'mopac', mopac.parse_lines, [runs / 'aiida.out'] + MOPAC_SEEDS),
        Target('xtb.parse_lines', 'xtb', xtb.parse_lines, [runs / n / 'aiida.out' for n in ('opt', 'scc', 'fatal')]
               + XTB_SEEDS),
        Target('xtb.parse_stderr', 'xtb', xtb.parse_stderr, [runs / n / 'aiida.err' for n in ('opt', 'scc', 'fatal')],
               feed='path', check=False),
        Target('xtb.read_xyz', 'xtb', xtb.read_xyz, [runs / 'opt' / 'xtbopt.xyz'], feed='path', check=False),
        Target('crest.parse_lines', 'crest', crest.parse_lines,
               [r / 'crest.out' for r in crest_runs] + [FIXTURES / 'crest' / 'fail_overlap' / 'crest.out'] + crest_3),
        Target('crest.read_energies', 'crest', crest.read_energies, [r / 'crest.energies' for r in crest_runs],
               feed='path', check=False),
        Target('crest.read_frames', 'crest', crest.read_frames, [r / 'crest_conformers.xyz' for r in crest_runs]
               + crest_3_xyz, feed='path', check=False),
        Target('pw.parse_lines', 'pw', pw.parse_lines, [r / 'aiida.out' for r in pw_runs + pw_versions]
               + [FIXTURES / 'pw' / 'o2_typo' / 'CRASH']),
        # aiida-quantumespresso's XML reader validates against the QE schema (~0.3 s a file): a tenth of the cases
        Target('pw.parse_xml_chunks', 'pw', pw.parse_xml_chunks, [r / 'data-file-schema.xml' for r in pw_versions],
               feed='chunks', share=0.1),
        Target('vasp.parse_lines', 'vasp', vasp.parse_lines,
               [r / n for r in vasp_runs for n in ('vasp_output', 'OUTCAR', 'vasprun.xml')] + vasp_text + vasp_xml_files),
        Target('vasp_xml.parse_chunks', 'vasp', vasp_xml.parse_chunks, [r / 'vasprun.xml' for r in vasp_runs]
               + vasp_xml_files, feed='chunks', check=False),
        Target('vasp_outcar.parse_text_lines', 'vasp', vasp_outcar.parse_text_lines,
               [r / n for r in vasp_runs for n in ('OUTCAR', 'vasp_output')] + vasp_text, check=False),
        Target('crystal.parse_lines', 'crystal', crystal.parse_lines, crystal_runs),
    ]


def fuzz(target: Target, cases: int, seed: int, scratch: pathlib.Path) -> tuple[int, list[str]]:
    """Run ``cases`` mutations of ``target``'s seeds; return (cases run, tracebacks of the failures)."""
    rng = random.Random(f'{seed}:{target.name}')
    originals = [p.read_bytes() for p in target.seeds]
    labels = set(table_for(target.code))
    failures = []
    for case in range(cases):
        data = originals[case % len(originals)]
        data = data if case < len(originals) else mutate(data, rng)  # the unmutated seeds run first
        try:
            check_result(target, target.run(data, scratch), labels)
        except Exception:  # noqa: BLE001 - collect every escape, then fail once with the first few
            failures.append(f'{target.name} case {case} (seed {seed}):\n{traceback.format_exc(limit=4)}')
    return cases, failures


def test_unmutated_seeds_parse_cleanly(real_runs, tmp_path):
    """The seeds themselves are good outputs: the fuzz starts from files the parsers do read."""
    assert mopac.parse_path(real_runs / 'aiida.out')['exit_label'] is None
    assert xtb.parse_path(real_runs / 'opt')['exit_label'] is None
    assert xtb.parse_path(real_runs / 'scc')['exit_label'] == 'ERROR_SCC_NOT_CONVERGED'
    assert pw.parse_path(FIXTURES / 'pw' / 'si_scf')['exit_label'] is None
    assert pw.parse_path(FIXTURES / 'pw' / 'debian_xml' / 'al_smearing')['exit_label'] is None
    assert pw.parse_path(FIXTURES / 'pw' / 'aiida-qe' / 'default_xml_250521' / 'data-file-schema.xml')['exit_label'] is None
    assert vasp.parse_path(FIXTURES / 'vasp' / 'si-simple' / 'outputs')['exit_label'] is None
    assert crystal.parse_path(FIXTURES / 'crystal' / 'mgo_sto3g_scf')['exit_label'] is None
    assert crest.parse_path(FIXTURES / 'crest' / 'butane')['exit_label'] is None


def test_fuzz_every_raw_parser(real_runs, tmp_path):
    totals, failures, timings = {}, [], {}
    for target in targets(real_runs):
        start = time.perf_counter()
        count, errors = fuzz(target, max(len(target.seeds), int(CASES * target.share)), SEED, tmp_path / 'case')
        timings[target.name] = round(time.perf_counter() - start, 2)
        totals[target.name] = count
        failures += errors
    report = {'seed': SEED, 'cases_per_target': CASES, 'cases': sum(totals.values()), 'per_target': totals,
              'unhandled_exceptions': len(failures), 'seconds': timings}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / 'fuzz.json').write_text(json.dumps(report, indent=2) + '\n')
    print(f"fuzz: {report['cases']} cases over {len(totals)} entry points, {len(failures)} unhandled exceptions")
    assert not failures, f'{len(failures)} exceptions escaped:\n' + '\n'.join(failures[:5])
