"""``grimperium.conformer_batch``: many molecules from SMILES to PM7 (and DFT), a few jobs for all of them.

A campaign runs its molecules in batches. For a batch of N molecules (engine ``rdkit-xtb``):

1. **one xtb job** embeds every molecule's RDKit conformers, optimises them all and refines each molecule's
   ensemble (:class:`~aiida_grimperium.calculations.xtb.XtbCalculation` with ``molecules``);
2. **one MOPAC job** computes the ``top_n`` lowest conformers of every molecule that has an ensemble
   (:class:`~aiida_grimperium.calculations.mopac.MopacCalculation` with ``ensembles``);
3. optionally one :class:`~.dft.DftWorkChain` per molecule, on its PM7-lowest conformer;
4. optionally (``shell``) one aiida-shell ``ShellJob`` per molecule that got this far, running the user's
   command on its PM7-lowest conformer (:mod:`.shell`: its failure fails only that step);
5. **one calcfunction** (:func:`~aiida_grimperium.calculations.functions.summaries.summarize_batch`) makes each
   molecule's summary from those jobs' outputs.

With engine ``crest`` step 1 is one :class:`~.conformers.ConformerSearchWorkChain` per molecule (CREST takes
minutes per molecule: nothing to gain from a shared job); the rest is the same.

Every molecule keeps its own nodes, each with the attribute ``mol_id``: its ensemble (the xtb job's
``ensembles.<key>``; with CREST, its search's ``ensemble``), its PM7 results and geometry (the MOPAC job's
``results.<key>``, the geometry as its attribute ``lowest_structure``) and its summary (the calcfunction's
``<key>``). With DFT, its PM7 structure becomes a ``StructureData`` by a calcfunction, ``lowest_structure``. The batch returns
none of them again: AiiDA checks every link with queries of its own, and a batch of 50 molecules would add 200
links (a third of its bookkeeping) for what the QueryBuilder finds through the jobs
(:mod:`aiida_grimperium.campaign.queries`). A molecule that fails does not stop the others: its summary says
which stage failed and the code's own message. The batch then ends with 410 (some failed) or 411 (all). The
stage the batch has reached is its ``stage`` extra.
"""
from __future__ import annotations

import functools

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, if_

from ..calculations.functions.structures import lowest_structure
from ..calculations.functions.summaries import summarize_batch
from ..calculations.mopac import MopacCalculation
from ..calculations.xtb import XtbCalculation
from .base import duration_seconds, outputs_of
from .conformers import DEFAULT_OPTIONS, DEFAULT_XTB, ENGINES, ConformerSearchWorkChain
from .dft import DftWorkChain, requested_code
from .shell import ShellStep, shell_fields


def batch_summaries(batch: orm.WorkflowNode) -> dict[str, orm.Dict]:
    """``{key: summary}`` of a finished batch (the outputs of its ``summarize`` calcfunction), in one query."""
    from aiida.common.links import LinkType

    query = orm.QueryBuilder()
    query.append(orm.WorkflowNode, filters={'id': batch.pk}, tag='batch')
    query.append(orm.CalcFunctionNode, with_incoming='batch', edge_filters={'label': 'summarize'}, tag='summarize')
    query.append(orm.Dict, with_incoming='summarize', edge_filters={'type': LinkType.CREATE.value},
                 edge_project=['label'], project=['*'], tag='summary', edge_tag='link')
    # .all(): a generator left open by an error would keep the storage session's read transaction
    return {row['link']['label']: row['summary']['*'] for row in query.dict()}


def job_message(node: orm.ProcessNode) -> str:
    """What went wrong with a job or workchain that did not finish well, in its own words."""
    if node.is_excepted:
        return 'the job excepted (see `verdi process report`)'
    if node.is_killed:
        return 'the job was killed'
    return f'{node.exit_message or "failed"} (exit {node.exit_status})'


