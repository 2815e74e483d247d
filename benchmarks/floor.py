"""The least overhead a batched campaign can have on stock AiiDA: each batch run alone, in one process.

``benchmarks/campaign.py`` measures a campaign's overhead per molecule as ``(campaign wall - job CPU / 2) / N``.
This script measures what no scheduling of the same batches can take away, on the same 20 molecules and in
one run, as ratios to the plain loop's time per molecule (measured here too):

(a) the **plain loop** of ``campaign.py`` (RDKit, xtb, MOPAC; no AiiDA);
(b) the batches ``campaign run`` makes of these molecules (``campaign/planning.py``: at least one per core),
    each run **in this process** with ``aiida.engine.run_get_node``, one after the other, on an otherwise idle
    machine: no daemon, no broker round trips, no other batch or job competing for the cores, after a warm-up
    batch (imports done). Per batch it takes:

    * ``cpu``: this process's CPU time (AiiDA's bookkeeping and ours: RDKit embedding, inputs, parsing, storing);
    * ``gaps``: the batch's wall time minus its jobs' wall time (from the job scripts, as in ``campaign.py``):
      the time in which the batch's own jobs could not run (before the first job, between its xtb and MOPAC
      jobs, after the last one).

Two lower bounds on ``campaign.py``'s overhead per molecule follow, for W cores (2 here) and B batches:

* ``floor_cpu`` = sum(cpu) / W / N: the cores must also run the bookkeeping, at best in parallel with the jobs;
* ``floor_gaps`` = sum(gaps) / B / N when B = W: a batch's jobs and gaps follow one another, so the campaign
  lasts at least as long as its longest batch (``jobs_b + gaps_b``), while ``campaign.py`` credits it only
  with the mean of the jobs (``sum(job CPU) / W``, job CPU <= job wall).

Neither counts the start-up (daemon start, reading the CSV; ``campaign.py`` prints it) nor the daemon's own
costs (a process's checkpoint is loaded by the worker that picks it up; the controller): both only add.
Last line::

    floor_cpu_fraction=<floor_cpu / plain s per molecule> floor_gaps_fraction=<...> cpu_s_per_molecule=... plain_s=...

Usage: ``python benchmarks/floor.py`` (the 20 drug-sized molecules, about 9 min); ``--small --molecules 200``.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from campaign import APPEND, DRUGS, PREPEND, SMALL, job_wall, plain_loop, small_molecules  # noqa: E402
from common import bench_profile  # noqa: E402

PROFILE = 'grimperium-bench-floor'
WORKERS = 2


def run_batch(inputs: dict, molecules: dict) -> tuple[float, float, float, int]:
    """Run one batch here; return its wall time, this process's CPU time, its jobs' wall time, and its exit status."""
    from aiida import orm
    from aiida.engine import run_get_node

    from aiida_grimperium.workchains.batch import ConformerBatchWorkChain

    rows = {f'm{i + 1:04d}': {'mol_id': mol_id, 'smiles': smiles, 'charge': 0, 'multiplicity': 1}
            for i, (mol_id, smiles) in enumerate(molecules.items())}
    start, cpu = time.perf_counter(), time.process_time()
    _, node = run_get_node(ConformerBatchWorkChain, **inputs, molecules=orm.Dict(rows))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    jobs = [n for n in node.called_descendants if isinstance(n, orm.CalcJobNode)]
    return wall, cpu, sum(job_wall(job) for job in jobs), node.exit_status


def main(argv=None) -> None:
    cli = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    cli.add_argument('--molecules', type=int, default=20)
    cli.add_argument('--small', action='store_true', help='small molecules (1-6 heavy atoms) instead of drugs')
    cli.add_argument('--num-conformers', type=int, default=10)
    cli.add_argument('--top-n', type=int, default=3)
    cli.add_argument('--batch-size', type=int, default=50)
    args = cli.parse_args(argv)
    os.environ.pop('OMP_NUM_THREADS', None)
    pool = SMALL if args.small else DRUGS
    molecules = dict(list(pool.items())[:args.molecules])
    if args.small and args.molecules > len(molecules):
        molecules.update(small_molecules(args.molecules - len(molecules), set(molecules.values())))
    n = len(molecules)
    print(f'{n} molecules; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start', flush=True)
    plain_s, _ = plain_loop(molecules, args.num_conformers, args.top_n)
    print(f'(a) plain loop: {plain_s:.1f} s ({plain_s / n:.2f} s per molecule)', flush=True)

    bench_profile(PROFILE, fresh=True)
    from aiida import orm

    from aiida_grimperium.campaign.builders import batch_inputs
    from aiida_grimperium.campaign.layout import DEFAULT_SETTINGS
    from aiida_grimperium.campaign.planning import estimated_cost, plan_batches, smiles_cost_terms

    computer = orm.load_computer('localhost')
    computer.set_prepend_text(PREPEND)
    computer.set_append_text(APPEND)
    settings = {**DEFAULT_SETTINGS, 'num_conformers': args.num_conformers, 'top_n': args.top_n}
    inputs = batch_inputs(settings)
    run_batch(inputs, {'warm_up': 'O'})  # imports, caches: not part of any batch below
    names = list(molecules)
    costs = [estimated_cost(smiles_cost_terms(molecules[name]), args.num_conformers) for name in names]
    batches = plan_batches(costs, args.batch_size, min_batches=WORKERS)
    total_cpu = total_gaps = 0.0
    for number, members in enumerate(batches, 1):
        wall, cpu, jobs, status = run_batch(inputs, {names[i]: molecules[names[i]] for i in members})
        total_cpu, total_gaps = total_cpu + cpu, total_gaps + (wall - jobs)
        print(f'  batch {number}: {len(members)} molecules, wall {wall:.1f} s, jobs {jobs:.1f} s, gaps '
              f'{wall - jobs:.2f} s, CPU here {cpu:.2f} s, exit status {status}', flush=True)
    print(f'(b) {len(batches)} batches in this process: CPU {total_cpu:.1f} s ({total_cpu / n:.3f} s per molecule), '
          f'gaps {total_gaps:.1f} s; load average {os.getloadavg()[0]:.2f}')
    plain = plain_s / n
    floor_cpu = total_cpu / WORKERS / n
    floor_gaps = total_gaps / len(batches) / n if len(batches) == WORKERS else float('nan')
    print(f'floor_cpu_fraction={floor_cpu / plain:.4f} floor_gaps_fraction={floor_gaps / plain:.4f} '
          f'floor_cpu_s_per_molecule={floor_cpu:.3f} floor_gaps_s_per_molecule={floor_gaps:.3f} '
          f'cpu_s_per_molecule={total_cpu / n:.3f} plain_s={plain_s:.1f} batches={len(batches)}')


if __name__ == '__main__':
    main()
