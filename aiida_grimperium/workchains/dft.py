"""``grimperium.dft``: the common relax interface of aiida-common-workflows for pw.x, VASP and CRYSTAL.

Inputs and outputs are those of aiida-common-workflows' ``CommonRelaxInputGenerator.get_builder`` and
``CommonRelaxWorkChain`` (``structure``, ``engines.relax.code/options``, ``protocol``, ``relax_type``,
``electronic_type``, ``spin_type``, ``magnetization_per_site``, ``threshold_forces``, ``threshold_stress`` ->
``relaxed_structure``, ``total_energy``, ``forces``, ``stress``, ``total_magnetization``), plus this package's
``charge``, ``multiplicity`` and ``band_gap``. The code's ``default_calc_job_plugin`` picks the engine
(:data:`ENGINES`); one small function per engine (:func:`pw_inputs`, :func:`vasp_inputs`,
:func:`crystal_inputs`) translates the common inputs into the keyword arguments and builder-shaped ``overrides``
of its base workchain's ``get_builder_from_protocol``, or raises :class:`Unmappable`, which the input validator
turns into a refusal at submission. Every output is a CalcJob's output or made by a calcfunction
(:mod:`aiida_grimperium.calculations.functions.dft_outputs`).
"""
from __future__ import annotations

import dataclasses
import importlib

from aiida import orm
from aiida.engine import ToContext, WorkChain

from ..calculations.functions.dft_outputs import (EV_ANGSTROM3_TO_KBAR, energy_gap_magnetization, pw_forces_and_stress,
                                                 vasp_forces_and_stress, vasp_site_order)
from ..chemistry import HARTREE_TO_EV

RY_TO_EV = 13.605693122994
BOHR_TO_ANGSTROM = 0.529177210903
#: The common protocol names -> this package's protocol names.
PROTOCOLS = {'fast': 'fast', 'moderate': 'balanced', 'precise': 'stringent'}
#: This package's protocol names -> the common ones (for callers holding this package's names).
COMMON_PROTOCOLS = {package: common for common, package in PROTOCOLS.items()}
RELAX_TYPES = ('none', 'positions', 'volume', 'shape', 'cell', 'positions_cell', 'positions_volume', 'positions_shape')
ELECTRONIC_TYPES = ('metal', 'insulator')
SPIN_TYPES = ('none', 'collinear')
#: CRYSTAL SMEAR (Hartree) for electronic_type metal: the protocols have none, CRYSTAL's default is no smearing.
CRYSTAL_METAL_SMEAR = 0.005
#: CRYSTAL SPINLOCK cycles for a multiplicity: locked for the whole SCF.
CRYSTAL_SPINLOCK_CYCLES = 999


class Unmappable(ValueError):
    """A common input this engine cannot honour; the message names the engine and the value."""


@dataclasses.dataclass
class CommonInputs:
    """The common inputs as plain Python values (what the translation functions read)."""

    structure: orm.StructureData | None  # None: validated before the structure exists (a pipeline's SMILES)
    relax_type: str = 'positions'
    electronic_type: str | None = None
    spin_type: str = 'none'
    magnetization_per_site: list | None = None
    threshold_forces: float | None = None
    threshold_stress: float | None = None
    charge: int = 0
    multiplicity: int = 1

    @property
    def periodic(self) -> bool:
        return self.structure is None or any(self.structure.pbc)

    @property
    def relaxing(self) -> bool:
        return self.relax_type != 'none'

    @property
    def spin_polarised(self) -> bool:
        return self.spin_type == 'collinear' or self.multiplicity != 1

    @property
    def electronic(self) -> str:
        """As aiida-common-workflows: metal unless told otherwise, for extended systems; a molecule: insulator."""
        return self.electronic_type or ('metal' if self.periodic else 'insulator')

    @classmethod
    def from_namespace(cls, value) -> CommonInputs:
        plain = {f.name: value[f.name] for f in dataclasses.fields(cls) if value.get(f.name) is not None}
        plain.setdefault('structure', None)
        for name, node in plain.items():
            if name == 'magnetization_per_site':
                plain[name] = list(node.get_list())
            elif name != 'structure':
                plain[name] = node.value
        return cls(**plain)


