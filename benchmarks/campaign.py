"""Campaign throughput: the same molecules through a plain Python loop and through `grimperium campaign run`.

(a) **plain loop** (the seed's way): one molecule after the other, no AiiDA profile, process or database. For
    each: RDKit ETKDG conformers (``--num-conformers``, the package's seed) → ``xtb --gfn 2 --opt tight`` on every
    conformer, one after the other (the command line of ``calculations/xtb.py`` with ``--parallel 2`` and
    ``OMP_NUM_THREADS=2``: xtb uses both cores through its threads) → energy window 6 kcal/mol and heavy-atom RMSD
    0.125 Å de-duplication (the package's defaults; its plain-Python helpers, so both sides do the same chemistry)
    → one ``mopac`` input with the 3 lowest conformers, keywords of the MOPAC protocol ``balanced`` that
    ``campaign/builders.py`` uses (PM7, optimisation). MOPAC (OpenMP + OpenBLAS) uses both cores itself.
(b) ``grimperium campaign run CSV --group ... --workers 2 --batch-size N`` on a fresh throw-away profile (own
    ``AIIDA_PATH``, ``core.sqlite_dos`` + ZeroMQ, codes registered by ``grimperium setup``): the wall time of the
    command, daemon start to the last molecule finished. The molecules run in batches (one xtb and one MOPAC
    job per batch; at least one batch per core).

The jobs' own run time is measured inside every job script (the computer's prepend/append text writes the CPU
time, user + system, of the job's processes — bash ``times`` — next to the outputs): the work the codes did,
whatever the number of jobs sharing the cores. It also prints the CPU time of AiiDA's bookkeeping: the daemon
workers' (read before they stop) and the ``campaign run`` command's; unlike wall time, that changes little when
other programs load the machine. Last line::

    overhead_fraction=<overhead_s_per_molecule / (a / N)> campaign_ratio=<b / a> overhead_s_per_molecule=<(b - sum(job CPU) / workers) / N> grimperium_s=<b> plain_s=<a>
    overhead_by_job_wall_s_per_molecule=<(b - sum(job wall) / workers) / N>
    overhead_after_startup_s_per_molecule=<(b - start-up - sum(job CPU) / workers) / N>
    overhead_daemon_running_s_per_molecule=<(c - sum(job CPU of c) / workers) / N> grimperium_daemon_running_s=<c>

The first overhead counts the jobs' CPU time: the stricter figure, since a job that waits for a core the daemon
holds does not hide that wait. The second takes each job's wall time (start to end, from the same job script)
as its run time; it is what a scheduler's accounting would give, and it is lower when the cores are shared. The
third leaves out the start-up, from the command's start to its first submission (mostly starting the daemon,
which users usually leave running). (c) measures that case: the same campaign on a fresh profile whose daemon
was started (``verdi daemon start 2``) before the command; the fourth overhead is its own.

``overhead_fraction`` is the overhead per molecule as a fraction of the plain loop's time per molecule: a ratio
of two figures from the same run, so it holds on a slow or a fast machine.

Usage: ``python benchmarks/campaign.py`` (20 drug-sized molecules, about 15 min); ``--small`` (20 molecules
of 1-6 heavy atoms, about 2 min; ``--small --molecules 200`` adds random C/N/O molecules of 2-6 heavy atoms);
``--molecules N`` takes the first N of the list; ``--quick`` is 4 molecules.
"""
from __future__ import annotations

import argparse
import csv
import os
import pathlib
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from common import BENCH_AIIDA_PATH, bench_env, bench_profile  # noqa: E402
from ingest import random_smiles  # noqa: E402

