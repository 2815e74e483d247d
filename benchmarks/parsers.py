"""Throughput (MB/s), peak and working memory of every raw parser on large outputs; vasprun.xml against pymatgen.

The large outputs are made from **real** ones by repetition: the MOPAC and xtb outputs are produced here by
running the Debian ``mopac`` and ``xtb`` binaries on caffeine (a few conformers); pw.x, CRYSTAL23, CREST and
VASP outputs are the recorded real runs in ``tests/fixtures``. A text output is concatenated with itself; in
``vasprun.xml`` the ``<calculation>`` blocks (ionic steps) are repeated inside one ``<modeling>`` element, so
the file stays valid XML that pymatgen can read too.

Speed: best of ``--repeat`` wall-clock timings of a plain call; our vasprun.xml parser and pymatgen are timed
in alternation, so that a load from elsewhere on the machine weighs on both alike.

Memory: ``tracemalloc`` during a separate call on the small and on the large file. The *peak* of a parser that
returns one entry per MOPAC job or per pw.x ionic step grows with the file, because its *result* does (those
lists are what the AiiDA parsers store). So the table also shows the *result* (what is still allocated after
the call, with the result alive) and the *working* memory, peak minus result: what parsing costs on top of its
output. Streaming means the working memory does not grow with the file: ``working_mb_growth_max`` is the largest
growth from the small to the large file over all parsers. Usage::

    python benchmarks/parsers.py            # 4 MB and 32 MB files
    python benchmarks/parsers.py --quick    # 1 MB and 4 MB
"""
from __future__ import annotations

import argparse
import gc
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = ROOT / 'tests' / 'fixtures'
MB = 1 << 20
CAFFEINE = 'Cn1cnc2c1c(=O)n(C)c(=O)n2C'


def real_mopac_and_xtb(workdir: pathlib.Path) -> dict[str, pathlib.Path]:
    """Run the real mopac and xtb on three caffeine conformers; return their output files."""
    from aiida_grimperium.chemistry import xyz_text
    from aiida_grimperium.ensembles import embed_conformers

    symbols, frames = embed_conformers(CAFFEINE, 3, seed=7)
    outputs = {}
    xyz = workdir / 'caffeine.xyz'
    xyz.write_text(xyz_text(symbols, frames[0]))
    with open(workdir / 'xtb.out', 'w') as out:
        subprocess.run(['xtb', xyz.name, '--gfn', '2', '--opt', 'tight', '--chrg', '0', '--uhf', '0'],
                       cwd=workdir, stdout=out, stderr=subprocess.STDOUT, check=True,
                       env={'OMP_NUM_THREADS': '1', 'PATH': '/usr/bin:/bin'})
    outputs['xtb'] = workdir / 'xtb.out'
    jobs = []
    for k, frame in enumerate(frames):
        atoms = '\n'.join(f'{s:<2} {x:.8f} 1 {y:.8f} 1 {z:.8f} 1' for s, (x, y, z) in zip(symbols, frame))
        jobs.append(f'PM7 CHARGE=0\ngeometry {k + 1}\n\n{atoms}\n\n')
    (workdir / 'caffeine.mop').write_text(''.join(jobs))
    subprocess.run(['mopac', 'caffeine.mop'], cwd=workdir, check=True, capture_output=True)
    outputs['mopac'] = workdir / 'caffeine.out'
    return outputs


