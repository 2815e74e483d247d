"""``grimperium.crest.base``: a CREST conformer search with a restart when the scheduler stopped it at its walltime.

CREST cannot continue a search, so a restart runs it again from the same geometry. Only the walltime (400) is
handled here; a cancelled job (401) is resubmitted by :class:`GrimperiumBaseRestartWorkChain`. The other failures
(the initial optimisation of the geometry failed, an ensemble missing or inconsistent) have no remedy to apply:
``BaseRestartWorkChain`` reruns such an unhandled failure once, unchanged, and then stops.
"""
from __future__ import annotations

from aiida import orm
from aiida.engine import ProcessHandlerReport, process_handler

from ..calculations.crest import CrestCalculation
from ..protocols import GrimperiumProtocolMixin
from .base import GrimperiumBaseRestartWorkChain


class CrestBaseWorkChain(GrimperiumProtocolMixin, GrimperiumBaseRestartWorkChain):
    """Run a :class:`CrestCalculation`; give it twice the walltime when the scheduler stopped it."""

    _process_class = CrestCalculation
    _inputs_namespace = 'crest'
    _protocol_name = 'crest'

    @classmethod
    def get_builder_from_protocol(cls, code, structure, protocol=None, overrides=None, options=None, *,
                                  charge: int = 0, multiplicity: int = 1):
        """A builder for the molecule ``structure`` (best xtb-pre-optimised) with the inputs of ``protocol``.

        :param overrides: shaped like the builder's inputs (``{'crest': {'parameters': {'solvent': 'water'}}}``),
            deep-merged onto the protocol's; a key that is not an input is warned about.
        :param options: deep-merged onto the protocol's ``crest.metadata.options``.
        """
        inputs = cls.get_protocol_inputs(protocol, overrides)
        crest = inputs['crest']
        builder = cls.builder_from_protocol_inputs(inputs, code, options)
        builder.crest.structure = structure
        builder.crest.charge = orm.Int(int(charge))
        builder.crest.multiplicity = orm.Int(int(multiplicity))
        builder.crest.parameters = orm.Dict(crest['parameters'])
        return builder

    @process_handler(priority=400, exit_codes=[CrestCalculation.exit_codes.ERROR_OUT_OF_WALLTIME])
    def handle_out_of_walltime(self, calculation):
        """Stopped at the walltime: run the search again from the same geometry with twice the walltime."""
        options = self.ctx.inputs.metadata.options
        if not options.get('max_wallclock_seconds'):
            return self.give_up(calculation, 'ran out of walltime, but no `max_wallclock_seconds` to raise')
        options['max_wallclock_seconds'] = 2 * int(options['max_wallclock_seconds'])
        self.report(f'{calculation.process_label}<{calculation.pk}> (job {calculation.get_job_id()}) ran out of '
                    f'walltime: running the search again with {options["max_wallclock_seconds"]} s')
        return ProcessHandlerReport(do_break=True)
