"""``grimperium.xtb``: single points and optimisations with xtb (GFN0/1/2-xTB, GFN-FF), one or many geometries.

A ``structure`` runs as one xtb call; an ``ensemble`` (the layout of :func:`aiida_grimperium.structures.make_ensemble`)
runs as **one job** with one xtb call per frame (one ``CodeInfo`` each, run one after the other), each in its own
``--namespace confNNNN`` so their files do not collide. An xtb call on a small molecule takes a fraction of a
second, so batching saves the per-process overhead of AiiDA that one job per conformer would cost.

``smiles`` (with ``embedding``) is an ensemble too: the job embeds the molecule's RDKit ETKDG conformers itself
(:func:`aiida_grimperium.ensembles.embed_conformers`, deterministic for a seed) and keeps them as its input files.
``refine`` has the parser keep the conformers a search keeps (energy window, RMSD de-duplication, top-N,
Boltzmann weights: :func:`aiida_grimperium.ensembles.refine`). With both, the RDKit + xtb conformer search of a
molecule is this one process, where it was three (embedding, job, refinement), with the same provenance: the
SMILES and the settings go in, the conformers the job started from are in its repository, and the refined
ensemble comes out of the job.

``molecules`` does the same for **many molecules in one job** (a campaign's batch): each molecule's conformers
run under ``--namespace <key>_cNNN`` with its own charge and spin, and the parser returns each molecule's
refined ensemble as ``ensembles.<key>`` (attribute ``mol_id``) and its summary under
``output_parameters['molecules'][key]``. A molecule that RDKit cannot embed, or whose conformers all fail,
fails alone: the others still come out.
"""
from __future__ import annotations

import re

from aiida import orm
from aiida.common import datastructures

from ..parsers.raw.xtb import EXIT_CODES, STDERR_NAME
from ..structures import ensemble_frames, structure_symbols_positions
from .base import GrimperiumCalcJob, molecule_symbols, threads_of, threads_prepend_text, validate_charge_multiplicity

METHODS = {'gfn0': ['--gfn', '0'], 'gfn1': ['--gfn', '1'], 'gfn2': ['--gfn', '2'], 'gfnff': ['--gfnff']}
TASKS = ('single_point', 'optimization')
#: xtb's optimisation levels, loosest first (``verytight`` is accepted for ``vtight``).
OPT_LEVELS = ('crude', 'sloppy', 'loose', 'lax', 'normal', 'tight', 'vtight', 'extreme')
SOLVENT_MODELS = ('alpb', 'gbsa')
#: Solvent names are passed to xtb on the command line: letters, digits and a few separators only.
SAFE_SOLVENT = re.compile(r'^[A-Za-z0-9][A-Za-z0-9,()_-]{0,40}\Z')  # \Z: `$` would let `water\n` through
PARAMETER_KEYS = {
    'method', 'task', 'opt_level', 'solvent', 'solvent_model', 'accuracy', 'iterations', 'cycles',
    'electronic_temperature',
}
#: ``embedding``: RDKit ETKDG conformers of ``smiles`` (``prune_rmsd`` in Angstrom).
EMBEDDING_DEFAULTS = {'num_conformers': 10, 'seed': 0xF00D, 'prune_rmsd': 0.1}
#: ``refine``: the arguments of :func:`aiida_grimperium.ensembles.refine` (kcal/mol, Angstrom, K).
REFINE_KEYS = {'energy_window', 'rmsd_threshold', 'mirror_images', 'top_n', 'temperature', 'engine'}
#: The input file (kept in the job's repository) that lists the molecules RDKit could not embed, with its reason.
EMBEDDING_ERRORS_FILE = 'embedding_errors.json'
#: A ``molecules`` job's conformers (one XYZ frame per xtb call, named by its namespace), and its outputs.
CONFORMERS_FILE = 'conformers.xyz'
OUTPUTS_ARCHIVE = 'xtb_outputs.tar.gz'
#: Shell lines of a ``molecules`` job: one XYZ file per frame of CONFORMERS_FILE before the calls (the frame's
#: comment line is its name), the stdout of every call into OUTPUTS_ARCHIVE after them.
SPLIT_CONFORMERS = ("awk 'left == 0 {n = $1; getline name; file = name \".xyz\"; print n > file; print name > file; "
                    "left = n; next} {print > file; left--; if (left == 0) close(file)}' " + CONFORMERS_FILE)
ARCHIVE_OUTPUTS = f'tar -czf {OUTPUTS_ARCHIVE} *_c*.out'


def namespace(index: int) -> str:
    """The ``--namespace`` (and file stem) of frame ``index`` (0-based) of an ensemble."""
    return f'conf{index + 1:04d}'


