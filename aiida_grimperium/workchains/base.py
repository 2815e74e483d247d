"""The restart workchain every code shares: one ``BaseRestartWorkChain`` wired to one CalcJob.

A code's workchain sets :attr:`_process_class` and :attr:`_inputs_namespace`, then adds its own exit codes and
``process_handler`` methods; the inputs of the next attempt live in ``self.ctx.inputs`` for handlers to edit.
"""
from __future__ import annotations

from aiida.common import AttributeDict
from aiida.engine import BaseRestartWorkChain, ExitCode, ProcessHandlerReport, process_handler, while_

from ..exit_codes import COMMON
from ..processes import LeanLinks

CANCELLED = COMMON['ERROR_SCHEDULER_CANCELLED']


class GrimperiumBaseRestartWorkChain(LeanLinks, BaseRestartWorkChain):
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

    @process_handler(priority=100, exit_codes=[ExitCode(CANCELLED.status, CANCELLED.label)])
    def handle_scheduler_cancelled(self, calculation):
        """Cancelled from outside (``scancel``, preemption): nothing is wrong with the inputs, so resubmit them."""
        self.report(f'{calculation.process_label}<{calculation.pk}> was cancelled by the scheduler (job '
                    f'{calculation.get_job_id()}): resubmitting it unchanged')
        return ProcessHandlerReport(do_break=True)