#: 12-30 heavy atoms. (Paracetamol, 11 heavy atoms, is below the range: phenacetin, its ethyl ether, stands in.)
DRUGS = {
    'ibuprofen': 'CC(C)Cc1ccc(cc1)C(C)C(=O)O', 'caffeine': 'Cn1cnc2c1c(=O)n(C)c(=O)n2C',
    'melatonin': 'COc1ccc2[nH]cc(CCNC(C)=O)c2c1', 'aspirin': 'CC(=O)Oc1ccccc1C(=O)O',
    'phenacetin': 'CCOc1ccc(NC(C)=O)cc1', 'naproxen': 'COc1ccc2cc(ccc2c1)C(C)C(=O)O',
    'lidocaine': 'CCN(CC)CC(=O)Nc1c(C)cccc1C', 'nicotine': 'CN1CCCC1c1cccnc1',
    'theophylline': 'Cn1c2nc[nH]c2c(=O)n(C)c1=O', 'benzocaine': 'CCOC(=O)c1ccc(N)cc1',
    'procaine': 'CCN(CC)CCOC(=O)c1ccc(N)cc1', 'diphenhydramine': 'CN(C)CCOC(c1ccccc1)c1ccccc1',
    'salbutamol': 'CC(C)(C)NCC(O)c1ccc(O)c(CO)c1', 'ketoprofen': 'CC(C(=O)O)c1cccc(c1)C(=O)c1ccccc1',
    'fluoxetine': 'CNCCC(Oc1ccc(cc1)C(F)(F)F)c1ccccc1', 'diazepam': 'CN1C(=O)CN=C(c2ccccc2)c2cc(Cl)ccc21',
    'carbamazepine': 'NC(=O)N1c2ccccc2C=Cc2ccccc21', 'propranolol': 'CC(C)NCC(O)COc1cccc2ccccc12',
    'atenolol': 'CC(C)NCC(O)COc1ccc(CC(N)=O)cc1', 'tramadol': 'COc1cccc(c1)C1(O)CCCCC1CN(C)C',
}
#: 1-6 heavy atoms: the plain loop needs well under a second per molecule, so overhead dominates.
SMALL = {
    'water': 'O', 'methane': 'C', 'ammonia': 'N', 'methanol': 'CO', 'ethane': 'CC', 'formaldehyde': 'C=O',
    'methylamine': 'CN', 'ethanol': 'CCO', 'propane': 'CCC', 'dimethyl_ether': 'COC', 'acetonitrile': 'CC#N',
    'acetone': 'CC(C)=O', 'acetic_acid': 'CC(=O)O', 'n-butane': 'CCCC', 'isobutane': 'CC(C)C', 'propanol': 'CCCO',
    'n-pentane': 'CCCCC', 'diethyl_ether': 'CCOCC', 'benzene': 'c1ccccc1', 'pyridine': 'c1ccncc1',
}
WORKERS = 2
#: Written into every job script of the benchmark computer: the job's CPU time (bash `times`, children).
PREPEND = 'GRIMPERIUM_BENCH_T0=$(date +%s.%N)'
APPEND = 'times > .bench_times; echo "$GRIMPERIUM_BENCH_T0 $(date +%s.%N)" > .bench_wall'


def job_wall(node) -> float:
    """Wall time of a finished job of the benchmark computer, from its job script (:data:`PREPEND`, :data:`APPEND`)."""
    folder = pathlib.Path(node.outputs.remote_folder.get_remote_path())
    start, end = map(float, (folder / '.bench_wall').read_text().split())
    return end - start


def small_molecules(count: int, taken: set, seed: int = 3) -> dict:
    """``count`` more small molecules (2-6 heavy atoms, distinct canonical SMILES), ``small_NNN``: ``SMILES``."""
    import random

    from rdkit import Chem

    rng, found = random.Random(seed), {}
    taken = {Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in taken}
    while len(found) < count:
        smiles = Chem.MolToSmiles(Chem.MolFromSmiles(random_smiles(rng, max_size=6)))
        if smiles not in taken:
            taken.add(smiles)
            found[f'small_{len(found):03d}'] = smiles
    return found


def heavy_atoms(smiles: str) -> int:
    from rdkit import Chem

    return Chem.MolFromSmiles(smiles).GetNumHeavyAtoms()


# ------------------------------------------------------------------------------------------------ (a) plain loop


