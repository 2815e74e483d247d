"""CREST: the raw parser on every recorded real run, the CalcJob's command line, and a REPLAY through AiiDA.

CREST cannot be installed here: the runs in ``tests/fixtures/crest`` are real CREST 2.12 outputs (copied
unmodified from the project's shared fixtures). Expected values are read from those files by the tests.
"""
from __future__ import annotations

import json
import pathlib
import random
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from aiida_grimperium.chemistry import HARTREE_TO_KCAL_MOL
from aiida_grimperium.parsers.raw import crest as raw
from aiida_grimperium.structures import conformer_values

FIXTURES = pathlib.Path(__file__).parent / 'fixtures' / 'crest'
GOOD = ('butane', 'ethanol', 'propanol', 'acetate')


def energies_file(run):
    """(index, Erel) rows of crest.energies, read independently of the parser."""
    return [(int(a), float(b)) for a, b in (line.split()[:2] for line in (FIXTURES / run / 'crest.energies').read_text().splitlines() if line.strip())]


def xyz_comment_energies(run):
    lines = (FIXTURES / run / 'crest_conformers.xyz').read_text().splitlines()
    natoms, energies, i = int(lines[0]), [], 0
    while i < len(lines) and lines[i].strip():
        energies.append(float(lines[i + 1]))
        i += natoms + 2
    return natoms, energies


def stdout_value(run, prefix):
    for line in (FIXTURES / run / 'crest.out').read_text().splitlines():
        if line.startswith(prefix):
            value = float(line.split(':')[-1])
    return value


@pytest.mark.parametrize('run', GOOD)
def test_crest_parser_on_recorded_runs(run):
    result = raw.parse_path(FIXTURES / run)
    assert result['exit_label'] is None
    rows = energies_file(run)
    natoms, absolute = xyz_comment_energies(run)
    assert result['num_conformers'] == len(rows) == len(absolute)
    assert result['num_atoms'] == natoms
    assert [c['relative_energy_kcal_mol'] for c in result['conformers']] == [erel for _, erel in rows]
    assert [c['energy_hartree'] for c in result['conformers']] == absolute
    assert result['lowest_energy_hartree'] == min(absolute)
    # relative energies written by CREST agree with its absolute energies to its 0.001 kcal/mol rounding
    for c in result['conformers']:
        assert (c['energy_hartree'] - min(absolute)) * HARTREE_TO_KCAL_MOL == pytest.approx(c['relative_energy_kcal_mol'], abs=6e-4)
    assert result['ensemble_free_energy_kcal_mol'] == stdout_value(run, 'ensemble free energy (kcal/mol)')
    assert result['population_lowest_percent'] == stdout_value(run, 'population of lowest in %')
    assert result['conformers'][0]['population'] == pytest.approx(result['population_lowest_percent'] / 100, abs=1e-5)
    assert sum(c['population'] for c in result['conformers']) == pytest.approx(1.0, abs=1e-3)
    assert result['normal_termination'] and result['crest_version'] == '2.12'


def test_crest_parser_butane_values():
    """The n-butane run: anti and gauche, gauche 0.596 kcal/mol above anti, as crest.energies says."""
    result = raw.parse_path(FIXTURES / 'butane' / 'crest.out')
    assert result['num_conformers'] == 2
    assert result['conformers'][1]['relative_energy_kcal_mol'] == 0.596
    assert result['conformers'][0]['degeneracy'] == 9 and result['conformers'][1]['degeneracy'] == 18
    assert '--gfn2' in result['command_line']


def test_crest_parser_failed_initial_optimisation():
    result = raw.parse_path(FIXTURES / 'fail_overlap')
    assert result['exit_label'] == 'ERROR_INITIAL_OPTIMIZATION_FAILED'
    assert 'conformers' not in result


def copy_run(tmp_path, run='propanol'):
    target = tmp_path / run
    shutil.copytree(FIXTURES / run, target)
    return target


def test_crest_parser_missing_and_mismatched_files(tmp_path):
    folder = copy_run(tmp_path)
    (folder / 'crest_conformers.xyz').unlink()
    assert raw.parse_path(folder)['exit_label'] == 'ERROR_ENSEMBLE_MISSING'
    folder = copy_run(tmp_path / 'b')
    (folder / 'crest_conformers.xyz').write_text('')
    assert raw.parse_path(folder)['exit_label'] == 'ERROR_ENSEMBLE_MISSING'
    folder = copy_run(tmp_path / 'c')
    lines = (folder / 'crest.energies').read_text().splitlines(keepends=True)
    (folder / 'crest.energies').write_text(''.join(lines[:-2]))
    result = raw.parse_path(folder)
    assert result['exit_label'] == 'ERROR_ENSEMBLE_MISMATCH' and result['num_conformers'] == 7
    folder = copy_run(tmp_path / 'd')
    (folder / 'crest.energies').unlink()
    assert raw.parse_path(folder)['exit_label'] == 'ERROR_ENSEMBLE_MISSING'


