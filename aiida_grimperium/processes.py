"""What every grimperium process (CalcJob and WorkChain) adds to AiiDA's ``Process``: less bookkeeping.

Three mixins, together :class:`LeanProcess`; each keeps AiiDA's results (links, states, checkpoints) and cuts
the database work and CPU AiiDA spends on them (``benchmarks/campaign.py``, py-spy on the daemon workers):

* :class:`LeanLinks`: provenance links without the redundant queries (below).
* :class:`LeanCheckpoints`: checkpoints as AiiDA's YAML, written and read by libyaml; input nodes in one query.
* :class:`LeanTransitions`: a state change in one database transaction: one commit instead of four to six.

and, for CalcJobs, :class:`LeanCalcJob`: a waiting state that makes one commit per scheduler poll, where AiiDA's
makes four and queries the job's input links.

AiiDA validates every provenance link it adds with database queries, also where the answer is known without
asking. In a campaign of small molecules that was about a fifth of the daemon's CPU time, and of the time the
``campaign run`` command spends submitting:

* **Inputs.** A new process node is not stored yet when its input links are added. AiiDA still runs a
  recursive cycle-check query for each (no link can lead out of a node that is not stored, so it finds
  nothing), and checks the new link against the node's cached ones with ``==``, which for ``Int``, ``Float``,
  ``Str`` and ``Bool`` compares their *values*: two database reads per pair, so quadratic in the number of
  inputs (a campaign pipeline has 16).
* **Outputs.** AiiDA calls :meth:`Process.update_outputs` on every state change (a CalcJob has about ten, a
  workchain two per step). Each call asks for the labels already linked, and each new link is validated
  with two or three more queries that the first answer already settles. Here the labels are asked for once
  per process and interpreter: then only the process itself links its outputs.

:class:`LeanLinks` adds the same links with the same labels and types, and refuses what AiiDA refuses: every
case the shortcut does not cover exactly (a stored node, a cached link, a sealed node) goes through AiiDA's
own methods unchanged. ``tests/test_processes.py`` compares the graphs link by link.
"""
from __future__ import annotations

import contextlib
import functools

import yaml
from plumpy import ProcessState
from yaml.cyaml import CEmitter, CParser
from aiida import orm
from aiida.common.datastructures import CalcJobState
from aiida.common.links import LinkType, validate_link_label
from aiida.engine.processes.calcjobs.monitors import CalcJobMonitors
from aiida.engine.processes.calcjobs.tasks import UPDATE_COMMAND, UPLOAD_COMMAND, Waiting
from aiida.orm.utils import serialize
from aiida.orm.utils.links import LinkTriple

from . import expiry
from .storage import write_transaction


