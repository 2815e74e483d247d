"""The restart workchain every code shares: one ``BaseRestartWorkChain`` wired to one CalcJob.

A code's workchain sets :attr:`_process_class` and :attr:`_inputs_namespace`, then adds its own exit codes and
``process_handler`` methods; the inputs of the next attempt live in ``self.ctx.inputs`` for handlers to edit.

**Taking over a failed attempt.** Give ``failed_attempt`` (the ``remote_folder`` of a CalcJob of the same kind
that failed, run without this workchain) and the workchain starts as if that job had been its own first
iteration: its handlers look at that failure, and the next job gets their fix. :class:`RestartOnlyOnFailure` is
for a workchain that runs many molecules' jobs: each job first runs alone, and its restart workchain is only
launched when it fails, which saves two processes per molecule in a campaign (AiiDA's bookkeeping grows with
processes, ``docs/performance.md``) and loses no restart: the handlers see the same failure either way.
"""
from __future__ import annotations

import functools

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import BaseRestartWorkChain, ExitCode, ProcessHandlerReport, process_handler, while_

from ..exit_codes import COMMON
from ..processes import LeanProcess

CANCELLED = COMMON['ERROR_SCHEDULER_CANCELLED']


def outputs_of(node: orm.ProcessNode) -> dict[str, orm.Node]:
    """``{link label: node}`` of a child's outputs in one query, where each ``node.outputs.x`` and each
    ``'x' in node.outputs`` asks the database again. A nested output's label is ``namespace__name``."""
    from aiida.common.links import LinkType

    links = node.base.links.get_outgoing(link_type=(LinkType.CREATE, LinkType.RETURN))
    return {triple.link_label: triple.node for triple in links.all()}


class GrimperiumBaseRestartWorkChain(LeanProcess, BaseRestartWorkChain):
    """Run ``_process_class`` until it succeeds, a handler gives up, or ``max_iterations`` is reached."""

    _process_class = None
    #: Namespace of the CalcJob's inputs on the workchain (``pw``, ``vasp``, ...).
    _inputs_namespace = ''

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(cls._process_class, namespace=cls._inputs_namespace)
        spec.expose_outputs(cls._process_class)
        spec.input('failed_attempt', valid_type=orm.RemoteData, required=False,
                   validator=functools.partial(validate_failed_attempt, cls._process_class),
                   help=f'The `remote_folder` of a failed {cls._process_class.__name__} run without this workchain: '
                        'the handlers start from its failure, which counts as the first iteration.')
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
        if 'failed_attempt' in self.inputs:
            return self.take_over(self.inputs.failed_attempt.creator)
        return None

    def take_over(self, calculation: orm.CalcJobNode) -> ExitCode | None:
        """Count ``calculation`` as this workchain's first iteration, and let the handlers judge its failure."""
        self.ctx.iteration = 1
        self.ctx.children = [calculation]
        considered = self.node.base.extras.get(self._considered_handlers_extra, [])  # as `run_process` does
        self.node.base.extras.set(self._considered_handlers_extra, [*considered, []])
        self.report(f'taking over from {calculation.process_label}<{calculation.pk}>, run before this workchain, '
                    f'which failed with exit status {calculation.exit_status}')
        return self.inspect_process()

    def _attach_outputs(self, node) -> dict:
        """Every exposed output of ``node`` on this workchain, also those already linked in the database.

        AiiDA's version skips an output whose link exists. A worker killed while it was linking them leaves some
        links in the database that the process, reloaded from its last checkpoint, no longer has in memory: the
        skipped outputs are then missing and the workchain fails with 11 (``ERROR_MISSING_OUTPUT``), although
        the job succeeded. ``LeanLinks.update_outputs`` links only the labels not yet linked.
        """
        outputs = self.get_outputs(node)
        for name, port in self.spec().outputs.items():
            if name in outputs:
                self.out(name, outputs[name])
            elif port.required:
                self.report(f'required output `{name}` was not an output of {self.ctx.process_name}<{node.pk}>')
        return outputs

    @process_handler(priority=100, exit_codes=[ExitCode(CANCELLED.status, CANCELLED.label)])
    def handle_scheduler_cancelled(self, calculation):
        """Cancelled from outside (``scancel``, preemption): nothing is wrong with the inputs, so resubmit them."""
        self.report(f'{calculation.process_label}<{calculation.pk}> was cancelled by the scheduler (job '
                    f'{calculation.get_job_id()}): resubmitting it unchanged')
        return ProcessHandlerReport(do_break=True)


def validate_failed_attempt(process_class, value, _=None) -> str | None:
    """``failed_attempt`` must come from a failed (not excepted or killed) CalcJob of the workchain's own class."""
    creator = value.creator
    if creator is None or creator.process_type != process_class.build_process_type():
        return f'`failed_attempt` must be the remote folder of a {process_class.__name__}'
    if not creator.is_failed:
        return f'`failed_attempt`: {creator.process_label}<{creator.pk}> did not fail (state {creator.process_state})'
    return None


class RestartOnlyOnFailure:
    """Mixin for a ``WorkChain`` that runs jobs through restart workchains: each job first runs on its own.

    ``submit_first_attempt(XtbBaseWorkChain, inputs)`` launches the bare :class:`XtbCalculation` with the
    inputs the restart workchain would have given it; after it, ``needs_restart`` says whether it failed in a way
    the handlers can look at, and ``submit_restart`` launches the restart workchain, which takes over from it.
    A workchain that should clean its remote folders (``clean_workdir``) runs through the restart workchain from
    the start, since only that cleans them.
    """

    def submit_first_attempt(self, restart_class, inputs: dict):
        if 'clean_workdir' in inputs and inputs['clean_workdir'].value:
            return self.submit(restart_class, **inputs)
        return self.submit(restart_class._process_class, **inputs[restart_class._inputs_namespace])

    @staticmethod
    def needs_restart(node: orm.ProcessNode, restart_class) -> bool:
        """A bare job of ``restart_class`` that failed with an exit code (and ran: its remote folder exists)."""
        return (node.process_type == restart_class._process_class.build_process_type() and node.is_failed
                and 'remote_folder' in node.outputs)

    def submit_restart(self, restart_class, inputs: dict, failed: orm.CalcJobNode):
        node = self.submit(restart_class, **inputs, failed_attempt=failed.outputs.remote_folder)
        self.report(f'{failed.process_label}<{failed.pk}> failed with exit status {failed.exit_status}: '
                    f'{node.process_label}<{node.pk}> takes over')
        return node
