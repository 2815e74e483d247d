"""``grimperium.vasp.base``: restart workchain around :class:`~aiida_grimperium.calculations.vasp.VaspCalculation`.

Handlers, each tied to an exit code of the parser:

* 410 electronic minimisation not converged: switch to a more robust ``ALGO`` (Fast/VeryFast -> Normal -> All),
  then raise ``NELM``; restart from the last structure and the run's WAVECAR/CHGCAR when there are any;
* 500 ionic relaxation not converged: continue from the last structure (VASP's CONTCAR);
* 400 out of walltime and 312 unfinished run: restart from the last structure and the run folder.
"""
from __future__ import annotations

import os

from aiida import orm
from aiida.engine import ProcessHandlerReport, process_handler

from ..calculations.vasp import VaspCalculation
from ..protocols import GrimperiumProtocolMixin
from .base import GrimperiumBaseRestartWorkChain

#: ALGO to switch to when the electronic loop did not converge (VASP's own advice: Fast -> Normal -> All).
ALGO_LADDER = {'veryfast': 'Normal', 'fast': 'Normal', 'normal': 'All'}
NELM_FACTOR = 2
NELM_MAX = 400
#: Environment variable read by ``get_builder_from_protocol`` when no ``potcar_library`` is passed.
POTCAR_LIBRARY_ENV = 'GRIMPERIUM_POTCAR_LIBRARY'


class VaspBaseWorkChain(GrimperiumProtocolMixin, GrimperiumBaseRestartWorkChain):
    """Run a VASP calculation and recover from the common failures (see the module docstring)."""

    _process_class = VaspCalculation
    _inputs_namespace = 'vasp'
    _protocol_name = 'vasp'

    @classmethod
    def get_builder_from_protocol(cls, code, structure, protocol=None, overrides=None, options=None, *,
                                  potcar_library=None, relax: bool = False):
        """A builder with the inputs of ``protocol`` (``fast`` / ``balanced`` / ``stringent``) for ``structure``.

        :param overrides: shaped like the builder's inputs (``{'vasp': {'parameters': {'ENCUT': 600}},
            'max_iterations': 3}``; the meta input ``relax_parameters`` too), deep-merged onto the protocol's.
        :param options: deep-merged onto the protocol's ``vasp.metadata.options``.
        :param potcar_library: the folder of the user's POTCARs; else ``overrides['vasp']['potcar_library']``, else
            the ``GRIMPERIUM_POTCAR_LIBRARY`` environment variable.
        :param relax: add the protocol's ``relax_parameters`` (IBRION, ISIF, NSW, EDIFFG) to the INCAR tags.
        """
        inputs = cls.get_protocol_inputs(protocol, overrides)
        vasp = inputs['vasp']
        library = potcar_library or vasp.get('potcar_library') or os.environ.get(POTCAR_LIBRARY_ENV)
        if not library:
            raise ValueError(f'give `potcar_library` or set {POTCAR_LIBRARY_ENV}: the folder of your VASP POTCARs')
        # the caller's own `vasp.parameters` (an NSW, an ISIF) win over the relaxation tags
        parameters = {**(inputs['relax_parameters'] if relax else {}), **vasp['parameters']}

        builder = cls.builder_from_protocol_inputs(inputs, code, options)
        builder.vasp.structure = structure
        builder.vasp.parameters = orm.Dict(parameters)
        builder.vasp.kpoints_spacing = orm.Float(vasp['kpoints_spacing'])
        builder.vasp.potcar_library = orm.Str(str(library))
        if vasp.get('potcar_mapping'):
            builder.vasp.potcar_mapping = orm.Dict(vasp['potcar_mapping'])
        builder.vasp.settings = orm.Dict(vasp['settings'])
        return builder

    # -- helpers -----------------------------------------------------------------------------------------------

    def _continue_from(self, calculation, *, structure: bool = True) -> list[str]:
        """Point the next run at ``calculation``'s folder (WAVECAR/CHGCAR) and last structure; say what changed."""
        done = []
        if 'remote_folder' in calculation.outputs:
            self.ctx.inputs.parent_folder = calculation.outputs.remote_folder
            done.append(f'restart files of <{calculation.pk}>')
        if structure and 'output_structure' in calculation.outputs:
            self.ctx.inputs.structure = calculation.outputs.output_structure
            done.append('its last structure')
        return done

    def _parameters(self) -> dict:
        return self.ctx.inputs.parameters.get_dict()

    # -- handlers ----------------------------------------------------------------------------------------------

    @process_handler(priority=600, exit_codes=[VaspCalculation.exit_codes.ERROR_ELECTRONIC_NOT_CONVERGED])
    def handle_electronic_not_converged(self, calculation):
        """NELM reached: use a more robust ALGO, or, when ALGO is already All, double NELM."""
        parameters = self._parameters()
        algo = str(parameters.get('ALGO', 'Normal'))
        if algo.lower() in ALGO_LADDER:
            parameters['ALGO'] = ALGO_LADDER[algo.lower()]
            change = f'ALGO {algo} -> {parameters["ALGO"]}'
        else:
            nelm = int(parameters.get('NELM', 60))
            if nelm >= NELM_MAX:
                self.report(f'electronic loop not converged with ALGO={algo} and NELM={nelm}: giving up')
                return ProcessHandlerReport(True, self.exit_codes.ERROR_UNRECOVERABLE_FAILURE)
            parameters['NELM'] = min(nelm * NELM_FACTOR, NELM_MAX)
            change = f'NELM {nelm} -> {parameters["NELM"]}'
        self.ctx.inputs.parameters = orm.Dict(parameters)
        done = self._continue_from(calculation)
        self.report(f'{calculation.process_label}<{calculation.pk}> electronic loop not converged: {change}; '
                    f'restarting from {", ".join(done) or "scratch"}')
        return ProcessHandlerReport(True)

    @process_handler(priority=500, exit_codes=[VaspCalculation.exit_codes.ERROR_IONIC_NOT_CONVERGED])
    def handle_ionic_not_converged(self, calculation):
        """NSW reached before EDIFFG: continue the relaxation from the last structure (CONTCAR)."""
        if 'output_structure' not in calculation.outputs:
            self.report(f'{calculation.process_label}<{calculation.pk}> ionic relaxation not converged and no '
                        'structure to continue from: giving up')
            return ProcessHandlerReport(True, self.exit_codes.ERROR_UNRECOVERABLE_FAILURE)
        done = self._continue_from(calculation)
        self.report(f'{calculation.process_label}<{calculation.pk}> ionic relaxation not converged: continuing '
                    f'from {", ".join(done)}')
        return ProcessHandlerReport(True)

    @process_handler(priority=400, exit_codes=[VaspCalculation.exit_codes.ERROR_OUT_OF_WALLTIME])
    def handle_out_of_walltime(self, calculation):
        """Killed by the scheduler's walltime: continue from what the run left."""
        done = self._continue_from(calculation)
        self.report(f'{calculation.process_label}<{calculation.pk}> ran out of walltime: restarting from '
                    f'{", ".join(done) or "scratch"}')
        return ProcessHandlerReport(True)

    @process_handler(priority=300, exit_codes=[VaspCalculation.exit_codes.ERROR_OUTPUT_INCOMPLETE])
    def handle_unfinished(self, calculation):
        """The run stopped without an error message (killed, node failure): run it again from what it left."""
        done = self._continue_from(calculation)
        self.report(f'{calculation.process_label}<{calculation.pk}> did not finish: restarting from '
                    f'{", ".join(done) or "scratch"}')
        return ProcessHandlerReport(True)
