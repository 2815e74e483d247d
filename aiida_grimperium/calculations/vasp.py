"""``grimperium.vasp``: a VASP run (INCAR, KPOINTS, POSCAR, POTCAR written with pymatgen's VASP I/O).

The POTCAR is assembled from the user's POTCAR library (see :mod:`aiida_grimperium.potcars`) and uploaded but
not stored in the AiiDA repository (licensed file); ``potcar_spec.json`` records each potential's TITEL and
SHA-256 instead. Sites are grouped by element in the order of first appearance, so the POSCAR species line
and the POTCAR order always agree; per-site INCAR lists (``MAGMOM``) must follow that order.
"""
from __future__ import annotations

import functools
import json
import os

from aiida import orm
from aiida.common import datastructures
from aiida.plugins import DataFactory

from ..parsers.raw.vasp import EXIT_CODES, OUTCAR, STDOUT, VASPRUN
from .base import GrimperiumCalcJob, validate_filename

KpointsData = DataFactory('core.array.kpoints')

#: Files a later run can start from (``parent_folder``): wavefunctions and charge density when they exist.
RESTART_FILES = ('WAVECAR', 'CHGCAR')
RETRIEVE = [VASPRUN, OUTCAR, 'CONTCAR', 'OSZICAR', STDOUT]
KPOINTS_STYLES = ('Gamma', 'Monkhorst')
SETTINGS_KEYS = {'kpoints_style', 'allow_unknown_tags', 'additional_retrieve_list', 'parent_folder_files'}
_PY_TYPES = {'int': (int,), 'float': (int, float), 'bool': (bool,), 'str': (str,), 'list': (list, tuple)}


@functools.lru_cache(maxsize=1)
def incar_tags() -> dict:
    """The INCAR tag table pymatgen ships (``incar_parameters.json``): name -> {type, values}."""
    import pymatgen.io.vasp as pmg_vasp

    with open(os.path.join(os.path.dirname(pmg_vasp.__file__), 'incar_parameters.json'), encoding='utf-8') as handle:
        return json.load(handle)


def validate_incar(parameters: dict, allow_unknown: bool = False) -> str | None:
    """Return an error message for a bad INCAR dict: unknown tag (VASP ignores those silently), wrong type/value."""
    tags = incar_tags()
    for key, value in parameters.items():
        if not isinstance(key, str) or key != key.upper() or not key.replace('_', '').isalnum():
            return f'INCAR tag `{key}` must be an upper-case name'
        if key not in tags:
            if allow_unknown:
                continue
            return f'INCAR tag `{key}` is unknown (set settings.allow_unknown_tags to pass it anyway)'
        spec = tags[key]
        allowed = tuple(t for name in str(spec.get('type', '')).split('|') for t in _PY_TYPES.get(name.strip(), ()))
        if allowed and not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed and allowed):
            return f'INCAR tag `{key}`: {value!r} is not of type {spec.get("type")}'
        items = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(item, str) and not item.isprintable() for item in items):
            return f'INCAR tag `{key}`: {value!r} must be one line of printable characters (a newline starts a new tag)'
        values = spec.get('values')
        if values and isinstance(value, str) and value.lower() not in {str(v).lower() for v in values}:
            return f'INCAR tag `{key}`: {value!r} is not one of {values}'
    return None


def validate_settings(value, _ctx):
    if value is None:
        return None
    settings = value.get_dict()
    unknown = set(settings) - SETTINGS_KEYS
    if unknown:
        return f'unknown settings {sorted(unknown)}; allowed: {sorted(SETTINGS_KEYS)}'
    if settings.get('kpoints_style', 'Gamma') not in KPOINTS_STYLES:
        return f'settings.kpoints_style must be one of {KPOINTS_STYLES}'
    for key in ('additional_retrieve_list', 'parent_folder_files'):  # file names: nothing outside the run folder
        for name in settings.get(key, []):
            error = validate_filename(name)
            if error:
                return f'settings.{key}: {error}'
    return None


def validate_inputs(inputs, _ctx):
    if 'kpoints' not in inputs and 'kpoints_spacing' not in inputs:
        return 'give either `kpoints` (a mesh or a list) or `kpoints_spacing`'
    if 'kpoints' in inputs and 'kpoints_spacing' in inputs:
        return 'give only one of `kpoints` and `kpoints_spacing`'
    settings = inputs['settings'].get_dict() if 'settings' in inputs else {}
    if 'parameters' in inputs:
        return validate_incar(inputs['parameters'].get_dict(), allow_unknown=bool(settings.get('allow_unknown_tags')))
    return None


def sorted_pymatgen_structure(structure: orm.StructureData):
    """pymatgen ``Structure`` of ``structure`` with sites grouped by element (order of first appearance)."""
    from pymatgen.core import Lattice, Structure

    symbols = [structure.get_kind(site.kind_name).symbol for site in structure.sites]
    order = {symbol: index for index, symbol in reversed(list(enumerate(dict.fromkeys(symbols))))}
    sites = sorted(range(len(symbols)), key=lambda i: order[symbols[i]])  # sorted() is stable
    return Structure(
        Lattice(structure.cell),
        [symbols[i] for i in sites],
        [structure.sites[i].position for i in sites],
        coords_are_cartesian=True,
    )


