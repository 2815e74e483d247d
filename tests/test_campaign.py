"""CSV campaigns end to end: validation, a real campaign on the daemon, reruns, export and report.

The campaign runs the real xtb and mopac (rdkit-xtb engine) through the daemon and the ZeroMQ broker. CeCl2 is
the molecule that really fails: RDKit and xtb (GFN2 has cerium) handle it, MOPAC's PM7 has no parameters for
cerium ("Data are not available for Cerium"), so its pipeline ends at the MOPAC stage every time.
"""
from __future__ import annotations

import json
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
FIXTURES = pathlib.Path(__file__).parent / 'fixtures'
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
        assert re.search(rf'row {row} \(mol_id [^)]*\), field `{field}`', result.output), (row, field, result.output)
    assert 'nothing submitted' in result.output
    for good in ('row 2 ', 'row 3 ', 'row 4 ', 'row 5 '):
        assert good not in result.output  # zero, empty and NaN references are fine
    assert (tmp_path / 'bad.csv.validation.log').read_text().count('field `') == len(EXPECTED_ERRORS)


def test_strict_submit_submits_nothing(tmp_path):
    path = tmp_path / 'bad.csv'
    path.write_text(BAD_ROWS)
    result = invoke('campaign', 'submit', path, '--group', 'strict-refused')
    assert result.exit_code == 1
    assert orm.QueryBuilder().append(orm.Group, filters={'label': 'strict-refused'}).count() == 0


def test_permissive_dry_run_keeps_the_good_rows(tmp_path, campaign_codes):
    path = tmp_path / 'bad.csv'
    path.write_text(BAD_ROWS)
    codes = [f'--code={name}={code.full_label}' for name, code in campaign_codes.items()]
    result = invoke('campaign', 'submit', path, '--group', 'permissive', '--permissive', '--dry-run', *codes)
    assert result.exit_code == 0, result.output
    assert 'skipping 8 bad row(s)' in result.output and 'dry run: 4 molecule(s)' in result.output


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
    """Wait until no controller of the campaign runs."""
    from aiida_grimperium.campaign.readers import active_controllers
    from aiida_grimperium.campaign.store import load_campaign

    group = load_campaign(group_label)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not active_controllers(group):
            return
        time.sleep(1.0)
    raise AssertionError(f'campaign {group_label} did not finish in {timeout} s')


@pytest.fixture
def campaign_codes(real_code):
    return {'xtb': real_code('xtb', 'grimperium.xtb'), 'mopac': real_code('mopac', 'grimperium.mopac')}


def campaign_csv(tmp_path, extra=()) -> pathlib.Path:
    csv_path = tmp_path / 'campaign.csv'
    lines = ['mol_id,smiles,charge,multiplicity,nheavy,H298_cbs,batch_id,source']
    lines += [f'{m},{s},0,1,{n},{ref},t1,NIST' for m, s, n, ref in GOOD]
    lines += list(extra)
    csv_path.write_text('\n'.join(lines) + '\n')
    return csv_path


