"""``aiida_grimperium.expiry``: a running process re-reads from the database only what another program may change."""
from __future__ import annotations

import inspect
import threading

import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.storage.psql_dos.orm.utils import ModelWrapper

from aiida_grimperium import expiry
from aiida_grimperium.structures import structure_from_smiles
from aiida_grimperium.workchains.mopac import MopacBaseWorkChain

from test_processes import counting_queries


@pytest.fixture
def selective(aiida_profile):
    """The test session with :func:`expiry.install`; AiiDA's ``expire_on_commit`` again afterwards."""
    backend = orm.User.collection.get_default().backend
    assert expiry.install(backend) and expiry.install(backend)  # idempotent
    yield backend
    expiry.uninstall(backend)
    assert backend.get_session().expire_on_commit is True


def statements(read) -> int:
    with counting_queries() as count:
        read()
    return count['statements']


def write_elsewhere(function) -> None:
    """Run ``function`` in another thread: another storage session, as another program would write."""
    error = []

    def target():
        try:
            function()
        except Exception as exc:  # noqa: BLE001 - raised in the test's thread below
            error.append(exc)
        finally:
            orm.User.collection.get_default().backend.get_session().close()

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if error:
        raise error[0]


def test_what_a_commit_keeps_and_what_is_read_again(selective):
    data, process, held = orm.Int(3).store(), orm.WorkflowNode().store(), orm.CalculationNode().store()
    data.base.extras.set('note', 'old')
    assert expiry.hold(held)
    expiry.trust(data)
    orm.Int(4).store()  # a commit of something else
    # a trusted Data node and a held node read their attributes from memory, commit or not
    assert statements(lambda: (data.value, held.base.attributes.get('sealed', None))) == 0
    # a process node nobody here runs: re-read, as AiiDA does
    assert statements(lambda: process.base.attributes.get('sealed', None)) >= 1

    # another program changes the extras of the Data node and the attributes of the process node: both are seen
    write_elsewhere(lambda: (orm.load_node(data.pk).base.extras.set('note', 'new'),
                             orm.load_node(process.pk).set_process_status('changed elsewhere')))
    assert data.base.extras.get('note') == 'new'  # extras are never trusted
    assert process.process_status == 'changed elsewhere'

    # released: its attributes are re-read again, and a commit expires its row
    expiry.release(held)
    assert held.pk not in expiry._HELD and type(held.backend_entity.model) is ModelWrapper
    assert statements(lambda: held.base.attributes.get('sealed', None)) >= 1
    orm.Int(5).store()
    from sqlalchemy import inspect as sa_inspect

    assert not expiry.keeps(sa_inspect(held.backend_entity.bare_model))


def test_commit_expires_the_rest_as_sqlalchemy_does(selective):
    """Everything :func:`expiry.keeps` does not keep is expired after an outermost commit, not after a savepoint."""
    from sqlalchemy import inspect as sa_inspect

    session = selective.get_session()
    data, process = orm.Int(1).store(), orm.WorkflowNode().store()
    computer = orm.User.collection.get_default()  # a user: kept
    _ = (data.value, process.base.attributes.all, computer.email)
    with session.begin_nested():
        orm.Int(2).store()
    assert not sa_inspect(process.backend_entity.bare_model).expired  # a savepoint expires nothing
    orm.Int(3).store()
    assert sa_inspect(process.backend_entity.bare_model).expired
    assert not sa_inspect(data.backend_entity.bare_model).expired
    assert not sa_inspect(computer.backend_entity.bare_model).expired


def test_sqlalchemy_still_expires_with_the_statements_copied():
    """:func:`expiry._expire_changeable` repeats SQLAlchemy's ``_remove_snapshot``: fail if SQLAlchemy changes it."""
    from sqlalchemy.orm.session import SessionTransaction

    source = inspect.getsource(SessionTransaction._remove_snapshot)
    assert 'if not self.nested and self.session.expire_on_commit:' in source
    assert 's._expire(s.dict, self.session.identity_map._modified)' in source
    assert 'statelib.InstanceState._detach_states(' in source and 'self._deleted.clear()' in source
    assert expiry._SQLALCHEMY_INTERNALS


def test_a_real_workchain_reads_less_and_releases_its_nodes(aiida_profile, real_code, monkeypatch):
    """The same MOPAC work chain (real ``mopac``) with AiiDA's expiry and with :mod:`expiry`: the same heat of
    formation, fewer SQL statements, and no node held once it has finished."""
    def run_counted():
        builder = MopacBaseWorkChain.get_builder_from_protocol(real_code('mopac', 'grimperium.mopac'),
                                                              structure_from_smiles('CCO'), 'fast')
        with counting_queries() as count:
            results, node = run_get_node(builder)
        assert node.is_finished_ok, node.exit_status
        return results['output_parameters']['heat_of_formation_kcal_mol'], count['statements']

    backend = orm.User.collection.get_default().backend
    with monkeypatch.context() as patch:
        patch.setattr(expiry, 'install', lambda backend: False)  # AiiDA's behaviour throughout
        expiry.uninstall(backend)
        plain_hof, plain_statements = run_counted()
    try:
        lean_hof, lean_statements = run_counted()
        assert backend.get_session().info.get(expiry._INSTALLED)
    finally:
        expiry.uninstall(backend)
    assert lean_hof == pytest.approx(plain_hof, abs=1e-6)  # same molecule, same code, same settings
    assert lean_statements < 0.8 * plain_statements, (lean_statements, plain_statements)
    assert not expiry._HELD