def kpoints_text(kpoints, style: str = 'Gamma') -> str:
    """KPOINTS file text of a ``KpointsData`` (automatic mesh with offset, or an explicit weighted list)."""
    from pymatgen.io.vasp import Kpoints

    try:
        mesh, offset = kpoints.get_kpoints_mesh()
    except AttributeError:
        mesh = None
    if mesh is not None:
        maker = Kpoints.gamma_automatic if style == 'Gamma' else Kpoints.monkhorst_automatic
        return str(maker(tuple(int(n) for n in mesh), tuple(float(x) for x in offset)))
    points, weights = kpoints.get_kpoints(also_weights=True) if kpoints.has_array('weights') else (
        kpoints.get_kpoints(), None)
    weights = list(weights) if weights is not None else [1.0] * len(points)
    return str(Kpoints(
        comment='explicit k-points (reciprocal coordinates)',
        num_kpts=len(points),
        style=Kpoints.supported_modes.Reciprocal,
        kpts=[tuple(map(float, p)) for p in points],
        kpts_weights=[float(w) for w in weights],
    ))


class VaspCalculation(GrimperiumCalcJob):
    """A VASP calculation: SCF, relaxation or MD, as the INCAR says."""

    _DEFAULT_INPUT_FILE = 'INCAR'
    _DEFAULT_OUTPUT_FILE = STDOUT
    _DEFAULT_PARSER = 'grimperium.vasp'
    _DEFAULT_WITHMPI = True

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('structure', valid_type=orm.StructureData, help='The crystal (or boxed molecule).')
        spec.input('parameters', valid_type=orm.Dict,
                   help='INCAR tags, e.g. {"ENCUT": 520, "ISMEAR": 0}; unknown tags are refused.')
        spec.input('kpoints', valid_type=KpointsData, required=False, help='A k-point mesh (with offset) or list.')
        spec.input('kpoints_spacing', valid_type=orm.Float, required=False,
                   help='Largest k-point spacing in 1/Angstrom (2*pi included), turned into a mesh.')
        spec.input('potcar_library', valid_type=orm.Str,
                   help='Folder of the POTCAR library on this machine: <library>/<Element or variant>/POTCAR.')
        spec.input('potcar_mapping', valid_type=orm.Dict, required=False,
                   help='Element -> library entry, e.g. {"Fe": "Fe_pv"}; elements not listed use their symbol.')
        spec.input('parent_folder', valid_type=orm.RemoteData, required=False,
                   help='A previous run whose WAVECAR/CHGCAR are copied in (when they exist).')
        spec.input('settings', valid_type=orm.Dict, required=False, validator=validate_settings,
                   help=f'Optional: {sorted(SETTINGS_KEYS)}.')
        spec.inputs.validator = validate_inputs
        spec.output('output_parameters', valid_type=orm.Dict, required=False,
                    help='Energies (eV), band gap, Fermi energy, convergence flags.')
        spec.output('output_structure', valid_type=orm.StructureData, required=False,
                    help='The last structure, for runs that move the ions.')
        spec.output('output_arrays', valid_type=orm.ArrayData, required=False,
                    help='`forces` (eV/Angstrom) and `stress` (kBar) of the last ionic step.')
        spec.default_output_node = 'output_parameters'
        cls.declare_exit_codes(spec, EXIT_CODES)

    def prepare_for_submission(self, folder):
        from pymatgen.io.vasp import Incar, Poscar

        from ..potcars import PotcarError, assemble

        settings = self.inputs.settings.get_dict() if 'settings' in self.inputs else {}
        structure = sorted_pymatgen_structure(self.inputs.structure)
        poscar = Poscar(structure, comment=f'aiida-grimperium {self.inputs.structure.get_formula()}')
        mapping = self.inputs.potcar_mapping.get_dict() if 'potcar_mapping' in self.inputs else None
        try:
            potcar, records = assemble(self.inputs.potcar_library.value, poscar.site_symbols, mapping)
        except (PotcarError, OSError) as exc:
            raise ValueError(f'POTCAR: {exc}') from exc

        if 'kpoints' in self.inputs:
            kpoints = self.inputs.kpoints
        else:
            kpoints = KpointsData()
            kpoints.set_cell_from_structure(self.inputs.structure)
            kpoints.set_kpoints_mesh_from_density(self.inputs.kpoints_spacing.value)

        files = {
            'INCAR': Incar(self.inputs.parameters.get_dict()).get_str(sort_keys=True),
            'POSCAR': poscar.get_str(significant_figures=10),
            'KPOINTS': kpoints_text(kpoints, settings.get('kpoints_style', 'Gamma')),
            'POTCAR': potcar,
            'potcar_spec.json': json.dumps(records, indent=2),
        }
        for name, text in files.items():
            folder.create_file_from_filelike(_text_io(text), name, 'w', encoding='utf-8')

        remote_copy = []
        if 'parent_folder' in self.inputs:
            parent = self.inputs.parent_folder
            if parent.computer.uuid != self.inputs.code.computer.uuid:
                raise ValueError('parent_folder must be on the computer the code runs on')
            for name in settings.get('parent_folder_files', RESTART_FILES):
                remote_copy.append((parent.computer.uuid, os.path.join(parent.get_remote_path(), name), name))

        codeinfo = datastructures.CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.stdout_name = self.options.output_filename
        codeinfo.withmpi = self.options.withmpi

        calcinfo = datastructures.CalcInfo()
        calcinfo.codes_info = [codeinfo]
        calcinfo.remote_copy_list = remote_copy
        calcinfo.retrieve_list = RETRIEVE + list(settings.get('additional_retrieve_list', []))
        # licensed: uploaded to the run folder but not stored in the provenance repository
        calcinfo.provenance_exclude_list = ['POTCAR']
        return calcinfo


def _text_io(text: str):
    import io

    return io.StringIO(text)