@pytest.mark.daemon
def test_real_campaign_on_the_daemon(campaign_codes, started_daemon_client, tmp_path):
    """Six molecules in two batches (one xtb and one MOPAC job each); CeCl2 fails in MOPAC, is rerun once in a new
    batch by the controller, and is skipped; every number of the export is the one the jobs computed."""
    csv_path = campaign_csv(tmp_path, ['cecl2,Cl[Ce]Cl,0,1,3,,t1,fails in MOPAC'])
    codes = [f'--code={name}={code.full_label}' for name, code in campaign_codes.items()]

    result = invoke('campaign', 'submit', csv_path, '--group', 'c1', '--num-conformers', 4, '--max-reruns', 1,
                    '--batch-size', 3, '--max-active', 2, *codes)
    assert result.exit_code == 0, result.output
    assert '6 molecule(s) stored in 2 batch(es)' in result.output, result.output
    wait_for('c1', timeout=600)

    status = invoke('campaign', 'status', 'c1')
    assert 'OK=5' in status.output and 'Skip=1' in status.output, status.output
    assert re.search(r'MOPAC\s+\[#+\.*\] 5/6', status.output), status.output  # only the ones that succeeded
    assert 'failed: 1' in status.output

    from aiida_grimperium.campaign import queries
    from aiida_grimperium.campaign.layout import batches_query

    batches = batches_query({'label': 'c1'}, project=['*']).all(flat=True)
    assert len(batches) == 3  # two batches, then cecl2's rerun in a batch of its own
    for batch in batches:  # one xtb and one MOPAC job per batch, whatever its size
        labels = sorted(n.process_label for n in batch.called)
        assert labels == ['MopacCalculation', 'XtbCalculation', 'summarize_batch'], labels

    export = tmp_path / 'c1.csv'
    assert invoke('export', 'c1', '-o', export, '--structures', tmp_path / 'structures').exit_code == 0
    table = pd.read_csv(export)
    assert list(table.columns[:22]) == [
        'mol_id', 'status', 'reruns', 'smiles', 'multiplicity', 'charge', 'nheavy', 'timestamp_added', 'H298_cbs',
        'batch_id', 'timestamp_started', 'timestamp_completed', 'crest_status', 'crest_conformers_generated',
        'crest_time', 'mopac_status', 'mopac_time', 'delta_1', 'delta_2', 'delta_3', 'most_stable_hof',
        'error_message']
    assert list(table['mol_id']) == [g[0] for g in GOOD] + ['cecl2']
    assert 'source' in table.columns  # the CSV's own extra column comes back

    for row in table.itertuples():
        nodes = queries.molecule_nodes('c1', row.mol_id)
        summary = nodes['summary']
        assert summary.creator.process_label == 'summarize_batch' and summary['mol_id'] == row.mol_id
        if row.mol_id == 'cecl2':
            assert row.status == 'Skip' and row.reruns == 1 and row.mopac_status == 'FAILED'
            assert row.error_message.startswith('MOPAC: ') and '(exit ' in row.error_message, row.error_message
            assert 'ensemble' in nodes  # the conformers computed before the failure are kept
            continue
        pm7 = nodes['pm7']
        assert pm7.creator.process_label == 'MopacCalculation' and nodes['ensemble'].creator.process_label == 'XtbCalculation'
        assert row.status == 'OK' and row.mopac_status == 'OK' and row.reruns == 0
        assert row.most_stable_hof == pytest.approx(pm7['lowest_heat_of_formation_kcal_mol'], abs=5e-6)
        assert row.delta_1 == pytest.approx(pm7['lowest_heat_of_formation_kcal_mol'] - row.H298_cbs, abs=1e-5)
        ensemble = nodes['ensemble']
        assert row.crest_conformers_kept == ensemble.numsteps
        assert row.crest_conformers_generated == summary['num_conformers_generated'] >= ensemble.numsteps
        heats = sorted(h for h in pm7['heats_of_formation_kcal_mol'] if h is not None)
        assert json.loads(row.pm7_heats_of_formation_kcal_mol) == pytest.approx(heats, abs=5e-6)
        assert row.boltzmann_hof <= heats[-1] + 1e-5 and row.boltzmann_hof >= heats[0] - 1e-5
        assert (tmp_path / 'structures' / f'{row.mol_id}.sdf').is_file()
        frames = (tmp_path / 'structures' / f'{row.mol_id}.ensemble.xyz').read_text().count('conformer ')
        assert frames == ensemble.numsteps

    # PM7 by hand on the exported lowest geometry of n-butane (the SDF): a single point at the optimised geometry
    from rdkit import Chem

    sdf = Chem.MolFromMolFile(str(tmp_path / 'structures' / 'n-butane.sdf'), removeHs=False)
    assert Chem.MolToSmiles(Chem.RemoveHs(sdf)) == 'CCCC'  # the bonds of the SMILES
    conformer = sdf.GetConformer()
    atoms = '\n'.join(f'{a.GetSymbol()} {p.x:.6f} 0 {p.y:.6f} 0 {p.z:.6f} 0'
                      for a, p in zip(sdf.GetAtoms(), map(conformer.GetAtomPosition, range(sdf.GetNumAtoms()))))
    folder = tmp_path / 'by_hand'
    folder.mkdir()
    (folder / 'b.mop').write_text(f'PM7 1SCF CHARGE=0\nn-butane\n\n{atoms}\n')
    subprocess.run(['mopac', 'b.mop'], cwd=folder, check=True, capture_output=True, timeout=60)
    by_hand = float(HOF.findall((folder / 'b.out').read_text())[0])
    assert by_hand == pytest.approx(table.set_index('mol_id').loc['n-butane', 'most_stable_hof'], abs=0.01)

    assert 'nothing to rerun' in invoke('campaign', 'rerun', 'c1').output

    # the QueryBuilder recipes of docs/campaigns.md give the same numbers as the export
    final = table.set_index('mol_id')
    expected = {m: final.loc[m, 'delta_1'] for m in final.index if pd.notna(final.loc[m, 'delta_1'])}
    assert queries.large_deltas('c1', threshold=0.0) == pytest.approx(expected, abs=1e-5)
    energies = queries.conformer_energies('c1', 'n-butane')
    assert energies['pm7_heats_of_formation_kcal_mol'][0] == pytest.approx(final.loc['n-butane', 'most_stable_hof'])

    # provenance: no Data node returned by the campaign's processes lacks a creator
    assert orphan_outputs('c1') == []

    report = tmp_path / 'report'
    result = invoke('report', 'c1', '-o', report)
    assert result.exit_code == 0, result.output
    stats = json.loads((report / 'statistics.json').read_text())
    errors = [r.most_stable_hof - r.H298_cbs for r in table.itertuples() if r.mol_id != 'cecl2']
    assert stats['overall']['n'] == 5
    assert stats['overall']['mae'] == pytest.approx(sum(abs(e) for e in errors) / 5, abs=1e-4)
    import matplotlib.image

    image = matplotlib.image.imread(report / 'parity.png')
    assert image.shape[0] > 300 and image.shape[1] > 300
    assert (image[..., :3].std(axis=(0, 1)) > 0).all()  # not a blank canvas
    page = (report / 'index.html').read_text()
    assert '<img src="parity.png"' in page and page.count('<tr>') >= 1 + 1 + 5 + 6


