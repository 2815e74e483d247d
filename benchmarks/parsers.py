"""Throughput (MB/s) and peak memory of every raw parser on large outputs, and vasprun.xml against pymatgen.

The large outputs are made from **real** ones by repetition: the MOPAC and xtb outputs are produced here by
running the Debian ``mopac`` and ``xtb`` binaries on caffeine (a few conformers); pw.x, CRYSTAL23, CREST and
VASP outputs are the recorded real runs in ``tests/fixtures``. A text output is concatenated with itself; in
``vasprun.xml`` the ``<calculation>`` blocks (ionic steps) are repeated inside one ``<modeling>`` element, so
the file stays valid XML that pymatgen can read too.

Speed: best of ``--repeat`` wall-clock timings of a plain call. Memory: the peak of Python allocations
(``tracemalloc``) during a separate call on the small and on the large file — a streaming parser has about the
same peak on both. Usage::

    python benchmarks/parsers.py            # 4 MB and 32 MB files
    python benchmarks/parsers.py --quick    # 1 MB and 4 MB
"""
from __future__ import annotations

import argparse
import gc
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc

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


def peak_mb(function, path) -> float:
    gc.collect()
    tracemalloc.start()
    function(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / MB


def pymatgen_vasprun(light: bool):
    from pymatgen.io.vasp.outputs import Vasprun

    options = dict(parse_potcar_file=False)
    if light:  # only what the raw parser also reads: energies, structures, forces, band edges need eigenvalues
        options.update(parse_dos=False, parse_projected_eigen=False)
    return lambda path: Vasprun(str(path), **options)


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
        print(f'{"parser":<14} {"size MB":>8} {"MB/s":>8} {"peak MB (small)":>16} {"peak MB (large)":>16}  result check')
        rows = {}
        for name, (function, source, enlarge) in parsers().items():
            source = source or generated[name]
            stem = re.sub(r'\W+', '_', name)
            small = enlarge(source, work / f'{stem}.small', int(args.small_mb * MB))
            large = enlarge(source, work / f'{stem}.large', int(args.large_mb * MB))
            size = large.stat().st_size / MB
            result = function(large)
            seconds = best_time(function, large, args.repeat)
            peaks = peak_mb(function, small), peak_mb(function, large)
            check = 'ok' if not result.get('error') and not result.get('xml_error') else result.get('error') or result.get('xml_error')
            rows[name] = (size, size / seconds, *peaks)
            print(f'{name:<14} {size:8.1f} {size / seconds:8.1f} {peaks[0]:16.2f} {peaks[1]:16.2f}  {check}')
            large.unlink()
            small.unlink()

        # vasprun.xml: the raw parser and pymatgen on the same large file
        function, source, enlarge = parsers()['vasprun.xml']
        large = enlarge(source, work / 'vasprun.xml', int(args.large_mb * MB))
        size = large.stat().st_size / MB
        ours = best_time(function, large, args.repeat)
        ours_energy = (function(large).get('energies') or {}).get('e_0_energy')  # pymatgen's final_energy
        print(f'\nvasprun.xml {size:.1f} MB ({large.read_text().count("<calculation>")} ionic steps):')
        print(f'  grimperium raw parser             {ours:7.2f} s  {size / ours:6.1f} MB/s  peak {rows["vasprun.xml"][3]:.1f} MB')
        ratios = {}
        for light in (False, True):
            label = 'pymatgen Vasprun' + (' (no DOS/projections)' if light else ' (defaults)')
            parse = pymatgen_vasprun(light)
            seconds = best_time(parse, large, max(1, args.repeat - 1))
            peak = peak_mb(parse, large)
            final = parse(large).final_energy
            ratios[light] = seconds / ours
            print(f'  {label:<33} {seconds:7.2f} s  {size / seconds:6.1f} MB/s  peak {peak:.1f} MB  '
                  f'(final energy {float(final):.8f} eV, ours {ours_energy:.8f})')
    growth = max(r[3] - r[2] for r in rows.values())
    print(f'parsers_min_mb_s={min(r[1] for r in rows.values()):.1f} peak_mb_growth_max={growth:.2f} '
          f'vasprun_speedup_vs_pymatgen={ratios[False]:.1f} vasprun_speedup_vs_pymatgen_light={ratios[True]:.1f}')


if __name__ == '__main__':
    main()
