"""The write-ahead log that `grimperium setup` turns on for ``core.sqlite_dos`` profiles (``aiida_grimperium.storage``)."""
from __future__ import annotations

import sqlite3
import types

from click.testing import CliRunner

from aiida_grimperium.cli import cmd_root
from aiida_grimperium.storage import checkpoint, database_path, enable_wal, journal_mode


def test_enable_wal_is_idempotent_and_keeps_the_data(aiida_profile, tmp_path):
    from aiida import orm

    node = orm.Int(42).store()
    assert enable_wal(aiida_profile) == 'wal'
    assert enable_wal(aiida_profile) == 'wal'
    assert journal_mode(aiida_profile) == 'wal'
    log, done = checkpoint(aiida_profile)
    assert done == log  # nobody else is writing: the whole log went into the database file
    # The database file alone (what `verdi storage backup` copies) now holds the node.
    copy = tmp_path / 'copy.sqlite'
    copy.write_bytes(database_path(aiida_profile).read_bytes())
    with sqlite3.connect(copy) as connection:
        (uuid,) = connection.execute('SELECT uuid FROM db_dbnode WHERE id = ?', (node.pk,)).fetchone()
    assert uuid == node.uuid


def test_other_storage_backends_are_left_alone():
    postgres = types.SimpleNamespace(storage_backend='core.psql_dos', storage_config={'database_name': 'x'})
    assert database_path(postgres) is None
    assert enable_wal(postgres) is None and journal_mode(postgres) is None and checkpoint(postgres) is None


def test_storage_checkpoint_command(aiida_profile):
    result = CliRunner().invoke(cmd_root, ['-p', aiida_profile.name, 'storage', 'checkpoint'])
    assert result.exit_code == 0, result.output
    assert 'checkpointed' in result.output


def test_attributes_projected_as_json_text_equal_the_stored_dict(aiida_profile):
    """The campaign readers project attributes as JSON text (``readers.ATTRIBUTES_TEXT``, 15x faster than the
    converted dict): it must parse back to the very dict, floats, escapes, unicode and nesting included. The
    PostgreSQL side is covered by the scale-out test, whose status and export read through it."""
    import json

    from aiida import orm

    from aiida_grimperium.campaign.readers import ATTRIBUTES_TEXT

    values = {'m0001': {'mol_id': 'a"b\\c', 'smiles': 'C[C@H](N)C(=O)O', 'name': 'Ångström ✓', 'charge': -1,
                        'heat': -123.45678901234, 'tiny': 2e-300, 'big': 12345678901234567, 'none': None,
                        'flag': True, 'list': [1, 0.1, [None, 'x']], 'nested': {'k': {'deep': 1.5e10}}},
              'm0002': {}}
    node = orm.Dict(values).store()
    text, = orm.QueryBuilder().append(orm.Dict, filters={'id': node.pk}, project=[ATTRIBUTES_TEXT]).one()
    assert isinstance(text, str)
    assert json.loads(text) == node.get_dict() == values