def orphan_outputs(group_label: str) -> list[int]:
    """Pks of the Data nodes that a process of the campaign returned or created but that have no creator
    (a CREATE link): a workchain's RETURN link alone is not a creator. The processes are the controllers and
    everything they called (``called_descendants``: CALL links, which ``with_ancestors`` does not follow)."""
    from aiida.common.links import LinkType

    from aiida_grimperium.workchains.campaign import CampaignWorkChain

    controllers = orm.QueryBuilder().append(orm.Group, filters={'label': group_label}, tag='group').append(
        CampaignWorkChain, with_group='group').all(flat=True)
    processes = {node.pk for controller in controllers for node in [controller, *controller.called_descendants]}
    assert len(processes) > len(controllers), 'the campaign ran no process'
    query = orm.QueryBuilder()
    query.append(orm.ProcessNode, filters={'id': {'in': sorted(processes)}}, tag='process')
    query.append(orm.Data, with_incoming='process', edge_filters={'type': {'in': [LinkType.CREATE.value,
                                                                                   LinkType.RETURN.value]}},
                 project=['id'])
    outputs = set(query.all(flat=True))
    assert outputs, 'the campaign made no output'
    created = orm.QueryBuilder().append(orm.ProcessNode, tag='p').append(
        orm.Data, with_incoming='p', edge_filters={'type': LinkType.CREATE.value},
        filters={'id': {'in': sorted(outputs)}}, project=['id']).all(flat=True)
    return sorted(outputs - set(created))


