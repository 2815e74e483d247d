"""AiiDA parser of ``grimperium.xtb``: hands the retrieved streams to :mod:`.raw.xtb` and stores the results."""
from __future__ import annotations

import pathlib
import tempfile

import numpy as np

from ..calculations.xtb import CONFORMERS_FILE, EMBEDDING_ERRORS_FILE, molecule_namespace, namespace
from ..ensembles import DEFAULT_TEMPERATURE, refine, refine_summary
from ..structures import ensemble_frames, make_ensemble, molecule_structure
from .base import GrimperiumParser, copy_objects
from .raw import xtb as raw

#: Per-geometry keys kept in ``output_parameters['geometries']`` of a batch (positions go to the ensemble node).
GEOMETRY_KEYS = ('exit_label', 'total_energy_hartree', 'homo_lumo_gap_ev', 'gradient_norm_hartree_bohr',
                 'optimization_converged', 'fatal_error')


class XtbParser(GrimperiumParser):
    """Energy, HOMO-LUMO gap, gradient norm and the optimised geometry of one or many xtb runs."""

    CODE = 'xtb'

    def parse(self, **kwargs):
        params = self.inputs.parameters.get_dict() if 'parameters' in self.inputs else {}
        optimise = params.get('task', 'single_point') == 'optimization'
        names = self.retrieved_names()
        with tempfile.TemporaryDirectory() as tmp:
            # a batch's stderr and optimised geometries come in the temporary folder (see `XtbCalculation`);
            # jobs of earlier versions have them among the retrieved files, which are copied next to them
            temporary = pathlib.Path(str(kwargs.get('retrieved_temporary_folder')))  # AiiDA may pass 'None'
            folder = temporary if temporary.is_dir() and 'structure' not in self.inputs else pathlib.Path(tmp)
            self.copy_retrieved(names, folder)
            if 'molecules' in self.inputs:  # many molecules' conformers
                return self._parse_molecules(folder, params)
            if 'structure' not in self.inputs:  # an ensemble, or the conformers of `smiles`
                return self._parse_batch(folder, params)
            stdout = folder / self.node.get_option('output_filename')
            result = raw.parse_run(stdout, folder / raw.STDERR_NAME, folder / 'xtbopt.xyz' if optimise else None)
        symbols, positions = result.pop('symbols', None), result.pop('positions', None)
        if symbols is not None:
            # also on ERROR_OPTIMIZATION_NOT_CONVERGED: the last geometry is where a restart continues from
            self.out('output_structure', molecule_structure(symbols, positions))
        label = result.pop('exit_label', None)
        result.update(self._metadata(params))
        self.out('output_parameters', self.dict_node(result))
        return self.exit_for(label)

    def _input_conformers(self, folder: pathlib.Path):
        """Symbols, frames and temperature of the geometries the job started from: the input ensemble's, or the
        RDKit conformers of ``smiles`` the job wrote (its input files, kept in the node's repository)."""
        if 'ensemble' in self.inputs:
            ensemble = self.inputs.ensemble
            return (*ensemble_frames(ensemble), ensemble.base.attributes.get('temperature', DEFAULT_TEMPERATURE))
        present, names = set(self.node.base.repository.list_object_names()), []
        while f'{namespace(len(names))}.xyz' in present:
            names.append(f'{namespace(len(names))}.xyz')
        copy_objects(self.node, names, folder)
        frames, symbols = [], None
        for name in names:
            geometry = raw.read_xyz(folder / name)
            if geometry is None:
                break
            symbols = geometry[0]
            frames.append(geometry[1])
        return symbols or [], np.asarray(frames, dtype=float), DEFAULT_TEMPERATURE

    def _parse_batch(self, folder: pathlib.Path, params: dict):
        optimise = params.get('task', 'single_point') == 'optimization'
        symbols, frames, temperature = self._input_conformers(folder)
        runs = []
        for index in range(len(frames)):
            stdout, stderr, xtbopt = raw.run_files(folder, namespace(index))
            runs.append(raw.parse_run(stdout, stderr, xtbopt if optimise else None))
        result = raw.summarise(runs)
        label = result.pop('exit_label', None)
        good = [i for i in range(len(runs)) if i not in result['failed_geometries']]
        if good:
            geometries = [np.asarray(runs[i]['positions']) if optimise else frames[i] for i in good]
            energies = [runs[i]['total_energy_hartree'] for i in good]
            order = sorted(range(len(good)), key=lambda k: energies[k])
            result['ensemble_order'] = [good[k] for k in order]
            ensemble = make_ensemble(
                symbols, [geometries[k] for k in order], [energies[k] for k in order], temperature=temperature,
                charge=self.inputs.charge.value, multiplicity=self.inputs.multiplicity.value,
                engine='xtb', sort=False,
            )
            if 'refine' in self.inputs:
                ensemble = self._refine(ensemble, self.inputs.refine.get_dict(), result)
            self.out('output_ensemble', ensemble)
        if result['failed_geometries'] and good:
            self.logger.warning(f'{len(result["failed_geometries"])} of {len(runs)} geometries failed: {result["failures"]}')
        result['geometries'] = [{k: run.get(k) for k in GEOMETRY_KEYS if run.get(k) is not None} for run in runs]
        result.update(self._metadata(params))
        self.out('output_parameters', self.dict_node(result))
        return self.exit_for(label)

    def _parse_molecules(self, folder: pathlib.Path, params: dict):
        """Each molecule of a ``molecules`` job on its own: its runs, its refined ensemble, its summary. A molecule
        whose conformers all failed (or that RDKit could not embed) is reported with the reason; the job fails
        only when every molecule did."""
        import json

        optimise = params.get('task', 'single_point') == 'optimization'
        repository = self.node.base.repository
        present = set(repository.list_object_names())
        embedding_errors = json.loads(repository.get_object_content(EMBEDDING_ERRORS_FILE)) \
            if EMBEDDING_ERRORS_FILE in present else {}
        # the conformers each call started from: the frames of the job's one input file, by name
        started = raw.read_xyz_frames(repository.get_object_content(CONFORMERS_FILE)) if CONFORMERS_FILE in present else {}
        settings = self.inputs.refine.get_dict() if 'refine' in self.inputs else {}
        molecules, labels = {}, []
        for key, molecule in self.inputs.molecules.get_dict().items():
            summary = {'mol_id': molecule['mol_id']}
            molecules[key] = summary
            if key in embedding_errors:
                summary.update(status='FAILED', error_message=f'RDKit: {embedding_errors[key]}', exit_label='ERROR_EMBEDDING')
                labels.append('ERROR_FATAL_ERROR')
                continue
            runs, frames, symbols = [], [], []
            while molecule_namespace(key, len(runs)) in started:
                name = molecule_namespace(key, len(runs))
                symbols, frame = started[name]
                stdout, stderr, xtbopt = raw.run_files(folder, name)
                runs.append(raw.parse_run(stdout, stderr, xtbopt if optimise else None))
                frames.append(frame)
            result = raw.summarise(runs)
            good = [i for i in range(len(runs)) if i not in result['failed_geometries']
                    and (runs[i].get('positions') if optimise else frames[i]) is not None]
            if not good:
                label = result.get('exit_label') or 'ERROR_OUTPUT_MISSING'
                labels.append(label)
                first = runs[0] if runs else {}
                reason = first.get('exit_detail') or first.get('fatal_error') or (self.exit_codes[label].message if label in self.exit_codes else label)
                summary.update(status='FAILED', exit_label=label, error_message=f'xtb: {reason}')
                continue
            geometries = [runs[i]['positions'] if optimise else frames[i] for i in good]
            ensemble = make_ensemble(symbols, geometries, [runs[i]['total_energy_hartree'] for i in good],
                                     temperature=settings.get('temperature', DEFAULT_TEMPERATURE),
                                     charge=int(molecule['charge']), multiplicity=int(molecule['multiplicity']),
                                     engine='xtb')
            refined = refine(ensemble, **settings) if settings else ensemble
            refined.base.attributes.set('mol_id', molecule['mol_id'])
            summary.update(refine_summary(refined, len(runs), settings), status='SUCCESS',
                           num_failed_conformers=len(runs) - len(good))
            self.out(f'ensembles.{key}', refined)
        ok = sum(1 for summary in molecules.values() if summary['status'] == 'SUCCESS')
        output = {'molecules': molecules, 'num_molecules': len(molecules), 'num_succeeded': ok, **self._metadata(params)}
        output.pop('charge'), output.pop('multiplicity')
        self.out('output_parameters', self.dict_node(output))
        return self.exit_for(None if ok else (labels[0] if labels else 'ERROR_OUTPUT_MISSING'))

    def _refine(self, ensemble, settings: dict, result: dict):
        """The conformers ``refine`` keeps, and the lowest as ``output_structure``. ``result`` gets the summary
        keys a conformer search reports (:func:`~aiida_grimperium.ensembles.refine_summary`)."""
        refined = refine(ensemble, **settings)
        result.update(refine_summary(refined, ensemble.numsteps, settings))
        if refined.numsteps:
            symbols, frames = ensemble_frames(refined)
            self.out('output_structure', molecule_structure(symbols, frames[0]))
        return refined

    def _metadata(self, params: dict) -> dict:
        return {
            'method': str(params.get('method', 'gfn2')).lower(),
            'task': params.get('task', 'single_point'),
            'charge': self.inputs.charge.value if 'charge' in self.inputs else 0,
            'multiplicity': self.inputs.multiplicity.value if 'multiplicity' in self.inputs else 1,
            'solvent': params.get('solvent'),
        }
