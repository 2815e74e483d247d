"""``grimperium.mopac``: MOPAC semi-empirical calculations (PM7 by default) of a molecule or a conformer ensemble.

An ensemble of N conformers becomes **one** input file with N jobs and one MOPAC process: MOPAC runs a PM7
single point in milliseconds, far less than the AiiDA bookkeeping of a process, so one job per conformer
would spend most of a campaign's time on overhead.

``ensembles`` (with ``molecules``: each one's mol_id, charge and multiplicity) runs **many molecules in one
job** (a campaign's batch): each molecule's ``num_conformers`` lowest conformers go into a MOPAC input of its
own, ``<key>.mop``, run one after the other, so that a molecule MOPAC refuses (a missing parameter, an
impossible spin state) stops only its own run. Each molecule's results come out as ``results.<key>``, with its
lowest geometry as the attribute ``lowest_structure`` (symbols, positions in Angstrom): a ``StructureData`` per
molecule is made only where a later step needs one
(:func:`~aiida_grimperium.calculations.functions.structures.lowest_structure`).

Open shells: for a multiplicity above 1 the keyword line gets ``UHF`` unless ``uhf`` is set to false, since
MOPAC's default restricted open-shell treatment stops for many triplets ("SPECIFIED SPIN COMPONENT NOT SPANNED
BY ACTIVE SPACE").
"""
from __future__ import annotations

import re
from typing import Literal

import pydantic
from aiida import orm
from aiida.common import CalcInfo, CodeInfo

from ..parsers.raw.mopac import EXIT_CODES
from ..structures import ensemble_frames, structure_symbols_positions
from ..templating import render
from .base import (GrimperiumCalcJob, charge_multiplicity, molecule_symbols, threads_prepend_text,
                   validate_charge_multiplicity)

#: Spin multiplicity → MOPAC keyword. A singlet needs none (MOPAC's default for an even electron count).
MULTIPLICITY_KEYWORDS = {1: '', 2: 'DOUBLET', 3: 'TRIPLET', 4: 'QUARTET', 5: 'QUINTET', 6: 'SEXTET', 7: 'SEPTET'}

#: Keywords the CalcJob writes itself from its inputs; accepting them as extras would contradict those inputs.
RESERVED_KEYWORDS = re.compile(
    r'^(CHARGE|1SCF|SINGLET|DOUBLET|TRIPLET|QUARTET|QUINTET|SEXTET|SEPTET|CYCLES|ITRY|T|EPS|UHF|'
    r'PM7|PM6|PM6-D3H4|PM6-ORG|AM1|PM3|MNDO|RM1)(=|$)',
    re.IGNORECASE,
)
#: A batch job's MOPAC inputs (``<key>.mop``, unpacked when the job starts) and outputs (``<key>.out``).
INPUTS_ARCHIVE = 'pm7_inputs.tar'
OUTPUTS_ARCHIVE = 'mopac_outputs.tar.gz'
#: One MOPAC keyword. ``\Z`` rather than ``$``, which would accept a trailing newline (an extra input line).
KEYWORD = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_=.+\-,():]*\Z')


class MopacParameters(pydantic.BaseModel):
    """What a MOPAC calculation does; unknown fields are refused (a misspelt option must not be dropped)."""

    model_config = pydantic.ConfigDict(extra='forbid')

    method: Literal['PM7', 'PM6', 'PM6-D3H4', 'PM6-ORG', 'AM1', 'PM3', 'MNDO', 'RM1'] = 'PM7'
    task: Literal['single_point', 'optimization'] = 'single_point'
    #: ``None``: UHF for open shells (multiplicity above 1), RHF otherwise.
    uhf: bool | None = None
    cycles: pydantic.PositiveInt | None = None
    itry: pydantic.PositiveInt | None = None
    time_limit_seconds: pydantic.PositiveFloat | None = None
    solvent_epsilon: pydantic.PositiveFloat | None = None
    keywords: list[str] = []

    @pydantic.field_validator('keywords')
    @classmethod
    def _plain_keywords(cls, keywords: list[str]) -> list[str]:
        for keyword in keywords:
            if not KEYWORD.match(keyword):
                raise ValueError(f'`{keyword}` is not a MOPAC keyword (one word, no spaces, quotes or newlines)')
            if RESERVED_KEYWORDS.match(keyword):
                raise ValueError(f'`{keyword}` is set from the inputs (method, task, charge, multiplicity, ...); '
                                 'use those instead of an extra keyword')
        return keywords

    def keyword_line(self, charge: int, multiplicity: int) -> str:
        words = [self.method]
        if self.task == 'single_point':
            words.append('1SCF')
        words.append(f'CHARGE={charge}')
        words.append(MULTIPLICITY_KEYWORDS[multiplicity])
        if self.uhf or (self.uhf is None and multiplicity > 1):
            words.append('UHF')
        if self.cycles:
            words.append(f'CYCLES={self.cycles}')
        if self.itry:
            words.append(f'ITRY={self.itry}')
        if self.time_limit_seconds:
            words.append(f'T={self.time_limit_seconds:g}')
        if self.solvent_epsilon:
            words.append(f'EPS={self.solvent_epsilon:g}')
        words += self.keywords
        return ' '.join(word for word in words if word)