class ConformerBatchWorkChain(ShellStep, WorkChain):
    """Conformer search → PM7 on the N lowest conformers → optional DFT, for a batch of molecules."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('molecules', valid_type=orm.Dict,
                   help='{key: {mol_id, smiles, charge, multiplicity}}; keys name the outputs (m0001, ...).')
        spec.input('engine', valid_type=orm.Str, default=lambda: orm.Str('rdkit-xtb'), help=f'One of {ENGINES}.')
        spec.input('xtb_code', valid_type=orm.AbstractCode)
        spec.input('mopac_code', valid_type=orm.AbstractCode)
        spec.input('crest_code', valid_type=orm.AbstractCode, required=False, help='For engine `crest`.')
        spec.input('num_conformers', valid_type=orm.Int, default=lambda: orm.Int(10),
                   help='RDKit conformers embedded per molecule (rdkit-xtb).')
        spec.input('seed', valid_type=orm.Int, default=lambda: orm.Int(61453), help='RDKit embedding seed.')
        spec.input('energy_window', valid_type=orm.Float, default=lambda: orm.Float(6.0), help='kcal/mol.')
        spec.input('rmsd_threshold', valid_type=orm.Float, default=lambda: orm.Float(0.125), help='Angstrom.')
        spec.input('temperature', valid_type=orm.Float, default=lambda: orm.Float(298.15), help='K.')
        spec.input('top_n', valid_type=orm.Int, default=lambda: orm.Int(3),
                   help='How many of each molecule\'s lowest conformers MOPAC computes.')
        spec.input('xtb_parameters', valid_type=orm.Dict, required=False, help=f'Overrides of {DEFAULT_XTB}.')
        spec.input('xtb_options', valid_type=orm.Dict, required=False, help='metadata.options of the xtb/CREST jobs.')
        spec.input('mopac_parameters', valid_type=orm.Dict, required=False, help='MopacParameters of the MOPAC job.')
        spec.input('mopac_options', valid_type=orm.Dict, required=False, help='metadata.options of the MOPAC job.')
        spec.expose_inputs(DftWorkChain, namespace='dft', exclude=('structure', 'charge', 'multiplicity'),
                           namespace_options={'required': False, 'populate_defaults': False,
                                              'help': 'Give `dft.engines.relax.code` to run DFT on each PM7-lowest conformer.'})
        spec.inputs['dft'].validator = None  # the geometry comes later; DftWorkChain validates when launched
        cls.define_shell(spec)
        spec.outline(
            cls.setup,
            cls.run_search,
            cls.inspect_search,
            if_(cls.has_ensembles)(
                cls.run_mopac,
                cls.inspect_mopac,
                if_(cls.should_run_dft)(cls.run_dft, cls.inspect_dft),
                if_(cls.should_run_shell)(cls.run_shell, cls.inspect_shell),
            ),
            cls.summarize,
        )
        spec.exit_code(400, 'ERROR_INVALID_INPUTS', message='{message}')
        spec.exit_code(410, 'ERROR_SOME_MOLECULES_FAILED', message='{failed} of {total} molecules failed.')
        spec.exit_code(411, 'ERROR_ALL_MOLECULES_FAILED', message='All {total} molecules failed.')

    def setup(self):
        engine = self.inputs.engine.value
        if engine not in ENGINES:
            return self.exit_codes.ERROR_INVALID_INPUTS.format(message=f'engine `{engine}` is not one of {ENGINES}')
        if engine == 'crest' and 'crest_code' not in self.inputs:
            return self.exit_codes.ERROR_INVALID_INPUTS.format(message='engine `crest` needs a `crest_code`')
        common = {'engine': engine, 'top_n': self.inputs.top_n.value}
        self.ctx.info = {key: {'mol_id': m['mol_id'], **common} for key, m in self.molecules.items()}
        self.ctx.results = {}  # the nodes the summaries are made from, as summarize_batch's inputs
        self.ctx.ensembles = {}
        return None

    @functools.cached_property
    def molecules(self) -> dict:
        """The ``molecules`` input as a dict, read once per process instance: not kept in the context, whose
        checkpoint (YAML, written at every step) would carry every CSV column of every molecule again."""
        return self.inputs.molecules.get_dict()

    def set_stage(self, stage: str) -> None:
        self.node.base.extras.set('stage', stage)

    def fail_molecule(self, key: str, stage: str, message: str) -> None:
        info = self.ctx.info[key]
        info[f'{stage}_status'] = 'FAILED'
        info.setdefault('error_message', message)  # the first failure is the reason

    def options(self, name: str) -> dict:
        return self.inputs[name].get_dict() if name in self.inputs else dict(DEFAULT_OPTIONS)

    def run_search(self):
        self.set_stage('conformer_search')
        if self.inputs.engine.value == 'crest':
            return ToContext(**{f'search_{key}': self.submit_crest(key) for key in self.molecules})
        xtb = {**DEFAULT_XTB, **(self.inputs.xtb_parameters.get_dict() if 'xtb_parameters' in self.inputs else {})}
        refine = {'energy_window': self.inputs.energy_window.value, 'rmsd_threshold': self.inputs.rmsd_threshold.value,
                  'temperature': self.inputs.temperature.value, 'engine': 'rdkit-xtb'}
        molecules = {key: {name: m[name] for name in ('mol_id', 'smiles', 'charge', 'multiplicity')}
                     for key, m in self.molecules.items()}
        embedding = {'num_conformers': self.inputs.num_conformers.value, 'seed': self.inputs.seed.value}
        node = self.submit_once('conformers', XtbCalculation, code=self.inputs.xtb_code, molecules=orm.Dict(molecules),
                                embedding=orm.Dict(embedding), refine=orm.Dict(refine), parameters=orm.Dict(xtb),
                                metadata={'options': self.options('xtb_options')})
        self.report(f'{node.process_label}<{node.pk}>: the conformers of {len(molecules)} molecules in one job')
        return ToContext(search=node)

    def submit_crest(self, key: str):
        molecule = self.molecules[key]
        inputs = {'smiles': orm.Str(molecule['smiles']), 'charge': orm.Int(int(molecule['charge'])),
                  'multiplicity': orm.Int(int(molecule['multiplicity'])), 'engine': orm.Str('crest'),
                  'xtb_code': self.inputs.xtb_code, 'crest_code': self.inputs.crest_code,
                  'energy_window': self.inputs.energy_window, 'rmsd_threshold': self.inputs.rmsd_threshold,
                  'temperature': self.inputs.temperature, 'options': orm.Dict(self.options('xtb_options'))}
        if 'xtb_parameters' in self.inputs:
            inputs['xtb_parameters'] = self.inputs.xtb_parameters
        return self.submit_once(f'search_{key}', ConformerSearchWorkChain, **inputs)

    def inspect_search(self):
        if self.inputs.engine.value == 'crest':
            for key in self.molecules:
                node = self.ctx[f'search_{key}']
                self.ctx.info[key]['conformer_search_time_s'] = duration_seconds(node)
                outputs = outputs_of(node)
                if node.is_finished_ok and 'ensemble' in outputs:
                    self.keep_ensemble(key, outputs['ensemble'])
                    self.ctx.results[f'search_{key}'] = outputs['output_parameters']
                else:
                    self.fail_molecule(key, 'conformer_search', f'conformer search: {job_message(node)}')
            return
        node = self.ctx.search
        outputs = outputs_of(node)
        verdicts = outputs['output_parameters'].get('molecules', {}) if 'output_parameters' in outputs else {}
        if 'output_parameters' in outputs:
            self.ctx.results['search'] = outputs['output_parameters']
        for key in self.molecules:
            self.ctx.info[key]['conformer_search_time_s'] = duration_seconds(node)  # the batch's job
            ensemble = outputs.get(f'ensembles__{key}')
            if ensemble is not None:
                self.keep_ensemble(key, ensemble)
            else:
                reason = verdicts.get(key, {}).get('error_message') or f'xtb: {job_message(node)}'
                self.fail_molecule(key, 'conformer_search', f'conformer search: {reason}')

    def keep_ensemble(self, key: str, ensemble: orm.TrajectoryData) -> None:
        self.ctx.ensembles[key] = ensemble
        self.ctx.info[key]['conformer_search_status'] = 'SUCCESS'

    def has_ensembles(self):
        return bool(self.ctx.ensembles)

    def run_mopac(self):
        self.set_stage('mopac')
        molecules = {key: {name: self.molecules[key][name] for name in ('mol_id', 'charge', 'multiplicity')}
                     for key in self.ctx.ensembles}
        inputs = {'code': self.inputs.mopac_code, 'ensembles': dict(self.ctx.ensembles),
                  'molecules': orm.Dict(molecules), 'num_conformers': self.inputs.top_n,
                  'metadata': {'options': self.options('mopac_options')}}
        if 'mopac_parameters' in self.inputs:
            inputs['parameters'] = self.inputs.mopac_parameters
        node = self.submit_once('pm7', MopacCalculation, **inputs)
        self.report(f'{node.process_label}<{node.pk}>: {len(molecules)} molecules in one job')
        return ToContext(mopac=node)

    def inspect_mopac(self):
        node = self.ctx.mopac
        outputs = outputs_of(node)
        verdicts = outputs['output_parameters'].get('molecules', {}) if 'output_parameters' in outputs else {}
        if 'output_parameters' in outputs:
            self.ctx.results['pm7'] = outputs['output_parameters']
        self.ctx.pm7_ok = {}  # {key: the molecule's MOPAC results} of the molecules MOPAC computed
        for key in self.ctx.ensembles:
            info = self.ctx.info[key]
            info['mopac_time_s'] = duration_seconds(node)  # the batch's job
            verdict = verdicts.get(key, {})
            results = outputs.get(f'results__{key}')
            if verdict.get('status') == 'OK' and results is not None and 'lowest_structure' in results.keys():
                info['mopac_status'] = 'OK'
                self.ctx.pm7_ok[key] = results
            else:
                reason = verdict.get('error_message') or job_message(node)
                self.fail_molecule(key, 'mopac', f'MOPAC: {reason}')

    def should_run_dft(self):
        return 'dft' in self.inputs and requested_code(self.inputs.dft) is not None and bool(self.ctx.pm7_ok)

    def run_dft(self):
        self.set_stage('dft')
        launched = {}
        for key, results in self.ctx.pm7_ok.items():
            molecule = self.molecules[key]
            inputs = AttributeDict(self.exposed_inputs(DftWorkChain, 'dft'))
            inputs.structure = self.run_once(f'structure_{key}', lowest_structure, results=results)['result']
            inputs.charge = orm.Int(int(molecule['charge']))
            inputs.multiplicity = orm.Int(int(molecule['multiplicity']))
            launched[f'dft_{key}'] = self.submit_once(f'dft_{key}', DftWorkChain, **inputs)
        self.report(f'launched {len(launched)} DftWorkChain(s) with {requested_code(self.inputs.dft).full_label}')
        return ToContext(**launched)

    def inspect_dft(self):
        plugin = requested_code(self.inputs.dft).default_calc_job_plugin
        for key in self.ctx.pm7_ok:
            node = self.ctx[f'dft_{key}']
            info = self.ctx.info[key]
            info.update(dft_code=plugin, dft_time_s=duration_seconds(node))
            outputs = outputs_of(node)
            if node.is_finished_ok and 'total_energy' in outputs:
                info['dft_status'] = 'OK'
                self.ctx.results[f'dft_energy_{key}'] = outputs['total_energy']
                if 'band_gap' in outputs:
                    self.ctx.results[f'dft_band_gap_{key}'] = outputs['band_gap']
            else:
                self.fail_molecule(key, 'dft', f'DFT: {job_message(node)}')

    def shell_computer(self) -> orm.Computer:
        return self.inputs.mopac_code.computer

    def should_run_shell(self):
        return self.has_shell_step() and bool(self.shell_keys())

    def shell_keys(self) -> list[str]:
        """The molecules the shell step runs on: PM7 (and DFT, if it ran) succeeded."""
        return [key for key in self.ctx.pm7_ok if 'error_message' not in self.ctx.info[key]]

    def run_shell(self):
        """One ShellJob per molecule on its PM7-lowest conformer; a step that cannot start fails only itself."""
        self.set_stage('shell')
        keys = self.shell_keys()
        try:
            code = self.shell_code()
        except ValueError as exc:
            for key in keys:
                self.ctx.info[key].update(shell_status='FAILED', shell_error=str(exc))
            self.report(f'shell step not run: {exc}')
            return None
        launched = {}
        for key in keys:
            molecule = self.molecules[key]
            structure = self.run_once(f'structure_{key}', lowest_structure, results=self.ctx.pm7_ok[key])['result']
            try:
                launched[f'shell_{key}'] = self.submit_shell(key, code, structure, {
                    name: molecule[name] for name in ('mol_id', 'charge', 'multiplicity')})
            except ValueError as exc:  # the ShellJob refused its inputs
                self.ctx.info[key].update(shell_status='FAILED', shell_error=f'shell job not launched: {exc}')
        self.ctx.shell_launched = sorted(launched)
        self.report(f'launched {len(launched)} ShellJob(s) with {code.full_label}')
        return ToContext(**launched)

    def inspect_shell(self):
        for label in self.ctx.get('shell_launched', []):
            self.ctx.info[label[len('shell_'):]].update(shell_fields(self.ctx[label]))

    def summarize(self):
        """Each molecule's summary, made from the jobs' outputs by one calcfunction; then the batch's verdict."""
        self.set_stage('done')
        self.run_once('summarize', summarize_batch, info=orm.Dict(self.ctx.info), **self.ctx.results)
        failed = sum(1 for info in self.ctx.info.values() if 'error_message' in info)
        total = len(self.ctx.info)
        if failed == total:
            return self.exit_codes.ERROR_ALL_MOLECULES_FAILED.format(total=total)
        if failed:
            return self.exit_codes.ERROR_SOME_MOLECULES_FAILED.format(failed=failed, total=total)
        return None
