"""``grimperium.pw`` parser: a thin layer over :mod:`aiida_grimperium.parsers.raw.pw`."""
from __future__ import annotations

import numpy as np
from aiida import orm

from .base import GrimperiumParser
from .raw import pw as raw

#: Raw keys that become arrays of ``output_trajectory`` rather than attributes of ``output_parameters``.
ARRAY_KEYS = ('trajectory', 'final_structure', 'forces', 'stress_kbar')


class PwParser(GrimperiumParser):
    """Parse ``aiida.out`` (and ``CRASH``) of a pw.x run into parameters, structure and trajectory."""

    CODE = 'pw'

    def parse(self, **kwargs):
        options = self.node.get_options()
        main = options.get('output_filename', 'aiida.out')
        result = self.parse_retrieved(raw.parse_path, [main, 'CRASH'], main)
        label = result.pop('exit_label', None)
        if label == 'ERROR_OUTPUT_MISSING':
            return self.exit_for(label)

        parameters = {k: v for k, v in result.items() if k not in ARRAY_KEYS}
        self.out('output_parameters', self.dict_node(parameters))

        structure = self.inputs.structure
        steps = [s for s in result.get('trajectory', []) if 'energy_ry' in s]
        if steps:
            self.out('output_trajectory', self._trajectory(structure, steps))
        calculation = self.inputs.parameters.get_dict().get('CONTROL', {}).get('calculation', 'scf')
        if calculation in ('relax', 'vc-relax', 'md', 'vc-md'):
            last = result.get('final_structure') or next((s for s in reversed(result.get('trajectory', [])) if 'positions' in s), None)
            if last and len(last.get('positions', [])) == len(structure.sites):
                self.out('output_structure', self._structure(structure, last))
        return self.exit_for(label)

    @staticmethod
    def _structure(structure: orm.StructureData, geometry: dict) -> orm.StructureData:
        """A copy of the input structure with pw.x's positions and, for vc-relax, its cell."""
        new = structure.clone()
        if geometry.get('cell'):
            new.reset_cell(geometry['cell'])
        new.reset_sites_positions(geometry['positions'])
        return new

    @staticmethod
    def _trajectory(structure: orm.StructureData, steps: list[dict]) -> orm.TrajectoryData:
        """Every ionic step; the first step's geometry (not printed by pw.x) is the input structure's."""
        symbols = [structure.get_kind(site.kind_name).symbol for site in structure.sites]
        positions, cells = [], []
        geometry = {'positions': [list(s.position) for s in structure.sites], 'cell': structure.cell}
        for step in steps:
            if len(step.get('positions', [])) == len(symbols):
                geometry = {**geometry, 'positions': step['positions']}
            if step.get('cell'):
                geometry = {**geometry, 'cell': step['cell']}
            positions.append(geometry['positions'])
            cells.append(geometry['cell'])
        trajectory = orm.TrajectoryData()
        trajectory.set_trajectory(symbols=symbols, positions=np.array(positions), cells=np.array(cells), pbc=structure.pbc,
                                  stepids=np.arange(len(steps)))
        trajectory.set_array('energies_ev', np.array([s['energy_ry'] * raw.RY_TO_EV for s in steps]))
        trajectory.set_array('energies_ry', np.array([s['energy_ry'] for s in steps]))
        if all(len(s.get('forces', [])) == len(symbols) for s in steps):
            trajectory.set_array('forces_ev_angstrom', np.array([s['forces'] for s in steps]))
        if all(len(s.get('stress_kbar') or []) == 3 for s in steps):
            trajectory.set_array('stress_kbar', np.array([s['stress_kbar'] for s in steps]))
        return trajectory
