"""``LeanProcess``: the same provenance links, states and checkpoints as AiiDA's own methods make, with far fewer
database queries and commits."""
from __future__ import annotations

import contextlib
from collections.abc import Mapping

import pytest
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import Process, WorkChain, run_get_node

from aiida_grimperium.processes import LeanCheckpoints, LeanLinks, LeanTransitions, write_transaction
from aiida_grimperium.structures import structure_from_smiles
from aiida_grimperium.workchains.mopac import MopacBaseWorkChain


@contextlib.contextmanager
def counting_queries():
    """Count the SQL statements, and the commits, the profile's storage runs inside the block."""
    from sqlalchemy import event

    engine = orm.User.collection.get_default().backend.get_session().get_bind()
    count = {'statements': 0, 'commits': 0, 'begin_immediate': 0}

    def before(_conn, _cursor, statement, *_):
        count['statements'] += 1
        count['begin_immediate'] += statement == 'BEGIN IMMEDIATE'

    def commit(_conn):
        count['commits'] += 1

    event.listen(engine, 'before_cursor_execute', before)
    event.listen(engine, 'commit', commit)
    try:
        yield count
    finally:
        event.remove(engine, 'before_cursor_execute', before)
        event.remove(engine, 'commit', commit)


#: The methods of the three mixins, each of which stands in for AiiDA's method of the same name.
LEAN_METHODS = {LeanLinks: ('_setup_inputs', 'update_outputs'),
                LeanCheckpoints: ('encode_input_args', 'decode_input_args', '_save_checkpoint'),
                LeanTransitions: ('on_entered', '_create_and_setup_db_record')}


@pytest.fixture
def plain_aiida(monkeypatch):
    """Make the mixins call AiiDA's own methods instead of theirs: the reference."""
    def plain(monkeypatch_=monkeypatch):
        for mixin, names in LEAN_METHODS.items():
            for name in names:
                monkeypatch_.setattr(mixin, name, lambda self, *a, _m=mixin, _n=name: getattr(super(_m, self), _n)(*a))
    return plain


def link_summary(node: orm.ProcessNode) -> dict:
    """Every link of the process and its children: (type, label) → what is at the other end, by content."""
    summary = {}
    for process in [node, *node.called_descendants]:
        name = process.process_label
        for triple in process.base.links.get_incoming().all():
            other = triple.node
            # inputs are the same stored nodes in both runs; outputs are new nodes with the same content
            key = (name, 'in', triple.link_type.value, triple.link_label)
            summary[key] = other.uuid if isinstance(other, orm.Data) else other.process_label
        for triple in process.base.links.get_outgoing().all():
            other = triple.node
            key = (name, 'out', triple.link_type.value, triple.link_label)
            if isinstance(other, orm.Dict):
                summary[key] = ('Dict', sorted(k for k in other.keys() if 'time' not in k and 'wall' not in k))
            elif isinstance(other, orm.Data):
                summary[key] = type(other).__name__
            else:
                summary[key] = other.process_label
    return summary


def test_same_links_as_aiida_with_far_fewer_queries(real_code, plain_aiida):
    """A MOPAC restart workchain and its CalcJob, run twice on the same input nodes: lean, then AiiDA's way."""
    code = real_code('mopac', 'grimperium.mopac')
    builder = MopacBaseWorkChain.get_builder_from_protocol(code, structure_from_smiles('CO'), 'fast')
    for name in ('max_iterations', 'clean_workdir'):
        builder[name].store()
    for name in ('structure', 'charge', 'multiplicity', 'parameters'):
        builder.mopac[name].store()

    with counting_queries() as lean_queries:
        _, lean = run_get_node(builder)
    plain_aiida()
    with counting_queries() as aiida_queries:
        _, plain = run_get_node(builder)

    assert lean.is_finished_ok and plain.is_finished_ok, (lean.exit_message, plain.exit_message)
    lean_links, plain_links = link_summary(lean), link_summary(plain)
    calc = lean.called[0]
    assert lean_links == plain_links
    for attribute in ('process_state', 'exit_status', 'process_label', 'sealed'):
        assert lean.base.attributes.get(attribute) == plain.base.attributes.get(attribute)
        assert calc.base.attributes.get(attribute) == plain.called[0].base.attributes.get(attribute)
    assert 'checkpoints' not in lean.base.attributes.keys() and 'checkpoints' not in calc.base.attributes.keys()
    assert ('MopacCalculation', 'out', LinkType.CREATE.value, 'output_parameters') in lean_links
    assert ('MopacBaseWorkChain', 'in', LinkType.INPUT_WORK.value, 'mopac__parameters') in lean_links
    # every output of the workchain is its calculation's own node
    returned = {t.link_label: t.node.uuid for t in lean.base.links.get_outgoing(link_type=LinkType.RETURN).all()}
    created = {t.link_label: t.node.uuid for t in calc.base.links.get_outgoing(link_type=LinkType.CREATE).all()}
    assert returned == created and len(returned) == 4
    # AiiDA spends two or more queries validating each data link (a cycle check, a label check...): they go
    data_links = sum(1 for key in lean_links if key[2] in ('input_calc', 'input_work', 'create', 'return'))
    assert aiida_queries['statements'] - lean_queries['statements'] >= 2 * data_links, (lean_queries, aiida_queries)
    # a state change is one commit, not four to six (the state, the checkpoint, the timestamp, the outputs...)
    assert lean_queries['commits'] < 0.6 * aiida_queries['commits'], (lean_queries, aiida_queries)
    assert lean_queries['begin_immediate'] > 0  # the test profile is SQLite: the write lock is taken first