def plain_molecule(smiles: str, workdir: pathlib.Path, num_conformers: int, top_n: int) -> tuple[float, int]:
    """One molecule the seed's way; returns the lowest PM7 heat of formation and the number of conformers."""
    import numpy as np

    from aiida_grimperium.chemistry import HARTREE_TO_KCAL_MOL, xyz_text
    from aiida_grimperium.ensembles import embed_conformers, unique_indices, window_indices
    from aiida_grimperium.parsers.raw.mopac import parse_path
    from aiida_grimperium.workchains.mopac import MopacBaseWorkChain

    workdir.mkdir(parents=True)
    symbols, frames = embed_conformers(smiles, num_conformers, 61453)  # ConformerSearchWorkChain's default seed
    env = {**os.environ, 'OMP_NUM_THREADS': '2'}
    energies, optimised = [], []
    for k, frame in enumerate(frames):
        name = f'conf{k + 1:04d}'
        (workdir / f'{name}.xyz').write_text(xyz_text(symbols, frame, name))
        with open(workdir / f'{name}.out', 'w') as out, open(workdir / f'{name}.err', 'w') as err:
            subprocess.run(['xtb', f'{name}.xyz', '--gfn', '2', '--opt', 'tight', '--chrg', '0', '--uhf', '0',
                            '--parallel', '2', '--namespace', name], cwd=workdir, stdout=out, stderr=err, env=env)
        lines = (workdir / f'{name}.xtbopt.xyz').read_text().splitlines()
        energies.append(float(lines[1].split()[1]))
        optimised.append([[float(x) for x in line.split()[1:4]] for line in lines[2:2 + len(symbols)]])
    order = np.argsort(energies, kind='stable')
    energies, optimised = np.asarray(energies)[order], np.asarray(optimised)[order]
    kept = window_indices(energies, 6.0)
    kept = [kept[i] for i in unique_indices(symbols, optimised[kept], 0.125)][:top_n]
    assert (energies[kept] - energies[0]).max() * HARTREE_TO_KCAL_MOL <= 6.0 + 1e-6
    protocol = MopacBaseWorkChain.get_protocol_inputs('balanced')['mopac']['parameters']
    keywords = ' '.join([protocol['method'], 'CHARGE=0', *protocol['keywords']])  # task optimisation: no 1SCF
    flag = 1 if protocol['task'] == 'optimization' else 0
    jobs = []
    for k in kept:
        atoms = '\n'.join(f'{s:<2} {x:.8f} {flag} {y:.8f} {flag} {z:.8f} {flag}' for s, (x, y, z) in zip(symbols, optimised[k]))
        jobs.append(f'{keywords}\ngeometry {len(jobs) + 1} of {len(kept)}\n\n{atoms}\n\n')
    (workdir / 'aiida.mop').write_text(''.join(jobs))
    subprocess.run(['mopac', 'aiida.mop'], cwd=workdir, capture_output=True, env={**os.environ})
    result = parse_path(workdir / 'aiida.out')
    return result['lowest_heat_of_formation_kcal_mol'], len(kept)


def plain_loop(molecules: dict, num_conformers: int, top_n: int) -> tuple[float, dict]:
    results = {}
    with tempfile.TemporaryDirectory(prefix='grimperium-plain-') as tmp:
        start = time.perf_counter()
        for mol_id, smiles in molecules.items():
            t0 = time.perf_counter()
            results[mol_id] = plain_molecule(smiles, pathlib.Path(tmp) / mol_id, num_conformers, top_n)
            print(f'  plain {mol_id:<16} {time.perf_counter() - t0:6.1f} s  HOF {results[mol_id][0]:9.3f} kcal/mol', flush=True)
        return time.perf_counter() - start, results


# ------------------------------------------------------------------------------------------------ (b) grimperium


def grimperium(*args, check=True, **kwargs):
    return subprocess.run(['grimperium', '-p', PROFILE, *map(str, args)], env=bench_env(), check=check,
                          capture_output=True, text=True, **kwargs)