class LeanLinks:
    """Mixin for a ``Process`` subclass (first in the bases): input and output links without redundant queries."""

    def _setup_inputs(self) -> None:
        """AiiDA's own ``_setup_inputs`` (and a CalcJob's, which also sets the computer), with lean input links.

        Only while it runs, and only on this node: ``add_incoming`` of an input link from a ``Data`` node to this
        new, unstored node with a label not yet used goes straight into the node's link cache, which
        ``store_all()`` writes. Anything else is AiiDA's ``add_incoming``, checks and errors included.
        """
        node = self.node
        links = node.base.links
        if node.is_stored or any(link.link_type not in (LinkType.CALL_CALC, LinkType.CALL_WORK)
                                 for link in links.incoming_cache):
            return super()._setup_inputs()  # not the situation AiiDA's engine is in here: its full checks
        labels = set()

        def add_input_link(source, link_type, link_label):
            if (link_type in (LinkType.INPUT_CALC, LinkType.INPUT_WORK) and isinstance(source, orm.Data)
                    and source.backend == node.backend and link_label not in labels and not node.is_sealed):
                # unstored target: no cycle possible and no stored links; the label is new: no clash in the cache.
                # An unstored source is stored with the node (``store_all``), as on AiiDA's path.
                validate_link_label(link_label)
                labels.add(link_label)
                links.incoming_cache.append(LinkTriple(source, link_type, link_label))
            else:
                type(links).add_incoming(links, source, link_type, link_label)

        links.add_incoming = add_input_link  # an instance attribute: shadows the method for this node only
        try:
            super()._setup_inputs()
        finally:
            del links.add_incoming

    def update_outputs(self) -> None:
        """Link the outputs added since the last call; nothing at all when there are none."""
        if self.metadata.store_provenance is False:
            return
        outputs = self._flat_outputs()
        linked = getattr(self, '_grimperium_linked_outputs', None)
        if not outputs or (linked is not None and outputs.keys() <= linked):
            return  # nothing new to link: AiiDA's query would find nothing to do
        if linked is None:
            # The first time in this interpreter: which labels the database has, as AiiDA asks (an earlier run of
            # this process, a worker killed while linking, may have linked some). From then on this process is
            # the only one that links its outputs: the answer is kept up to date here.
            outgoing = self.node.base.links.get_outgoing(link_type=(LinkType.CREATE, LinkType.RETURN))
            linked = set(outgoing.all_link_labels())
        else:
            linked = set(linked)  # a copy: the cached answer changes only once every new link is made
        for label, output in outputs.items():
            if label not in linked:
                self._link_output(output, label)
                linked.add(label)
        self._grimperium_linked_outputs = linked

    def _link_output(self, output: orm.Data, label: str) -> None:
        """Link one new output: the label is not among the node's CREATE and RETURN links (just asked)."""
        node = self.node
        usual = not node.is_sealed and node.is_stored and isinstance(output, orm.Data)
        if usual and isinstance(node, orm.CalculationNode) and not output.is_stored and not output.base.links.incoming_cache:
            validate_link_label(label)  # a new node: no cycle and no other creator possible
            output.base.links.incoming_cache.append(LinkTriple(node, LinkType.CREATE, label))
        elif usual and isinstance(node, orm.WorkflowNode) and output.is_stored:
            validate_link_label(label)  # RETURN links are not checked for cycles; the label is unique (above)
            _add_stored_link(output, node, LinkType.RETURN, label)
        else:
            link_type = LinkType.CREATE if isinstance(node, orm.CalculationNode) else LinkType.RETURN
            links = output.base.links
            if output.is_stored and node.is_stored and isinstance(output, orm.Data):
                links.validate_incoming(node, link_type, label)  # AiiDA's checks, then the link as AiiDA adds it
                node.base.links.validate_outgoing(output, link_type, label)
                _add_stored_link(output, node, link_type, label)
            else:
                links.add_incoming(node, link_type, label)
        output.store()


def _add_stored_link(target: orm.Node, source: orm.Node, link_type: LinkType, label: str) -> None:
    """A link between two stored nodes, committed now unless a transaction is open (AiiDA's storage always commits)."""
    entity = target.backend_entity
    session = entity.backend.get_session()
    if session.in_nested_transaction():
        entity._add_link(source.backend_entity, link_type, label)  # the savepoint AiiDA's ``add_incoming`` uses
        session.flush()
    else:
        entity.add_incoming(source.backend_entity, link_type, label)


# ------------------------------------------------------------------------------------------------ checkpoints


class _CheckpointDumper(CEmitter, serialize.AiiDADumper):
    """AiiDA's checkpoint dumper (same representers, same tags) with libyaml's emitter: several times faster."""

    __init__ = yaml.CDumper.__init__


class _CheckpointLoader(CParser, serialize.AiiDALoader):
    """AiiDA's checkpoint loader with libyaml's parser; ``!aiida_node`` tags come from nodes loaded in one query."""

    def __init__(self, stream, nodes: dict):
        yaml.CLoader.__init__(self, stream)
        self.nodes = nodes

    def construct_node(self, yaml_node):
        uuid = self.construct_scalar(yaml_node)
        return self.nodes[uuid] if uuid in self.nodes else orm.load_node(uuid=uuid)  # not found: AiiDA's error


_CheckpointLoader.add_constructor(serialize._NODE_TAG, _CheckpointLoader.construct_node)


def _node_uuids(root) -> set[str]:
    """The UUIDs of the ``!aiida_node`` scalars in a composed YAML document."""
    uuids, seen, todo = set(), set(), [root]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, yaml.ScalarNode):
            if item.tag == serialize._NODE_TAG:
                uuids.add(item.value)
        elif isinstance(item, yaml.SequenceNode):
            todo.extend(item.value)
        elif isinstance(item, yaml.MappingNode):
            for key, value in item.value:
                todo.extend((key, value))
    return uuids


