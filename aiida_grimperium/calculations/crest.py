"""``grimperium.crest``: a CREST conformer search (iMTD-GC) of one molecule.

The command line is ``crest aiida.xyz --gfn2 --chrg C --uhf U [--alpb SOLVENT] [--ewin ..] [--rthr ..] [--ethr ..]
[--quick|--squick|--mquick] -T THREADS``, stdout to ``crest.out``. Only the files the parser needs are retrieved
(the rotamer file of a large molecule can be hundreds of MB).
"""
from __future__ import annotations

import io
import re

from aiida import orm
from aiida.common import datastructures

from ..chemistry import xyz_text
from ..parsers.raw.crest import BEST, CONFORMERS, ENERGIES, EXIT_CODES
from ..structures import structure_symbols_positions
from .base import GrimperiumCalcJob, threads_of, threads_prepend_text, validate_charge_multiplicity

LEVELS = {'gfn0': '--gfn0', 'gfn1': '--gfn1', 'gfn2': '--gfn2', 'gfnff': '--gfnff', 'gfn2//gfnff': '--gfn2//gfnff'}
MODES = {'default': [], 'quick': ['--quick'], 'squick': ['--squick'], 'mquick': ['--mquick']}
SOLVENT_MODELS = ('alpb', 'gbsa')
SAFE_SOLVENT = re.compile(r'^[A-Za-z0-9][A-Za-z0-9,()_-]{0,40}\Z')  # \Z: `$` would let `water\n` through
#: Thresholds passed through as ``--<key> value`` (all positive reals).
THRESHOLDS = {'energy_window': '--ewin', 'rmsd_threshold': '--rthr', 'energy_threshold': '--ethr'}
PARAMETER_KEYS = {'gfn', 'mode', 'solvent', 'solvent_model', *THRESHOLDS}


def validate_parameters(value, _=None) -> str | None:
    if value is None:
        return None
    params = value.get_dict()
    unknown = set(params) - PARAMETER_KEYS
    if unknown:
        return f'unknown CREST parameters {sorted(unknown)}; allowed: {sorted(PARAMETER_KEYS)}'
    if params.get('gfn', 'gfn2') not in LEVELS:
        return f'`gfn` must be one of {sorted(LEVELS)}'
    if params.get('mode', 'default') not in MODES:
        return f'`mode` must be one of {sorted(MODES)}'
    if 'solvent' in params and not (isinstance(params['solvent'], str) and SAFE_SOLVENT.match(params['solvent'])):
        return f'`solvent` {params["solvent"]!r} is not a valid solvent name'
    if params.get('solvent_model', 'alpb') not in SOLVENT_MODELS:
        return f'`solvent_model` must be one of {SOLVENT_MODELS}'
    for key in THRESHOLDS:
        if key in params and (isinstance(params[key], bool) or not isinstance(params[key], (int, float)) or params[key] <= 0):
            return f'`{key}` must be a positive number, got {params[key]!r}'
    return None


def validate_inputs(inputs, _=None) -> str | None:
    return validate_charge_multiplicity(structure_symbols_positions(inputs['structure'])[0], inputs)


def command_line(input_file: str, params: dict, charge: int, multiplicity: int, threads: int) -> list[str]:
    """CREST's arguments for ``params`` (see :func:`validate_parameters`)."""
    args = [input_file, LEVELS[params.get('gfn', 'gfn2')], '--chrg', str(charge), '--uhf', str(multiplicity - 1)]
    if 'solvent' in params:
        args += [f'--{params.get("solvent_model", "alpb")}', params['solvent']]
    for key, flag in THRESHOLDS.items():
        if key in params:
            args += [flag, str(params[key])]
    args += MODES[params.get('mode', 'default')]
    args += ['-T', str(threads)]
    return args


class CrestCalculation(GrimperiumCalcJob):
    """CREST on one molecule; the parser returns the ensemble as one ``TrajectoryData``."""

    _DEFAULT_INPUT_FILE = 'aiida.xyz'
    _DEFAULT_OUTPUT_FILE = 'crest.out'
    _DEFAULT_PARSER = 'grimperium.crest'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('structure', valid_type=orm.StructureData, help='The starting geometry (best pre-optimised).')
        spec.input('charge', valid_type=orm.Int, default=lambda: orm.Int(0), help='Total charge.')
        spec.input('multiplicity', valid_type=orm.Int, default=lambda: orm.Int(1),
                   help='Spin multiplicity; CREST gets `--uhf multiplicity-1`.')
        spec.input('parameters', valid_type=orm.Dict, required=False, validator=validate_parameters,
                   help='gfn (gfn0/gfn1/gfn2/gfnff/gfn2//gfnff), mode (default/quick/squick/mquick), solvent, '
                        'solvent_model (alpb/gbsa), energy_window (kcal/mol), rmsd_threshold (Angstrom), '
                        'energy_threshold (kcal/mol).')
        spec.inputs.validator = validate_inputs
        spec.output('output_parameters', valid_type=orm.Dict,
                    help='num_conformers, lowest energy, ensemble free energy, population of the lowest, conformers.')
        spec.output('output_ensemble', valid_type=orm.TrajectoryData, required=False,
                    help='The conformers, lowest first (ensemble layout of structures.make_ensemble).')
        spec.output('output_structure', valid_type=orm.StructureData, required=False, help='The lowest conformer.')
        spec.default_output_node = 'output_parameters'
        cls.declare_exit_codes(spec, EXIT_CODES)

    def prepare_for_submission(self, folder):
        params = self.inputs.parameters.get_dict() if 'parameters' in self.inputs else {}
        options = self.inputs.metadata.options
        symbols, positions = structure_symbols_positions(self.inputs.structure)
        folder.create_file_from_filelike(io.StringIO(xyz_text(symbols, positions)), options.input_filename, 'w')
        threads = threads_of(options.resources)

        codeinfo = datastructures.CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = command_line(
            options.input_filename, params, self.inputs.charge.value, self.inputs.multiplicity.value, threads
        )
        codeinfo.stdout_name = options.output_filename
        codeinfo.stderr_name = 'crest.err'
        codeinfo.withmpi = options.withmpi

        calcinfo = datastructures.CalcInfo()
        calcinfo.codes_info = [codeinfo]
        # xtb.out is what CREST's failed initial optimisation leaves behind: the reason is in there.
        calcinfo.retrieve_list = [options.output_filename, 'crest.err', ENERGIES, CONFORMERS, BEST, 'xtb.out']
        calcinfo.prepend_text = threads_prepend_text(options)
        return calcinfo
