"""``grimperium.crystal.base``: run ``grimperium.crystal`` and recover from SCF and geometry failures.

Handlers, each tied to exit codes of :mod:`aiida_grimperium.parsers.raw.crystal`:

* SCF (``ERROR_SCF_NOT_CONVERGED``, ``ERROR_SCF_FAILED``), one remedy per restart, in this order:
  more cycles (MAXCYCLE x2, only after "TOO MANY CYCLES"), stronger Fock mixing (FMIXING 30 → 60 → 80), then a
  level shift (LEVSHIFT 5 1: 0.5 Ha, locked), after which the workchain gives up.
* geometry (``ERROR_GEOMETRY_NOT_CONVERGED``, ``ERROR_OUT_OF_WALLTIME`` of an optimisation): restart the
  optimisation from the last geometry the previous run printed (``output_structure``).
"""
from __future__ import annotations

from aiida import orm
from aiida.engine import ProcessHandlerReport, process_handler
from aiida.plugins import CalculationFactory

from ..basis_sets import get_basis_sets
from ..protocols import GrimperiumProtocolMixin
from .base import GrimperiumBaseRestartWorkChain

CrystalCalculation = CalculationFactory('grimperium.crystal')

#: FMIXING values tried in turn after an SCF failure (percent of the previous Fock matrix mixed in).
FMIXING_STEPS = (60, 80)
LEVSHIFT = [5, 1]
MAXCYCLE_CAP = 800


class CrystalBaseWorkChain(GrimperiumProtocolMixin, GrimperiumBaseRestartWorkChain):
    """Restart workchain of one CRYSTAL calculation (SCF or OPTGEOM) with SCF and geometry handlers."""

    _process_class = CrystalCalculation
    _inputs_namespace = 'crystal'
    _protocol_name = 'crystal'

    @classmethod
    def get_builder_from_protocol(cls, code, structure, protocol=None, overrides=None, options=None, *,
                                  relax: bool = False, basis_set_library=None):
        """A builder for ``structure`` with the ``fast``/``balanced``/``stringent`` inputs of ``protocols/crystal.yaml``.

        :param overrides: shaped like the builder's inputs (``{'crystal': {'parameters': {'hamiltonian': 'HF'}}}``;
            the meta inputs ``basis_set_library`` and ``optgeom`` too), deep-merged onto the protocol's.
        :param options: deep-merged onto the protocol's ``crystal.metadata.options``.
        :param relax: optimise the geometry (OPTGEOM with the protocol's ``optgeom`` block).
        :param basis_set_library: a library name or folder (default: the protocol's ``basis_set_library``).
        """
        inputs = cls.get_protocol_inputs(protocol, overrides)
        crystal = inputs['crystal']
        parameters = dict(crystal['parameters'])
        if relax:  # an `optgeom` of the caller's `crystal.parameters` wins over the protocol's block
            parameters['optgeom'] = {**inputs['optgeom'], **parameters.get('optgeom', {})}
        library = basis_set_library or inputs['basis_set_library']
        builder = cls.builder_from_protocol_inputs(inputs, code, options)
        builder.crystal.structure = structure
        builder.crystal.parameters = orm.Dict(parameters)
        builder.crystal.settings = orm.Dict(crystal['settings'])
        builder.crystal.basis_sets = get_basis_sets(library, structure.get_symbols_set())
        return builder

    def setup(self):
        super().setup()
        self.ctx.scf_remedies = 0

    def _set_parameters(self, **changes) -> dict:
        parameters = self.ctx.inputs.parameters.get_dict()
        parameters.update(changes)
        self.ctx.inputs.parameters = orm.Dict(parameters)
        return parameters

    @process_handler(priority=500, exit_codes=[CrystalCalculation.exit_codes.ERROR_SCF_NOT_CONVERGED,
                                               CrystalCalculation.exit_codes.ERROR_SCF_FAILED])
    def handle_scf_failure(self, calculation):
        """SCF not converged or failed: more cycles, then stronger FMIXING, then a level shift; then give up."""
        parameters = self.ctx.inputs.parameters.get_dict()
        too_many = calculation.exit_status == CrystalCalculation.exit_codes.ERROR_SCF_NOT_CONVERGED.status
        maxcycle = int(parameters.get('maxcycle', 50))
        fmixing = int(parameters.get('fmixing', 30))
        if too_many and self.ctx.scf_remedies == 0 and maxcycle < MAXCYCLE_CAP:
            self._set_parameters(maxcycle=min(2 * maxcycle, MAXCYCLE_CAP))
            action = f'MAXCYCLE {maxcycle} -> {min(2 * maxcycle, MAXCYCLE_CAP)}'
        elif any(step > fmixing for step in FMIXING_STEPS):
            new = next(step for step in FMIXING_STEPS if step > fmixing)
            self._set_parameters(fmixing=new)
            action = f'FMIXING {fmixing} -> {new}'
        elif not parameters.get('levshift'):
            self._set_parameters(levshift=LEVSHIFT)
            action = 'LEVSHIFT {} {}'.format(*LEVSHIFT)
        else:
            self.report(f'{calculation.process_label}<{calculation.pk}> SCF failed with MAXCYCLE, FMIXING and '
                        'LEVSHIFT already tried: giving up')
            return ProcessHandlerReport(True, self.exit_codes.ERROR_UNRECOVERABLE_FAILURE)
        self.ctx.scf_remedies += 1
        self.report(f'{calculation.process_label}<{calculation.pk}> failed with {calculation.exit_message}: '
                    f'restarting with {action}')
        return ProcessHandlerReport(True)

    @process_handler(priority=400, exit_codes=[CrystalCalculation.exit_codes.ERROR_GEOMETRY_NOT_CONVERGED,
                                               CrystalCalculation.exit_codes.ERROR_OUT_OF_WALLTIME])
    def handle_geometry_not_converged(self, calculation):
        """Optimisation unfinished: restart OPTGEOM from the last geometry of the previous run."""
        if 'output_structure' not in calculation.outputs:
            if calculation.exit_status == CrystalCalculation.exit_codes.ERROR_OUT_OF_WALLTIME.status:
                self.report(f'{calculation.process_label}<{calculation.pk}> ran out of walltime before any '
                            'geometry step: restarting unchanged')
                return ProcessHandlerReport(True)
            return ProcessHandlerReport(True, self.exit_codes.ERROR_UNRECOVERABLE_FAILURE)
        self.ctx.inputs.structure = calculation.outputs.output_structure
        self.report(f'{calculation.process_label}<{calculation.pk}> ended with {calculation.exit_message}: '
                    f'restarting the optimisation from its last geometry <{calculation.outputs.output_structure.pk}>')
        return ProcessHandlerReport(True)
