"""The restart workchain every code shares: one ``BaseRestartWorkChain`` wired to one CalcJob.

A code's workchain sets :attr:`_process_class` and :attr:`_inputs_namespace`, then adds its own exit codes and
``process_handler`` methods; the inputs of the next attempt live in ``self.ctx.inputs`` for handlers to edit.
Only AiiDA's public ``BaseRestartWorkChain`` API is used: the handlers, ``ctx.inputs``, ``ctx.children``.
"""
from __future__ import annotations

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import BaseRestartWorkChain, ExitCode, ProcessHandlerReport, process_handler, while_

from ..exit_codes import COMMON

CANCELLED = COMMON['ERROR_SCHEDULER_CANCELLED']


def duration_seconds(node: orm.ProcessNode) -> float:
    """Wall time of a finished process node (creation to last modification)."""
    return (node.mtime - node.ctime).total_seconds()


def outputs_of(node: orm.ProcessNode) -> dict[str, orm.Node]:
    """``{link label: node}`` of a child's outputs in one query, where each ``node.outputs.x`` and each
    ``'x' in node.outputs`` asks the database again. A nested output's label is ``namespace__name``."""
    from aiida.common.links import LinkType

    links = node.base.links.get_outgoing(link_type=(LinkType.CREATE, LinkType.RETURN))
    return {triple.link_label: triple.node for triple in links.all()}


class ReattachesOutputs:
    """For every restart workchain of this package, aiida-quantumespresso's subclasses included (``workchains/pw.py``)."""

    def results(self):
        """AiiDA's ``results``, then every exposed output of the last child that is still missing.

        aiida-core 2.9 (``BaseRestartWorkChain._attach_outputs``) skips an output whose RETURN link is already in
        the database. A worker killed while linking them leaves such links; the process, reloaded from its
        checkpoint, does not have those outputs in memory and fails with 11 (missing output) though the job
        succeeded. Setting them again with ``out`` is harmless: AiiDA links only labels not yet linked.
        """
        result = super().results()
        if result is None or result.status == 0:
            child = self.ctx.children[self.ctx.iteration - 1]
            for name, node in self.exposed_outputs(child, self._process_class).items():
                if name not in self.outputs:
                    self.out(name, node)
        return result


class GrimperiumBaseRestartWorkChain(ReattachesOutputs, BaseRestartWorkChain):
    """Run ``_process_class`` until it succeeds, a handler gives up, or ``max_iterations`` is reached."""

    _process_class = None
    #: Namespace of the CalcJob's inputs on the workchain (``pw``, ``vasp``, ...).
    _inputs_namespace = ''

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(cls._process_class, namespace=cls._inputs_namespace)
        spec.expose_outputs(cls._process_class)
        spec.outline(
            cls.setup,
            while_(cls.should_run_process)(
                cls.run_process,
                cls.inspect_process,
            ),
            cls.results,
        )
        spec.exit_code(300, 'ERROR_UNRECOVERABLE_FAILURE', message='The calculation failed with an unrecoverable error.')

    def setup(self):
        super().setup()
        self.ctx.inputs = AttributeDict(self.exposed_inputs(self._process_class, self._inputs_namespace))

    def give_up(self, calculation, reason: str) -> ProcessHandlerReport:
        """Report ``reason`` for ``calculation`` and end the workchain with ``ERROR_UNRECOVERABLE_FAILURE``."""
        self.report(f'{calculation.process_label}<{calculation.pk}>: {reason}')
        return ProcessHandlerReport(do_break=True, exit_code=self.exit_codes.ERROR_UNRECOVERABLE_FAILURE)

    @process_handler(priority=100, exit_codes=[ExitCode(CANCELLED.status, CANCELLED.label)])
    def handle_scheduler_cancelled(self, calculation):
        """Cancelled from outside (``scancel``, preemption): nothing is wrong with the inputs, so resubmit them."""
        self.report(f'{calculation.process_label}<{calculation.pk}> was cancelled by the scheduler (job '
                    f'{calculation.get_job_id()}): resubmitting it unchanged')
        return ProcessHandlerReport(do_break=True)


#: Label prefix of the transient groups that claim a step's launch (see :class:`LaunchOnce`).
CLAIM_PREFIX = 'grimperium-launching'
#: How long an instance waits for the child of a step another instance has claimed, before taking the claim over.
CLAIM_WAIT_SECONDS = 30.0


