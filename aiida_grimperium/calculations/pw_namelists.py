"""The pw.x 6.7 namelist keys the ``grimperium.pw`` CalcJob accepts, and their validation and formatting.

A misspelled key in a Fortran namelist makes pw.x stop with ``bad line in namelist``, after the job has
waited in the queue; checking the keys before submission refuses it at once, with a suggestion.
"""
from __future__ import annotations

import difflib
import re

#: Keys the plugin writes itself from the structure, pseudos and folders: users may not set them.
BLOCKED = {
    'CONTROL': {'prefix', 'outdir', 'pseudo_dir'},
    'SYSTEM': {'ibrav', 'nat', 'ntyp', 'celldm', 'a', 'b', 'c', 'cosab', 'cosac', 'cosbc'},
}

#: Allowed keys per namelist (pw.x 6.7 INPUT_PW); indexed keys (``starting_magnetization(1)``) by base name.
ALLOWED = {
    'CONTROL': {
        'calculation', 'title', 'verbosity', 'restart_mode', 'wf_collect', 'nstep', 'iprint', 'tstress', 'tprnfor',
        'dt', 'wfcdir', 'lkpoint_dir', 'max_seconds', 'etot_conv_thr', 'forc_conv_thr', 'disk_io', 'tefield',
        'dipfield', 'lelfield', 'nberrycyc', 'lorbm', 'lberry', 'gdir', 'nppstr', 'lfcp', 'gate',
    },
    'SYSTEM': {
        'nbnd', 'tot_charge', 'starting_charge', 'tot_magnetization', 'starting_magnetization', 'ecutwfc', 'ecutrho',
        'ecutfock', 'nr1', 'nr2', 'nr3', 'nr1s', 'nr2s', 'nr3s', 'nosym', 'nosym_evc', 'noinv', 'no_t_rev',
        'force_symmorphic', 'use_all_frac', 'occupations', 'one_atom_occupations', 'starting_spin_angle',
        'degauss', 'smearing', 'nspin', 'noncolin', 'ecfixed', 'qcutz', 'q2sigma', 'input_dft', 'ace', 'exx_fraction',
        'screening_parameter', 'exxdiv_treatment', 'x_gamma_extrapolation', 'ecutvcut', 'nqx1', 'nqx2', 'nqx3',
        'localization_thr', 'lda_plus_u', 'lda_plus_u_kind', 'hubbard_u', 'hubbard_j0', 'hubbard_alpha',
        'hubbard_beta', 'hubbard_j', 'starting_ns_eigenvalue', 'u_projection_type', 'edir', 'emaxpos', 'eopreg',
        'eamp', 'angle1', 'angle2', 'constrained_magnetization', 'fixed_magnetization', 'lambda', 'report',
        'lspinorb', 'assume_isolated', 'esm_bc', 'esm_w', 'esm_efield', 'esm_nfit', 'lgcscf', 'gcscf_mu',
        'gcscf_conv_thr', 'gcscf_beta', 'vdw_corr', 'london', 'london_s6', 'london_c6', 'london_rvdw',
        'london_rcut', 'dftd3_version', 'dftd3_threebody', 'ts_vdw_econv_thr', 'ts_vdw_isolated', 'xdm', 'xdm_a1',
        'xdm_a2', 'space_group', 'uniqueb', 'origin_choice', 'rhombohedral', 'zgate', 'relaxz', 'block',
        'block_1', 'block_2', 'block_height', 'nextffield',
    },
    'ELECTRONS': {
        'electron_maxstep', 'scf_must_converge', 'conv_thr', 'adaptive_thr', 'conv_thr_init', 'conv_thr_multi',
        'mixing_mode', 'mixing_beta', 'mixing_ndim', 'mixing_fixed_ns', 'diagonalization', 'diago_thr_init',
        'diago_cg_maxiter', 'diago_david_ndim', 'diago_full_acc', 'efield', 'efield_cart', 'efield_phase',
        'startingpot', 'startingwfc', 'tqr', 'real_space',
    },
    'IONS': {
        'ion_dynamics', 'ion_positions', 'ion_velocities', 'pot_extrapolation', 'wfc_extrapolation',
        'remove_rigid_rot', 'ion_temperature', 'tempw', 'tolp', 'delta_t', 'nraise', 'refold_pos', 'upscale',
        'bfgs_ndim', 'trust_radius_max', 'trust_radius_min', 'trust_radius_ini', 'w_1', 'w_2',
    },
    'CELL': {'cell_dynamics', 'press', 'wmass', 'cell_factor', 'press_conv_thr', 'cell_dofree'},
}
#: The order pw.x reads the namelists in.
ORDER = ('CONTROL', 'SYSTEM', 'ELECTRONS', 'IONS', 'CELL')
#: Keys indexed by species: given as ``{kind name: value}`` and written as ``key(i)``.
PER_KIND = {'starting_magnetization', 'hubbard_u', 'hubbard_j0', 'hubbard_alpha', 'hubbard_beta', 'angle1', 'angle2',
            'starting_charge', 'london_c6', 'london_rvdw'}