def test_readme_sample_campaign_gives_the_dft_energies_of_the_previous_pw_plugin(
        campaign_codes, real_code, started_daemon_client, tmp_path):
    """The README's main job (scripts/main.sh) on aiida-quantumespresso and an aiida-pseudo family: the same pw.x
    energies to 1e-5 eV as the package's own pw plugin gave on the same campaign (tests/fixtures/pw_reference:
    its export, recorded before the change), gaps to the 4 decimals recorded."""
    import aiida_grimperium

    sample = pathlib.Path(aiida_grimperium.__file__).parent / 'data' / 'examples' / 'sample_campaign.csv'
    codes = {**campaign_codes, 'pw': real_code('pw.x', 'grimperium.pw')}
    options = [f'--code={name}={code.full_label}' for name, code in codes.items()]
    result = invoke('campaign', 'submit', sample, '--group', 'sample', '--engine', 'rdkit-xtb', '--top-n', 3,
                    '--num-conformers', 6, '--dft', 'pw', '--protocol', 'fast', '--max-active', 4, *options)
    assert result.exit_code == 0, result.output
    wait_for('sample', timeout=900)
    export = tmp_path / 'sample.csv'
    assert invoke('export', 'sample', '-o', export).exit_code == 0
    table = pd.read_csv(export).set_index('mol_id')
    reference = pd.read_csv(FIXTURES / 'pw_reference' / 'reference.csv').set_index('mol_id')
    assert list(table.index) == list(reference.index)
    assert (table['dft_status'] == 'OK').all(), table[['status', 'error_message']]
    for mol_id, row in reference.iterrows():
        assert table.loc[mol_id, 'dft_energy_ev'] == pytest.approx(row['dft_energy_ev'], abs=1e-5), mol_id
        assert table.loc[mol_id, 'dft_band_gap_ev'] == pytest.approx(row['dft_band_gap_ev'], abs=1.5e-4), mol_id


def test_pipeline_with_pw_step(campaign_codes, real_code, tmp_path):
    """SMILES → conformers → PM7 → a `fast` pw.x SCF on the PM7-lowest conformer; energy as pw.x printed it."""
    from aiida.engine import run_get_node

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
    # as the package's pw plugin gave before aiida-quantumespresso (CODATA 2018), to 1e-5 eV
    assert results['dft']['total_energy'].value == pytest.approx(printed_ry * 13.605693122994, abs=1e-5)
    assert node.outputs.output_parameters['dft_energy_ev'] == results['dft']['total_energy'].value
    assert pw_calc.inputs.structure.get_formula() == 'H2O'

    assert node.outputs.output_parameters['dft_band_gap_ev'] == results['dft']['band_gap'].value


@pytest.mark.daemon
def test_open_shells_run_and_a_refused_molecule_quotes_mopac(campaign_codes, started_daemon_client, tmp_path):
    """A triplet (O2) and a doublet (methyl) run with UHF; [PoH2] has no PM7 van der Waals radius: it ends Skip, its
    error_message in MOPAC's own words, and `campaign run` exits 3 (some molecules failed)."""
    csv_path = tmp_path / 'open.csv'
    csv_path.write_text('mol_id,smiles,charge,multiplicity\no2,[O][O],0,3\nmethyl,[CH3],0,2\npoh2,[PoH2],0,1\n')
    codes = [f'--code={name}={code.full_label}' for name, code in campaign_codes.items()]
    result = invoke('campaign', 'run', csv_path, '--group', 'open-shells', '--num-conformers', 2,
                    '--max-reruns', 0, *codes)
    assert result.exit_code == 3, result.output
    export = tmp_path / 'open.csv.out'
    assert invoke('export', 'open-shells', '-o', export).exit_code == 0
    table = pd.read_csv(export).set_index('mol_id')
    assert list(table['status']) == ['OK', 'OK', 'Skip'], table[['status', 'error_message']]
    assert table.loc['poh2', 'error_message'] == 'MOPAC: MISSING VAN DER WAALS RADIUS FOR PO (exit 432)'
    from aiida.common.links import LinkType

    from aiida_grimperium.calculations.base import archived_file
    from aiida_grimperium.campaign import queries

    for mol_id, keyword in (('o2', 'TRIPLET'), ('methyl', 'DOUBLET')):
        pm7 = queries.molecule_nodes('open-shells', mol_id)['pm7']
        link = pm7.base.links.get_incoming(link_type=LinkType.CREATE).one()  # results__<key> of the MOPAC job
        job, key = link.node, link.link_label.split('__')[1]
        assert {keyword, 'UHF'} <= set(archived_file(job, f'{key}.mop').splitlines()[0].split())
        printed = HOF.findall(archived_file(job, f'{key}.out'))
        assert table.loc[mol_id, 'most_stable_hof'] == pytest.approx(float(printed[0]), abs=5e-6)
