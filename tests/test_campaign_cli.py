"""The campaign commands never mislead: typos, changed inputs and options, wrong codes, unwritable paths, a
stopped daemon, a pipe. Each case from the command line (click's runner), with its message and exit status.
Nothing here runs a job: the daemon is stopped, so the campaigns are only stored."""
from __future__ import annotations

import os
import pathlib
import threading

import pandas as pd
import pytest
from aiida import orm
from click.testing import CliRunner

from aiida_grimperium.cli import cmd_root

THREE = """mol_id,smiles,charge,multiplicity,nheavy,H298_cbs,batch_id
water,O,0,1,1,-57.80,t
methanol,CO,0,1,2,-48.04,t
ethanol,CCO,0,1,3,-56.12,t
"""


def invoke(*args):
    return CliRunner().invoke(cmd_root, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def stored(tmp_path, codes, stopped_daemon_client):
    """Campaign `c3` of THREE, stored with the daemon stopped."""
    name = f'c3-{tmp_path.name}'
    path = tmp_path / 'three.csv'
    path.write_text(THREE)
    result = invoke('campaign', 'submit', path, '--group', name, *codes)
    assert result.exit_code == 0, result.output
    return name, path


def groups() -> set[str]:
    return set(orm.QueryBuilder().append(orm.Group, project=['label']).all(flat=True))


@pytest.mark.parametrize('command', [
    ('campaign', 'status', 'typo'), ('export', 'typo', '-o', 'OUT/t.csv'), ('report', 'typo', '-o', 'OUT/r'),
    ('campaign', 'rerun', 'typo'),
])
def test_a_campaign_that_does_not_exist_is_refused_and_nothing_is_created(command, tmp_path):
    before = groups()
    result = invoke(*(str(part).replace('OUT', str(tmp_path)) for part in command))
    assert result.exit_code == 1, result.output
    assert 'no campaign `typo`' in result.output and 'Traceback' not in result.output
    assert groups() == before and not list(tmp_path.iterdir())


def test_submit_with_the_daemon_stopped_stores_and_says_how_to_start(stored):
    name, _ = stored
    from aiida_grimperium.campaign.readers import read_molecules
    from aiida_grimperium.campaign.store import load_campaign

    molecules = read_molecules(load_campaign(name))
    assert list(molecules) == ['water', 'methanol', 'ethanol']
    assert {m.status(3) for m in molecules.values()} == {'Pending'}
    result = invoke('campaign', 'rerun', name)
    assert result.exit_code == 1 and 'the daemon is not running' in result.output and 'verdi daemon start' in result.output


def test_stored_campaign_exports_its_rows_as_given(stored, tmp_path):
    name, _ = stored
    result = invoke('export', name, '-o', tmp_path / 'out.csv')
    assert result.exit_code == 0, result.output
    text = (tmp_path / 'out.csv').read_text()
    table = pd.read_csv(tmp_path / 'out.csv')
    assert list(table['status']) == ['Pending'] * 3 and list(table['crest_status']) == ['NOT_ATTEMPTED'] * 3
    assert '\nwater,Pending,0,O,1,0,1,' in text  # integers as integers
    assert list(table['H298_cbs']) == [-57.80, -48.04, -56.12]


def test_changed_rows_are_refused_unless_update(stored, codes, tmp_path):
    name, path = stored
    from aiida_grimperium.campaign.readers import RECORDS_EXTRA

    def records():
        return orm.QueryBuilder().append(orm.Group, filters={'label': name}, tag='g').append(
            orm.Dict, with_group='g', filters={f'extras.{RECORDS_EXTRA}': True}, project=['*']).all(flat=True)

    before = len(records())
    changed = tmp_path / 'changed.csv'
    changed.write_text(THREE.replace('methanol,CO,0,1,2,-48.04', 'methanol,CCCO,0,1,4,-60'))
    result = invoke('campaign', 'submit', changed, '--group', name, *codes)
    assert result.exit_code == 1, result.output
    assert 'row 3 (mol_id methanol): smiles, H298_cbs' in result.output, result.output

    result = invoke('campaign', 'submit', changed, '--group', name, '--update', *codes)
    assert result.exit_code == 0, result.output
    assert '1 molecule(s) stored' in result.output
    invoke('export', name, '-o', tmp_path / 'out.csv')
    table = pd.read_csv(tmp_path / 'out.csv').set_index('mol_id')
    assert list(table.index) == ['water', 'methanol', 'ethanol']  # in place, not appended
    assert table.loc['methanol', 'smiles'] == 'CCCO' and table.loc['methanol', 'H298_cbs'] == -60
    superseded = [r.base.extras.get('superseded', []) for r in records()]
    assert len(superseded) == before + 1  # one record more, for the changed row
    assert sorted(superseded) == [[]] * before + [['methanol']]


def test_new_options_are_refused_unless_update(stored, codes):
    name, path = stored
    result = invoke('campaign', 'submit', path, '--group', name, '--top-n', 1, *codes)
    assert result.exit_code == 1 and 'top_n: 3 -> 1' in result.output, result.output
    result = invoke('campaign', 'submit', path, '--group', name, '--top-n', 1, '--update', *codes)
    assert result.exit_code == 0, result.output
    from aiida_grimperium.campaign.store import load_campaign, settings_of

    assert settings_of(load_campaign(name))['top_n'] == 1


def test_a_code_of_the_wrong_plugin_is_refused(tmp_path, real_code):
    mopac = real_code('mopac', 'grimperium.mopac')
    path = tmp_path / 'three.csv'
    path.write_text(THREE)
    result = invoke('campaign', 'submit', path, '--group', 'wrong-code', f'--code=xtb={mopac.full_label}',
                    f'--code=mopac={mopac.full_label}')
    assert result.exit_code == 1 and 'runs `grimperium.mopac`, not `grimperium.xtb`' in result.output, result.output
    assert 'wrong-code' not in groups()


def test_dry_run_checks_the_codes_it_would_use(tmp_path, codes):
    path = tmp_path / 'three.csv'
    path.write_text(THREE)
    result = invoke('campaign', 'submit', path, '--group', 'dry', '--dry-run', '--dft', 'vasp', *codes)
    assert result.exit_code == 1 and 'vasp@localhost' in result.output and 'does not exist' in result.output
    assert 'dry' not in groups()


def test_unwritable_paths_give_one_line_and_no_traceback(stored):
    name, _ = stored
    for command in (('export', name, '-o', '/proc/x.csv'), ('report', name, '-o', '/proc/rep')):
        result = invoke(*command)
        assert result.exit_code == 1, result.output
        assert 'Traceback' not in result.output and '/proc/' in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1


def test_validate_reads_a_pipe_and_shows_the_errors(tmp_path):
    fifo = tmp_path / 'bad.pipe'
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: pathlib.Path(fifo).write_text(THREE + 'bad,C1CC,0,1,3,1.0,t\n'))
    writer.start()
    result = invoke('validate', fifo)
    writer.join(timeout=10)
    assert result.exit_code == 1, result.output
    assert 'row 5 (mol_id bad), field `smiles`' in result.output and 'unclosed ring' in result.output


def test_watching_a_large_campaign_reads_its_progress_less_often():
    """`campaign run`/`status --watch` re-read the whole campaign: every 2 s while a read is quick, and never
    more than a fifth of the time when it is slow (seconds for 100 000 molecules)."""
    from aiida_grimperium.cli.cmd_campaign import next_refresh

    assert next_refresh(2.0, 0.04) == 2.0
    assert next_refresh(2.0, 2.5) == 10.0
    read = 3.0
    assert read / (read + next_refresh(2.0, read)) <= 0.2
