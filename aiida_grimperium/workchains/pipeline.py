"""``grimperium.conformer_to_dft``: one molecule from SMILES to PM7 heats of formation and, optionally, DFT.

SMILES or structure → conformer search (CREST or RDKit + xtb, with the xtb pre-optimisation: the steps of
:class:`ConformerSearchWorkChain`, run inline, see :class:`ConformerSearchSteps`) → the ``top_n`` lowest
conformers in **one** MOPAC job → optionally :class:`DftWorkChain` (pw.x, VASP or CRYSTAL23, by the code
given) on the PM7-lowest conformer → optionally (``shell``) the user's command on that conformer, an aiida-shell
``ShellJob`` (:mod:`.shell`; the files it keeps are the outputs ``shell.<name>``; its failure is reported in the
summary, ``shell_status``/``shell_error``, and leaves the exit status of the pipeline alone).

For one molecule (rdkit-xtb from SMILES, no DFT): this workchain, the xtb job through
:class:`XtbBaseWorkChain` (it embeds the RDKit conformers, optimises them all and keeps the refined ensemble),
the MOPAC job through :class:`MopacBaseWorkChain` (on the ``top_n`` lowest of that ensemble) and the summary
calcfunction. Campaigns run many molecules per job instead (:class:`~.batch.ConformerBatchWorkChain`).

A failure in one stage ends the molecule with that stage's exit code (410 conformers, 420 MOPAC, 430 DFT) and
keeps everything computed before it: ``output_parameters`` is written on every path out of the workchain, by
:func:`~aiida_grimperium.calculations.functions.summaries.summarize_molecule` (so it has a creator).
The current stage is kept in the node's ``stage`` extra, which ``grimperium campaign status`` reads.
"""
from __future__ import annotations

from aiida import orm
from aiida.common import AttributeDict, timezone
from aiida.engine import ExitCode, ToContext, WorkChain, if_

from ..calculations.base import charge_multiplicity
from ..calculations.functions.summaries import summarize_molecule
from ..chemistry import check_charge_multiplicity, smiles_symbols
from ..structures import structure_symbols_positions
from .base import duration_seconds, outputs_of
from .conformers import ConformerSearchSteps, ConformerSearchWorkChain
from .dft import DftWorkChain, requested_code, validate_common_inputs
from .mopac import MopacBaseWorkChain
from .shell import ShellStep, shell_fields

#: The stages, in order (the seed's, and the optional shell step); ``stage`` extras take these values.
STAGES = ('selected', 'preoptimization', 'conformer_search', 'mopac', 'dft', 'shell', 'done')