def molecule_namespace(key: str, index: int) -> str:
    """The ``--namespace`` of conformer ``index`` (0-based) of molecule ``key`` in a ``molecules`` job."""
    return f'{key}_c{index + 1:03d}'


def validate_molecules(value, _=None) -> str | None:
    """``molecules``: ``{key: {mol_id, smiles, charge, multiplicity}}`` with keys usable as output link labels."""
    if value is None:
        return None
    molecules = value.get_dict()
    if not molecules:
        return '`molecules` is empty'
    for key, molecule in molecules.items():
        if not re.fullmatch(r'[a-z][a-z0-9]{0,30}', key):
            return f'`molecules` key {key!r}: use lower-case letters and digits (it names the outputs)'
        missing = {'mol_id', 'smiles', 'charge', 'multiplicity'} - set(molecule)
        if missing:
            return f'`molecules[{key}]` misses {sorted(missing)}'
    return None


def validate_parameters(value, _=None) -> str | None:
    """Check the ``parameters`` Dict: known keys, allowed values and types."""
    if value is None:
        return None
    params = value.get_dict()
    unknown = set(params) - PARAMETER_KEYS
    if unknown:
        return f'unknown xtb parameters {sorted(unknown)}; allowed: {sorted(PARAMETER_KEYS)}'
    if str(params.get('method', 'gfn2')).lower() not in METHODS:
        return f'`method` must be one of {sorted(METHODS)}, got {params.get("method")!r}'
    if params.get('task', 'single_point') not in TASKS:
        return f'`task` must be one of {TASKS}, got {params.get("task")!r}'
    level = params.get('opt_level', 'normal')
    if level not in OPT_LEVELS and level != 'verytight':
        return f'`opt_level` must be one of {OPT_LEVELS}, got {level!r}'
    if 'solvent' in params and not (isinstance(params['solvent'], str) and SAFE_SOLVENT.match(params['solvent'])):
        return f'`solvent` {params["solvent"]!r} is not a valid solvent name'
    if params.get('solvent_model', 'alpb') not in SOLVENT_MODELS:
        return f'`solvent_model` must be one of {SOLVENT_MODELS}'
    for key, kind in (('accuracy', (int, float)), ('electronic_temperature', (int, float)), ('iterations', int), ('cycles', int)):
        if key in params and (isinstance(params[key], bool) or not isinstance(params[key], kind) or params[key] <= 0):
            return f'`{key}` must be a positive number, got {params[key]!r}'
    return None


def validate_inputs(inputs, _=None) -> str | None:
    """Exactly one of ``structure``/``ensemble``/``smiles``/``molecules``, and a charge/multiplicity some electron
    count allows (a ``molecules`` job checks each molecule when it embeds it)."""
    if sum(name in inputs for name in ('structure', 'ensemble', 'smiles', 'molecules')) != 1:
        return 'give exactly one of `structure`, `ensemble`, `smiles` or `molecules`'
    if 'embedding' in inputs and not ('smiles' in inputs or 'molecules' in inputs):
        return '`embedding` is how the conformers of `smiles` are made: give it with `smiles` or `molecules`'
    if 'molecules' in inputs:
        return None
    if 'refine' in inputs and 'structure' in inputs:
        return '`refine` selects among conformers: give it with `ensemble` or `smiles`'
    for name, allowed in (('embedding', EMBEDDING_DEFAULTS.keys()), ('refine', REFINE_KEYS)):
        unknown = set(inputs[name].keys()) - set(allowed) if name in inputs else set()
        if unknown:
            return f'unknown `{name}` keys {sorted(unknown)}; allowed: {sorted(allowed)}'
    if 'smiles' in inputs:
        from ..chemistry import smiles_symbols

        try:
            symbols = smiles_symbols(inputs['smiles'].value)
        except ValueError as exc:
            return str(exc)
    else:
        symbols = molecule_symbols(inputs)
    return validate_charge_multiplicity(symbols, inputs)


def command_line(params: dict, charge: int, multiplicity: int, threads: int) -> list[str]:
    """xtb's arguments after the coordinate file, for ``params`` (see :func:`validate_parameters`)."""
    args = list(METHODS[str(params.get('method', 'gfn2')).lower()])
    if params.get('task', 'single_point') == 'optimization':
        level = params.get('opt_level', 'normal')
        args += ['--opt', 'vtight' if level == 'verytight' else level]
        if 'cycles' in params:
            args += ['--cycles', str(params['cycles'])]
    args += ['--chrg', str(charge), '--uhf', str(multiplicity - 1)]
    if 'solvent' in params:
        args += [f'--{params.get("solvent_model", "alpb")}', params['solvent']]
    if 'accuracy' in params:
        args += ['--acc', str(params['accuracy'])]
    if 'iterations' in params:
        args += ['--iterations', str(params['iterations'])]
    if 'electronic_temperature' in params:
        args += ['--etemp', str(params['electronic_temperature'])]
    args += ['--parallel', str(threads)]
    return args