# -- translation: common inputs -> (kwargs, builder-shaped overrides) of each base workchain ---------------------

def _refuse(engine: str, name: str, value, why: str):
    raise Unmappable(f'{engine}: {name} `{value}` cannot be mapped: {why}')


def pw_inputs(common: CommonInputs) -> tuple[dict, dict]:
    """pw.x: scf / relax / vc-relax (cell_dofree all or shape); thresholds in Ry/bohr and kbar."""
    calculations = {'none': 'scf', 'positions': 'relax', 'positions_cell': 'vc-relax', 'positions_shape': 'vc-relax'}
    if common.relax_type not in calculations:
        _refuse('pw.x', 'relax_type', common.relax_type, f'pw.x relaxes {sorted(calculations)} only (fixed ions '
                'with a moving cell, or a volume-only cell, are not generated)')
    control = {'calculation': calculations[common.relax_type]}
    parameters = {'CONTROL': control}
    if common.relax_type == 'positions_shape':
        parameters['CELL'] = {'cell_dofree': 'shape'}
    if common.threshold_forces is not None:
        control['forc_conv_thr'] = common.threshold_forces * BOHR_TO_ANGSTROM / RY_TO_EV
    if common.threshold_stress is not None:
        parameters.setdefault('CELL', {})['press_conv_thr'] = common.threshold_stress * EV_ANGSTROM3_TO_KBAR
    kwargs = {'electronic_type': common.electronic, 'spin_type': 'collinear' if common.spin_polarised else 'none',
              'charge': common.charge, 'multiplicity': common.multiplicity}
    if common.magnetization_per_site is not None:
        moments = {}
        for site, moment in zip(common.structure.sites, common.magnetization_per_site):
            if moments.setdefault(site.kind_name, moment) != moment:
                _refuse('pw.x', 'magnetization_per_site', common.magnetization_per_site,
                        f'sites of kind {site.kind_name} differ; give them different kind names')
        kwargs['initial_magnetic_moments'] = moments
    return kwargs, {'pw': {'parameters': parameters}}


def vasp_inputs(common: CommonInputs) -> tuple[dict, dict]:
    """VASP: ISIF per relax type, EDIFFG = -threshold_forces, ISPIN/MAGMOM/NUPDOWN; the protocol's Gaussian
    smearing (ISMEAR 0, small SIGMA) serves metals and insulators alike, as VASP's manual advises."""
    isif = {'positions': 2, 'positions_cell': 3, 'positions_shape': 4, 'shape': 5, 'cell': 6, 'volume': 7}
    if common.relaxing and common.relax_type not in isif:
        _refuse('VASP', 'relax_type', common.relax_type, f'ISIF offers {sorted(isif)} (and none)')
    if common.threshold_stress is not None:
        _refuse('VASP', 'threshold_stress', common.threshold_stress, 'VASP has no stress convergence criterion')
    if common.charge:
        _refuse('VASP', 'charge', common.charge, 'VASP takes NELECT (the POTCARs\' valence electrons minus the '
                "charge): give it in overrides {'vasp': {'parameters': {'NELECT': ...}}}")
    incar = {'ISPIN': 2 if common.spin_polarised else 1}
    if common.magnetization_per_site is not None:  # VASP's site order: grouped by element (calculations/vasp.py)
        symbols = [common.structure.get_kind(site.kind_name).symbol for site in common.structure.sites]
        incar['MAGMOM'] = [common.magnetization_per_site[i] for i in vasp_site_order(symbols)]
    if common.multiplicity != 1:
        incar['NUPDOWN'] = common.multiplicity - 1
    relax = {}
    if common.relaxing:
        relax['ISIF'] = isif[common.relax_type]
        if common.threshold_forces is not None:
            relax['EDIFFG'] = -common.threshold_forces
    return {'relax': common.relaxing}, {'vasp': {'parameters': incar}, 'relax_parameters': relax}


