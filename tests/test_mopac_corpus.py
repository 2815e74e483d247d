"""Every MOPAC output of the corpus (tests/fixtures/mopac: MOPAC's own test suite, cclib's data, runs of Debian's
mopac), parsed by ``grimperium parse mopac``: the heats of formation must be the ones MOPAC printed, job by job.

The printed values are read here independently of the parser: the file is split at each program banner and the
``FINAL HEAT OF FORMATION =`` line of each part is taken with a regex. The pass count per MOPAC version is printed
(``pytest -s``) and checked against the number of files of that version.
"""
from __future__ import annotations

import collections
import pathlib
import re

import pytest

from aiida_grimperium.cli.cmd_parse import parse_to_dict

CORPUS = pathlib.Path(__file__).parent / 'fixtures' / 'mopac'
FILES = sorted(CORPUS.rglob('*.out'))
#: A job starts at the line of the banner box that names the program (``**  MOPAC2016  **``, ``** MOPAC v22.0.6 **``).
JOB_START = re.compile(r'^ \*\*\s+MOPAC(?:20\d\d|\s+v\d+\.\d+\.\d+)\s+\*\*\s*$', re.M)
PRINTED = re.compile(r'FINAL HEAT OF FORMATION =\s+(-?\d+\.\d+) KCAL/MOL')
VERSION = re.compile(r'MOPAC\s+v(\d+)\.\d+\.\d+|Version:\s*(\d+)\.\d+M')
TOLERANCE = 1e-5  # kcal/mol; MOPAC prints five decimals


def printed_per_job(text: str) -> list[list[float]]:
    starts = [m.start() for m in JOB_START.finditer(text)] or [0]
    bounds = zip(starts, starts[1:] + [len(text)])
    return [[float(x) for x in PRINTED.findall(text[a:b])] for a, b in bounds]


def version_of(text: str) -> str:
    match = VERSION.search(text)
    if match is None:
        return 'unknown'
    return f'v{match.group(1)}' if match.group(1) else ('MOPAC2016' if int(match.group(2)) >= 15 else 'MOPAC2012')


def check(path: pathlib.Path) -> tuple[str, int]:
    """Compare one file; return its version and the number of heats checked. Raises AssertionError on a mismatch."""
    text = path.read_text(errors='replace')
    document = parse_to_dict('mopac', path)
    printed = printed_per_job(text)
    jobs = document['jobs']
    assert len(jobs) == len(printed), (path, len(jobs), len(printed))
    checked = 0
    for index, (job, values) in enumerate(zip(jobs, printed)):
        if values:
            assert job.get('heat_of_formation_kcal_mol') == pytest.approx(values[-1], abs=TOLERANCE), (path, index)
            checked += 1
        if job['errors']:
            assert document['exit_status'] != 0, path  # a failed job never makes a successful file
    assert document['file_complete'] == ('JOB ENDED NORMALLY' in text or '== MOPAC DONE ==' in text), path
    return version_of(text), checked


def test_corpus_is_there():
    versions = collections.Counter(version_of(p.read_text(errors='replace')) for p in FILES)
    assert versions['MOPAC2016'] >= 50 and versions['v22'] >= 20 and versions['v23'] >= 2, versions


def test_heats_match_what_mopac_printed(capsys):
    passed, heats, failures = collections.Counter(), collections.Counter(), []
    for path in FILES:
        try:
            version, checked = check(path)
        except AssertionError as exc:
            failures.append(f'{path.relative_to(CORPUS)}: {exc}')
            continue
        passed[version] += 1
        heats[version] += checked
    with capsys.disabled():
        for version in sorted(passed):
            print(f'\nMOPAC corpus {version}: {passed[version]} files pass, {heats[version]} heats of formation checked')
    assert not failures, '\n'.join(failures)
    assert sum(heats.values()) >= 100