class LeanCheckpoints:
    """Mixin for a ``Process`` subclass: the same checkpoints as AiiDA's, written and read with libyaml.

    AiiDA checkpoints a process on every state change: the whole process as YAML, its inputs as YAML inside
    it, written by pure-Python PyYAML. A worker that takes a process over reads it back and loads each input
    node with a query of its own, twice (raw and parsed inputs). Here the same YAML (AiiDA's own dumper and
    loader classes, so ``verdi process`` tools read it as before) goes through libyaml, and the input nodes
    come from one query per checkpoint. A process's inputs never change, yet every checkpoint encodes them
    again (both the raw and the parsed ones): they are encoded once per process instead.
    """

    def encode_input_args(self, inputs: dict) -> str:
        if inputs is not self.raw_inputs and inputs is not self.inputs:  # the outputs: they grow
            return yaml.dump(inputs, Dumper=_CheckpointDumper)
        encoded = self.__dict__.setdefault('_grimperium_encoded_inputs', {})
        if id(inputs) not in encoded or encoded[id(inputs)][0] is not inputs:
            encoded[id(inputs)] = (inputs, yaml.dump(inputs, Dumper=_CheckpointDumper))
        return encoded[id(inputs)][1]

    def decode_input_args(self, encoded: str) -> dict:
        nodes = self.__dict__.setdefault('_grimperium_loaded_nodes', {})
        loader = _CheckpointLoader(encoded, nodes)
        try:
            root = loader.get_single_node()
            missing = _node_uuids(root) - nodes.keys()
            if missing:
                query = orm.QueryBuilder().append(orm.Node, filters={'uuid': {'in': sorted(missing)}},
                                                  project=['uuid', '*'])
                nodes.update(query.all())
            return loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()

    def _save_checkpoint(self) -> None:
        """AiiDA's ``AiiDAPersister.save_checkpoint`` with the libyaml dumper; any other persister: AiiDA's way."""
        from aiida.engine.persistence import AiiDAPersister
        from plumpy import get_object_loader
        from plumpy.persistence import Bundle, LoadSaveContext

        if (not self._enable_persistence or self._state.is_terminal()
                or type(self.runner.persister) is not AiiDAPersister):
            return super()._save_checkpoint()
        try:
            bundle = Bundle(self, LoadSaveContext(loader=get_object_loader()))
            self.node.set_checkpoint(yaml.dump(bundle, Dumper=_CheckpointDumper))
        except Exception:  # noqa: BLE001 - AiiDA's own path: it tries again, and logs a failure the way users know
            super()._save_checkpoint()


# ------------------------------------------------------------------------------------------------ transactions


class LeanTransitions:
    """Mixin for a ``Process`` subclass: each state change, and the creation of the process node, in one transaction.

    ``on_entered`` does what AiiDA's does, in the same order: link the new outputs, record the state, save the
    checkpoint, stamp the time of the last state change; then plumpy announces the new state. The first four
    are now one commit, made before the announcement, as AiiDA requires (a parent that hears of it must find
    the outputs and the state in the database).
    """

    def on_entered(self, from_state) -> None:
        from aiida.engine.utils import set_process_state_change_timestamp
        from plumpy.processes import Process as PlumpyProcess

        if self._state.LABEL is ProcessState.EXCEPTED or not self.metadata.store_provenance:
            return super().on_entered(from_state)
        if self._state.LABEL in (ProcessState.RUNNING, ProcessState.WAITING):
            self._settle_in()
        node = self.node
        try:
            with write_transaction(node.backend):
                self.update_outputs()
                node.set_process_state(self._state.LABEL)
                self._save_checkpoint()
                set_process_state_change_timestamp(node)
        except BaseException:
            self.__dict__.pop('_grimperium_linked_outputs', None)  # rolled back: ask the database again next time
            node.set_process_state(self._state.LABEL)  # as AiiDA: the state is recorded even when linking fails
            raise
        PlumpyProcess.on_entered(self, from_state)

    def _settle_in(self) -> None:
        """Call :meth:`_on_settling_in` once, when the process starts to run in this interpreter."""
        if not getattr(self, '_grimperium_settled', False):
            self._grimperium_settled = True
            self._on_settling_in()

    def _on_settling_in(self) -> None:
        """The process holds its node until it closes, and trusts its stored ``Data`` inputs. AiiDA would re-read
        their unchanging fields at nearly every read (:mod:`..expiry`)."""
        if self.metadata.store_provenance and expiry.hold(self.node):
            self.add_cleanup(functools.partial(expiry.release, self.node))
            for node in self._flat_inputs().values():
                if isinstance(node, orm.Data):
                    expiry.trust(node)  # (a stored one)

    def _create_and_setup_db_record(self):
        if not self.metadata.store_provenance:
            return super()._create_and_setup_db_record()
        from aiida.manage import get_manager

        with write_transaction(get_manager().get_profile_storage()):
            return super()._create_and_setup_db_record()


class LeanProcess(LeanLinks, LeanCheckpoints, LeanTransitions):
    """The three mixins: what every grimperium CalcJob and WorkChain puts first in its bases."""