def crystal_inputs(common: CommonInputs) -> tuple[dict, dict]:
    """CRYSTAL: OPTGEOM ATOMONLY / FULLOPTG / CELLONLY, TOLDEG from threshold_forces, SMEAR for metals,
    SPIN and SPINLOCK for the multiplicity."""
    optgeom_types = {'positions': 'ATOMONLY', 'positions_cell': 'FULLOPTG', 'cell': 'CELLONLY'}
    if common.relaxing and common.relax_type not in optgeom_types:
        _refuse('CRYSTAL', 'relax_type', common.relax_type, f'OPTGEOM offers {sorted(optgeom_types)} (and none)')
    if common.threshold_stress is not None:
        _refuse('CRYSTAL', 'threshold_stress', common.threshold_stress, 'OPTGEOM has no stress criterion')
    if common.charge:
        _refuse('CRYSTAL', 'charge', common.charge, 'grimperium.crystal does not write CHARGED')
    if common.magnetization_per_site is not None:
        _refuse('CRYSTAL', 'magnetization_per_site', common.magnetization_per_site,
                'grimperium.crystal does not write ATOMSPIN')
    parameters = {}
    if common.electronic == 'metal':
        parameters['smear'] = CRYSTAL_METAL_SMEAR
    if common.spin_polarised:
        parameters['spin'] = True
    if common.multiplicity != 1:
        parameters['spinlock'] = [common.multiplicity - 1, CRYSTAL_SPINLOCK_CYCLES]
    overrides = {'crystal': {'parameters': parameters}}
    if common.relaxing:
        # CRYSTAL converges when the RMS gradient < TOLDEG and the largest < 1.5 TOLDEG (Hartree/bohr)
        optgeom = {'type': optgeom_types[common.relax_type]}
        if common.threshold_forces is not None:
            optgeom['toldeg'] = common.threshold_forces * BOHR_TO_ANGSTROM / HARTREE_TO_EV / 1.5
        overrides['optgeom'] = optgeom
    return {'relax': common.relaxing}, overrides


@dataclasses.dataclass(frozen=True)
class Engine:
    name: str
    module: str
    workchain: str
    translate: object

    def base_workchain(self):
        return getattr(importlib.import_module(self.module), self.workchain)


_PW = Engine('pw.x', 'aiida_grimperium.workchains.pw', 'PwBaseWorkChain', pw_inputs)
#: ``default_calc_job_plugin`` of the code -> its engine (base workchains are imported only when used).
ENGINES = {
    'grimperium.pw': _PW,
    'quantumespresso.pw': _PW,
    'grimperium.vasp': Engine('VASP', 'aiida_grimperium.workchains.vasp', 'VaspBaseWorkChain', vasp_inputs),
    'grimperium.crystal': Engine('CRYSTAL', 'aiida_grimperium.workchains.crystal', 'CrystalBaseWorkChain',
                                 crystal_inputs),
}


def engine_for(code: orm.AbstractCode) -> Engine:
    return ENGINES[code.default_calc_job_plugin]


def _choice(name: str, allowed):
    def validate(node, _):
        if node is not None and node.value not in allowed:
            return f'{name} `{node.value}` is not one of {list(allowed)}'
        return None
    return validate


def validate_code(code, _):
    if code is not None and code.default_calc_job_plugin not in ENGINES:
        return f'the code runs `{code.default_calc_job_plugin}`; grimperium.dft runs {sorted(ENGINES)}'
    return None


def validate_protocol(node, _):
    if node is not None and node.value not in PROTOCOLS:
        common = COMMON_PROTOCOLS.get(node.value)
        hint = f' (this package\'s `{node.value}` is `{common}`)' if common else ''
        return f'protocol `{node.value}` is not one of {list(PROTOCOLS)}{hint}'
    return None