CALCULATIONS = ('scf', 'nscf', 'bands', 'relax', 'md', 'vc-relax', 'vc-md')
#: A key as written into the input: a name, optionally with Fortran indices ``(1)`` / ``(1,2)``.
KEY = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*(\(\d{1,3}(,\d{1,3}){0,2}\))?\Z')


def _unsafe_string(value) -> bool:
    """True for a string (or a string inside a per-kind dict) that would not stay one namelist value."""
    values = value.values() if isinstance(value, dict) else [value]
    return any(isinstance(v, str) and not v.isprintable() for v in values)


def validate_namelists(parameters: dict) -> str | None:
    """Return an error message for unknown namelists, unknown or blocked keys, or an unknown ``calculation``."""
    problems = []
    for namelist, keys in parameters.items():
        name = namelist.upper()
        if name not in ALLOWED:
            problems.append(f'unknown namelist `{namelist}`; use one of {", ".join(ORDER)}')
            continue
        if not isinstance(keys, dict):
            problems.append(f'namelist `{namelist}` must be a mapping of keys to values')
            continue
        for key in keys:
            base = str(key).split('(')[0].lower()
            if not KEY.match(str(key)):
                problems.append(f'`{key!r}` in namelist {name} is not a namelist key (a name, or a name with indices `(1)`)')
            elif _unsafe_string(keys[key]):  # a newline would end the value and start namelist text of its own
                problems.append(f'`{name}.{key}` must be one line of printable characters, got {keys[key]!r}')
            elif base in BLOCKED.get(name, set()):
                problems.append(f'`{name}.{key}` is set by the plugin from the inputs and may not be given')
            elif base not in ALLOWED[name]:
                close = difflib.get_close_matches(base, sorted(ALLOWED[name]), n=1)
                hint = f'; did you mean `{close[0]}`?' if close else ''
                problems.append(f'unknown key `{key}` in namelist {name}{hint}')
    calculation = {k.upper(): v for k, v in parameters.items()}.get('CONTROL', {}).get('calculation', 'scf')
    if calculation not in CALCULATIONS:
        problems.append(f'unknown calculation `{calculation}`; use one of {", ".join(CALCULATIONS)}')
    return '; '.join(problems) or None


def fortran(value) -> str:
    """A Python value as a Fortran namelist literal."""
    if isinstance(value, bool):
        return '.true.' if value else '.false.'
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def format_namelists(parameters: dict, kind_index: dict[str, int]) -> str:
    """Render the namelists in pw.x's order; per-kind keys ``{kind: value}`` become ``key(i) = value``."""
    upper = {k.upper(): v for k, v in parameters.items()}
    lines = []
    for name in ORDER:
        if name not in upper:
            continue
        lines.append(f'&{name}')
        for key, value in sorted(upper[name].items()):
            if isinstance(value, dict) and key.lower() in PER_KIND:
                for kind, item in value.items():
                    lines.append(f'  {key}({kind_index[kind]}) = {fortran(item)}')
            else:
                lines.append(f'  {key} = {fortran(value)}')
        lines.append('/')
    return '\n'.join(lines) + '\n'
