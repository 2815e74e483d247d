"""CSV campaigns end to end: validation, a real campaign on the daemon, reruns, export and report.

The campaign runs the real xtb and mopac (rdkit-xtb engine) through the daemon and the ZeroMQ broker. CeCl2 is
the molecule that really fails: RDKit and xtb (GFN2 has cerium) handle it, MOPAC's PM7 has no parameters for
cerium ("Data are not available for Cerium"), so its pipeline ends at the MOPAC stage every time.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
from aiida import orm
from click.testing import CliRunner

from aiida_grimperium.cli import cmd_root

GOOD = [  # mol_id, smiles, nheavy, reference (kcal/mol, NIST via the sample CSV)
    ('water', 'O', 1, -57.80),
    ('methanol', 'CO', 2, -48.04),
    ('ethanol', 'CCO', 3, -56.12),
    ('propane', 'CCC', 3, -25.02),
    ('n-butane', 'CCCC', 4, -30.02),
]
BAD_ROWS = """mol_id,smiles,charge,multiplicity,nheavy,H298_cbs,batch_id
ok,CCO,0,1,3,-56.12,b
zero_ref,C,0,1,1,0,b
no_ref,CC,0,1,2,,b
nan_ref,CCC,0,1,3,NaN,b
bad_smiles,C1CC,0,1,3,1.0,b
charge_text,CCO,one,1,3,1.0,b
mult_float,CCO,0,1.5,3,1.0,b
parity,CCO,0,2,3,1.0,b
formal,CC(=O)[O-],0,2,4,1.0,b
ok,CCN,0,1,3,1.0,b
empty_smiles,,0,1,0,1.0,b
ref_text,CCO,0,1,3,abc,b
"""
EXPECTED_ERRORS = {  # row (line of the file) -> field
    6: 'smiles', 7: 'charge', 8: 'multiplicity', 9: 'multiplicity', 10: 'charge', 11: 'mol_id', 12: 'smiles',
    13: 'H298_cbs',
}
HOF = re.compile(r'FINAL HEAT OF FORMATION =\s+(-?\d+\.\d+) KCAL/MOL')


def invoke(*args):
    result = CliRunner().invoke(cmd_root, [str(a) for a in args], catch_exceptions=False)
    return result


def test_strict_refuses_with_every_error_listed(tmp_path):
    path = tmp_path / 'bad.csv'
    path.write_text(BAD_ROWS)
    result = invoke('validate', path, '--strict')
    assert result.exit_code == 1
    for row, field in EXPECTED_ERRORS.items():
        assert re.search(rf'row {row}, field `{field}`', result.output), (row, field, result.output)
    assert 'nothing submitted' in result.output
    for good in ('row 2,', 'row 3,', 'row 4,', 'row 5,'):
        assert good not in result.output  # zero, empty and NaN references are fine
    assert (tmp_path / 'bad.csv.validation.log').read_text().count('field `') == len(EXPECTED_ERRORS)


def test_strict_submit_submits_nothing(tmp_path):
    path = tmp_path / 'bad.csv'
    path.write_text(BAD_ROWS)
    result = invoke('campaign', 'submit', path, '--group', 'strict-refused')
    assert result.exit_code == 1
    assert orm.QueryBuilder().append(orm.Group, filters={'label': 'strict-refused'}).count() == 0


def test_permissive_dry_run_keeps_the_good_rows(tmp_path):
    path = tmp_path / 'bad.csv'
    path.write_text(BAD_ROWS)
    result = invoke('campaign', 'submit', path, '--group', 'permissive', '--permissive', '--dry-run')
    assert result.exit_code == 0
    assert 'skipping 8 bad row(s)' in result.output and 'would submit 4 molecule(s)' in result.output


def test_export_killed_midway_keeps_the_previous_file(tmp_path):
    """A writer killed (SIGKILL) half-way through leaves the old export untouched and no partial file in its place."""
    target = tmp_path / 'export.csv'
    target.write_text('mol_id,status\nold,OK\n')
    script = textwrap.dedent(f"""
        import os, signal
        from aiida_grimperium.campaign.export import write_atomic
        def write(handle):
            handle.write('mol_id,status\\n' + 'new,OK\\n' * 1000)
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        write_atomic({str(target)!r}, write)
    """)
    process = subprocess.run([sys.executable, '-c', script], capture_output=True)
    assert process.returncode == -signal.SIGKILL
    assert target.read_text() == 'mol_id,status\nold,OK\n'


def wait_for(group_label: str, timeout: float) -> None:
    from aiida_grimperium.campaign.store import get_campaign, runs, status_of

    group = get_campaign(group_label)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        all_runs = runs(group)
        if all(status_of(r, 99) not in ('Running', 'Pending') for r in all_runs.values()) and all_runs:
            return
        time.sleep(1.0)
    raise AssertionError(f'campaign {group_label} did not finish in {timeout} s: {runs(group)}')


@pytest.fixture
def campaign_codes(real_code):
    return {'xtb': real_code('xtb', 'grimperium.xtb'), 'mopac': real_code('mopac', 'grimperium.mopac')}


@pytest.mark.daemon
def test_real_campaign_on_the_daemon(campaign_codes, started_daemon_client, tmp_path):
    csv_path = tmp_path / 'campaign.csv'
    lines = ['mol_id,smiles,charge,multiplicity,nheavy,H298_cbs,batch_id,source']
    lines += [f'{m},{s},0,1,{n},{ref},t1,NIST' for m, s, n, ref in GOOD]
    lines.append('cecl2,Cl[Ce]Cl,0,1,3,,t1,fails in MOPAC')
    csv_path.write_text('\n'.join(lines) + '\n')
    codes = [f'--code={name}={code.full_label}' for name, code in campaign_codes.items()]

    result = invoke('campaign', 'submit', csv_path, '--group', 'c1', '--num-conformers', 4, '--max-reruns', 1, *codes)
    assert result.exit_code == 0, result.output
    assert result.output.count('submitted') == 6
    wait_for('c1', timeout=600)

    status = invoke('campaign', 'status', 'c1')
    assert 'OK=5' in status.output and 'Rerun=1' in status.output, status.output

    export = tmp_path / 'c1.csv'
    assert invoke('export', 'c1', '-o', export).exit_code == 0
    table = pd.read_csv(export)
    assert list(table.columns[:22]) == [
        'mol_id', 'status', 'reruns', 'smiles', 'multiplicity', 'charge', 'nheavy', 'timestamp_added', 'H298_cbs',
        'batch_id', 'timestamp_started', 'timestamp_completed', 'crest_status', 'crest_conformers_generated',
        'crest_time', 'mopac_status', 'mopac_time', 'delta_1', 'delta_2', 'delta_3', 'most_stable_hof',
        'error_message']
    assert list(table['mol_id']) == [g[0] for g in GOOD] + ['cecl2']
    assert 'source' in table.columns  # the CSV's own extra column comes back

    for row in table.itertuples():
        node = orm.load_node(int(row.pk))
        if row.mol_id == 'cecl2':
            assert row.status == 'Rerun' and row.crest_status == 'SUCCESS' and row.mopac_status == 'FAILED'
            assert node.exit_status == 420 and 'MOPAC' in row.error_message
            assert 'ensemble' in node.outputs  # the conformers computed before the failure are kept
            continue
        assert row.status == 'OK' and row.mopac_status == 'OK' and row.reruns == 0
        assert row.most_stable_hof == node.outputs.most_stable_hof.value
        assert row.delta_1 == pytest.approx(node.outputs.most_stable_hof.value - row.H298_cbs, abs=1e-9)
        assert row.crest_conformers_generated == node.outputs.ensemble.numsteps
        heats = sorted(h for h in node.outputs.pm7_parameters['heats_of_formation_kcal_mol'] if h is not None)
        assert json.loads(row.pm7_heats_of_formation_kcal_mol) == heats
        if len(heats) >= 2:
            assert row.delta_2 == pytest.approx(heats[1] - row.H298_cbs, abs=1e-9)

    # PM7 by hand on the exported lowest geometry of n-butane: a single point at the optimised geometry
    butane = orm.load_node(int(table.set_index('mol_id').loc['n-butane', 'pk']))
    structure = butane.outputs.lowest_structure
    atoms = '\n'.join(f'{s.kind_name} {x:.9f} 0 {y:.9f} 0 {z:.9f} 0' for s in structure.sites for x, y, z in [s.position])
    folder = tmp_path / 'by_hand'
    folder.mkdir()
    (folder / 'b.mop').write_text(f'PM7 1SCF CHARGE=0\nn-butane\n\n{atoms}\n')
    subprocess.run(['mopac', 'b.mop'], cwd=folder, check=True, capture_output=True, timeout=60)
    by_hand = float(HOF.findall((folder / 'b.out').read_text())[0])
    assert by_hand == pytest.approx(butane.outputs.most_stable_hof.value, abs=0.01)  # 9-decimal geometry

    # rerun: the failed molecule (reruns < max) runs again, fails again, and is then skipped
    rerun = invoke('campaign', 'rerun', 'c1')
    assert 'submitted cecl2' in rerun.output and rerun.output.count('submitted') == 1, rerun.output
    wait_for('c1', timeout=300)
    assert 'Skip=1' in invoke('campaign', 'status', 'c1').output
    assert 'nothing to rerun' in invoke('campaign', 'rerun', 'c1').output
    invoke('export', 'c1', '-o', export)
    row = pd.read_csv(export).set_index('mol_id').loc['cecl2']
    assert row['status'] == 'Skip' and row['reruns'] == 1

    # the QueryBuilder recipes of docs/campaigns.md give the same numbers as the export
    from aiida_grimperium.campaign import queries

    final = pd.read_csv(export).set_index('mol_id')
    expected = {m: final.loc[m, 'delta_1'] for m in final.index if pd.notna(final.loc[m, 'delta_1'])}
    assert queries.large_deltas('c1', threshold=0.0) == pytest.approx(expected)
    threshold = sorted(abs(v) for v in expected.values())[2]
    assert set(queries.large_deltas('c1', threshold)) == {m for m, v in expected.items() if abs(v) > threshold}
    energies = queries.conformer_energies('c1', 'n-butane')
    assert energies['relative_energies_kcal_mol'] == pytest.approx(
        butane.outputs.ensemble.get_array('relative_energies_kcal_mol').tolist())
    assert energies['pm7_heats_of_formation_kcal_mol'][0] == butane.outputs.most_stable_hof.value

    report = tmp_path / 'report'
    result = invoke('report', 'c1', '-o', report)
    assert result.exit_code == 0, result.output
    stats = json.loads((report / 'statistics.json').read_text())
    errors = [orm.load_node(int(r.pk)).outputs.most_stable_hof.value - r.H298_cbs
              for r in table.itertuples() if r.mol_id != 'cecl2']
    assert stats['overall']['n'] == 5
    assert stats['overall']['mae'] == pytest.approx(sum(abs(e) for e in errors) / 5)
    import matplotlib.image

    image = matplotlib.image.imread(report / 'parity.png')
    assert image.shape[0] > 300 and image.shape[1] > 300
    assert (image[..., :3].std(axis=(0, 1)) > 0).all()  # not a blank canvas
    page = (report / 'index.html').read_text()
    assert '<img src="parity.png"' in page and page.count('<tr>') >= 1 + 1 + 5 + 6


def test_pipeline_with_pw_step(campaign_codes, real_code, tmp_path):
    """SMILES → conformers → PM7 → a `fast` pw.x SCF on the PM7-lowest conformer; energy as pw.x printed it."""
    from aiida.engine import run_get_node

    from aiida_grimperium.campaign import queries
    from aiida_grimperium.campaign.builders import pipeline_builder
    from aiida_grimperium.campaign.molecules import Molecule
    from aiida_grimperium.campaign.store import DEFAULT_SETTINGS

    codes = {**campaign_codes, 'pw': real_code('pw.x', 'grimperium.pw')}
    settings = {**DEFAULT_SETTINGS, 'dft': 'pw', 'protocol': 'fast', 'num_conformers': 3}
    molecule = Molecule(mol_id='water', smiles='O', charge=0, multiplicity=1)
    results, node = run_get_node(pipeline_builder(molecule, settings, codes))
    assert node.is_finished_ok, node.exit_message
    pw_calc = [n for n in node.called_descendants if n.process_type == 'aiida.calculations:grimperium.pw'][-1]
    text = pw_calc.outputs.retrieved.base.repository.get_object_content('aiida.out')
    printed_ry = float(re.findall(r'!\s+total energy\s+=\s+(-?\d+\.\d+) Ry', text)[-1])
    assert results['dft']['energy'].value == pytest.approx(printed_ry * 13.605693122994, abs=1e-4)
    assert node.outputs.output_parameters['dft_energy_ev'] == results['dft']['energy'].value
    assert pw_calc.inputs.structure.get_formula() == 'H2O'

    group = orm.Group(label='dft-campaign').store()
    node.base.extras.set('mol_id', 'water')
    group.add_nodes(node)
    assert queries.dft_band_gaps('dft-campaign') == {'water': results['dft']['band_gap'].value}