class ReturnsInput(LeanLinks, WorkChain):
    """Returns its own stored input: an ordinary RETURN link."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('x', valid_type=orm.Int)
        spec.output('y', valid_type=orm.Int)
        spec.outline(cls.work)

    def work(self):
        self.out('y', self.inputs.x)


class ReturnsNew(ReturnsInput):
    """Creates data inside a workflow: AiiDA forbids returning it, and so must the lean path."""

    def work(self):
        self.out('y', orm.Int(self.inputs.x.value + 1))


def test_unstored_return_refused_as_aiida_does(aiida_profile):
    with pytest.raises(ValueError, match='tried returning an unstored `Data` node'):
        run_get_node(ReturnsNew, x=orm.Int(1))


def test_inputs_unstored_or_stored_and_return_links(aiida_profile):
    stored = orm.Int(3).store()
    _, node = run_get_node(ReturnsInput, x=stored)
    assert node.is_finished_ok
    assert node.outputs.y.uuid == stored.uuid
    assert [(t.link_type, t.link_label) for t in node.base.links.get_outgoing().all()] == [(LinkType.RETURN, 'y')]
    fresh = orm.Int(4)  # unstored: linked in the cache and stored with the process, as AiiDA does
    _, node = run_get_node(ReturnsInput, x=fresh)
    assert node.is_finished_ok and fresh.is_stored
    assert node.base.links.get_incoming(link_type=LinkType.INPUT_WORK).one().node.uuid == fresh.uuid


def test_input_link_validation_still_applies(aiida_profile):
    """A label AiiDA refuses is refused on the lean path too (here: a double underscore at the end)."""
    with pytest.raises(ValueError, match='underscore'):
        class BadLabel(LeanLinks, WorkChain):
            @classmethod
            def define(cls, spec):
                super().define(spec)
                spec.input_namespace('ns', dynamic=True)
                spec.outline(cls.work)

            def work(self):
                pass

        run_get_node(BadLabel, ns={'bad_': orm.Int(1).store()})


def test_process_base_methods_are_the_ones_replaced():
    """The lean methods stand in for these AiiDA methods: if AiiDA renames them, this fails instead of a silent miss."""
    for mixin, names in LEAN_METHODS.items():
        for name in names:
            assert getattr(Process, name) is not getattr(mixin, name)
            assert getattr(MopacBaseWorkChain, name) is getattr(mixin, name)
    import inspect

    from aiida.engine.utils import set_process_state_change_timestamp
    # LeanTransitions.on_entered does the same steps as AiiDA's, in one transaction: the steps are these
    source = inspect.getsource(Process.on_entered)
    steps = ('self.update_outputs()', 'self.node.set_process_state(self._state.LABEL)', 'self._save_checkpoint()',
             'set_process_state_change_timestamp(self.node)', 'super().on_entered(from_state)')
    position = 0
    for step in steps:  # each one after the one before (ValueError: AiiDA changed its state changes)
        position = source.index(step, position)
    assert set_process_state_change_timestamp.__module__ == 'aiida.engine.utils'
    # _one_commit_per_poll: AiiDA's poll writes the job info and then the state, with nothing in between
    from aiida.engine.processes.calcjobs import tasks

    source = inspect.getsource(tasks.task_update_job)
    assert 'node.set_last_job_info(job_info)\n            node.set_scheduler_state(job_info.job_state)' in source
    assert 'node.set_process_status(process_status)' in inspect.getsource(tasks.Waiting.execute)


def test_checkpoints_read_and_written_by_aiida(aiida_profile, real_code):
    """A checkpoint written with libyaml is AiiDA's YAML: AiiDA's loader reads it back, and the lean loader reads
    what AiiDA's dumper wrote, loading all input nodes in one query."""
    from plumpy.processes import BundleKeys

    from aiida.engine.utils import instantiate_process
    from aiida.manage import get_manager
    from aiida.orm.utils import serialize

    code = real_code('mopac', 'grimperium.mopac')
    builder = MopacBaseWorkChain.get_builder_from_protocol(code, structure_from_smiles('CCO'), 'fast')
    process = instantiate_process(get_manager().get_runner(), builder)  # created: its first checkpoint is saved
    checkpoint = process.node.checkpoint
    assert checkpoint and '!aiida_node' in checkpoint
    bundle = serialize.deserialize_unsafe(checkpoint)  # AiiDA's own (pure-Python) loader
    assert bundle['_state'] == process.save()['_state'] and bundle['_pid'] == process.pid
    inputs = serialize.deserialize_unsafe(bundle[BundleKeys.INPUTS_PARSED])

    def node_uuids(mapping, prefix=''):
        uuids = {}
        for key, value in mapping.items():
            if isinstance(value, orm.Node):
                uuids[prefix + key] = value.uuid
            elif isinstance(value, Mapping):
                uuids.update(node_uuids(value, f'{prefix}{key}.'))
        return uuids

    expected = node_uuids(process.inputs)
    assert len(expected) >= 6 and node_uuids(inputs) == expected

    encoded = serialize.serialize(dict(process.inputs))  # AiiDA's dumper
    process.__dict__.pop('_grimperium_loaded_nodes', None)
    with counting_queries() as queries:
        decoded = process.decode_input_args(encoded)
    assert node_uuids(decoded) == expected and serialize.serialize(decoded) == encoded
    assert queries['statements'] <= 3, queries  # one SELECT for the nodes, in a savepoint (AiiDA: one per node)


