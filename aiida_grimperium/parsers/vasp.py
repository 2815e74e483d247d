"""AiiDA parser of ``grimperium.vasp``: a thin layer over :mod:`aiida_grimperium.parsers.raw.vasp`."""
from __future__ import annotations

import pathlib
import tempfile

import numpy as np
from aiida import orm

from .base import GrimperiumParser
from .raw import vasp as raw

#: Keys of the raw result that go into dedicated nodes instead of ``output_parameters``.
ARRAY_KEYS = ('forces', 'stress', 'structure')


class VaspParser(GrimperiumParser):
    """Attach ``output_parameters`` (and the last structure, forces and stress when found), return the verdict.

    Outputs are attached for failed runs too (an unconverged relaxation still has a last structure the restart
    workchain continues from). A run cut short by the scheduler's walltime gives ``ERROR_OUT_OF_WALLTIME``.
    """

    CODE = 'vasp'

    def parse(self, **kwargs):
        result = self._parse_files()
        label = result.pop('exit_label', None)

        if result.get('energy') is not None or result.get('num_ionic_steps'):
            self.out('output_parameters', self.dict_node({k: v for k, v in result.items() if k not in ARRAY_KEYS}))
        structure = result.get('structure')
        ibrion, nsw = result.get('ibrion'), result.get('nsw')
        ions_move = isinstance(nsw, int) and nsw > 0 and isinstance(ibrion, int) and ibrion >= 0
        if structure and ions_move:
            self.out('output_structure', self._structure(structure))
        if result.get('forces') or result.get('stress'):
            arrays = orm.ArrayData()
            for key in ('forces', 'stress'):
                if result.get(key):
                    arrays.set_array(key, np.array(result[key], dtype=float))
            self.out('output_arrays', arrays)

        scheduler_status = self.node.exit_status
        if label == 'ERROR_OUTPUT_INCOMPLETE' and scheduler_status == self.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME.status:
            label = 'ERROR_OUT_OF_WALLTIME'
        if label is not None:
            self.logger.warning(f'VASP run: {label}; warnings: {result.get("warnings")}, errors: {result.get("errors")}')
        return self.exit_for(label, result.get('exit_detail'))  # VASP's own words, also when no output node

    @staticmethod
    def _structure(data: dict) -> orm.StructureData:
        cell = np.array(data['cell'], dtype=float)
        structure = orm.StructureData(cell=cell.tolist())
        for symbol, frac in zip(data['symbols'], data['frac_positions']):
            structure.append_atom(position=tuple(np.dot(frac, cell)), symbols=symbol)
        return structure

    def _parse_files(self) -> dict:
        """Copy vasprun.xml, OUTCAR and the standard output (as ``vasp_output``) to a folder and parse it."""
        stdout = self.node.get_option('output_filename') or raw.STDOUT
        with tempfile.TemporaryDirectory() as tmp:
            folder = pathlib.Path(tmp)
            self.copy_retrieved([raw.VASPRUN, raw.OUTCAR, stdout], folder)
            if stdout != raw.STDOUT and (folder / stdout).exists():
                (folder / stdout).rename(folder / raw.STDOUT)
            return raw.parse_path(folder)