def requested_code(namespace) -> orm.AbstractCode | None:
    """The code of a ``grimperium.dft`` input namespace (``engines.relax.code``); ``None``: no DFT asked for."""
    return namespace.get('engines', {}).get('relax', {}).get('code')


def validate_common_inputs(value, _=None) -> str | None:
    """Refuse what the engine of ``engines.relax.code`` cannot map. Also for a namespace without ``structure``
    (a pipeline validating before its structure exists): the per-site checks then wait for the launch."""
    code = requested_code(value)
    if code is None or code.default_calc_job_plugin not in ENGINES:
        return None  # the ports' own validators report these
    common = CommonInputs.from_namespace(value)
    if common.structure is None:
        common.magnetization_per_site = None
    if common.magnetization_per_site is not None:
        if not common.spin_polarised:
            return 'magnetization_per_site needs spin_type `collinear`'
        if len(common.magnetization_per_site) != len(common.structure.sites):
            return f'magnetization_per_site has {len(common.magnetization_per_site)} values for ' \
                   f'{len(common.structure.sites)} sites'
    if not common.periodic and common.relax_type not in ('none', 'positions'):
        return f'relax_type `{common.relax_type}`: a molecule (no periodic boundary) has no cell to relax'
    try:
        engine_for(code).translate(common)
    except Unmappable as exc:
        return str(exc)
    return None