class LeanWaiting(Waiting):
    """AiiDA's waiting state of a CalcJob, with fewer database round trips at each scheduler poll.

    At every poll of every running job AiiDA's state asks the database for all the input links (are there
    ``monitors``?), sets the process status (the same text as last time), then the job info, the scheduler state
    and the time of the check, each committed on its own: five round trips per job and poll, a fifth of the
    daemon's CPU in a campaign of drug-sized molecules. Here the monitors are looked up once, in the process's own
    inputs (in memory; the inputs of a process never change), an unchanged status is not written again, and the
    job info, state and time go in one commit (:func:`_one_commit_per_poll`).
    """

    async def execute(self):
        self.process._settle_in()  # (a process taken over from a checkpoint enters no state before this)
        if self._command == UPLOAD_COMMAND:
            self.recover_remote_folder()
        if self._command != UPDATE_COMMAND:
            return await super().execute()
        with _one_commit_per_poll(self.process.node):
            return await super().execute()

    def recover_remote_folder(self) -> None:
        """Give the job its ``remote_folder`` output again when a worker died between the upload and its record.

        aiida-core marks the job uploaded (``UNSTASHING``) in a commit of its own, and links the ``remote_folder``
        only at the next state change. A worker killed in between leaves a job whose files are uploaded but which
        has no ``remote_folder``; the worker that takes it over skips the upload and, with it, the output (seen in
        ``tests/test_crash_recovery.py``): the job ran, but its restart workchain failed for the missing output.
        Here the output is made again from the working directory the upload recorded, before the upload is skipped.
        """
        process, node = self.process, self.process.node
        workdir = node.get_remote_workdir()
        if node.get_state() != CalcJobState.UNSTASHING or 'remote_folder' in process.outputs or not workdir:
            return
        if node.base.links.get_outgoing(link_label_filter='remote_folder').first() is None:
            process.out('remote_folder', orm.RemoteData(computer=node.computer, remote_path=workdir))

    @property
    def monitors(self):
        if not hasattr(self, '_lean_monitors'):
            monitors = self.process.inputs.get('monitors')
            self._lean_monitors = CalcJobMonitors(dict(monitors)) if monitors else None
        return self._lean_monitors


@contextlib.contextmanager
def _one_commit_per_poll(node: orm.CalcJobNode):
    """While a job is polled: ``node``'s poll-time writes (AiiDA's ``set_process_status``, ``set_last_job_info``,
    ``set_scheduler_state``) with the same results, in one commit per poll instead of four.

    AiiDA's ``task_update_job`` calls ``set_last_job_info`` and then ``set_scheduler_state``: the job info waits
    for the state and both go in with the time of the check. Only this ``node`` object is affected (its instance
    attributes shadow the methods), and only until the polling ends; a job info still waiting then is written.
    """
    from aiida.common import timezone
    from aiida.schedulers.datastructures import JobState

    cls, attributes = type(node), node.base.attributes
    pending, status = {}, [attributes.get(cls.PROCESS_STATUS_KEY, None)]

    def set_process_status(value):
        if value is None or value != status[0]:
            cls.set_process_status(node, value)
            status[0] = value

    def set_last_job_info(job_info):
        pending[cls.SCHEDULER_LAST_JOB_INFO_KEY] = job_info.get_dict()

    def set_scheduler_state(state):
        if not isinstance(state, JobState):
            raise ValueError(f'scheduler state should be an instance of JobState, got: {state}')
        attributes.set_many({**pending, cls.SCHEDULER_STATE_KEY: state.value,
                             cls.SCHEDULER_LAST_CHECK_TIME_KEY: timezone.now().isoformat()})
        pending.clear()

    lean = {'set_process_status': set_process_status, 'set_last_job_info': set_last_job_info,
            'set_scheduler_state': set_scheduler_state}
    node.__dict__.update(lean)
    try:
        yield
    finally:
        for name in lean:
            node.__dict__.pop(name, None)
        if pending and not node.is_sealed:
            attributes.set_many(pending)


class LeanCalcJob(LeanProcess):
    """:class:`LeanProcess` for a CalcJob, with :class:`LeanWaiting` as its waiting state; its node looks its
    authinfo up once while it runs (AiiDA's tasks ask for it at every upload, poll and retrieval: a query each)."""

    def _on_settling_in(self) -> None:
        super()._on_settling_in()
        node = self.node
        if node.is_stored:  # the job's computer and user never change: nor does their authinfo
            node.__dict__['get_authinfo'] = functools.cache(node.get_authinfo)
            self.add_cleanup(functools.partial(node.__dict__.pop, 'get_authinfo', None))

    @classmethod
    def get_state_classes(cls):
        states = super().get_state_classes()
        states[ProcessState.WAITING] = LeanWaiting
        return states