def test_crest_parser_truncated_empty_binary(tmp_path):
    folder = copy_run(tmp_path)
    text = (folder / 'crest.out').read_text()
    for cut in range(0, len(text), max(1, len(text) // 40)):
        (folder / 'crest.out').write_text(text[:cut])
        result = raw.parse_path(folder)
        assert result['exit_label'] in ('ERROR_OUTPUT_READ', 'ERROR_OUTPUT_INCOMPLETE'), cut
    (folder / 'crest.out').write_bytes(b'\x00\x01garbage' * 100)
    assert raw.parse_path(folder)['exit_label'] == 'ERROR_OUTPUT_READ'
    (folder / 'crest.out').unlink()
    assert raw.parse_path(folder)['exit_label'] == 'ERROR_OUTPUT_MISSING'


def test_crest_parser_truncated_ensemble(tmp_path):
    folder = copy_run(tmp_path)
    text = (folder / 'crest_conformers.xyz').read_text()
    (folder / 'crest_conformers.xyz').write_text(text[: len(text) // 2])
    assert raw.parse_path(folder)['exit_label'] in ('ERROR_ENSEMBLE_READ', 'ERROR_ENSEMBLE_MISMATCH')


def test_crest_parser_byte_mutations_never_raise(tmp_path):
    rng = random.Random(1234)
    folder = copy_run(tmp_path)
    originals = {name: (folder / name).read_bytes() for name in ('crest.out', 'crest.energies', 'crest_conformers.xyz')}
    for _ in range(60):
        name = rng.choice(list(originals))
        data = bytearray(originals[name])
        for _ in range(rng.randint(1, 20)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        (folder / name).write_bytes(bytes(data))
        result = raw.parse_path(folder)
        assert 'exit_label' in result
        json.dumps(result)
        (folder / name).write_bytes(originals[name])


def test_grimperium_parse_crest_cli():
    from aiida_grimperium.cli import cmd_root

    out = CliRunner().invoke(cmd_root, ['parse', 'crest', str(FIXTURES / 'butane')])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data['exit_status'] == 0 and data['num_conformers'] == 2
    assert data['lowest_energy_hartree'] == -13.6651277
    assert [c['relative_energy_kcal_mol'] for c in data['conformers']] == [0.0, 0.596]
    assert [c['population'] for c in data['conformers']] == [0.57734, 0.42266]
    failed = json.loads(CliRunner().invoke(cmd_root, ['parse', 'crest', str(FIXTURES / 'fail_overlap' / 'crest.out')]).output)
    assert failed['exit_status'] == 410 and failed['exit_message'] == 'ERROR_INITIAL_OPTIMIZATION_FAILED'


# ---------------------------------------------------------------- CalcJob: inputs, command line, replay


def read_structure(path):
    from aiida_grimperium.parsers.raw.xtb import read_xyz
    from aiida_grimperium.structures import molecule_structure

    symbols, positions, _ = read_xyz(path)
    return molecule_structure(symbols, positions)


def test_crest_calcjob_command_line_and_inputs(aiida_localhost, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a dry run writes its submit_test/ folder into the working directory
    from aiida import orm
    from aiida.engine import run_get_node
    from aiida.plugins import CalculationFactory

    code = orm.InstalledCode(label='crest-dry', computer=aiida_localhost, filepath_executable='/opt/crest/bin/crest',
                             default_calc_job_plugin='grimperium.crest').store()
    structure = read_structure(FIXTURES / 'acetate' / 'input.xyz')
    params = {'gfn': 'gfn2', 'solvent': 'water', 'energy_window': 6.0, 'rmsd_threshold': 0.125,
              'energy_threshold': 0.05, 'mode': 'quick'}
    inputs = {'code': code, 'structure': structure, 'charge': orm.Int(-1), 'parameters': orm.Dict(params),
              'metadata': {'dry_run': True, 'options': {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 2}}}}
    _, node = run_get_node(CalculationFactory('grimperium.crest'), **inputs)
    folder = pathlib.Path(node.dry_run_info['folder'])
    script = (folder / '_aiidasubmit.sh').read_text()
    expected = ("'/opt/crest/bin/crest' 'aiida.xyz' '--gfn2' '--chrg' '-1' '--uhf' '0' '--alpb' 'water' '--ewin' '6.0' "
                "'--rthr' '0.125' '--ethr' '0.05' '--quick' '-T' '2' > 'crest.out' 2> 'crest.err'")
    assert expected in ' '.join(script.split())
    assert 'export OMP_NUM_THREADS=2' in script
    xyz = (folder / 'aiida.xyz').read_text().splitlines()
    original = (FIXTURES / 'acetate' / 'input.xyz').read_text().splitlines()
    assert int(xyz[0]) == int(original[0]) == 7
    for mine, theirs in zip(xyz[2:], original[2:]):
        assert mine.split()[0] == theirs.split()[0]
        assert np.allclose([float(x) for x in mine.split()[1:]], [float(x) for x in theirs.split()[1:]], atol=1e-8)
    with pytest.raises(ValueError, match='impossible'):
        run_get_node(CalculationFactory('grimperium.crest'), **{**inputs, 'charge': orm.Int(0)})
    with pytest.raises(ValueError, match='unknown CREST'):
        run_get_node(CalculationFactory('grimperium.crest'), **{**inputs, 'parameters': orm.Dict({'bogus': 1})})


def replay_folder(tmp_path, run):
    """The recorded run arranged for the replay script: CREST's stdout (crest.out) renamed crest.stdout."""
    target = tmp_path / f'replay-{run}'
    target.mkdir()
    for f in (FIXTURES / run).iterdir():
        if f.name == 'input.xyz':
            continue
        shutil.copy(f, target / ('crest.stdout' if f.name == 'crest.out' else f.name))
    return target


def test_replay_crest_butane_through_calcjob(replay_code, tmp_path):
    """REPLAY of the recorded real CREST run on n-butane through CrestCalculation + CrestParser."""
    from aiida import orm
    from aiida.engine import run_get_node
    from aiida.plugins import CalculationFactory

    code = replay_code('grimperium.crest', [replay_folder(tmp_path, 'butane')], label='crest-replay')
    structure = read_structure(FIXTURES / 'butane' / 'input.xyz')
    results, node = run_get_node(CalculationFactory('grimperium.crest'), code=code, structure=structure,
                                 parameters=orm.Dict({'gfn': 'gfn2', 'mode': 'quick'}))
    assert node.is_finished_ok, node.exit_status
    out = results['output_parameters']
    assert out['num_conformers'] == 2 and out['lowest_energy_hartree'] == -13.6651277
    assert out['ensemble_free_energy_kcal_mol'] == -1.879 and out['population_lowest'] == pytest.approx(0.57734)
    ensemble = results['output_ensemble']
    natoms, absolute = xyz_comment_energies('butane')
    assert ensemble.get_positions().shape == (2, natoms, 3)
    assert list(conformer_values(ensemble, 'energies_hartree')) == absolute
    assert conformer_values(ensemble, 'relative_energies_kcal_mol')[1] == pytest.approx(0.596, abs=6e-4)
    assert conformer_values(ensemble, 'populations').sum() == pytest.approx(1.0)
    assert ensemble.base.attributes.get('engine') == 'crest'
    lowest = results['output_structure']
    assert np.allclose([s.position for s in lowest.sites], ensemble.get_positions()[0])


def test_replay_crest_failed_run_gives_exit_code(replay_code, tmp_path):
    """REPLAY of the recorded real CREST failure (overlapping atoms): exit code 410, no ensemble."""
    from aiida.engine import run_get_node
    from aiida.plugins import CalculationFactory
    from aiida_grimperium.structures import molecule_structure

    code = replay_code('grimperium.crest', [replay_folder(tmp_path, 'fail_overlap')], label='crest-fail')
    structure = molecule_structure(['O', 'H', 'H'], [[0, 0, 0], [0, 0, 0.0], [0, 0, 0.1]])
    results, node = run_get_node(CalculationFactory('grimperium.crest'), code=code, structure=structure)
    assert node.exit_status == 410
    assert 'output_ensemble' not in results
    assert 'xtb.out' in node.outputs.retrieved.base.repository.list_object_names()


def test_crest_base_workchain_reruns_a_search_stopped_at_its_walltime(replay_code, tmp_path):
    """REPLAY through grimperium.crest.base: the butane run cut short by Slurm's walltime (its stdout halved, no
    ensemble, slurmstepd's line in the scheduler's stderr: a mutation of the recorded run), then the whole run. The
    handler reruns the search with twice the walltime; the outputs are those of the recorded run."""
    from aiida import orm
    from aiida.engine import run_get_node

    from aiida_grimperium.workchains.crest import CrestBaseWorkChain

    cut = tmp_path / 'replay-butane-walltime'
    cut.mkdir()
    text = (FIXTURES / 'butane' / 'crest.out').read_text()
    (cut / 'crest.stdout').write_text(text[: len(text) // 2])
    (cut / '_scheduler-stderr.txt').write_text('slurmstepd: error: *** JOB 12 ON node1 CANCELLED AT '
                                               '2026-01-01T10:00:00 DUE TO TIME LIMIT ***\n')
    code = replay_code('grimperium.crest', [cut, replay_folder(tmp_path, 'butane')], label='crest-walltime')
    builder = CrestBaseWorkChain.get_builder_from_protocol(code, read_structure(FIXTURES / 'butane' / 'input.xyz'),
                                                           'fast', options={'max_wallclock_seconds': 900})
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_status
    calcs = sorted(node.called, key=lambda n: n.ctime)
    assert [c.exit_status for c in calcs] == [400, 0]
    assert [c.get_option('max_wallclock_seconds') for c in calcs] == [900, 1800]
    assert calcs[1].inputs.structure.uuid == calcs[0].inputs.structure.uuid  # CREST cannot continue a search
    assert calcs[0].inputs.parameters['mode'] == 'quick'
    assert results['output_parameters']['lowest_energy_hartree'] == xyz_comment_energies('butane')[1][0]
    assert any('ran out of walltime' in log.message for log in orm.Log.collection.get_logs_for(node))
