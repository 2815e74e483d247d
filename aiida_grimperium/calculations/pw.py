"""``grimperium.pw``: a Quantum ESPRESSO ``pw.x`` CalcJob (SCF, relax, vc-relax, nscf, bands).

The plugin writes what it can derive from the inputs (``ibrav = 0``, ``nat``, ``ntyp``, the cell, positions,
species, k-points, folders) and takes the physics from ``parameters``, namelist by namelist
(``{'SYSTEM': {'ecutwfc': 30}, ...}``), refusing unknown or misspelled keys before submission.
A molecule (``pbc`` all False) is placed in its box with ``assume_isolated = 'mt'`` and computed at Gamma.
"""
from __future__ import annotations

import os

from aiida import orm
from aiida.common import datastructures

from ..parsers.raw.pw import EXIT_CODES
from .base import GrimperiumCalcJob
from .pw_namelists import format_namelists, validate_namelists

#: Sub-folders of the run: pw.x's restart data and the pseudopotentials written by the plugin.
OUTPUT_SUBFOLDER = 'out'
PSEUDO_SUBFOLDER = 'pseudo'
PREFIX = 'aiida'


def is_molecule(structure: orm.StructureData) -> bool:
    return not any(structure.pbc)


def validate_parameters(value, _):
    if value is not None:
        return validate_namelists(value.get_dict())
    return None


def validate_inputs(inputs, _):
    """Cross-checks: a pseudo per kind, k-points for periodic systems, a parent folder for restarts."""
    structure = inputs.get('structure')
    if structure is None:
        return None
    kinds = {kind.name for kind in structure.kinds}
    pseudos = set(inputs.get('pseudos', {}))
    if kinds != pseudos:
        return f'`pseudos` must have one UpfData per kind: kinds {sorted(kinds)}, pseudos given for {sorted(pseudos)}'
    if 'kpoints' not in inputs and not is_molecule(structure):
        return '`kpoints` are required for a periodic structure (only a molecule defaults to Gamma)'
    parameters = {k.upper(): v for k, v in inputs['parameters'].get_dict().items()}
    restart = parameters.get('CONTROL', {}).get('restart_mode') == 'restart'
    startfile = 'file' in (parameters.get('ELECTRONS', {}).get('startingpot'), parameters.get('ELECTRONS', {}).get('startingwfc'))
    if (restart or startfile) and 'parent_folder' not in inputs:
        return '`restart_mode = restart` or starting from `file` needs a `parent_folder`'
    return None