def campaign(molecules: dict, num_conformers: int, top_n: int, max_active: int | None, batch_size: int,
             warm: bool = False) -> tuple[float, float, float, dict, float]:
    """Fresh profile, codes, the benchmark's timing lines on localhost; then `grimperium campaign run`, timed.

    ``warm``: the daemon (2 workers) is started, and given 5 s to settle, before the command starts: the way
    AiiDA is used day to day, with ``verdi daemon start`` once. Otherwise the command starts it itself.
    """
    bench_profile(PROFILE, fresh=True)
    from aiida import orm

    computer = orm.load_computer('localhost')
    computer.set_prepend_text(PREPEND)
    computer.set_append_text(APPEND)
    csv_path = BENCH_AIIDA_PATH.parent / 'campaign.csv'
    with open(csv_path, 'w', newline='') as handle:
        writer = csv.writer(handle)
        writer.writerow(['mol_id', 'smiles', 'charge', 'multiplicity', 'nheavy'])
        for mol_id, smiles in molecules.items():
            writer.writerow([mol_id, smiles, 0, 1, heavy_atoms(smiles)])
    daemon_cpu_before = 0.0
    if warm:
        subprocess.run([sys.executable, '-m', 'aiida', '-p', PROFILE, 'daemon', 'start', str(WORKERS)],
                       env=bench_env(), check=True, capture_output=True)
        time.sleep(5)
        daemon_cpu_before = workers_cpu_seconds()  # their start is not part of this campaign's bookkeeping
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    throttle = ['--max-active', max_active] if max_active else []  # none: the campaign's own default
    run = subprocess.Popen(['grimperium', '-p', PROFILE, 'campaign', 'run', str(csv_path), '--group', 'bench',
                            '--num-conformers', str(num_conformers), '--top-n', str(top_n), '--workers', str(WORKERS),
                            '--batch-size', str(batch_size), *map(str, throttle)], env=bench_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    first_submitted, output = None, []
    for line in run.stdout:  # the time the controller is submitted: the daemon start and the campaign's set-up
        output.append(line)
        if first_submitted is None and 'CampaignWorkChain<' in line:
            first_submitted = time.perf_counter() - start
    run.wait()
    wall = time.perf_counter() - start
    print(''.join(output[-6:]), end='')
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cli_cpu = (children.ru_utime + children.ru_stime) - (children_before.ru_utime + children_before.ru_stime)
    daemon_cpu = workers_cpu_seconds() - daemon_cpu_before  # before the workers exit
    subprocess.run([sys.executable, '-m', 'aiida', '-p', PROFILE, 'daemon', 'stop'], env=bench_env(), capture_output=True)
    if run.returncode not in (0, 3):  # 3: finished, with failed molecules (reported below)
        sys.exit('campaign run failed:\n' + ''.join(output))
    cpu, wall_of_jobs, jobs = 0.0, 0.0, 0
    for calc in orm.QueryBuilder().append(orm.CalcJobNode).all(flat=True):
        folder = pathlib.Path(calc.outputs.remote_folder.get_remote_path())
        user_sys = (folder / '.bench_times').read_text().split()[2:4]  # second line: the children's user and sys
        cpu += sum(float(t.rstrip('s').split('m')[0]) * 60 + float(t.rstrip('s').split('m')[1]) for t in user_sys)
        wall_of_jobs += job_wall(calc)
        jobs += 1
    export = BENCH_AIIDA_PATH.parent / 'campaign-export.csv'
    grimperium('export', 'bench', '-o', export)
    with open(export) as handle:
        rows = {row['mol_id']: row for row in csv.DictReader(handle)}
    processes = orm.QueryBuilder().append(orm.ProcessNode).count()
    print(f'  grimperium: {len(rows)} molecules, {jobs} jobs, {processes} processes '
          f'({processes / len(molecules):.1f} per molecule); job CPU {cpu:.1f} s, job wall {wall_of_jobs:.1f} s')
    print(f'  bookkeeping CPU: daemon workers {daemon_cpu:.1f} s, `campaign run` command {cli_cpu:.1f} s '
          f'({(daemon_cpu + cli_cpu) / len(molecules):.2f} s per molecule; measured, unlike wall time, '
          f'much the same on a loaded machine)')
    print(f'  start-up: {first_submitted:.1f} s from the command to its first submission ('
          + ('CSV, campaign nodes; the daemon was running)' if warm else 'daemon start, CSV, campaign nodes)'))
    return wall, cpu, wall_of_jobs, rows, first_submitted


PROFILE = 'grimperium-bench-campaign'


def workers_cpu_seconds() -> float:
    """User + system CPU time of the benchmark profile's daemon workers so far (psutil comes with circus)."""
    import psutil

    total = 0.0
    for process in psutil.process_iter(['cmdline']):
        if f'{PROFILE} daemon worker' in ' '.join(process.info['cmdline'] or []):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def main(argv=None) -> None:
    cli = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    cli.add_argument('--molecules', type=int, default=20, help='the first N molecules of the list')
    cli.add_argument('--small', action='store_true', help='20 small molecules (1-6 heavy atoms) instead of drugs')
    cli.add_argument('--quick', action='store_true', help='4 molecules')
    cli.add_argument('--num-conformers', type=int, default=10)
    cli.add_argument('--top-n', type=int, default=3)
    cli.add_argument('--max-active', type=int, default=None, help="`campaign run`'s throttle (default: its own)")
    cli.add_argument('--batch-size', type=int, default=50, help="`campaign run`'s --batch-size")
    args = cli.parse_args(argv)
    for executable in ('xtb', 'mopac', 'grimperium'):
        if shutil.which(executable) is None:
            sys.exit(f'`{executable}` is not on PATH: run `bash scripts/setup.sh`')
    os.environ.pop('OMP_NUM_THREADS', None)  # both sides: the codes choose their threads as on a user's machine
    pool = SMALL if args.small else DRUGS
    n = 4 if args.quick else args.molecules
    molecules = dict(list(pool.items())[:n])
    if args.small and n > len(molecules):  # more small molecules: random C/N/O skeletons of 2-6 heavy atoms
        molecules.update(small_molecules(n - len(molecules), set(molecules.values())))
    sizes = [heavy_atoms(s) for s in molecules.values()]
    print(f'{len(molecules)} molecules, {min(sizes)}-{max(sizes)} heavy atoms, {args.num_conformers} conformers, '
          f'top {args.top_n}; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start')

    plain_s, plain = plain_loop(molecules, args.num_conformers, args.top_n)
    print(f'(a) plain loop: {plain_s:.1f} s ({plain_s / len(molecules):.2f} s per molecule)', flush=True)
    grimperium_s, cpu, wall_of_jobs, rows, startup = campaign(molecules, args.num_conformers, args.top_n, args.max_active,
                                                          args.batch_size)
    print(f'(b) grimperium campaign run: {grimperium_s:.1f} s ({grimperium_s / len(molecules):.2f} s per molecule); '
          f'load average {os.getloadavg()[0]:.2f} at the end', flush=True)
    warm_s, warm_cpu, _, warm_rows, _ = campaign(molecules, args.num_conformers, args.top_n, args.max_active,
                                                 args.batch_size, warm=True)
    print(f'(c) the same with the daemon already running: {warm_s:.1f} s; load average {os.getloadavg()[0]:.2f}')
    worst = max(abs(float(run[m]['most_stable_hof']) - plain[m][0]) for run in (rows, warm_rows) for m in molecules)
    failed = [m for run in (rows, warm_rows) for m in molecules if run[m]['status'] != 'OK']
    print(f'lowest PM7 HOF, campaign vs plain loop: max |difference| {worst:.3f} kcal/mol; failed: {failed or "none"}')
    overhead = (grimperium_s - cpu / WORKERS) / len(molecules)
    overhead_wall = (grimperium_s - wall_of_jobs / WORKERS) / len(molecules)
    overhead_running = (grimperium_s - startup - cpu / WORKERS) / len(molecules)
    overhead_warm = (warm_s - warm_cpu / WORKERS) / len(molecules)
    print(f'overhead_fraction={overhead / (plain_s / len(molecules)):.3f} '
          f'campaign_ratio={grimperium_s / plain_s:.2f} overhead_s_per_molecule={overhead:.2f} '
          f'grimperium_s={grimperium_s:.1f} plain_s={plain_s:.1f} overhead_by_job_wall_s_per_molecule={overhead_wall:.2f} '
          f'overhead_after_startup_s_per_molecule={overhead_running:.2f} '
          f'overhead_daemon_running_s_per_molecule={overhead_warm:.2f} grimperium_daemon_running_s={warm_s:.1f}')


if __name__ == '__main__':
    main()
