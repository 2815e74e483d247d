"""``grimperium.conformers``: SMILES (or a structure) → a ranked conformer ensemble, with CREST or RDKit + xtb.

Steps: validate (SMILES, charge/multiplicity: refused before any job runs) → search → ensemble tools (energy
window, heavy-atom RMSD de-duplication, top-N, Boltzmann weights: :func:`aiida_grimperium.ensembles.refine`).
The two engines:

* ``rdkit-xtb``: **one** xtb job does it all. From ``smiles`` it embeds ``num_conformers`` RDKit ETKDG
  conformers itself, optimises them all with xtb (the pre-optimisation and the search at once), and its parser
  keeps the conformers the ensemble tools keep (:class:`~aiida_grimperium.calculations.xtb.XtbCalculation`'s
  ``smiles``, ``embedding`` and ``refine`` inputs). From a ``structure``, the RDKit embedding is a calcfunction
  first (:func:`~aiida_grimperium.ensembles.embed_ensemble`, bonds perceived from the geometry).
* ``crest``: RDKit embedding (the calcfunction), xtb pre-optimisation (one :class:`XtbBaseWorkChain`), one
  CREST job, then :func:`~aiida_grimperium.ensembles.refine_ensemble` (one calcfunction).

Both give ``ensemble`` outputs of exactly the same layout, and ``output_parameters`` with the same summary
keys. A molecule from SMILES costs three processes with rdkit-xtb (this workchain, the xtb restart workchain
and its job), whatever the number of conformers. Campaigns search many molecules' conformers in one xtb job
instead (:class:`~aiida_grimperium.workchains.batch.ConformerBatchWorkChain`).

The steps live in :class:`ConformerSearchSteps`, which :class:`ConformerSearchWorkChain` runs as its outline and
:class:`~aiida_grimperium.workchains.pipeline.ConformerToDftWorkChain` runs inline.
"""
from __future__ import annotations

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ExitCode, ToContext, WorkChain, if_

from ..chemistry import check_charge_multiplicity
from ..ensembles import embed_ensemble, refine_ensemble
from .base import outputs_of
from .xtb import XtbBaseWorkChain

ENGINES = ('crest', 'rdkit-xtb')
#: xtb settings of the search unless ``xtb_parameters`` says otherwise.
DEFAULT_XTB = {'method': 'gfn2', 'task': 'optimization', 'opt_level': 'tight'}
DEFAULT_OPTIONS = {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}, 'max_wallclock_seconds': 3600}


