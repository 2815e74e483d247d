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

def outputs_of(node: orm.ProcessNode) -> dict[str, orm.Node]:
    """``{link label: node}`` of a child's outputs in one query, where each ``node.outputs.x`` and each
    ``'x' in node.outputs`` asks the database again. A nested output's label is ``namespace__name``."""
    from aiida.common.links import LinkType

    links = node.base.links.get_outgoing(link_type=(LinkType.CREATE, LinkType.RETURN))
    return {triple.link_label: triple.node for triple in links.all()}


class GrimperiumBaseRestartWorkChain(BaseRestartWorkChain):
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

    @process_handler(priority=100, exit_codes=[ExitCode(CANCELLED.status, CANCELLED.label)])
    def handle_scheduler_cancelled(self, calculation):
        """Cancelled from outside (``scancel``, preemption): nothing is wrong with the inputs, so resubmit them."""
        self.report(f'{calculation.process_label}<{calculation.pk}> was cancelled by the scheduler (job '
                    f'{calculation.get_job_id()}): resubmitting it unchanged')
        return ProcessHandlerReport(do_break=True)


