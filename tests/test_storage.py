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
