"""Ingest at scale: a campaign CSV of N molecules validated and stored (ready to run), then its status and export.

A throw-away profile (``benchmarks/common.py``); the CSV has N distinct small molecules (random acyclic C/N/O
skeletons of 2-12 heavy atoms, a fixed seed, one per InChIKey), unique mol_ids and a reference. Timed, each as a
command of its own (Python start-up and profile load included), the daemon stopped:

* ``grimperium campaign submit CSV --group big --batch-size 50``: validation (RDKit, InChIKeys) and the records
  stored in the group, ready for ``campaign rerun`` / the daemon;
* ``grimperium campaign status big``;
* ``grimperium export big -o big.csv``.

Last line: ``ingest_seconds=… status_seconds=… export_seconds=… molecules=N`` (targets for 100 000: 60, 5, 5).
Usage: ``python benchmarks/ingest.py --molecules 100000`` (``--quick``: 5000).
"""
from __future__ import annotations

import argparse
import csv
import pathlib
import random
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from common import BIN, fresh_profile, run  # noqa: E402

VALENCE = {'C': 4, 'N': 3, 'O': 2}


def random_smiles(rng: random.Random, max_size: int = 12) -> str:
    """A random acyclic molecule of 2 to ``max_size`` heavy atoms (C, N, O) as SMILES."""
    size = rng.randint(2, max_size)
    elements = ['C'] + [rng.choices('CNO', weights=(6, 1, 1))[0] for _ in range(size - 1)]
    children = {i: [] for i in range(size)}
    for i in range(1, size):
        parents = [j for j in range(i) if len(children[j]) + (j > 0) < VALENCE[elements[j]]]
        children[rng.choice(parents)].append(i)

    def write(i: int) -> str:
        kids = [write(k) for k in children[i]]
        return elements[i] + ''.join(f'({k})' for k in kids[:-1]) + (kids[-1] if kids else '')
    return write(0)


def molecules(count: int, seed: int = 7) -> list[str]:
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog('rdApp.*')
    rng, seen, found = random.Random(seed), set(), []
    while len(found) < count:
        mol = Chem.MolFromSmiles(random_smiles(rng))
        if mol is None:
            continue
        key = Chem.MolToInchiKey(mol)
        if key and key not in seen:
            seen.add(key)
            found.append(Chem.MolToSmiles(mol))
    return found


def timed(*args) -> float:
    start = time.perf_counter()
    result = run(*args, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f'{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}')
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--molecules', type=int, default=100_000)
    parser.add_argument('--quick', action='store_true', help='5000 molecules')
    args = parser.parse_args()
    count = 5000 if args.quick else args.molecules
    profile = 'grimperium-bench-ingest'
    fresh_profile(profile)
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / 'big.csv'
        with open(path, 'w', newline='') as handle:
            writer = csv.writer(handle)
            writer.writerow(['mol_id', 'smiles', 'charge', 'multiplicity', 'nheavy', 'H298_cbs', 'batch_id'])
            rng = random.Random(11)
            for index, smiles in enumerate(molecules(count)):
                writer.writerow([f'mol{index:06d}', smiles, 0, 1, '', round(rng.uniform(-100, 50), 2), 'bench'])
        ingest = timed(BIN / 'grimperium', '-p', profile, 'campaign', 'submit', path, '--group', 'big',
                       '--batch-size', 50)
        status = timed(BIN / 'grimperium', '-p', profile, 'campaign', 'status', 'big')
        export = timed(BIN / 'grimperium', '-p', profile, 'export', 'big', '-o', pathlib.Path(tmp) / 'out.csv')
        rows = sum(1 for _ in open(pathlib.Path(tmp) / 'out.csv')) - 1
    assert rows == count, (rows, count)
    print(f'{count} molecules: ingest (validate + store) {ingest:.1f} s, status {status:.1f} s, export {export:.1f} s')
    print(f'ingest_seconds={ingest:.1f} status_seconds={status:.1f} export_seconds={export:.1f} molecules={count}')


if __name__ == '__main__':
    main()