class PwCalculation(GrimperiumCalcJob):
    """Run ``pw.x`` on a structure with namelist parameters, k-points and one UPF pseudopotential per kind."""

    _DEFAULT_INPUT_FILE = 'aiida.in'
    _DEFAULT_OUTPUT_FILE = 'aiida.out'
    _DEFAULT_PARSER = 'grimperium.pw'
    _DEFAULT_WITHMPI = False

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('structure', valid_type=orm.StructureData, help='Periodic crystal, or a molecule (pbc False) in its box.')
        spec.input('parameters', valid_type=orm.Dict, validator=validate_parameters,
                   help='pw.x namelists: {"CONTROL": {...}, "SYSTEM": {...}, "ELECTRONS": {...}, "IONS": ..., "CELL": ...}.')
        spec.input('kpoints', valid_type=orm.KpointsData, required=False,
                   help='A mesh or an explicit list; optional for a molecule (Gamma).')
        spec.input_namespace('pseudos', valid_type=orm.UpfData, dynamic=True, help='One UpfData per kind name.')
        spec.input('parent_folder', valid_type=orm.RemoteData, required=False,
                   help='Folder of an earlier pw.x run whose `out/` (charge density, wavefunctions, restart files) is copied.')
        spec.input('settings', valid_type=orm.Dict, required=False,
                   help='{"cmdline": ["-nk", "2"]} extra pw.x command-line flags (parallelisation).')
        spec.inputs.validator = validate_inputs
        spec.output('output_parameters', valid_type=orm.Dict, help='Energies (eV and Ry), gap, convergence flags.')
        spec.output('output_structure', valid_type=orm.StructureData, required=False,
                    help='The last geometry of a relax / vc-relax (the final one when it converged).')
        spec.output('output_trajectory', valid_type=orm.TrajectoryData, required=False,
                    help='Every ionic step: positions, cells, energies (eV), forces (eV/Angstrom), stress (kbar).')
        spec.default_output_node = 'output_parameters'
        cls.declare_exit_codes(spec, EXIT_CODES)

    def prepare_for_submission(self, folder):
        structure = self.inputs.structure
        parameters = {k.upper(): dict(v) for k, v in self.inputs.parameters.get_dict().items()}
        control = parameters.setdefault('CONTROL', {})
        control.update(prefix=PREFIX, outdir=f'./{OUTPUT_SUBFOLDER}/', pseudo_dir=f'./{PSEUDO_SUBFOLDER}/')
        control.setdefault('calculation', 'scf')
        system = parameters.setdefault('SYSTEM', {})
        kinds = list(structure.kinds)
        system.update(ibrav=0, nat=len(structure.sites), ntyp=len(kinds))
        if is_molecule(structure):
            system.setdefault('assume_isolated', 'mt')  # no spurious interaction with periodic images
        parameters.setdefault('ELECTRONS', {})
        if control['calculation'] in ('relax', 'md', 'vc-relax', 'vc-md'):
            parameters.setdefault('IONS', {})
        if control['calculation'] in ('vc-relax', 'vc-md'):
            parameters.setdefault('CELL', {})
        kind_index = {kind.name: i + 1 for i, kind in enumerate(kinds)}

        folder.get_subfolder(PSEUDO_SUBFOLDER, create=True)
        local_copy_list, species = [], []
        for kind in kinds:
            upf = self.inputs.pseudos[kind.name]
            local_copy_list.append((upf.uuid, upf.filename, os.path.join(PSEUDO_SUBFOLDER, upf.filename)))
            species.append(f'{kind.name} {kind.mass:.6f} {upf.filename}')
        folder.get_subfolder(OUTPUT_SUBFOLDER, create=True)

        text = format_namelists(parameters, kind_index)
        text += 'ATOMIC_SPECIES\n' + '\n'.join(species) + '\n'
        text += 'ATOMIC_POSITIONS angstrom\n'
        text += ''.join(f'{s.kind_name} {x:.10f} {y:.10f} {z:.10f}\n' for s in structure.sites for x, y, z in [s.position])
        text += 'CELL_PARAMETERS angstrom\n' + ''.join(f'{a:.10f} {b:.10f} {c:.10f}\n' for a, b, c in structure.cell)
        text += self._kpoints_card()
        with folder.open(self.inputs.metadata.options.input_filename, 'w') as handle:
            handle.write(text)

        remote_copy_list = []
        if 'parent_folder' in self.inputs:
            parent = self.inputs.parent_folder
            remote_copy_list.append(
                (parent.computer.uuid, os.path.join(parent.get_remote_path(), OUTPUT_SUBFOLDER, '*'), OUTPUT_SUBFOLDER)
            )

        settings = self.inputs.settings.get_dict() if 'settings' in self.inputs else {}
        codeinfo = datastructures.CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = [*map(str, settings.get('cmdline', [])), '-in', self.inputs.metadata.options.input_filename]
        codeinfo.stdout_name = self.inputs.metadata.options.output_filename
        codeinfo.withmpi = self.inputs.metadata.options.withmpi

        calcinfo = datastructures.CalcInfo()
        calcinfo.codes_info = [codeinfo]
        calcinfo.local_copy_list = local_copy_list
        calcinfo.remote_copy_list = remote_copy_list
        # CRASH holds the error message when pw.x stops on an error (on some ranks only there, not in stdout)
        calcinfo.retrieve_list = [self.inputs.metadata.options.output_filename, 'CRASH']
        return calcinfo

    def _kpoints_card(self) -> str:
        if 'kpoints' not in self.inputs:
            return 'K_POINTS gamma\n'
        kpoints = self.inputs.kpoints
        try:
            mesh, offset = kpoints.get_kpoints_mesh()
        except AttributeError:
            points = kpoints.get_kpoints()
            weights = [1.0] * len(points)
            lines = ''.join(f'{a:.10f} {b:.10f} {c:.10f} {w:.10f}\n' for (a, b, c), w in zip(points, weights))
            return f'K_POINTS crystal\n{len(points)}\n{lines}'
        if list(mesh) == [1, 1, 1] and not any(offset) and is_molecule(self.inputs.structure):
            return 'K_POINTS gamma\n'  # Gamma tricks: real wavefunctions, half the memory and time
        shifts = [1 if abs(o - 0.5) < 1e-6 else 0 for o in offset]
        return 'K_POINTS automatic\n' + ' '.join(map(str, [*mesh, *shifts])) + '\n'
