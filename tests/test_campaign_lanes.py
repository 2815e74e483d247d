"""More batches than ``--max-active``: the controller runs them in lanes, each lane's batches one after another.

Real xtb and mopac through the daemon: four molecules in four batches of one, two at a time.
"""
from __future__ import annotations

import time

import pandas as pd
import pytest
from aiida import orm
from click.testing import CliRunner

from aiida_grimperium.cli import cmd_root

MOLECULES = {'water': 'O', 'methanol': 'CO', 'ethanol': 'CCO', 'propane': 'CCC'}


def invoke(*args):
    return CliRunner().invoke(cmd_root, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.daemon
def test_batches_beyond_max_active_run_in_lanes(tmp_path, codes, started_daemon_client):
    from aiida_grimperium.campaign.readers import active_controllers
    from aiida_grimperium.campaign.store import load_campaign
    from aiida_grimperium.workchains.batch import ConformerBatchWorkChain
    from aiida_grimperium.workchains.campaign import CampaignWorkChain

    name = f'lanes-{tmp_path.name}'
    path = tmp_path / 'four.csv'
    path.write_text('mol_id,smiles,charge,multiplicity\n' + ''.join(f'{k},{s},0,1\n' for k, s in MOLECULES.items()))
    result = invoke('campaign', 'submit', path, '--group', name, '--num-conformers', 2, '--batch-size', 1,
                    '--max-active', 2, *codes)
    assert result.exit_code == 0, result.output
    assert '4 molecule(s) stored in 4 batch(es)' in result.output, result.output
    group = load_campaign(name)
    deadline = time.monotonic() + 600
    while active_controllers(group) and time.monotonic() < deadline:
        time.sleep(1.0)
    assert not active_controllers(group), 'the campaign did not end in 600 s'

    query = orm.QueryBuilder().append(orm.Group, filters={'id': group.pk}, tag='group')
    query.append(CampaignWorkChain, with_group='group', project=['*'])
    controllers = query.all(flat=True)
    top = [c for c in controllers if c.caller is None]
    lanes = sorted((c for c in controllers if c.caller is not None), key=lambda c: c.label)
    assert len(top) == 1 and top[0].is_finished_ok, top[0].exit_message
    assert len(lanes) == 2 and all(lane.is_finished_ok for lane in lanes)
    assert {lane.pk for lane in lanes} == {n.pk for n in top[0].called}  # the lanes run the batches, not the top

    for lane in lanes:
        batches = sorted((n for n in lane.called if isinstance(n, orm.WorkflowNode)), key=lambda n: n.ctime)
        assert [b.process_label for b in batches] == [ConformerBatchWorkChain.__name__] * 2
        first, second = batches
        ended = next(n for n in first.called if n.process_label == 'summarize_batch')
        assert second.ctime >= ended.ctime  # one after the other: the second starts once the first has ended

    out = tmp_path / 'out.csv'
    assert invoke('export', name, '-o', out).exit_code == 0
    table = pd.read_csv(out)
    assert list(table['mol_id']) == list(MOLECULES)
    assert list(table['status']) == ['OK'] * 4 and list(table['reruns']) == [0] * 4
    assert table['most_stable_hof'].notna().all()
