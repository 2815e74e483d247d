"""AiiDA parser of ``grimperium.xtb``: hands the retrieved streams to :mod:`.raw.xtb` and stores the results."""
from __future__ import annotations

import pathlib
import tempfile

import numpy as np

from ..calculations.xtb import namespace
from ..structures import ensemble_frames, make_ensemble, molecule_structure
from .base import GrimperiumParser
from .raw import xtb as raw

#: Per-geometry keys kept in ``output_parameters['geometries']`` of a batch (positions go to the ensemble node).
GEOMETRY_KEYS = ('exit_label', 'total_energy_hartree', 'homo_lumo_gap_ev', 'gradient_norm_hartree_bohr',
                 'optimization_converged', 'fatal_error')


class XtbParser(GrimperiumParser):
    """Energy, HOMO-LUMO gap, gradient norm and the optimised geometry of one or many xtb runs."""

    CODE = 'xtb'

    def parse(self, **kwargs):
        params = self.node.inputs.parameters.get_dict() if 'parameters' in self.node.inputs else {}
        optimise = params.get('task', 'single_point') == 'optimization'
        names = self.retrieved_names()
        with tempfile.TemporaryDirectory() as tmp:
            folder = pathlib.Path(tmp)
            self.copy_retrieved(names, folder)
            if 'ensemble' in self.node.inputs:
                return self._parse_batch(folder, optimise)
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

    def _parse_batch(self, folder: pathlib.Path, optimise: bool):
        ensemble = self.node.inputs.ensemble
        symbols, frames = ensemble_frames(ensemble)
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
            self.out('output_ensemble', make_ensemble(
                symbols, [geometries[k] for k in order], [energies[k] for k in order],
                temperature=ensemble.base.attributes.get('temperature', 298.15),
                charge=self.node.inputs.charge.value, multiplicity=self.node.inputs.multiplicity.value,
                engine='xtb', sort=False,
            ))
        if result['failed_geometries'] and good:
            self.logger.warning(f'{len(result["failed_geometries"])} of {len(runs)} geometries failed: {result["failures"]}')
        result['geometries'] = [{k: run.get(k) for k in GEOMETRY_KEYS if run.get(k) is not None} for run in runs]
        result.update(self._metadata(self.node.inputs.parameters.get_dict() if 'parameters' in self.node.inputs else {}))
        self.out('output_parameters', self.dict_node(result))
        return self.exit_for(label)

    def _metadata(self, params: dict) -> dict:
        return {
            'method': str(params.get('method', 'gfn2')).lower(),
            'task': params.get('task', 'single_point'),
            'charge': self.node.inputs.charge.value,
            'multiplicity': self.node.inputs.multiplicity.value,
            'solvent': params.get('solvent'),
        }
