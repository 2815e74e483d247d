"""200 small molecules through the real SLURM with ``--batch-size 50``: 4 batches, so 8 sbatch calls (one xtb and
one MOPAC job per batch), where one job per molecule and step would be 400. Counted from SLURM's own job list
(``scontrol``: finished jobs stay MinJobAge = 600 s) against the campaign's CalcJobs; printed by
``benchmarks/reliability.py`` from ``benchmarks/results/slurm_batches.json``."""
from __future__ import annotations

import itertools
import json
import pathlib

import pytest
from aiida import orm
from click.testing import CliRunner
from test_slurm import SLURM_COMPUTER, slurm_cluster, slurm_computer, slurm_jobs_under, wait_for  # noqa: F401

from aiida_grimperium.cli import cmd_root

MOLECULES = 200
BATCH_SIZE = 50


def small_molecules(count: int) -> list[str]:
    """Distinct acyclic chains of C, N and O (heteroatoms never side by side), shortest first."""
    from rdkit import Chem

    found: dict[str, None] = {}
    for length in itertools.count(2):
        for atoms in itertools.product('CNO', repeat=length):
            word = ''.join(atoms)
            if 'C' in word and not any(pair in word for pair in ('OO', 'NN', 'ON', 'NO')):
                found.setdefault(Chem.MolToSmiles(Chem.MolFromSmiles(word)))
            if len(found) == count:
                return list(found)
    return list(found)


@pytest.mark.daemon
def test_200_molecules_in_batches_of_50_make_8_sbatch_calls(slurm_computer, started_daemon_client, tmp_path):  # noqa: F811
    csv_path = tmp_path / 'small.csv'
    rows = [f'm{index:03d},{smiles},0,1' for index, smiles in enumerate(small_molecules(MOLECULES))]
    csv_path.write_text('mol_id,smiles,charge,multiplicity\n' + '\n'.join(rows) + '\n')
    result = CliRunner().invoke(cmd_root, [
        'campaign', 'submit', str(csv_path), '--group', 'slurm-batches', '--computer', SLURM_COMPUTER,
        '--num-conformers', '1', '--top-n', '1', '--batch-size', str(BATCH_SIZE), '--max-reruns', '0',
        '--walltime', '10m'], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f'{MOLECULES} molecule(s) stored in 4 batch(es)' in result.output, result.output

    from aiida_grimperium.campaign.readers import active_controllers, read_molecules
    from aiida_grimperium.campaign.store import load_campaign

    group = load_campaign('slurm-batches')
    wait_for(lambda: not active_controllers(group), 900, 'the campaign of 200 molecules')
    statuses = [molecule.status(0) for molecule in read_molecules(group).values()]
    assert len(statuses) == MOLECULES and statuses.count('OK') >= MOLECULES - 5, statuses

    controllers = [n for n in group.nodes if isinstance(n, orm.WorkflowNode)]
    calcjobs = {f'aiida-{c.pk}': c for w in controllers for c in w.called_descendants if isinstance(c, orm.CalcJobNode)}
    kinds = sorted(c.process_label for c in calcjobs.values())
    assert kinds == ['MopacCalculation'] * 4 + ['XtbCalculation'] * 4, kinds
    sbatch = [job for job in slurm_jobs_under(slurm_computer.get_workdir()) if job['name'] in calcjobs]
    assert len(sbatch) == 8, sbatch
    assert {job['state'] for job in sbatch} == {'COMPLETED'}

    summary = {'molecules': MOLECULES, 'batch_size': BATCH_SIZE, 'sbatch_calls': len(sbatch),
               'molecules_ok': statuses.count('OK')}
    results = pathlib.Path(__file__).parent.parent / 'benchmarks' / 'results'
    results.mkdir(parents=True, exist_ok=True)
    (results / 'slurm_batches.json').write_text(json.dumps(summary, indent=1))
    print(f'slurm batches: {summary}')