class ConformerSearchSteps:
    """The steps of a conformer search, for a ``WorkChain`` that provides three hooks.

    * :meth:`search_inputs`: the search's inputs (those of :class:`ConformerSearchWorkChain`);
    * :meth:`search_failed`: the exit code to return for one of :class:`ConformerSearchWorkChain`'s exit codes;
    * :meth:`search_done`: receives ``ensemble``, ``lowest_structure`` and ``output_parameters``.

    Outline: ``validate_search, embed, if_(use_crest)(preoptimize, inspect_preoptimization, run_crest)
    .else_(run_xtb_ensemble), inspect_search, refine``. The xtb job of all conformers runs through
    :class:`XtbBaseWorkChain`, whose handlers restart it when it fails.
    ``embed`` does nothing when the xtb job embeds the SMILES itself, ``refine`` nothing but collect the outputs
    when it refined them itself.
    """

    def search_inputs(self) -> AttributeDict:
        raise NotImplementedError

    def search_failed(self, label: str, **message) -> ExitCode:
        raise NotImplementedError

    def search_done(self, outputs: dict) -> ExitCode | None:
        raise NotImplementedError

    def validate_search(self):
        """Refuse bad inputs with a clear exit code before any job runs."""
        inputs = self.search_inputs()
        engine = inputs.engine.value
        if engine not in ENGINES:
            return self.search_failed('ERROR_INVALID_INPUTS', message=f'engine `{engine}` is not one of {ENGINES}')
        if ('smiles' in inputs) == ('structure' in inputs):
            return self.search_failed('ERROR_INVALID_INPUTS', message='give exactly one of `smiles` or `structure`')
        if engine == 'crest' and 'crest_code' not in inputs:
            return self.search_failed('ERROR_INVALID_INPUTS', message='engine `crest` needs a `crest_code`')
        charge, multiplicity = inputs.charge.value, inputs.multiplicity.value
        if 'smiles' in inputs:
            from rdkit import Chem, RDLogger

            RDLogger.DisableLog('rdApp.*')  # the exit message says what is wrong; RDKit's stderr noise does not help
            smiles = inputs.smiles.value
            mol = Chem.MolFromSmiles(smiles) if smiles.strip() else None
            if mol is None:
                return self.search_failed('ERROR_INVALID_SMILES', smiles=repr(smiles))
            symbols = [atom.GetSymbol() for atom in Chem.AddHs(mol).GetAtoms()]
            formal = Chem.GetFormalCharge(mol)
            if formal != charge:
                self.report(f'warning: the SMILES has a formal charge of {formal} but `charge` is {charge}')
        else:
            symbols = [inputs.structure.get_kind(s.kind_name).symbol for s in inputs.structure.sites]
        try:
            check_charge_multiplicity(symbols, charge, multiplicity)
        except ValueError as exc:
            return self.search_failed('ERROR_IMPOSSIBLE_CHARGE_MULTIPLICITY', message=str(exc))
        self.ctx.xtb_parameters = {**DEFAULT_XTB, **(inputs.xtb_parameters.get_dict() if 'xtb_parameters' in inputs else {})}
        self.ctx.options = inputs.options.get_dict() if 'options' in inputs else DEFAULT_OPTIONS

    def use_crest(self):
        return self.search_inputs().engine.value == 'crest'

    def xtb_embeds(self) -> bool:
        """rdkit-xtb from SMILES: the xtb job embeds the conformers itself."""
        return not self.use_crest() and 'smiles' in self.search_inputs()

    def embed(self):
        """RDKit ETKDG (a calcfunction): many conformers of a structure for rdkit-xtb, one geometry for CREST."""
        if self.xtb_embeds():
            return None
        inputs = self.search_inputs()
        parameters = {
            'num_conformers': 1 if self.use_crest() else inputs.num_conformers.value,
            'seed': inputs.seed.value,
            'charge': inputs.charge.value,
            'multiplicity': inputs.multiplicity.value,
            'engine': 'rdkit',
            'temperature': inputs.temperature.value,
        }
        source = {'smiles': inputs.smiles} if 'smiles' in inputs else {'structure': inputs.structure}
        try:
            outputs = embed_ensemble(parameters=orm.Dict(parameters), **source)
        except ValueError as exc:
            return self.search_failed('ERROR_EMBEDDING_FAILED', message=str(exc))
        self.ctx.embedded = outputs
        self.report(f'embedded {outputs["ensemble"].base.attributes.get("num_conformers")} conformer(s) with RDKit')

    def _xtb_inputs(self, **geometry) -> dict:
        inputs = self.search_inputs()
        return {
            'xtb': {
                'code': inputs.xtb_code,
                'charge': inputs.charge,
                'multiplicity': inputs.multiplicity,
                'parameters': orm.Dict(self.ctx.xtb_parameters),
                'metadata': {'options': self.ctx.options},
                **geometry,
            },
            'max_iterations': orm.Int(3),
        }

    def preoptimize(self):
        node = self.submit(XtbBaseWorkChain, **self._xtb_inputs(structure=self.ctx.embedded['structure']))
        self.report(f'xtb pre-optimisation: {node.process_label}<{node.pk}>')
        return ToContext(preopt=node)

    def inspect_preoptimization(self):
        if not self.ctx.preopt.is_finished_ok or 'output_structure' not in self.ctx.preopt.outputs:
            return self.search_failed('ERROR_PREOPTIMIZATION_FAILED')

    def run_crest(self):
        from aiida.plugins import CalculationFactory

        inputs = self.search_inputs()
        crest = {
            'code': inputs.crest_code,
            'structure': self.ctx.preopt.outputs.output_structure,
            'charge': inputs.charge,
            'multiplicity': inputs.multiplicity,
            'metadata': {'options': self.ctx.options},
        }
        if 'crest_parameters' in inputs:
            crest['parameters'] = inputs.crest_parameters
        node = self.submit(CalculationFactory('grimperium.crest'), **crest)
        self.report(f'CREST conformer search: {node.process_label}<{node.pk}>')
        return ToContext(search=node)

    def _search_job_inputs(self) -> dict:
        """The xtb job of rdkit-xtb: the conformers (SMILES and embedding, or the embedded ensemble) and ``refine``."""
        inputs = self.search_inputs()
        if self.xtb_embeds():
            geometry = {'smiles': inputs.smiles,
                        'embedding': orm.Dict({'num_conformers': inputs.num_conformers.value, 'seed': inputs.seed.value})}
        else:
            geometry = {'ensemble': self.ctx.embedded['ensemble']}
        return self._xtb_inputs(**geometry, refine=orm.Dict(self.refine_parameters()))

    def run_xtb_ensemble(self):
        node = self.submit(XtbBaseWorkChain, **self._search_job_inputs())
        self.report(f'xtb optimisation of all RDKit conformers in one job: {node.process_label}<{node.pk}>')
        return ToContext(search=node)

    def inspect_search(self):
        search = self.ctx.search
        if not search.is_finished_ok or 'output_ensemble' not in outputs_of(search):
            self.report(f'{search.process_label}<{search.pk}> failed with exit status {search.exit_status}')
            return self.search_failed('ERROR_SEARCH_FAILED')

    def refine_parameters(self) -> dict:
        """The parameters of :func:`~aiida_grimperium.ensembles.refine` (the xtb job's ``refine``)."""
        inputs = self.search_inputs()
        parameters = {
            'energy_window': inputs.energy_window.value,
            'rmsd_threshold': inputs.rmsd_threshold.value,
            'temperature': inputs.temperature.value,
            'engine': inputs.engine.value,
        }
        if 'top_n' in inputs:
            parameters['top_n'] = inputs.top_n.value
        return parameters

    def refine(self):
        """Energy window, RMSD de-duplication, top-N and Boltzmann weights: done by the xtb job (rdkit-xtb), or by
        one calcfunction on CREST's ensemble."""
        search = outputs_of(self.ctx.search)
        if self.use_crest():
            outputs = refine_ensemble(search['output_ensemble'], orm.Dict(self.refine_parameters()))
        elif 'output_structure' in search:
            outputs = {'ensemble': search['output_ensemble'], 'lowest_structure': search['output_structure'],
                       'output_parameters': search['output_parameters']}
        else:
            outputs = {}
        if 'lowest_structure' not in outputs:
            return self.search_failed('ERROR_EMPTY_ENSEMBLE')
        params = outputs['output_parameters']
        self.report(f'{params["num_conformers"]} conformer(s) kept of {params["num_input_conformers"]}')
        return self.search_done(outputs)


