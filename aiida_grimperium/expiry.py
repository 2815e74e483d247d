"""Fewer re-reads of database rows that nothing else changes: stored ``Data`` nodes, and the node of a running process.

AiiDA makes a running process re-read its rows from the database again and again, in case another program
changed them:

* the storage session expires every ORM object at every commit (SQLAlchemy's ``expire_on_commit``). A daemon
  worker commits after nearly every attribute it sets, for all the processes it runs in one session, so each
  commit of one process makes every other one re-read its node, its inputs and its code;
* AiiDA's ``ModelWrapper`` expires a field and reads it again at every read of it outside a transaction:
  every ``node.base.attributes.get()`` is a query.

In a campaign of drug-sized molecules that was ~17 % of the workers' CPU time. Most of it was spent on rows and
fields that nothing else can change while the worker uses them:

* the **attributes** of a **stored** ``Data`` **node** (inputs, outputs, codes): they are immutable;
* the **attributes** of a **process node that a process of this interpreter runs** (:func:`hold`, until
  :func:`release`): all its changes go through that process (``verdi process kill`` asks it over the broker);
* what no stored node changes: its computer, user, creation time, process type, repository metadata;
* **users**.

:func:`install` turns ``expire_on_commit`` off for the session and, after each outermost commit, expires every
other object exactly as SQLAlchemy would have (its own two statements, ``_remove_snapshot``). :func:`trust`
makes a node object read those fields from memory, without AiiDA's checks before each read. Extras, label and
description are still re-read at every read, as AiiDA does: ``grimperium campaign`` writes a work chain's extras
while the daemon runs it. Another worker, or the command line, holds nothing of this process and re-reads as
before. ``tests/test_expiry.py`` checks what is kept and what is seen of another program's writes, and runs a
real MOPAC work chain both ways.
"""
from __future__ import annotations

from aiida.storage.psql_dos.orm.utils import ModelWrapper
from sqlalchemy import event
from sqlalchemy.orm import Session, state as orm_state

#: pks of the process nodes that processes of this interpreter are running.
_HELD: set[int] = set()
#: ``DbNode`` fields a trusted node object reads from memory: the rest are re-read at each read, as AiiDA does.
TRUSTED_FIELDS = frozenset({'attributes', 'repository_metadata', 'ctime', 'process_type', 'dbcomputer',
                            'dbcomputer_id', 'user', 'user_id'})
#: Read from memory by a trusted node object: the trusted fields and those AiiDA never re-reads.
_FROM_MEMORY = TRUSTED_FIELDS | {'id', 'pk', 'uuid', 'node_type'}
#: Key in ``Session.info`` of a session set up by :func:`install`.
_INSTALLED = 'grimperium_expiry'
_NODE_TABLE, _USER_TABLE = 'db_dbnode', 'db_dbuser'


def hold(node) -> bool:
    """While a process of this interpreter runs ``node``: its row stays loaded across commits, and it is
    :func:`trusted <trust>`. ``True`` if held (not on other storages)."""
    if not node.is_stored or not install(node.backend):
        return False
    _HELD.add(node.pk)
    trust(node)
    return True


def release(node) -> None:
    """Back to AiiDA's behaviour for ``node``: expired at every commit, re-read at every read."""
    _HELD.discard(node.pk)
    wrapper = node.backend_entity.model
    if type(wrapper) is _TrustedModelWrapper:
        object.__setattr__(wrapper, '__class__', ModelWrapper)


def trust(node) -> None:
    """Read :data:`TRUSTED_FIELDS` of this node object from memory, the other fields as AiiDA does.

    For a stored ``Data`` node or a held node. Only this node object is affected: its ``ModelWrapper`` (AiiDA's
    link between the node and its row) becomes a :class:`_TrustedModelWrapper`.
    """
    wrapper = node.backend_entity.model
    if type(wrapper) is ModelWrapper and node.is_stored:
        object.__setattr__(wrapper, '__class__', _TrustedModelWrapper)  # (its own ``__setattr__`` writes the row)


class _TrustedModelWrapper(ModelWrapper):
    """AiiDA's ``ModelWrapper`` that returns the trusted fields of its (stored) row as they are in the session.

    AiiDA's asks at every read whether the row is stored, whether the field is a mutable column (an inspection of
    the model), whether a transaction is open, and then expires the field and reads it again: ~0.1 ms, tens of
    thousands of times per campaign. Every other field, and every write, is AiiDA's.
    """

    def __getattr__(self, item):
        if item in _FROM_MEMORY:
            return getattr(self._model, item)
        return ModelWrapper.__getattr__(self, item)


def install(backend) -> bool:
    """Expire selectively in the current session of ``backend`` (idempotent); ``False`` where it cannot.

    Only AiiDA's SQLAlchemy storages (``core.psql_dos``, ``core.sqlite_dos``) qualify, and only with the
    SQLAlchemy internals that ``_remove_snapshot`` uses; otherwise nothing changes.
    """
    from aiida.storage.psql_dos.backend import PsqlDosBackend

    if not isinstance(backend, PsqlDosBackend) or not _SQLALCHEMY_INTERNALS:
        return False
    session = backend.get_session()
    if session.info.get(_INSTALLED):
        return True
    event.listen(session, 'after_commit', _expire_changeable)
    session.expire_on_commit = False
    session.info[_INSTALLED] = True
    return True


def uninstall(backend) -> None:
    """AiiDA's ``expire_on_commit`` again in the current session of ``backend``."""
    session = backend.get_session()
    if session.info.pop(_INSTALLED, False):
        event.remove(session, 'after_commit', _expire_changeable)
        session.expire_on_commit = True


def keeps(state) -> bool:
    """Whether a commit leaves this ORM object loaded: users, stored ``Data`` nodes and held nodes (whose other
    fields are re-read at each read anyway)."""
    table = getattr(state.class_, '__tablename__', None)
    if table == _USER_TABLE:
        return True
    if table != _NODE_TABLE or state.key is None:
        return False
    if state.key[1][0] in _HELD:
        return True
    node_type = state.dict.get('node_type')  # absent when the row is expired already: nothing to keep
    return node_type is not None and node_type.startswith('data.')


def _expire_changeable(session: Session) -> None:
    """``after_commit``: what SQLAlchemy's ``_remove_snapshot`` does on an outermost commit, minus :func:`keeps`."""
    if session.in_nested_transaction():
        return  # a savepoint: SQLAlchemy expires nothing either
    transaction = session.get_transaction()
    identity_map = session.identity_map
    for state in identity_map.all_states():
        if not state.expired and not keeps(state):  # (most were expired by an earlier commit and not read since)
            state._expire(state.dict, identity_map._modified)
    deleted = getattr(transaction, '_deleted', None)
    if deleted:
        orm_state.InstanceState._detach_states(list(deleted), session)
        deleted.clear()


def _has_internals() -> bool:
    from sqlalchemy.orm.identity import IdentityMap
    from sqlalchemy.orm.session import SessionTransaction

    return (hasattr(orm_state.InstanceState, '_expire') and hasattr(orm_state.InstanceState, '_detach_states')
            and hasattr(IdentityMap, 'all_states') and hasattr(SessionTransaction, '_remove_snapshot'))


_SQLALCHEMY_INTERNALS = _has_internals()