def test_write_transaction_commits_once_or_rolls_everything_back(aiida_profile):
    backend = orm.User.collection.get_default().backend
    with counting_queries() as queries:
        with write_transaction(backend):
            first, second = orm.Int(1).store(), orm.Int(2).store()
            first.base.extras.set('x', 1)
    assert queries['commits'] == 1 and queries['begin_immediate'] == 1, queries
    assert orm.load_node(first.pk).base.extras.get('x') == 1 and orm.load_node(second.pk).value == 2

    with counting_queries() as queries:  # nested: a savepoint inside, still one commit at the end
        with write_transaction(backend):
            orm.Int(5).store()
            with write_transaction(backend):
                orm.Int(6).store()
            orm.Int(7).store()
    assert queries['commits'] == 1, queries

    label = 'grimperium-rolled-back'
    with pytest.raises(RuntimeError, match='boom'):
        with write_transaction(backend):
            orm.Int(3, label=label).store()
            raise RuntimeError('boom')
    assert orm.QueryBuilder().append(orm.Int, filters={'label': label}).count() == 0
    orm.Int(4).store()  # the session is usable again


@pytest.mark.parametrize('monitored', [False, True])
def test_waiting_state_knows_the_monitors_without_asking_the_database(aiida_profile, real_code, monitored):
    """A grimperium CalcJob waits in :class:`LeanWaiting`: the same monitors as AiiDA's waiting state finds (none,
    or the job's), read from the process's inputs; AiiDA's asks the database again at every scheduler poll."""
    from aiida.engine.processes.calcjobs.tasks import Waiting
    from aiida.engine.utils import instantiate_process
    from aiida.manage import get_manager
    from plumpy import ProcessState

    from aiida_grimperium.calculations.mopac import MopacCalculation
    from aiida_grimperium.processes import LeanWaiting

    assert MopacCalculation.get_states_map()[ProcessState.WAITING] is LeanWaiting
    builder = MopacCalculation.get_builder()
    builder.code = real_code('mopac', 'grimperium.mopac')
    builder.structure = structure_from_smiles('CCO')
    if monitored:
        builder.monitors = {'kill': orm.Dict({'entry_point': 'core.always_kill'})}
    process = instantiate_process(get_manager().get_runner(), builder)
    aiida_monitors = Waiting(process, lambda *_: None).monitors
    lean = LeanWaiting(process, lambda *_: None)
    with counting_queries() as count:
        monitors = [lean.monitors for _ in range(5)]
    assert count['statements'] <= int(monitored)  # at most the monitors' Dict read, once for the five
    assert (monitors[0] is None) is (aiida_monitors is None) is (not monitored)
    if monitored:
        assert list(monitors[0].monitors) == list(aiida_monitors.monitors) == ['kill']
        assert monitors[0].monitors['kill'].entry_point == 'core.always_kill'


