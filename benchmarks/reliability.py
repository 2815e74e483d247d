"""Print the reliability summary of the package from the numbers the tests measured.

Sources (JSON files in ``benchmarks/results/``, written by the tests; a missing file prints "not measured"):

* ``crash_recovery.json`` — the SLURM crash-recovery test: ``molecules``, ``crashes_injected``,
  ``jobs_resubmitted``, ``duplicates`` (duplicate submissions) and ``results_lost``;
* ``fuzz.json`` — ``tests/test_fuzz_parsers.py``: ``cases`` and ``unhandled_exceptions``;
* ``injection.json`` — ``tests/test_injection.py``: ``attempts``, ``refused``, ``quoted`` and ``escapes``;
* ``slurm_batches.json`` — ``tests/test_slurm_batches.py``: ``molecules``, ``batch_size`` and ``sbatch_calls``
  (one xtb and one MOPAC job per batch).

Usage: ``python benchmarks/reliability.py [--results DIR] [--json]``. The exit status is 1 when a number that
must be zero (duplicates, results lost, unhandled exceptions, escapes) is not, else 0.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

RESULTS = pathlib.Path(__file__).parent / 'results'
NOT_MEASURED = 'not measured'
#: (label, file, key(s) tried in order, must be zero)
ROWS = [
    ('molecules', 'crash_recovery', ('molecules', 'num_molecules'), False),
    ('crashes injected', 'crash_recovery', ('crashes_injected', 'crashes'), False),
    ('jobs resubmitted', 'crash_recovery', ('jobs_resubmitted', 'resubmitted'), False),
    ('duplicate submissions', 'crash_recovery', ('duplicates', 'duplicate_submissions'), True),
    ('results lost', 'crash_recovery', ('results_lost', 'lost'), True),
    ('fuzz cases run', 'fuzz', ('cases',), False),
    ('unhandled exceptions', 'fuzz', ('unhandled_exceptions',), True),
    ('injection attempts', 'injection', ('attempts',), False),
    ('  refused with a message', 'injection', ('refused',), False),
    ('  accepted, quoted', 'injection', ('quoted',), False),
    ('injection escapes', 'injection', ('escapes',), True),
    ('SLURM campaign: molecules', 'slurm_batches', ('molecules',), False),
    ('  --batch-size', 'slurm_batches', ('batch_size',), False),
    ('  sbatch calls', 'slurm_batches', ('sbatch_calls',), False),
]


def load(results: pathlib.Path) -> dict[str, dict | None]:
    """The result files as dicts (``None`` when missing or unreadable)."""
    data = {}
    for name in ('crash_recovery', 'fuzz', 'injection', 'slurm_batches'):
        try:
            data[name] = json.loads((results / f'{name}.json').read_text())
        except (OSError, ValueError):
            data[name] = None
    return data


def summary(data: dict[str, dict | None]) -> list[tuple[str, object, bool]]:
    """``[(label, value or 'not measured', ok)]``; ``ok`` is False only for a must-be-zero number that is not 0."""
    rows = []
    for label, source, keys, must_be_zero in ROWS:
        found = data.get(source) or {}
        value = next((found[k] for k in keys if k in found), NOT_MEASURED)
        ok = not (must_be_zero and value != NOT_MEASURED and value != 0)
        rows.append((label, value, ok))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--results', type=pathlib.Path, default=RESULTS, help='folder of the JSON result files')
    parser.add_argument('--json', action='store_true', help='print the summary as JSON')
    args = parser.parse_args(argv)
    rows = summary(load(args.results))
    if args.json:
        print(json.dumps({label.strip(): value for label, value, _ in rows}, indent=2))
    else:
        print(f'reliability summary (measured by the tests; files in {args.results})')
        for label, value, ok in rows:
            flag = '' if ok else '   <-- must be 0'
            print(f'  {label:<28} {value}{flag}')
    return 0 if all(ok for _, _, ok in rows) else 1


if __name__ == '__main__':
    sys.exit(main())
