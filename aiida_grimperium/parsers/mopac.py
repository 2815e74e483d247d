"""``grimperium.mopac`` parser: thin layer over :mod:`aiida_grimperium.parsers.raw.mopac`."""
from __future__ import annotations

import pathlib

import numpy as np
from aiida.engine import ExitCode

from ..structures import make_ensemble, molecule_structure
from .base import GrimperiumParser
from .raw import mopac as raw

#: Per-job keys collected into lists (one entry per geometry, ``None`` where MOPAC printed nothing).
LIST_KEYS = {
    'ionization_potential_ev': 'ionization_potentials_ev',
    'homo_ev': 'homo_ev',
    'lumo_ev': 'lumo_ev',
    'alpha_somo_ev': 'alpha_somo_ev',
    'beta_somo_ev': 'beta_somo_ev',
    'dipole_debye': 'dipoles_debye',
    'total_energy_ev': 'total_energies_ev',
    'gradient_norm': 'gradient_norms',
    'ended_normally': 'jobs_ended_normally',
}


#: Per-molecule keys of a ``molecules`` job that ``output_parameters['molecules'][key]`` repeats from its results.
VERDICT_KEYS = ('heats_of_formation_kcal_mol', 'lowest_heat_of_formation_kcal_mol')


class MopacParser(GrimperiumParser):
    """Stores ``output_parameters`` and the final geometries, then returns the raw parser's verdict."""

    CODE = 'mopac'

    def parse(self, **kwargs):
        if 'molecules' in self.inputs:
            return self.parse_molecules(kwargs.get('retrieved_temporary_folder'))
        output = self.node.get_option('output_filename')
        result = self.parse_retrieved(raw.parse_path, [output], output)
        label = result.pop('exit_label', None)
        jobs = result.get('jobs')
        if not jobs:
            return self.exit_for(label or 'ERROR_OUTPUT_PARSE')

        self.out('output_parameters', self.dict_node(self.summary(result)))
        self.store_geometries(result)
        return self.exit_for(label)

    def parse_molecules(self, temporary) -> ExitCode:
        """Each molecule's own output ``<key>.out`` (in the temporary retrieval; the job keeps them as one archive):
        its results, its lowest geometry, its verdict in MOPAC's words. The job fails only when every molecule did."""
        molecules = self.inputs.molecules.get_dict()
        folder = pathlib.Path(str(temporary))  # AiiDA may pass None
        verdicts, labels = {}, []
        for key, molecule in molecules.items():
            result = raw.parse_path(folder / f'{key}.out')
            label = result.pop('exit_label', None)
            verdict = {'mol_id': molecule['mol_id'], 'status': 'OK' if label is None else 'FAILED'}
            if label is not None:
                labels.append(label)
                words = _code_message(result)
                code = self.exit_for(label, words)
                verdict.update(exit_status=code.status, exit_label=label, error_message=f'{words or code.message} '
                               f'(exit {code.status})')
            if result.get('jobs'):
                summary = {**self.summary(result), 'mol_id': molecule['mol_id'], **verdict}
                best = self.lowest_job(result) if label is None else None
                if best is not None:  # the geometry as attributes: a StructureData each is made only for DFT
                    summary['lowest_structure'] = {'symbols': best['symbols'], 'positions': best['positions']}
                self.out(f'results.{key}', self.dict_node(summary))
                # the numbers a campaign's summary needs, also in the job's one output_parameters
                verdict.update({name: summary.get(name) for name in VERDICT_KEYS if summary.get(name) is not None})
            verdicts[key] = verdict
        ok = sum(1 for verdict in verdicts.values() if verdict['status'] == 'OK')
        self.out('output_parameters', self.dict_node({'molecules': verdicts, 'num_molecules': len(verdicts),
                                                      'num_succeeded': ok}))
        first = next((v for v in verdicts.values() if v['status'] != 'OK'), {})
        return self.exit_for(None if ok or not labels else labels[0], first.get('error_message'))

    @staticmethod
    def lowest_job(result: dict) -> dict | None:
        jobs = result['jobs']
        index = result.get('lowest_index')
        if index is not None and jobs[index].get('positions'):
            return jobs[index]
        return next((job for job in jobs if job.get('positions')), None)

    @staticmethod
    def summary(result: dict) -> dict:
        """The queryable dict: per-geometry lists plus the lowest heat of formation and its index."""
        jobs = result['jobs']
        summary = {
            'num_conformers': len(jobs),
            'heats_of_formation_kcal_mol': result['heats_of_formation_kcal_mol'],
            'lowest_heat_of_formation_kcal_mol': result.get('lowest_heat_of_formation_kcal_mol'),
            'lowest_index': result.get('lowest_index'),
            'mopac_version': result.get('mopac_version'),
            'total_job_time_s': result.get('total_job_time_s'),
            'ended_normally': result.get('ended_normally'),
            'errors': [job['errors'] for job in jobs],
            'point_groups': [job.get('point_group') for job in jobs],
        }
        for key, name in LIST_KEYS.items():
            values = [job.get(key) for job in jobs]
            if any(value is not None for value in values):
                summary[name] = values
        if len(jobs) == 1:  # a single molecule: its scalars at the top level too, for simple queries
            summary.update({k: v for k, v in jobs[0].items() if k not in ('symbols', 'positions', 'errors')})
        return summary

    def store_geometries(self, result: dict) -> None:
        jobs = result['jobs']
        with_geometry = [job for job in jobs if job.get('positions')]
        if not with_geometry:
            return
        best = self.lowest_job(result)
        self.out('output_structure', molecule_structure(best['symbols'], best['positions']))
        if len(jobs) > 1 and len(with_geometry) == len(jobs) and len({len(j['symbols']) for j in jobs}) == 1:
            inputs = self.inputs
            ensemble = make_ensemble(
                jobs[0]['symbols'], [job['positions'] for job in jobs], sort=False, engine='mopac',
                charge=inputs.charge.value, multiplicity=inputs.multiplicity.value,
            )
            heats = [job.get('heat_of_formation_kcal_mol', float('nan')) for job in jobs]
            ensemble.set_array('heats_of_formation_kcal_mol', np.array(heats, dtype=float))
            self.out('output_ensemble', ensemble)


def _code_message(result: dict) -> str | None:
    """MOPAC's own words for a failure (the raw parser's ``exit_detail``, else a job's first ``messages``)."""
    if result.get('exit_detail'):
        return str(result['exit_detail'])
    for job in result.get('jobs') or []:
        for message in job.get('messages') or []:
            if message:
                return str(message)
    return None