class XtbCalculation(GrimperiumCalcJob):
    """xtb on one molecule (``structure``) or on every frame of an ``ensemble`` in one job."""

    _DEFAULT_INPUT_FILE = 'aiida.xyz'
    _DEFAULT_OUTPUT_FILE = 'aiida.out'
    _DEFAULT_PARSER = 'grimperium.xtb'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('structure', valid_type=orm.StructureData, required=False, help='The molecule.')
        spec.input('ensemble', valid_type=orm.TrajectoryData, required=False,
                   help='Several geometries of one molecule (ensemble layout), all run in this one job.')
        spec.input('smiles', valid_type=orm.Str, required=False,
                   help='The molecule as SMILES: the job embeds its RDKit conformers (see `embedding`) and runs them all.')
        spec.input('molecules', valid_type=orm.Dict, required=False, validator=validate_molecules,
                   help='Many molecules in one job: {key: {mol_id, smiles, charge, multiplicity}}; each is embedded '
                        'as `smiles` is, and comes out as `ensembles.<key>`.')
        spec.input('embedding', valid_type=orm.Dict, required=False,
                   help=f'With `smiles`: num_conformers, seed, prune_rmsd (Angstrom); defaults {EMBEDDING_DEFAULTS}.')
        spec.input('refine', valid_type=orm.Dict, required=False,
                   help='With many geometries: `output_ensemble` keeps only what this selects: energy_window (kcal/mol), '
                        'rmsd_threshold (Angstrom), mirror_images, top_n; temperature (K) of the Boltzmann weights; '
                        'engine (the ensemble\'s label).')
        spec.input('charge', valid_type=orm.Int, default=lambda: orm.Int(0), help='Total charge.')
        spec.input('multiplicity', valid_type=orm.Int, default=lambda: orm.Int(1),
                   help='Spin multiplicity 2S+1; xtb gets `--uhf multiplicity-1` unpaired electrons.')
        spec.input('parameters', valid_type=orm.Dict, required=False, validator=validate_parameters,
                   help='method (gfn0/gfn1/gfn2/gfnff), task (single_point/optimization), opt_level, solvent, '
                        'solvent_model (alpb/gbsa), accuracy, iterations, cycles, electronic_temperature.')
        spec.inputs.validator = validate_inputs
        spec.output('output_parameters', valid_type=orm.Dict,
                    help='energy (eV), total_energy_hartree, homo_lumo_gap_ev, gradient norm, convergence flags; '
                         'for an ensemble per-geometry lists and the lowest.')
        spec.output('output_structure', valid_type=orm.StructureData, required=False,
                    help='The optimised molecule (task optimization on a structure); with `refine`, its lowest conformer.')
        spec.output('output_ensemble', valid_type=orm.TrajectoryData, required=False,
                    help='The geometries that succeeded with their energies, lowest first (ensemble or smiles input); '
                         'with `refine`, those it keeps.')
        spec.output_namespace('ensembles', valid_type=orm.TrajectoryData, dynamic=True, required=False,
                              help='`molecules` jobs: the refined ensemble of each molecule that succeeded, by key.')
        spec.default_output_node = 'output_parameters'
        cls.declare_exit_codes(spec, EXIT_CODES)

    def prepare_for_submission(self, folder):
        params = self.inputs.parameters.get_dict() if 'parameters' in self.inputs else {}
        options = self.inputs.metadata.options
        threads = threads_of(options.resources)
        args = command_line(params, self.inputs.charge.value, self.inputs.multiplicity.value, threads)
        optimise = params.get('task', 'single_point') == 'optimization'
        from ..chemistry import xyz_text

        codes_info, retrieve, temporary = [], [], []
        if 'molecules' in self.inputs:
            codes_info, retrieve, temporary = self._prepare_molecules(folder, params, threads)
        elif 'structure' in self.inputs:
            symbols, positions = structure_symbols_positions(self.inputs.structure)
            folder.create_file_from_filelike(_text(xyz_text(symbols, positions)), options.input_filename, 'w')
            codes_info.append(self._code_info([options.input_filename, *args], options.output_filename, STDERR_NAME))
            retrieve += [options.output_filename, STDERR_NAME] + (['xtbopt.xyz'] if optimise else [])
        else:
            symbols, frames = self._conformers()
            for index, frame in enumerate(frames):
                name = namespace(index)
                folder.create_file_from_filelike(_text(xyz_text(symbols, frame, name)), f'{name}.xyz', 'w')
                codes_info.append(self._code_info([f'{name}.xyz', *args, '--namespace', name], f'{name}.out', f'{name}.err'))
                # Only the outputs are kept: stderr is read by the parser, and the optimised geometries go into
                # `output_ensemble`. Ten conformers would otherwise be thirty files to store, hash and read back.
                retrieve.append(f'{name}.out')
                temporary += [f'{name}.err'] + ([f'{name}.xtbopt.xyz'] if optimise else [])

        calcinfo = datastructures.CalcInfo()
        calcinfo.codes_info = codes_info
        calcinfo.codes_run_mode = datastructures.CodeRunMode.SERIAL
        calcinfo.retrieve_list = retrieve
        calcinfo.retrieve_temporary_list = temporary
        calcinfo.prepend_text = threads_prepend_text(options)
        if 'molecules' in self.inputs:
            calcinfo.prepend_text = '\n'.join(filter(None, [calcinfo.prepend_text, SPLIT_CONFORMERS]))
            calcinfo.append_text = ARCHIVE_OUTPUTS
        return calcinfo

    def _prepare_molecules(self, folder, params: dict, threads: int):
        """One xtb call per conformer of every molecule, each with the molecule's charge and spin.

        A batch is hundreds of xtb calls: their inputs go in one file, ``conformers.xyz`` (split into one file
        per call at the start of the job), and their outputs come back as one archive, ``xtb_outputs.tar.gz``
        (the parser reads the files themselves from the temporary retrieval). AiiDA stores, hashes and copies
        every file of a job one by one: two files instead of a thousand.
        """
        import json

        from ..chemistry import check_charge_multiplicity, xyz_text
        from ..ensembles import embed_conformers

        optimise = params.get('task', 'single_point') == 'optimization'
        settings = {**EMBEDDING_DEFAULTS, **(self.inputs.embedding.get_dict() if 'embedding' in self.inputs else {})}
        codes_info, frames_text, errors = [], [], {}
        for key, molecule in self.inputs.molecules.get_dict().items():
            charge, multiplicity = int(molecule['charge']), int(molecule['multiplicity'])
            try:  # a molecule RDKit cannot embed fails alone; the reason is kept for the parser
                symbols, frames = embed_conformers(molecule['smiles'], int(settings['num_conformers']),
                                                   int(settings['seed']), prune_rmsd=float(settings['prune_rmsd']))
                check_charge_multiplicity(symbols, charge, multiplicity)
            except (ValueError, RuntimeError) as exc:
                errors[key] = str(exc)
                continue
            args = command_line(params, charge, multiplicity, threads)
            for index, frame in enumerate(frames):
                name = molecule_namespace(key, index)
                frames_text.append(xyz_text(symbols, frame, name))
                codes_info.append(self._code_info([f'{name}.xyz', *args, '--namespace', name], f'{name}.out', f'{name}.err'))
        folder.create_file_from_filelike(_text(''.join(frames_text)), CONFORMERS_FILE, 'w')
        folder.create_file_from_filelike(_text(json.dumps(errors, indent=1)), EMBEDDING_ERRORS_FILE, 'w')
        temporary = ['*_c*.out', '*_c*.err'] + (['*_c*.xtbopt.xyz'] if optimise else [])
        return codes_info, [OUTPUTS_ARCHIVE], temporary

    def _conformers(self):
        """Symbols and frames of the ensemble: the input's, or RDKit's conformers of ``smiles``."""
        if 'ensemble' in self.inputs:
            return ensemble_frames(self.inputs.ensemble)
        from ..ensembles import embed_conformers

        settings = {**EMBEDDING_DEFAULTS, **(self.inputs.embedding.get_dict() if 'embedding' in self.inputs else {})}
        return embed_conformers(self.inputs.smiles.value, int(settings['num_conformers']), int(settings['seed']),
                                prune_rmsd=float(settings['prune_rmsd']))

    def _code_info(self, cmdline: list[str], stdout: str, stderr: str) -> datastructures.CodeInfo:
        info = datastructures.CodeInfo()
        info.code_uuid = self.inputs.code.uuid
        info.cmdline_params = cmdline
        info.stdout_name = stdout
        info.stderr_name = stderr
        info.withmpi = self.inputs.metadata.options.withmpi
        return info


def _text(content: str):
    import io

    return io.StringIO(content)