class ConformerToDftWorkChain(ShellStep, ConformerSearchSteps, WorkChain):
    """Conformer search → PM7 on the N lowest conformers (one job) → optional DFT on the lowest."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('smiles', valid_type=orm.Str, required=False, help='The molecule as SMILES; or give `structure`.')
        spec.input('structure', valid_type=orm.StructureData, required=False, help='The molecule (pbc False).')
        spec.input('charge', valid_type=orm.Int, default=lambda: orm.Int(0))
        spec.input('multiplicity', valid_type=orm.Int, default=lambda: orm.Int(1))
        spec.input('top_n', valid_type=orm.Int, default=lambda: orm.Int(3),
                   help='How many of the lowest conformers MOPAC computes (in one job).')
        spec.expose_inputs(ConformerSearchWorkChain, namespace='conformers',
                           exclude=('smiles', 'structure', 'charge', 'multiplicity'))
        spec.expose_inputs(MopacBaseWorkChain, namespace='mopac', exclude=(
            'mopac.structure', 'mopac.ensemble', 'mopac.num_conformers', 'mopac.charge', 'mopac.multiplicity'))
        spec.expose_inputs(DftWorkChain, namespace='dft', exclude=('structure', 'charge', 'multiplicity'),
                           namespace_options={'required': False, 'populate_defaults': False,
                                              'help': 'Give `dft.engines.relax.code` to run DFT on the PM7-lowest conformer.'})
        # The exposed namespaces lack the geometry the pipeline fills in later: their own validators run when the
        # sub-processes are launched, not here.
        spec.inputs['conformers'].validator = None
        spec.inputs['mopac']['mopac'].validator = None
        spec.inputs['dft'].validator = None
        spec.inputs.validator = cls.validate_inputs
        cls.define_shell(spec)

        # Each outline step costs a checkpoint of the whole workchain and a few commits (AiiDA's bookkeeping), so
        # the steps between two waits run as one: three steps for a molecule without DFT.
        spec.outline(
            cls.start,
            if_(cls.use_crest)(cls.run_crest_after_preoptimization),
            cls.refine_and_run_mopac,
            cls.inspect_mopac_then_dft_or_results,
            if_(cls.should_run_dft)(cls.inspect_dft_and_results),
            if_(cls.has_shell_step)(cls.inspect_shell_and_results),
        )
        spec.output('ensemble', valid_type=orm.TrajectoryData, help='The conformer ensemble, lowest first.')
        spec.output('pm7_parameters', valid_type=orm.Dict, required=False, help="MOPAC's output_parameters.")
        spec.output('most_stable_hof', valid_type=orm.Float, required=False,
                    help='Lowest PM7 heat of formation over the computed conformers (kcal/mol).')
        spec.output('lowest_structure', valid_type=orm.StructureData, required=False,
                    help='PM7 geometry of the most stable conformer.')
        spec.expose_outputs(DftWorkChain, namespace='dft', namespace_options={'required': False})
        spec.output_namespace('shell', valid_type=orm.Data, dynamic=True, required=False,
                              help="The shell step's ShellJob outputs: stdout, stderr and the files kept.")
        spec.output('output_parameters', valid_type=orm.Dict,
                    help='The per-molecule summary the campaign export reads (always written).')
        spec.exit_code(401, 'ERROR_INVALID_MOLECULE', message='The SMILES, charge or multiplicity is invalid.')
        spec.exit_code(410, 'ERROR_CONFORMER_SEARCH_FAILED', message='The conformer search failed.')
        spec.exit_code(420, 'ERROR_MOPAC_FAILED', message='The MOPAC calculation of the conformers failed.')
        spec.exit_code(430, 'ERROR_DFT_FAILED', message='The DFT calculation failed.')

    @staticmethod
    def validate_inputs(value, _=None):
        """SMILES or structure, and a charge/multiplicity its electrons allow, before anything runs."""
        if ('smiles' in value) == ('structure' in value):
            return 'give exactly one of `smiles` and `structure`'
        charge, multiplicity = charge_multiplicity(value)
        try:  # the electron count needs the atoms only: no 3D embedding here, the conformer search does that
            if 'smiles' in value:
                symbols = smiles_symbols(value['smiles'].value)
            else:
                symbols, _ = structure_symbols_positions(value['structure'])
            check_charge_multiplicity(symbols, charge, multiplicity)
        except ValueError as exc:
            return str(exc)
        dft = value.get('dft', {})
        if requested_code(dft) is not None:  # the DFT step gets the molecule's charge and multiplicity: refuse now
            return validate_common_inputs({**dft, 'charge': orm.Int(charge), 'multiplicity': orm.Int(multiplicity)})
        return None

    @staticmethod
    def in_turn(*steps):
        """Run ``steps`` one after the other until one returns something (an exit code, or jobs to wait for)."""
        for step in steps:
            result = step()
            if result is not None:
                return result
        return None

    def start(self):
        """Check the molecule, embed it with RDKit and launch the first job of the conformer search."""
        first_job = self.preoptimize if self.use_crest() else self.run_xtb_ensemble
        return self.in_turn(self.setup, self.embed, first_job)

    def run_crest_after_preoptimization(self):
        return self.in_turn(self.inspect_preoptimization, self.run_crest)

    def refine_and_run_mopac(self):
        return self.in_turn(self.inspect_search, self.refine, self.run_mopac)

    def inspect_mopac_then_dft_or_results(self):
        return self.in_turn(self.inspect_mopac, self.run_dft if self.should_run_dft() else self.shell_or_results)

    def inspect_dft_and_results(self):
        return self.in_turn(self.inspect_dft, self.shell_or_results)

    def shell_or_results(self):
        """After the last computation: the shell step if there is one (its inspection writes the results)."""
        return self.run_shell() if self.has_shell_step() else self.results()

    def inspect_shell_and_results(self):
        return self.in_turn(self.inspect_shell, self.results)

    def set_stage(self, stage: str) -> None:
        self.node.base.extras.set('stage', stage)

    def setup(self):
        self.ctx.results = {}  # the output nodes the summary is made from
        self.ctx.summary = {'top_n': self.inputs.top_n.value,
                            'engine': self.inputs.conformers.get('engine', orm.Str('')).value}
        self.set_stage('preoptimization')  # the conformer search starts with the xtb pre-optimisation
        return self.validate_search()

    # The hooks of ConformerSearchSteps: its inputs are the `conformers` namespace plus the molecule.
    def search_inputs(self) -> AttributeDict:
        if getattr(self, '_search_inputs', None) is None:
            inputs = AttributeDict(self.exposed_inputs(ConformerSearchWorkChain, 'conformers'))
            for name in ('smiles', 'structure', 'charge', 'multiplicity'):
                if name in self.inputs:
                    inputs[name] = self.inputs[name]
            self._search_inputs = inputs
        return self._search_inputs

    def search_failed(self, label: str, **message) -> ExitCode:
        exit_code = ConformerSearchWorkChain.exit_codes[label]
        exit_code = exit_code.format(**message) if message else exit_code
        self.ctx.summary['conformer_search_time_s'] = self.elapsed_seconds()
        self.ctx.summary['conformer_search_status'] = 'FAILED'
        self.ctx.summary['error_message'] = f'conformer search: {exit_code.message}'
        return self.fail(self.exit_codes.ERROR_CONFORMER_SEARCH_FAILED)

    def search_done(self, outputs: dict) -> None:
        self.ctx.summary['conformer_search_time_s'] = self.elapsed_seconds()
        ensemble = outputs['ensemble']
        self.out('ensemble', ensemble)
        self.ctx.ensemble = ensemble
        self.ctx.summary['conformer_search_status'] = 'SUCCESS'
        self.ctx.results['search'] = outputs['output_parameters']

    def elapsed_seconds(self) -> float:
        return (timezone.now() - self.node.ctime).total_seconds()

    def mopac_inputs(self) -> AttributeDict:
        inputs = AttributeDict(self.exposed_inputs(MopacBaseWorkChain, 'mopac'))
        inputs.mopac.ensemble = self.ctx.ensemble
        if self.ctx.ensemble.numsteps > self.inputs.top_n.value:
            inputs.mopac.num_conformers = self.inputs.top_n  # the job computes only the `top_n` lowest
        inputs.mopac.charge = self.inputs.charge
        inputs.mopac.multiplicity = self.inputs.multiplicity
        return inputs

    def run_mopac(self):
        """One MOPAC job for the selected conformers; its restart workchain only if it fails."""
        self.set_stage('mopac')
        node = self.submit(MopacBaseWorkChain, **self.mopac_inputs())
        count = min(self.ctx.ensemble.numsteps, self.inputs.top_n.value)
        self.report(f'launched {node.process_label}<{node.pk}> on {count} conformers')
        return ToContext(mopac=node)

    def inspect_mopac(self):
        node = self.ctx.mopac
        self.ctx.summary['mopac_time_s'] = duration_seconds(node)
        outputs = outputs_of(node)
        if 'output_parameters' in outputs:
            parameters = outputs['output_parameters']
            self.out('pm7_parameters', parameters)
            self.ctx.results['pm7'] = parameters
        if not node.is_finished_ok:
            self.ctx.summary['mopac_status'] = 'FAILED'
            self.ctx.summary['error_message'] = f'MOPAC: {node.exit_message or node.process_state.value}'
            return self.fail(self.exit_codes.ERROR_MOPAC_FAILED)
        self.ctx.summary['mopac_status'] = 'OK'
        if 'output_structure' in outputs:
            self.out('lowest_structure', outputs['output_structure'])

    def should_run_dft(self):
        return 'dft' in self.inputs and requested_code(self.inputs.dft) is not None

    def run_dft(self):
        inputs = AttributeDict(self.exposed_inputs(DftWorkChain, 'dft'))
        inputs.structure = self.ctx.mopac.outputs.output_structure
        inputs.charge = self.inputs.charge
        inputs.multiplicity = self.inputs.multiplicity
        self.set_stage('dft')
        node = self.submit(DftWorkChain, **inputs)
        self.report(f'launched DftWorkChain<{node.pk}> with {requested_code(self.inputs.dft).full_label}')
        return ToContext(dft=node)

    def inspect_dft(self):
        node = self.ctx.dft
        self.ctx.summary['dft_time_s'] = duration_seconds(node)
        self.ctx.summary['dft_code'] = requested_code(self.inputs.dft).default_calc_job_plugin
        if not node.is_finished_ok:
            self.ctx.summary['dft_status'] = 'FAILED'
            self.ctx.summary['error_message'] = f'DFT: {node.exit_message or node.process_state.value}'
            return self.fail(self.exit_codes.ERROR_DFT_FAILED)
        self.out_many(self.exposed_outputs(node, DftWorkChain, namespace='dft'))
        self.ctx.summary['dft_status'] = 'OK'
        self.ctx.results['dft_energy'] = node.outputs.total_energy
        if 'band_gap' in node.outputs:
            self.ctx.results['dft_band_gap'] = node.outputs.band_gap

    def shell_computer(self) -> orm.Computer:
        return self.inputs.mopac.mopac.code.computer

    def run_shell(self):
        """One ShellJob on the PM7-lowest conformer; a step that cannot start fails only itself."""
        self.set_stage('shell')
        molecule = {'charge': self.inputs.charge.value, 'multiplicity': self.inputs.multiplicity.value}
        structure = outputs_of(self.ctx.mopac).get('output_structure')
        try:
            if structure is None:
                raise ValueError('MOPAC returned no PM7-lowest structure')
            node = self.submit_shell(None, self.shell_code(), structure, molecule)
        except ValueError as exc:
            self.ctx.summary.update(shell_status='FAILED', shell_error=str(exc))
            self.report(f'shell step not run: {exc}')
            return None
        self.report(f'launched {node.process_label}<{node.pk}>')
        return ToContext(shell=node)

    def inspect_shell(self):
        if 'shell' not in self.ctx:  # it could not start: the summary says why
            return
        node = self.ctx.shell
        self.ctx.summary.update(shell_fields(node))
        for label, output in outputs_of(node).items():
            if label not in ('retrieved', 'remote_folder'):
                self.out(f'shell.{label}', output)

    def fail(self, exit_code):
        """End the molecule with ``exit_code``, keeping the summary of what was computed."""
        self.write_summary()
        return exit_code

    def write_summary(self):
        """The summary and ``most_stable_hof``, made by a calcfunction from the jobs' outputs."""
        outputs = summarize_molecule(info=orm.Dict(self.ctx.summary), **self.ctx.results,
                                     metadata={'call_link_label': 'summarize'})
        self.out_many(outputs)

    def results(self):
        self.set_stage('done')
        self.write_summary()