class LaunchOnce:
    """Mixin for a ``WorkChain`` whose steps must launch each child once, also when a step runs again.

    A step runs again when its process is taken up from its last checkpoint: after a worker was killed, or when a
    restarted broker hands the process's task to another worker while the first still runs it (aiida-core 2.9).
    A child launched by the first run is then found under its call link label and waited for. Two instances
    running the step at the same moment must not both launch: the one that launches first claims the step with
    a group whose label the database keeps unique (``CLAIM_PREFIX/<process uuid>/<label>``); the other waits
    for the claimed child. The claim is deleted once the child is stored.
    """

    def children(self, label: str) -> list[orm.ProcessNode]:
        """The children launched under the call link ``label``, neither excepted nor killed, oldest first."""
        from aiida.common.links import LinkType

        nodes = self.node.base.links.get_outgoing(link_type=(LinkType.CALL_CALC, LinkType.CALL_WORK),
                                                   link_label_filter=label).all_nodes()
        return sorted((node for node in nodes if not (node.is_excepted or node.is_killed)), key=lambda node: node.pk)

    def launched(self, label: str) -> orm.ProcessNode | None:
        """The child launched under the call link ``label`` (neither excepted nor killed), or ``None``."""
        nodes = self.children(label)
        return nodes[-1] if nodes else None

    def claim_label(self, label: str) -> str:
        return f'{CLAIM_PREFIX}/{self.node.uuid}/{label}'

    def claim(self, label: str) -> orm.Group | None:
        """The claim on launching ``label``'s child, or ``None`` when another instance holds it."""
        from aiida.common.exceptions import IntegrityError

        try:
            return orm.Group(label=self.claim_label(label)).store()
        except IntegrityError:  # the database's unique (label, type) constraint: the other instance was first
            return None

    def release(self, label: str) -> None:
        """Delete the claim on ``label`` if there is one (also one left by a worker killed while holding it)."""
        query = orm.QueryBuilder().append(orm.Group, filters={'label': self.claim_label(label)}, project=['id'])
        for pk in query.all(flat=True):
            try:
                orm.Group.collection.delete(pk)
            except Exception:  # noqa: BLE001 - gone already (deleted by the other instance): SQLAlchemy's error
                pass

    def wait_for_claimed(self, label: str) -> orm.ProcessNode | None:
        """The child the claim's holder launches, or ``None`` if none comes within ``CLAIM_WAIT_SECONDS`` (its
        holder died before launching). Blocks the worker: only a second instance of a process waits here."""
        import time

        deadline = time.monotonic() + CLAIM_WAIT_SECONDS
        while time.monotonic() < deadline:
            node = self.launched(label)
            if node is not None:
                return node
            time.sleep(0.2)
        return None

    def submit_once(self, label: str, process, **inputs) -> orm.ProcessNode:
        """Submit ``process`` under the call link ``label``, unless a child of that label exists already or
        another instance of this process is launching it (then that child)."""
        while True:
            node = self.launched(label)
            if node is None and self.claim(label) is not None:
                try:
                    node = self.launched(label)  # launched, and the claim released, since we looked
                    if node is None:
                        metadata = {**inputs.pop('metadata', {}), 'call_link_label': label}
                        return self.submit(process, **inputs, metadata=metadata)
                    return self.waiting_for(node)
                finally:
                    self.release(label)
            if node is None:
                node = self.wait_for_claimed(label)
                if node is None:
                    self.report(f'the claim on launching `{label}` was left by an instance that stopped: taking it over')
                    self.release(label)
                    continue
            self.release(label)  # one left by a worker killed after launching, if any
            return self.waiting_for(node)

    def waiting_for(self, node: orm.ProcessNode) -> orm.ProcessNode:
        self.report(f'{node.process_label}<{node.pk}> was launched before this step ran again: waiting for it')
        return node

    def run_once(self, label: str, function, **inputs) -> dict:
        """The outputs of the calcfunction ``function`` run under the call link ``label``: those of the run
        that finished before this step ran again, or of a new run."""
        from aiida.common.links import LinkType

        node = self.launched(label)
        if node is not None and node.is_finished_ok:
            return {t.link_label: t.node for t in node.base.links.get_outgoing(link_type=LinkType.CREATE).all()}
        outputs = function(**inputs, metadata={'call_link_label': label})
        return outputs if isinstance(outputs, dict) else {'result': outputs}
