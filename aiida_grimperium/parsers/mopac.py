"""``grimperium.mopac`` parser: thin layer over :mod:`aiida_grimperium.parsers.raw.mopac`."""
from __future__ import annotations

import numpy as np

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


class MopacParser(GrimperiumParser):
    """Stores ``output_parameters`` and the final geometries, then returns the raw parser's verdict."""

    CODE = 'mopac'

    def parse(self, **kwargs):
        output = self.node.get_option('output_filename')
        result = self.parse_retrieved(raw.parse_path, [output], output)
        label = result.pop('exit_label', None)
        jobs = result.get('jobs')
        if not jobs:
            return self.exit_for(label or 'ERROR_OUTPUT_PARSE')

        self.out('output_parameters', self.dict_node(self.summary(result)))
        self.store_geometries(result)
        return self.exit_for(label)

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
        index = result.get('lowest_index')
        best = jobs[index] if index is not None and jobs[index].get('positions') else with_geometry[0]
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
