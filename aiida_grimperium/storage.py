"""SQLite write-ahead logging for ``core.sqlite_dos`` profiles (the one storage setting the package changes).

AiiDA's ``core.sqlite_dos`` opens its database in SQLite's default *rollback-journal* mode. There every commit
writes and syncs a journal file and takes a lock that also shuts out readers, and the engine commits after
nearly every attribute it sets on a running process (a molecule of a campaign is ~500 commits). On the
development machine one such commit costs ~15 ms; in write-ahead-log (WAL) mode, with the same
``synchronous=FULL`` durability, ~2 ms, and readers (``grimperium campaign status``, the export) no longer
block the daemon's writers. ``benchmarks/campaign.py`` measures the campaign with and without it.

WAL is a property of the database file (it survives reconnection), so turning it on once is enough:
``grimperium setup`` and ``grimperium campaign submit|run`` do it, idempotently. Nothing about durability
changes (SQLite keeps ``synchronous=FULL``). What changes: the database is three files while it is open
(``database.sqlite``, ``-wal``, ``-shm``), all on the same local disk as before (WAL does not work over NFS, nor
does AiiDA's SQLite storage). ``verdi storage backup`` copies only ``database.sqlite``: run
:func:`checkpoint` (``grimperium storage checkpoint``) just before it, or stop the daemon, so that the copy holds
every committed transaction.
"""
from __future__ import annotations

import pathlib
import sqlite3
from contextlib import closing

#: The database file inside a ``core.sqlite_dos`` storage folder (``aiida.storage.sqlite_dos.backend``).
DATABASE_FILENAME = 'database.sqlite'


def database_path(profile) -> pathlib.Path | None:
    """The SQLite file of ``profile``, or ``None`` when its storage is not ``core.sqlite_dos``."""
    if profile.storage_backend != 'core.sqlite_dos':
        return None
    return pathlib.Path(profile.storage_config['filepath']) / DATABASE_FILENAME


def journal_mode(profile) -> str | None:
    """The current journal mode of the profile's database (``wal``, ``delete``...), ``None`` if not SQLite."""
    path = database_path(profile)
    if path is None or not path.exists():
        return None
    with closing(sqlite3.connect(path, timeout=10)) as connection:
        return connection.execute('PRAGMA journal_mode').fetchone()[0]


def enable_wal(profile) -> str | None:
    """Switch the profile's SQLite database to WAL (idempotent); return the journal mode it has afterwards.

    Returns ``None`` for other storage backends (PostgreSQL needs nothing of the kind). When another process
    holds a write lock for longer than the timeout the mode stays as it was; the next call tries again.
    """
    path = database_path(profile)
    if path is None or not path.exists():
        return None
    mode = None
    with closing(sqlite3.connect(path, timeout=10)) as connection:
        try:
            mode = connection.execute('PRAGMA journal_mode').fetchone()[0]
            if mode != 'wal':
                mode = connection.execute('PRAGMA journal_mode=WAL').fetchone()[0]
        except sqlite3.OperationalError:  # "database is locked": leave it for the next call
            pass
    return mode


def checkpoint(profile) -> tuple[int, int] | None:
    """Copy every committed transaction from the WAL into ``database.sqlite`` and truncate the WAL.

    Returns SQLite's ``(pages in the log, pages checkpointed)``; ``None`` when the profile is not SQLite.
    """
    path = database_path(profile)
    if path is None or not path.exists():
        return None
    with closing(sqlite3.connect(path, timeout=30)) as connection:
        _, log, done = connection.execute('PRAGMA wal_checkpoint(TRUNCATE)').fetchone()
    return log, done