class DftWorkChain(WorkChain):
    """Relax (or not) ``structure`` with whichever DFT code ``engines.relax.code`` is; common inputs and outputs."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        to_str = lambda v: orm.Str(getattr(v, 'value', v))  # noqa: E731 -- an Enum of aiida-common-workflows too
        spec.input('structure', valid_type=orm.StructureData, help='The structure to compute (and relax).')
        spec.input_namespace('engines.relax', help='The code and its calculation options.')
        spec.input('engines.relax.code', valid_type=orm.AbstractCode, serializer=orm.load_code, validator=validate_code,
                   help='A pw.x (grimperium.pw or quantumespresso.pw), grimperium.vasp or grimperium.crystal code.')
        spec.input('engines.relax.options', valid_type=dict, non_db=True, required=False,
                   help='metadata.options of the calculations, merged onto the protocol\'s.')
        spec.input('protocol', valid_type=orm.Str, serializer=to_str, default=lambda: orm.Str('moderate'),
                   validator=validate_protocol, help='fast, moderate or precise (fast, balanced, stringent here).')
        spec.input('relax_type', valid_type=orm.Str, serializer=to_str, default=lambda: orm.Str('positions'),
                   validator=_choice('relax_type', RELAX_TYPES), help=f'One of {RELAX_TYPES}.')
        spec.input('electronic_type', valid_type=orm.Str, serializer=to_str, required=False,
                   validator=_choice('electronic_type', ELECTRONIC_TYPES),
                   help='metal or insulator; default metal for a crystal, insulator for a molecule.')
        spec.input('spin_type', valid_type=orm.Str, serializer=to_str, default=lambda: orm.Str('none'),
                   validator=_choice('spin_type', SPIN_TYPES), help='none or collinear.')
        spec.input('magnetization_per_site', valid_type=orm.List, serializer=orm.to_aiida_type, required=False,
                   help='Initial magnetic moment (μB) of each site; needs spin_type collinear.')
        spec.input('threshold_forces', valid_type=orm.Float, serializer=orm.to_aiida_type, required=False,
                   help='Largest force at convergence (eV/Å); default: the protocol\'s.')
        spec.input('threshold_stress', valid_type=orm.Float, serializer=orm.to_aiida_type, required=False,
                   help='Stress at convergence (eV/Å^3); default: the protocol\'s.')
        spec.input('charge', valid_type=orm.Int, serializer=orm.to_aiida_type, required=False,
                   help='Total charge (pw.x only).')
        spec.input('multiplicity', valid_type=orm.Int, serializer=orm.to_aiida_type, required=False,
                   help='Spin multiplicity 2S+1 (pw.x, VASP NUPDOWN, CRYSTAL SPINLOCK).')
        spec.input('overrides', valid_type=orm.Dict, required=False,
                   help='Engine-specific, shaped like its base workchain\'s builder; merged last.')
        spec.inputs.validator = validate_common_inputs
        spec.outline(cls.run_engine, cls.inspect_engine, cls.results)
        spec.output('relaxed_structure', valid_type=orm.StructureData, required=False,
                    help='The relaxed structure (not for relax_type none).')
        spec.output('total_energy', valid_type=orm.Float, help='Total energy in eV.')
        spec.output('forces', valid_type=orm.ArrayData, required=False,
                    help='`forces`: final forces in eV/Å, in the order of the input sites.')
        spec.output('stress', valid_type=orm.ArrayData, required=False, help='`stress`: final stress in eV/Å^3.')
        spec.output('total_magnetization', valid_type=orm.Float, required=False, help='In μB (spin-polarised runs).')
        spec.output('band_gap', valid_type=orm.Float, required=False, help='Band or HOMO-LUMO gap in eV.')
        spec.output('remote_folder', valid_type=orm.RemoteData, required=False, help='Folder of the last calculation.')
        spec.exit_code(400, 'ERROR_SUB_PROCESS_FAILED',
                       message='The `{cls}` workchain failed with exit status {exit_status}: {message}')
        spec.exit_code(401, 'ERROR_NO_ENERGY', message='The DFT code finished without a total energy.')
        spec.exit_code(402, 'ERROR_NO_RELAXED_STRUCTURE', message='The relaxation finished without a structure.')

    def run_engine(self):
        from ..protocols import deep_merge

        code = self.inputs.engines.relax.code
        engine = engine_for(code)
        kwargs, overrides = engine.translate(CommonInputs.from_namespace(self.inputs))
        if 'overrides' in self.inputs:
            overrides = deep_merge(overrides, self.inputs.overrides.get_dict())
        workchain = engine.base_workchain()
        builder = workchain.get_builder_from_protocol(
            code, self.inputs.structure, protocol=PROTOCOLS[self.inputs.protocol.value], overrides=overrides,
            options=self.inputs.engines.relax.get('options'), **kwargs)
        node = self.submit(builder)
        self.report(f'launched {workchain.__name__}<{node.pk}> ({engine.name}) with {kwargs}')
        return ToContext(base=node)

    def inspect_engine(self):
        base = self.ctx.base
        if not base.is_finished_ok:
            self.report(f'{base.process_label}<{base.pk}> failed with exit status {base.exit_status}')
            return self.exit_codes.ERROR_SUB_PROCESS_FAILED.format(
                cls=base.process_label, exit_status=base.exit_status, message=base.exit_message or '')
        if base.outputs.output_parameters.get('energy') is None:
            return self.exit_codes.ERROR_NO_ENERGY
        if self.inputs.relax_type.value != 'none' and 'output_structure' not in base.outputs:
            return self.exit_codes.ERROR_NO_RELAXED_STRUCTURE
        return None

    def results(self):
        outputs = self.ctx.base.outputs
        self.out_many(energy_gap_magnetization(outputs.output_parameters))
        if 'output_trajectory' in outputs:
            self.out_many(pw_forces_and_stress(outputs.output_trajectory))
        elif 'output_arrays' in outputs:
            self.out_many(vasp_forces_and_stress(outputs.output_arrays, self.inputs.structure))
        if self.inputs.relax_type.value != 'none':
            self.out('relaxed_structure', outputs.output_structure)
        if 'remote_folder' in outputs:
            self.out('remote_folder', outputs.remote_folder)
        spin = self.inputs.spin_type.value == 'collinear' or self.inputs.get('multiplicity', orm.Int(1)).value != 1
        if spin and 'total_magnetization' not in self.outputs:
            self.report(f'{self.ctx.base.process_label} reported no total magnetisation for this spin-polarised run')
