"""``grimperium.mopac.base``: MOPAC with automatic restarts, in the style of aiida-quantumespresso's base workchains.

Each handler is tied to one or more exit codes of :class:`~aiida_grimperium.calculations.mopac.MopacCalculation`
and says in the report what it changed:

* 420 cycle limit, 421 geometry stuck, 400 out of time: restart from the last geometry MOPAC printed, with
  twice the cycles (420) or twice the time (400).
* 410 SCF not converged: first allow many more SCF iterations and add a level shift (``SHIFT=20``); then also
  switch on Pulay's converger (``PULAY``).
* 401 the scheduler cancelled the job (``scancel``, preemption): resubmit from the last geometry, unchanged.
* 433 the open-shell state is not in the C.I. active space (restricted open shell): once more with ``UHF``.
* 432 no parameters for an element, 430 an impossible charge/spin, 431 a refused input, 440/441 files, 450
  memory: the same input fails the same way, so the workchain stops at once with MOPAC's words in its report.
"""
from __future__ import annotations

from aiida import orm
from aiida.engine import ProcessHandlerReport, process_handler

from ..calculations.mopac import MopacCalculation
from ..protocols import GrimperiumProtocolMixin
from .base import GrimperiumBaseRestartWorkChain


class MopacBaseWorkChain(GrimperiumProtocolMixin, GrimperiumBaseRestartWorkChain):
    """Run a :class:`MopacCalculation`, restarting it when a recoverable error comes back."""

    _process_class = MopacCalculation
    _inputs_namespace = 'mopac'
    _protocol_name = 'mopac'

    @classmethod
    def get_builder_from_protocol(cls, code, structure=None, protocol=None, overrides=None, options=None, *,
                                  ensemble=None, charge: int = 0, multiplicity: int = 1, task: str | None = None):
        """A builder for ``structure`` (or ``ensemble``) with the inputs of ``protocol`` (fast|balanced|stringent).

        :param overrides: shaped like the builder's inputs (``{'mopac': {'parameters': ...}, 'max_iterations': 2}``),
            deep-merged onto the protocol's; a key that is not an input is warned about.
        :param options: deep-merged onto the protocol's ``mopac.metadata.options``.
        :param task: replaces ``mopac.parameters.task`` (``single_point``, ``optimization``...).
        """
        inputs = cls.get_protocol_inputs(protocol, overrides)
        mopac = inputs['mopac']
        parameters = dict(mopac['parameters'])
        if task is not None:
            parameters['task'] = task
        builder = cls.builder_from_protocol_inputs(inputs, code, options)
        if structure is not None:
            builder.mopac.structure = structure
        if ensemble is not None:
            builder.mopac.ensemble = ensemble
        builder.mopac.charge = orm.Int(charge)
        builder.mopac.multiplicity = orm.Int(multiplicity)
        builder.mopac.parameters = orm.Dict(parameters)
        return builder

    def parameters(self) -> dict:
        return self.ctx.inputs.parameters.get_dict() if 'parameters' in self.ctx.inputs else {}

    def restart_from_last_geometry(self, calculation) -> None:
        """Use the geometries the failed calculation ended with as the next inputs."""
        if 'structure' in self.ctx.inputs and 'output_structure' in calculation.outputs:
            self.ctx.inputs.structure = calculation.outputs.output_structure
        elif 'ensemble' in self.ctx.inputs and 'output_ensemble' in calculation.outputs:
            self.ctx.inputs.ensemble = calculation.outputs.output_ensemble
        elif 'ensemble' in self.ctx.inputs and self.computed_frames() == 1 and 'output_structure' in calculation.outputs:
            # one conformer has no output ensemble, only its structure: go on from that, as a structure
            del self.ctx.inputs['ensemble']
            self.ctx.inputs.pop('num_conformers', None)
            self.ctx.inputs.structure = calculation.outputs.output_structure

    def computed_frames(self) -> int:
        """How many frames of the input ensemble the MOPAC job computes."""
        count = self.ctx.inputs.ensemble.numsteps
        return min(count, self.ctx.inputs.num_conformers.value) if 'num_conformers' in self.ctx.inputs else count

    @process_handler(priority=600, exit_codes=[MopacCalculation.exit_codes.ERROR_MAX_CYCLES])
    def handle_max_cycles(self, calculation):
        """Cycle limit reached: continue from the last geometry with twice the cycles."""
        parameters = self.parameters()
        parameters['cycles'] = 2 * int(parameters.get('cycles') or 100)
        self.ctx.inputs.parameters = orm.Dict(parameters)
        self.restart_from_last_geometry(calculation)
        self.report(f'{calculation.process_label}<{calculation.pk}> hit the cycle limit: restarting from its last '
                    f'geometry with CYCLES={parameters["cycles"]}')
        return ProcessHandlerReport(do_break=True)

    @process_handler(priority=590, exit_codes=[MopacCalculation.exit_codes.ERROR_GEOMETRY_NOT_CONVERGED])
    def handle_geometry_not_converged(self, calculation):
        """The optimiser got stuck: restart from the last geometry, which resets the Hessian."""
        self.restart_from_last_geometry(calculation)
        self.report(f'{calculation.process_label}<{calculation.pk}> could not converge the geometry: restarting '
                    'from its last geometry with a fresh Hessian')
        return ProcessHandlerReport(do_break=True)

    @process_handler(priority=580, exit_codes=[MopacCalculation.exit_codes.ERROR_OUT_OF_WALLTIME])
    def handle_out_of_walltime(self, calculation):
        """Out of time: continue from the last geometry with twice MOPAC's time limit and the scheduler's."""
        parameters = self.parameters()
        if parameters.get('time_limit_seconds'):
            parameters['time_limit_seconds'] = 2 * float(parameters['time_limit_seconds'])
            self.ctx.inputs.parameters = orm.Dict(parameters)
        options = self.ctx.inputs.metadata.options
        if options.get('max_wallclock_seconds'):
            options['max_wallclock_seconds'] = 2 * int(options['max_wallclock_seconds'])
        self.restart_from_last_geometry(calculation)
        self.report(f'{calculation.process_label}<{calculation.pk}> ran out of time: restarting from its last '
                    'geometry with twice the time')
        return ProcessHandlerReport(do_break=True)

    @process_handler(priority=575, exit_codes=[MopacCalculation.exit_codes.ERROR_SCHEDULER_CANCELLED])
    def handle_scheduler_cancelled(self, calculation):
        """Cancelled from outside (scancel, preemption): nothing is wrong with the inputs, so resubmit them."""
        self.restart_from_last_geometry(calculation)
        self.report(f'{calculation.process_label}<{calculation.pk}> was cancelled by the scheduler (job '
                    f'{calculation.get_job_id()}): resubmitting from its last geometry')
        return ProcessHandlerReport(do_break=True)

    @process_handler(priority=700, exit_codes=[MopacCalculation.exit_codes[label] for label in (
        'ERROR_MISSING_PARAMETERS', 'ERROR_INVALID_CHARGE_MULTIPLICITY', 'ERROR_INPUT_REJECTED', 'ERROR_RESTART_FILE',
        'ERROR_FILE_UNAVAILABLE', 'ERROR_INSUFFICIENT_MEMORY')])
    def handle_unrecoverable(self, calculation):
        """MOPAC refused the system or could not run it: a restart would fail the same way. Stop at once."""
        return self.give_up(calculation, f'{calculation.exit_message}: not restarting')

    @process_handler(priority=690, exit_codes=[MopacCalculation.exit_codes.ERROR_ACTIVE_SPACE])
    def handle_active_space(self, calculation):
        """A restricted open shell MOPAC cannot describe: unrestricted (UHF) once; if that was UHF already, stop."""
        parameters = self.parameters()
        if parameters.get('uhf') is True:
            return self.give_up(calculation, f'{calculation.exit_message}, with UHF')
        parameters['uhf'] = True
        self.ctx.inputs.parameters = orm.Dict(parameters)
        self.report(f'{calculation.process_label}<{calculation.pk}>: {calculation.exit_message}: restarting with UHF')
        return ProcessHandlerReport(do_break=True)

    @process_handler(priority=570, exit_codes=[MopacCalculation.exit_codes.ERROR_SCF_NOT_CONVERGED])
    def handle_scf_not_converged(self, calculation):
        """SCF failure: more iterations and a level shift, then Pulay mixing on top."""
        parameters = self.parameters()
        keywords = list(parameters.get('keywords', []))
        parameters['itry'] = max(2000, 10 * int(parameters.get('itry') or 0))
        if not any(k.upper().startswith('SHIFT') for k in keywords):
            keywords.append('SHIFT=20')
            change = f'ITRY={parameters["itry"]} and SHIFT=20'
        elif 'PULAY' not in (k.upper() for k in keywords):
            keywords.append('PULAY')
            change = f'ITRY={parameters["itry"]} and PULAY'
        else:
            return self.give_up(calculation, 'SCF failed with every strategy tried')
        parameters['keywords'] = keywords
        self.ctx.inputs.parameters = orm.Dict(parameters)
        self.report(f'{calculation.process_label}<{calculation.pk}> did not reach SCF: restarting with {change}')
        return ProcessHandlerReport(do_break=True)
