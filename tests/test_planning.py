"""Batches cut by estimated work (``campaign/planning.py``), and the export still in the CSV's order."""
from __future__ import annotations

import random

import pandas as pd
import pytest
from aiida import orm
from click.testing import CliRunner

from aiida_grimperium.campaign.planning import cost_terms, estimated_cost, plan_batches, plan_sizes
from aiida_grimperium.cli import cmd_root

#: Drug-sized molecules in an order where batches cut in CSV order are 4-fold unequal (the small ones first).
DRUGS = {
    'caffeine': 'Cn1cnc2c1c(=O)n(C)c(=O)n2C', 'theophylline': 'Cn1c2nc[nH]c2c(=O)n(C)c1=O',
    'aspirin': 'CC(=O)Oc1ccccc1C(=O)O', 'benzocaine': 'CCOC(=O)c1ccc(N)cc1',
    'carbamazepine': 'NC(=O)N1c2ccccc2C=Cc2ccccc21', 'diazepam': 'CN1C(=O)CN=C(c2ccccc2)c2cc(Cl)ccc21',
    'phenacetin': 'CCOc1ccc(NC(C)=O)cc1', 'nicotine': 'CN1CCCC1c1cccnc1',
    'fluoxetine': 'CNCCC(Oc1ccc(cc1)C(F)(F)F)c1ccccc1', 'diphenhydramine': 'CN(C)CCOC(c1ccccc1)c1ccccc1',
    'atenolol': 'CC(C)NCC(O)COc1ccc(CC(N)=O)cc1', 'propranolol': 'CC(C)NCC(O)COc1cccc2ccccc12',
}


@pytest.mark.parametrize('smiles, expected', [
    ('CCCC', [14, 3]),  # 14 atoms; one rotatable bond (the terminal ones do not count)
    ('C1CCCCC1', [18, 4]),  # no rotatable bond; one aliphatic ring (chair, boats)
    ('c1ccccc1', [12, 1]),  # rigid
    ('[NH4+]', [5, 1]),  # hydrogens counted from the atom, not added
])
def test_cost_terms_count_atoms_with_hydrogens_and_the_expected_conformers(smiles, expected):
    from rdkit import Chem

    assert cost_terms(Chem.MolFromSmiles(smiles)) == expected


def test_the_estimate_is_capped_by_the_conformers_asked_for():
    assert estimated_cost([10, 19], 10) == 10 * 100 and estimated_cost([10, 3], 10) == 3 * 100
    assert estimated_cost([10, 19], 1) == 100


@pytest.mark.parametrize('count, batch_size, min_batches', [(20, 50, 4), (201, 50, 1), (7, 3, 1), (1, 50, 4)])
def test_every_molecule_once_in_batches_of_the_planned_sizes(count, batch_size, min_batches):
    rng = random.Random(count)
    costs = [rng.uniform(1, 100) for _ in range(count)]
    batches = plan_batches(costs, batch_size, min_batches)
    assert sorted(i for batch in batches for i in batch) == list(range(count))
    assert sorted(map(len, batches), reverse=True) == sorted(plan_sizes(count, batch_size, min_batches), reverse=True)
    assert all(batch == sorted(batch) for batch in batches)  # a batch lists its molecules in CSV order
    totals = [sum(costs[i] for i in batch) for batch in batches]
    assert totals == sorted(totals, reverse=True)  # the costliest batch first


def test_a_large_campaign_is_balanced_window_by_window_in_csv_order():
    """Batches are dealt within windows of consecutive rows, and the windows come in CSV order."""
    from aiida_grimperium.campaign.planning import WINDOW_BATCHES

    rng = random.Random(7)
    costs = [rng.uniform(1, 100) for _ in range(5000)]
    batches = plan_batches(costs, 50, 1)
    assert len(batches) == 100
    rows = WINDOW_BATCHES * 50
    for number, batch in enumerate(batches):
        window = number // WINDOW_BATCHES
        assert all(window * rows <= i < (window + 1) * rows for i in batch), (number, batch[:3])
    totals = [sum(costs[i] for i in batch) for batch in batches[:WINDOW_BATCHES]]
    assert max(totals) / min(totals) < 1.01  # 50 random molecules each: LPT makes them all but equal


def test_batches_of_mixed_sizes_get_about_the_same_work():
    """Cut in CSV order, the four batches of these molecules differ about 4-fold in estimated work; balanced,
    by less than a quarter."""
    from rdkit import Chem

    costs = [estimated_cost(cost_terms(Chem.MolFromSmiles(s)), 10) for s in DRUGS.values()]
    in_order = [sum(costs[i:i + 3]) for i in range(0, 12, 3)]
    balanced = [sum(costs[i] for i in batch) for batch in plan_batches(costs, 50, 4)]
    assert max(in_order) / min(in_order) > 3
    assert max(balanced) / min(balanced) < 1.25, balanced


def test_a_campaign_stores_balanced_batches_and_exports_in_csv_order(tmp_path, codes, stopped_daemon_client):
    from aiida_grimperium.campaign.readers import RECORDS_EXTRA

    name = f'plan-{tmp_path.name}'
    path = tmp_path / 'drugs.csv'
    path.write_text('mol_id,smiles,charge,multiplicity\n' + ''.join(f'{k},{s},0,1\n' for k, s in DRUGS.items()))
    runner = CliRunner()
    result = runner.invoke(cmd_root, ['campaign', 'submit', str(path), '--group', name, '--batch-size', '3', *codes],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert '12 molecule(s) stored in 4 batch(es)' in result.output

    from rdkit import Chem

    cost = {k: estimated_cost(cost_terms(Chem.MolFromSmiles(s)), 10) for k, s in DRUGS.items()}
    query = orm.QueryBuilder().append(orm.Group, filters={'label': name}, tag='g').append(
        orm.Dict, with_group='g', filters={f'extras.{RECORDS_EXTRA}': True}, project=['attributes'])
    work = [sum(cost[row['mol_id']] for row in rows.values()) for rows in query.all(flat=True)]
    assert len(work) == 4 and max(work) / min(work) < 1.25, work

    out = tmp_path / 'out.csv'
    result = runner.invoke(cmd_root, ['export', name, '-o', str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert list(table['mol_id']) == list(DRUGS)
    assert 'position' not in table.columns and 'cost_terms' not in table.columns