class ConformerSearchWorkChain(ConformerSearchSteps, WorkChain):
    """Conformer search of one molecule; outputs ``ensemble``, ``lowest_structure`` and ``output_parameters``."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('smiles', valid_type=orm.Str, required=False, help='The molecule as SMILES.')
        spec.input('structure', valid_type=orm.StructureData, required=False, help='The molecule as a geometry.')
        spec.input('charge', valid_type=orm.Int, default=lambda: orm.Int(0))
        spec.input('multiplicity', valid_type=orm.Int, default=lambda: orm.Int(1))
        spec.input('engine', valid_type=orm.Str, default=lambda: orm.Str('rdkit-xtb'), help=f'One of {ENGINES}.')
        spec.input('xtb_code', valid_type=orm.AbstractCode, help='xtb (both engines).')
        spec.input('crest_code', valid_type=orm.AbstractCode, required=False, help='CREST (engine `crest`).')
        spec.input('num_conformers', valid_type=orm.Int, default=lambda: orm.Int(30),
                   help='RDKit conformers embedded for the rdkit-xtb engine.')
        spec.input('energy_window', valid_type=orm.Float, default=lambda: orm.Float(6.0), help='kcal/mol above the lowest.')
        spec.input('rmsd_threshold', valid_type=orm.Float, default=lambda: orm.Float(0.125),
                   help='Heavy-atom RMSD (Angstrom) below which two conformers are one.')
        spec.input('top_n', valid_type=orm.Int, required=False, help='Keep only the N lowest conformers.')
        spec.input('temperature', valid_type=orm.Float, default=lambda: orm.Float(298.15), help='K, for the populations.')
        spec.input('seed', valid_type=orm.Int, default=lambda: orm.Int(61453), help='RDKit embedding seed.')
        spec.input('xtb_parameters', valid_type=orm.Dict, required=False,
                   help=f'Overrides of the xtb parameters {DEFAULT_XTB} (e.g. solvent).')
        spec.input('crest_parameters', valid_type=orm.Dict, required=False, help='Parameters of the CREST job.')
        spec.input('options', valid_type=orm.Dict, required=False, help='metadata.options of the xtb and CREST jobs.')
        spec.outline(
            cls.validate_search,
            cls.embed,
            if_(cls.use_crest)(cls.preoptimize, cls.inspect_preoptimization, cls.run_crest).else_(cls.run_xtb_ensemble),
            cls.inspect_search,
            cls.refine,
        )
        spec.output('ensemble', valid_type=orm.TrajectoryData, help='The conformers, lowest first.')
        spec.output('lowest_structure', valid_type=orm.StructureData)
        spec.output('output_parameters', valid_type=orm.Dict)
        spec.exit_code(201, 'ERROR_INVALID_SMILES', message='The SMILES cannot be parsed: {smiles}')
        spec.exit_code(202, 'ERROR_IMPOSSIBLE_CHARGE_MULTIPLICITY', message='{message}')
        spec.exit_code(203, 'ERROR_INVALID_INPUTS', message='{message}')
        spec.exit_code(204, 'ERROR_EMBEDDING_FAILED', message='RDKit could not embed the molecule in 3D: {message}')
        spec.exit_code(401, 'ERROR_PREOPTIMIZATION_FAILED', message='The xtb pre-optimisation failed.')
        spec.exit_code(402, 'ERROR_SEARCH_FAILED', message='The conformer search job failed.')
        spec.exit_code(403, 'ERROR_EMPTY_ENSEMBLE', message='No conformer survived the search.')

    def search_inputs(self) -> AttributeDict:
        return self.inputs

    def search_failed(self, label: str, **message) -> ExitCode:
        exit_code = self.exit_codes[label]
        return exit_code.format(**message) if message else exit_code

    def search_done(self, outputs: dict) -> None:
        self.out_many(outputs)