def validate_parameters(value: orm.Dict | None, _=None) -> str | None:
    if value is None:
        return None
    try:
        MopacParameters.model_validate(value.get_dict())
    except pydantic.ValidationError as exc:
        return f'invalid MOPAC parameters: {exc}'
    return None


def tar_bytes(files: dict[str, str]) -> bytes:
    """An uncompressed tar archive of ``{name: text}`` (the files of a batch job, in one input file)."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w') as archive:
        for name, text in files.items():
            data = text.encode('utf-8')
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def validate_molecules(value) -> str | None:
    """``ensembles`` and ``molecules`` together, with the same keys, and a spin MOPAC has a keyword for."""
    if 'ensembles' not in value or 'molecules' not in value or 'structure' in value or 'ensemble' in value:
        return 'give `ensembles` with `molecules` (and neither `structure` nor `ensemble`)'
    molecules = value['molecules'].get_dict()
    if set(molecules) != set(value['ensembles']):
        return '`molecules` and `ensembles` must have the same keys'
    for key, molecule in molecules.items():
        if int(molecule.get('multiplicity', 1)) not in MULTIPLICITY_KEYWORDS:
            return f'`molecules[{key}]`: MOPAC supports multiplicities 1 to 7'
    return None


def validate_num_conformers(value, _=None) -> str | None:
    if value is not None and value.value < 1:
        return f'`num_conformers` must be at least 1, got {value.value}'
    return None


class MopacCalculation(GrimperiumCalcJob):
    """MOPAC on one molecule (``structure``) or on every conformer of an ``ensemble``, in one process."""

    _DEFAULT_INPUT_FILE = 'aiida.mop'
    _DEFAULT_OUTPUT_FILE = 'aiida.out'  # MOPAC names its output after the input
    _DEFAULT_PARSER = 'grimperium.mopac'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('structure', valid_type=orm.StructureData, required=False,
                   help='The molecule (pbc False). Give either this or `ensemble`.')
        spec.input('ensemble', valid_type=orm.TrajectoryData, required=False,
                   help='Conformers of one molecule (the layout of `structures.make_ensemble`), one MOPAC job each.')
        spec.input('num_conformers', valid_type=orm.Int, required=False, validator=validate_num_conformers,
                   help='Only the first N frames of `ensemble`: its N lowest, in the ensemble layout (lowest first).')
        spec.input_namespace('ensembles', valid_type=orm.TrajectoryData, dynamic=True, required=False,
                             help='Many molecules in one job: the conformer ensemble of each, by key (with `molecules`).')
        spec.input('molecules', valid_type=orm.Dict, required=False,
                   help='With `ensembles`: {key: {mol_id, charge, multiplicity}} of each molecule.')
        spec.input('charge', valid_type=orm.Int, default=lambda: orm.Int(0), help='Total charge.')
        spec.input('multiplicity', valid_type=orm.Int, default=lambda: orm.Int(1), help='Spin multiplicity 2S+1.')
        spec.input('parameters', valid_type=orm.Dict, required=False, validator=validate_parameters,
                   help='MopacParameters: method (PM7), task (single_point|optimization), uhf, cycles, itry, '
                        'time_limit_seconds, solvent_epsilon, keywords (extra MOPAC keywords).')
        spec.inputs.validator = cls.validate_inputs

        spec.output('output_parameters', valid_type=orm.Dict,
                    help='Per-geometry lists (heats_of_formation_kcal_mol, ...) plus the lowest and its index.')
        spec.output('output_structure', valid_type=orm.StructureData, required=False,
                    help='The last geometry of the job with the lowest heat of formation (or of the only job).')
        spec.output('output_ensemble', valid_type=orm.TrajectoryData, required=False,
                    help='The last geometry of every job, in input order, with `heats_of_formation_kcal_mol`.')
        spec.output_namespace('results', valid_type=orm.Dict, dynamic=True, required=False,
                              help='`ensembles` jobs: each molecule\'s PM7 results (the keys of `output_parameters`), by key.')
        spec.default_output_node = 'output_parameters'
        cls.declare_exit_codes(spec, EXIT_CODES)

    @staticmethod
    def validate_inputs(value, _=None) -> str | None:
        """Exactly one geometry input; charge and multiplicity possible for its electron count."""
        if 'ensembles' in value or 'molecules' in value:
            return validate_molecules(value)
        symbols = molecule_symbols(value)
        if symbols is None:
            return 'give exactly one of `structure` and `ensemble`'
        if 'structure' in value and any(value['structure'].pbc):
            return 'MOPAC takes a molecule: the `structure` must have pbc (False, False, False)'
        multiplicity = charge_multiplicity(value)[1]
        if multiplicity not in MULTIPLICITY_KEYWORDS:
            return f'MOPAC supports multiplicities 1 to 7, got {multiplicity}'
        return validate_charge_multiplicity(symbols, value)

    def geometries(self) -> tuple[list[str], list]:
        """Symbols and the list of geometries (one per MOPAC job)."""
        if 'structure' in self.inputs:
            symbols, positions = structure_symbols_positions(self.inputs.structure)
            return symbols, [positions]
        symbols, frames = ensemble_frames(self.inputs.ensemble)
        if 'num_conformers' in self.inputs:
            frames = frames[: self.inputs.num_conformers.value]
        return symbols, list(frames)

    def prepare_for_submission(self, folder):
        parameters = MopacParameters.model_validate(self.inputs.parameters.get_dict() if 'parameters' in self.inputs else {})
        if 'ensembles' in self.inputs:
            # one input file and one archive of outputs for the whole batch (AiiDA stores, hashes and copies a
            # job's files one by one): the inputs go in INPUTS_ARCHIVE, unpacked when the job starts; the parser
            # reads the outputs from the temporary retrieval, and OUTPUTS_ARCHIVE keeps them
            molecules = self.inputs.molecules.get_dict()
            texts, codes_info = {}, []
            for key, ensemble in self.inputs.ensembles.items():
                molecule = molecules[key]
                symbols, frames = ensemble_frames(ensemble)
                if 'num_conformers' in self.inputs:
                    frames = frames[: self.inputs.num_conformers.value]
                keywords = parameters.keyword_line(int(molecule['charge']), int(molecule['multiplicity']))
                texts[f'{key}.mop'] = self.input_text(keywords, parameters, symbols, frames)
                codes_info.append(self.code_info(f'{key}.mop', f'{key}.stdout'))
            with folder.open(INPUTS_ARCHIVE, 'wb') as handle:
                handle.write(tar_bytes(texts))
            outputs = [f'{key}.out' for key in self.inputs.ensembles]
            calcinfo = CalcInfo()
            calcinfo.codes_info = codes_info
            calcinfo.retrieve_list = [OUTPUTS_ARCHIVE]
            calcinfo.retrieve_temporary_list = outputs
            calcinfo.prepend_text = '\n'.join(filter(None, [threads_prepend_text(self.inputs.metadata.options),
                                                            f'tar -xf {INPUTS_ARCHIVE}']))
            calcinfo.append_text = f'tar -czf {OUTPUTS_ARCHIVE} ' + ' '.join(outputs)
            return calcinfo

        keywords = parameters.keyword_line(self.inputs.charge.value, self.inputs.multiplicity.value)
        symbols, frames = self.geometries()
        self.write_input(folder, self.options.input_filename, keywords, parameters, symbols, frames)
        calcinfo = CalcInfo()
        calcinfo.codes_info = [self.code_info(self.options.input_filename, 'mopac.stdout')]
        calcinfo.retrieve_list = [self.options.output_filename, 'mopac.stdout']
        calcinfo.prepend_text = threads_prepend_text(self.inputs.metadata.options)  # MOPAC is OpenMP + OpenBLAS
        return calcinfo

    @staticmethod
    def write_input(folder, name: str, keywords: str, parameters: MopacParameters, symbols, frames) -> None:
        """One MOPAC input file with a job per geometry of ``frames``."""
        with folder.open(name, 'w', encoding='utf-8') as handle:
            handle.write(MopacCalculation.input_text(keywords, parameters, symbols, frames))

    @staticmethod
    def input_text(keywords: str, parameters: MopacParameters, symbols, frames) -> str:
        """The text of a MOPAC input with a job per geometry of ``frames``."""
        jobs = [
            {
                'title': f'geometry {index + 1} of {len(frames)}',
                'atoms': [{'symbol': s, 'x': p[0], 'y': p[1], 'z': p[2]} for s, p in zip(symbols, frame)],
            }
            for index, frame in enumerate(frames)
        ]
        flag = 1 if parameters.task == 'optimization' else 0
        return render('mopac/input.mop.j2', jobs=jobs, keywords=keywords, flag=flag)

    def code_info(self, input_name: str, stdout: str) -> CodeInfo:
        codeinfo = CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = [input_name]
        codeinfo.stdout_name = stdout
        return codeinfo