def repeat_text(source: pathlib.Path, target: pathlib.Path, size: int) -> pathlib.Path:
    """``source`` concatenated with itself until ``target`` holds at least ``size`` bytes."""
    data = source.read_bytes()
    with open(target, 'wb') as handle:
        for _ in range(max(1, -(-size // len(data)))):
            handle.write(data)
    return target


def repeat_vasprun(source: pathlib.Path, target: pathlib.Path, size: int) -> pathlib.Path:
    """``vasprun.xml`` with its ``<calculation>`` blocks repeated until the file holds ``size`` bytes."""
    text = source.read_text()
    start, end = text.index('<calculation>'), text.rindex('</calculation>') + len('</calculation>')
    head, block, tail = text[:start], text[start:end] + '\n', text[end:]
    copies = max(1, -(-(size - len(head) - len(tail)) // len(block)))
    with open(target, 'w') as handle:
        handle.write(head)
        for _ in range(copies):
            handle.write(block)
        handle.write(tail)
    return target


def parsers() -> dict:
    """``{name: (parse(path) -> dict, source file, enlarge)}`` for every raw parser."""
    from aiida_grimperium.parsers.raw import crest, crystal, mopac, parse_file, pw, vasp_outcar, vasp_xml, xtb

    return {
        'mopac': (lambda p: parse_file(p, mopac.parse_lines), None, repeat_text),
        'xtb': (lambda p: parse_file(p, xtb.parse_lines), None, repeat_text),
        'pw': (lambda p: parse_file(p, pw.parse_lines), FIXTURES / 'pw/si_vc_relax/aiida.out', repeat_text),
        'crystal': (lambda p: parse_file(p, crystal.parse_lines), FIXTURES / 'crystal/mgo_sto3g_opt/main.out', repeat_text),
        'crest': (lambda p: parse_file(p, crest.parse_lines), FIXTURES / 'crest/butane/crest.out', repeat_text),
        'vasp OUTCAR': (lambda p: parse_file(p, vasp_outcar.parse_text_lines), FIXTURES / 'vasp/ionic-unconverged/OUTCAR',
                        repeat_text),
        'vasprun.xml': (vasp_xml.parse_vasprun, FIXTURES / 'vasp/ionic-unconverged/vasprun.xml', repeat_vasprun),
    }


def best_time(function, path, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        function(path)
        times.append(time.perf_counter() - start)
    return min(times)


def best_times(functions: dict, path, repeat: int) -> dict:
    """Best wall-clock time of each function, calling them in turn ``repeat`` times."""
    times: dict = {name: [] for name in functions}
    for _ in range(repeat):
        for name, function in functions.items():
            gc.collect()
            start = time.perf_counter()
            function(path)
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def memory_mb(function, path) -> tuple[float, float]:
    """(peak during the call, still allocated after it with the result alive) in MB."""
    gc.collect()
    tracemalloc.start()
    result = function(path)  # noqa: F841 - kept alive so that it counts as retained
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / MB, current / MB


def peak_mb(function, path) -> float:
    return memory_mb(function, path)[0]


def pymatgen_vasprun(light: bool):
    from pymatgen.io.vasp.outputs import Vasprun

    options = dict(parse_potcar_file=False)
    if light:  # only what the raw parser also reads: energies, structures, forces, band edges need eigenvalues
        options.update(parse_dos=False, parse_projected_eigen=False)

    def parse(path):
        with warnings.catch_warnings():  # the fixture is an ionic-unconverged run, and pymatgen says so each time
            warnings.simplefilter('ignore')
            return Vasprun(str(path), **options)

    return parse


def main(argv=None) -> None:
    cli = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    cli.add_argument('--small-mb', type=float, default=4.0, help='size of the small file (MB)')
    cli.add_argument('--large-mb', type=float, default=32.0, help='size of the large file (MB)')
    cli.add_argument('--repeat', type=int, default=3, help='timings per parser; the best is reported')
    cli.add_argument('--quick', action='store_true', help='1 MB and 4 MB, one timing')
    args = cli.parse_args(argv)
    if args.quick:
        args.small_mb, args.large_mb, args.repeat = 1.0, 4.0, 1
    for executable in ('mopac', 'xtb'):
        if shutil.which(executable) is None:
            sys.exit(f'`{executable}` not on PATH: run `bash scripts/setup.sh`')

    with tempfile.TemporaryDirectory(prefix='grimperium-parsers-') as tmp:
        work = pathlib.Path(tmp)
        generated = real_mopac_and_xtb(work)
        print(f'files of {args.small_mb:g} and {args.large_mb:g} MB; {os.cpu_count()} cores, '
              f'load average {os.getloadavg()[0]:.2f} at start')
        print(f'{"parser":<12} {"size MB":>7} {"MB/s":>6} {"peak MB":>8} {"peak MB":>8} {"result MB":>9} '
              f'{"working MB":>10} {"working MB":>10}  result check')
        print(f'{"":<12} {"(large)":>7} {"":>6} {"(small)":>8} {"(large)":>8} {"(large)":>9} {"(small)":>10} '
              f'{"(large)":>10}')
        rows = {}
        for name, (function, source, enlarge) in parsers().items():
            source = source or generated[name]
            stem = re.sub(r'\W+', '_', name)
            small = enlarge(source, work / f'{stem}.small', int(args.small_mb * MB))
            large = enlarge(source, work / f'{stem}.large', int(args.large_mb * MB))
            size = large.stat().st_size / MB
            result = function(large)
            seconds = best_time(function, large, args.repeat)
            (peak_small, kept_small), (peak_large, kept_large) = memory_mb(function, small), memory_mb(function, large)
            working = peak_small - kept_small, peak_large - kept_large
            check = 'ok' if not result.get('error') and not result.get('xml_error') else result.get('error') or result.get('xml_error')
            rows[name] = (size, size / seconds, peak_small, peak_large, *working)
            print(f'{name:<12} {size:7.1f} {size / seconds:6.1f} {peak_small:8.2f} {peak_large:8.2f} {kept_large:9.2f} '
                  f'{working[0]:10.2f} {working[1]:10.2f}  {check}')
            large.unlink()
            small.unlink()
        print('result = allocations still alive after the call (the returned dict); working = peak - result, '
              'what parsing needs on top of its output: streaming keeps it flat from the small to the large file')

        # vasprun.xml: the raw parser and pymatgen on the same large file, timed in alternation
        function, source, enlarge = parsers()['vasprun.xml']
        large = enlarge(source, work / 'vasprun.xml', int(args.large_mb * MB))
        size = large.stat().st_size / MB
        contenders = {'ours': function, 'defaults': pymatgen_vasprun(light=False), 'light': pymatgen_vasprun(light=True)}
        seconds = best_times(contenders, large, args.repeat)
        ours = function(large)
        ours_energy = (ours.get('energies') or {}).get('e_0_energy')  # what pymatgen's final_energy reports
        steps = ours['num_ionic_steps']
        print(f'\nvasprun.xml {size:.1f} MB ({steps} ionic steps), best of {args.repeat} alternating runs:')
        print(f'  {"grimperium raw parser":<37} {seconds["ours"]:6.2f} s {size / seconds["ours"]:6.1f} MB/s  '
              f'peak {rows["vasprun.xml"][3]:5.1f} MB  final energy {_energy(ours_energy)}')
        agree = True
        for key, label in (('defaults', 'pymatgen Vasprun (defaults)'), ('light', 'pymatgen Vasprun (no DOS/projections)')):
            run = contenders[key](large)
            final = float(run.final_energy)
            agree = agree and ours_energy is not None and abs(final - ours_energy) < 1e-6 and len(run.ionic_steps) == steps
            print(f'  {label:<37} {seconds[key]:6.2f} s {size / seconds[key]:6.1f} MB/s  '
                  f'peak {peak_mb(contenders[key], large):5.1f} MB  final energy {_energy(final)} '
                  f'({len(run.ionic_steps)} ionic steps)')
        print(f'  final energy, ours vs pymatgen: {"agree" if agree else "DIFFER"}')
    growth = max(r[5] - r[4] for r in rows.values())
    print(f'load average {os.getloadavg()[0]:.2f} at the end')
    print(f'parsers_min_mb_s={min(r[1] for r in rows.values()):.1f} working_mb_growth_max={growth:.2f} '
          f'vasprun_speedup_vs_pymatgen={seconds["defaults"] / seconds["ours"]:.2f} '
          f'vasprun_speedup_vs_pymatgen_light={seconds["light"] / seconds["ours"]:.2f} '
          f'vasprun_final_energy_agrees={"yes" if agree else "no"}')


def _energy(value) -> str:
    return 'None' if value is None else f'{value:.8f} eV'


if __name__ == '__main__':
    main()
