"""Calcfunctions that make ``grimperium.dft``'s outputs from a DFT CalcJob's outputs (every Data has a creator).

Units of the common interface: eV, eV/Å, eV/Å^3, μB; one set of constants (CODATA 2018) for every engine.
"""
from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from ...chemistry import HARTREE_TO_EV

EV_ANGSTROM3_TO_KBAR = 1602.1766208  # 1 eV/Å^3 = 160.21766208 GPa


def vasp_site_order(symbols: list[str]) -> list[int]:
    """Input site indices in VASP's order: grouped by element in order of first appearance (stable)."""
    first = {symbol: index for index, symbol in reversed(list(enumerate(dict.fromkeys(symbols))))}
    return sorted(range(len(symbols)), key=lambda i: first[symbols[i]])


# -- validation at submission ------------------------------------------------------------------------------------



@calcfunction
def energy_gap_magnetization(parameters: orm.Dict) -> dict:
    """``total_energy`` and, when the code reported them, ``band_gap`` (eV) and ``total_magnetization`` (μB).

    One set of constants for every engine (CODATA 2018, :data:`HARTREE_TO_EV`): aiida-quantumespresso converts
    pw.x's Hartree with qe-tools' older constant (1e-7 relative, 5e-5 eV on water), so its ``energy`` is converted
    back to the Hartree pw.x wrote and then to eV as CRYSTAL's is.
    """
    energy = parameters['energy']
    if parameters.get('creator_name') == 'pwscf':  # aiida-quantumespresso's XML parser names the program
        from qe_tools import CONSTANTS

        energy = energy / CONSTANTS.hartree_to_ev * HARTREE_TO_EV
    results = {'total_energy': orm.Float(energy)}
    for name in ('band_gap', 'total_magnetization'):
        if parameters.get(name) is not None:
            results[name] = orm.Float(parameters[name])
    return results


def _array(name: str, values) -> orm.ArrayData:
    array = orm.ArrayData()
    array.set_array(name, np.asarray(values, dtype=float))
    return array


@calcfunction
def pw_forces_and_stress(trajectory: orm.TrajectoryData) -> dict:
    """The last ionic step's forces (eV/Å) and stress (eV/Å^3) of pw.x's trajectory (grimperium.pw's array
    names and units, or aiida-quantumespresso's: ``forces`` eV/Å, ``stress`` GPa)."""
    names = trajectory.get_arraynames()
    results = {}
    for name in ('forces_ev_angstrom', 'forces'):
        if name in names:
            results['forces'] = _array('forces', trajectory.get_array(name)[-1])
            break
    for name, to_ev_angstrom3 in (('stress_kbar', 1 / EV_ANGSTROM3_TO_KBAR), ('stress', 10 / EV_ANGSTROM3_TO_KBAR)):
        if name in names:
            results['stress'] = _array('stress', trajectory.get_array(name)[-1] * to_ev_angstrom3)
            break
    return results


@calcfunction
def vasp_forces_and_stress(arrays: orm.ArrayData, structure: orm.StructureData) -> dict:
    """VASP's forces (eV/Å) back in the order of ``structure``'s sites, and its stress from kBar to eV/Å^3."""
    results = {}
    if 'forces' in arrays.get_arraynames():
        symbols = [structure.get_kind(site.kind_name).symbol for site in structure.sites]
        vasp_forces = arrays.get_array('forces')
        forces = np.zeros_like(vasp_forces)
        forces[vasp_site_order(symbols)] = vasp_forces
        results['forces'] = _array('forces', forces)
    if 'stress' in arrays.get_arraynames():
        results['stress'] = _array('stress', arrays.get_array('stress') / EV_ANGSTROM3_TO_KBAR)
    return results
