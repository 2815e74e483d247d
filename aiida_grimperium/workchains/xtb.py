"""``grimperium.xtb.base``: xtb with automatic restarts, in the style of aiida-quantumespresso's PwBaseWorkChain."""
from __future__ import annotations

from aiida import orm
from aiida.engine import ProcessHandlerReport, process_handler

from ..calculations.xtb import XtbCalculation
from ..protocols import GrimperiumProtocolMixin
from .base import GrimperiumBaseRestartWorkChain

#: xtb's default SCC iteration limit (6.x), the starting point when a restart raises it.
DEFAULT_SCC_ITERATIONS = 250
#: Electronic temperature (K) a second SCC restart smears the occupations with; xtb's default is 300 K.
SMEARED_ETEMP = 1000.0


class XtbBaseWorkChain(GrimperiumProtocolMixin, GrimperiumBaseRestartWorkChain):
    """Run an :class:`XtbCalculation`, restarting it on SCC and optimisation convergence failures."""

    _process_class = XtbCalculation
    _inputs_namespace = 'xtb'
    _protocol_name = 'xtb'

    @classmethod
    def get_builder_from_protocol(cls, code, structure, protocol=None, overrides=None, options=None, *,
                                  charge: int = 0, multiplicity: int = 1):
        """A builder for ``structure`` (a ``StructureData``, or an ensemble ``TrajectoryData`` run as one job).

        :param overrides: shaped like the builder's inputs (``{'xtb': {'parameters': ...}, 'max_iterations': 2}``),
            deep-merged onto the protocol's; a key that is not an input is warned about.
        :param options: deep-merged onto the protocol's ``xtb.metadata.options``.
        """
        inputs = cls.get_protocol_inputs(protocol, overrides)
        xtb = inputs['xtb']
        builder = cls.builder_from_protocol_inputs(inputs, code, options)
        if isinstance(structure, orm.TrajectoryData):
            builder.xtb.ensemble = structure
        else:
            builder.xtb.structure = structure
        builder.xtb.parameters = orm.Dict(xtb['parameters'])
        builder.xtb.charge = orm.Int(int(charge))
        builder.xtb.multiplicity = orm.Int(int(multiplicity))
        return builder

    def _parameters(self) -> dict:
        return self.ctx.inputs.parameters.get_dict() if 'parameters' in self.ctx.inputs else {}

    @process_handler(priority=600, exit_codes=[XtbCalculation.exit_codes.ERROR_FATAL_ERROR])
    def handle_fatal_error(self, calculation):
        """A fatal xtb error (atoms on top of each other, a missing parameter file...) fails the same way again."""
        return self.give_up(calculation, f'{calculation.exit_message}: not restarting')

    @process_handler(priority=500, exit_codes=[XtbCalculation.exit_codes.ERROR_SCC_NOT_CONVERGED])
    def handle_scc_not_converged(self, calculation):
        """Raise the SCC iteration limit; if that was already done, also smear the occupations (``--etemp``)."""
        params = self._parameters()
        iterations = int(params.get('iterations', DEFAULT_SCC_ITERATIONS))
        if iterations < 2 * DEFAULT_SCC_ITERATIONS:
            params['iterations'] = max(2 * iterations, 2 * DEFAULT_SCC_ITERATIONS)
            action = f'raising the SCC iteration limit from {iterations} to {params["iterations"]}'
        elif float(params.get('electronic_temperature', 300.0)) < SMEARED_ETEMP:
            params['electronic_temperature'] = SMEARED_ETEMP
            action = f'smearing the occupations at an electronic temperature of {SMEARED_ETEMP:.0f} K'
        else:
            return self.give_up(calculation, 'SCC not converged even with more iterations and smearing')
        self.ctx.inputs.parameters = orm.Dict(params)
        self.report(f'{calculation.process_label}<{calculation.pk}>: SCC not converged; {action}')
        return ProcessHandlerReport(True)

    @process_handler(priority=400, exit_codes=[XtbCalculation.exit_codes.ERROR_OPTIMIZATION_NOT_CONVERGED])
    def handle_optimization_not_converged(self, calculation):
        """Continue the optimisation from its last geometry with twice the cycles it was given."""
        params = self._parameters()
        if 'cycles' in params:
            params['cycles'] = 2 * int(params['cycles'])
            self.ctx.inputs.parameters = orm.Dict(params)
        if 'structure' in self.ctx.inputs and 'output_structure' in calculation.outputs:
            self.ctx.inputs.structure = calculation.outputs.output_structure
            where = 'its last geometry'
        else:
            where = 'the same geometries'
        cycles = f' with {params["cycles"]} cycles' if 'cycles' in params else ''
        self.report(f'{calculation.process_label}<{calculation.pk}>: optimisation not converged; restarting from {where}{cycles}')
        return ProcessHandlerReport(True)

    @process_handler(priority=300, exit_codes=[XtbCalculation.exit_codes.ERROR_OUT_OF_WALLTIME])
    def handle_scheduler_killed(self, calculation):
        """The scheduler killed the job at its walltime: resubmit it with twice the walltime."""
        options = self.ctx.inputs.get('metadata', {}).get('options', {})
        if options.get('max_wallclock_seconds'):
            options['max_wallclock_seconds'] = 2 * int(options['max_wallclock_seconds'])
        self.report(f'{calculation.process_label}<{calculation.pk}> (job {calculation.get_job_id()}) ran out of '
                    f'walltime: resubmitting with {options.get("max_wallclock_seconds")} s')
        return ProcessHandlerReport(True)