def test_inputs_encoded_once_per_process(aiida_profile, real_code, monkeypatch):
    """Each checkpoint holds the process's inputs as YAML: they are encoded once, and every later checkpoint is the
    same text as one encoded afresh (only the outer document is dumped again)."""
    import yaml

    from aiida.engine.utils import instantiate_process
    from aiida.manage import get_manager

    import aiida_grimperium.processes as processes

    builder = MopacBaseWorkChain.get_builder_from_protocol(real_code('mopac', 'grimperium.mopac'),
                                                          structure_from_smiles('CCO'), 'fast')
    process = instantiate_process(get_manager().get_runner(), builder)  # its first checkpoint encodes the inputs
    dumped, dump = [], yaml.dump
    monkeypatch.setattr(processes.yaml, 'dump', lambda *args, **kwargs: dumped.append(args[0]) or dump(*args, **kwargs))
    process._save_checkpoint()
    again = process.node.checkpoint
    assert len(dumped) == 1 and dumped[0] is not process.inputs and dumped[0] is not process.raw_inputs
    process.__dict__.pop('_grimperium_encoded_inputs')  # forget them: encoded afresh, the same checkpoint
    process._save_checkpoint()
    assert len(dumped) == 4 and process.node.checkpoint == again


def test_a_poll_commits_once_with_aiidas_results(aiida_profile):
    """While a job is polled, its node's poll-time writes give what AiiDA's methods give (status, job info, state,
    time of the check), in one commit per poll; an unchanged status is not written again; afterwards the node's
    methods are AiiDA's again."""
    from aiida.schedulers.datastructures import JobInfo, JobState

    from aiida_grimperium.processes import _one_commit_per_poll

    def poll(node, state):
        info = JobInfo()
        info.job_id, info.job_state, info.raw_data = '42', state, f'42 {state.value}'
        node.set_process_status('Monitoring scheduler: job state RUNNING')
        node.set_last_job_info(info)
        node.set_scheduler_state(state)

    from aiida.common import timezone

    plain, lean = (orm.CalcJobNode().store() for _ in range(2))
    poll(plain, JobState.QUEUED)
    before = timezone.now()
    with counting_queries() as count, _one_commit_per_poll(lean):
        for state in (JobState.QUEUED, JobState.RUNNING, JobState.RUNNING):
            poll(lean, state)
    assert count['commits'] == 1 + 3  # the status once (it never changed), then one per poll
    poll(plain, JobState.RUNNING)
    assert 'set_scheduler_state' not in lean.__dict__ and 'set_process_status' not in lean.__dict__
    for node in (plain, lean):
        node.set_process_status(None)
    keys = ('process_status', 'scheduler_state', 'last_job_info')
    assert {k: plain.base.attributes.get(k, None) for k in keys} == {k: lean.base.attributes.get(k, None) for k in keys}
    assert lean.get_scheduler_state() is JobState.RUNNING and lean.get_last_job_info().job_state is JobState.RUNNING
    assert before <= lean.get_scheduler_lastchecktime() <= plain.get_scheduler_lastchecktime()  # the last poll's


def test_a_job_uploaded_by_a_killed_worker_gets_its_remote_folder_back(aiida_profile, real_code, tmp_path):
    """A worker killed after the upload but before the next state change: the job is marked uploaded
    (``UNSTASHING``) without a ``remote_folder``, and aiida-core's upload task then skips the upload and the
    output. :meth:`LeanWaiting.recover_remote_folder` gives it back, from the recorded working directory."""
    import inspect

    from aiida.common.datastructures import CalcJobState
    from aiida.engine.processes.calcjobs import tasks
    from aiida.engine.utils import instantiate_process
    from aiida.manage import get_manager

    from aiida_grimperium.calculations.mopac import MopacCalculation
    from aiida_grimperium.processes import LeanWaiting

    # the aiida-core behaviour this makes up for: still there (if not, the recovery is no longer needed)
    assert 'if node.get_state() == CalcJobState.UNSTASHING:' in inspect.getsource(tasks.task_upload_job)

    builder = MopacCalculation.get_builder()
    builder.code = real_code('mopac', 'grimperium.mopac')
    builder.structure = structure_from_smiles('CCO')
    process = instantiate_process(get_manager().get_runner(), builder)
    waiting = LeanWaiting(process, None, data={'command': tasks.UPLOAD_COMMAND})
    waiting.recover_remote_folder()
    assert 'remote_folder' not in process.outputs  # not uploaded yet: nothing to recover

    process.node.set_remote_workdir(str(tmp_path))
    process.node.set_state(CalcJobState.UNSTASHING)
    waiting.recover_remote_folder()
    remote = process.outputs['remote_folder']
    assert remote.get_remote_path() == str(tmp_path) and remote.computer.uuid == process.node.computer.uuid
    waiting.recover_remote_folder()
    assert process.outputs['remote_folder'] is remote  # once
