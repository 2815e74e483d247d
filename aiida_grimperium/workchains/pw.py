"""``grimperium.pw.base``: aiida-quantumespresso's ``PwBaseWorkChain`` (its restart handlers) for crystals and molecules.

The work chain runs the ``grimperium.pw`` CalcJob (aiida-quantumespresso's, parsed with the HOMO-LUMO gap).
:meth:`PwBaseWorkChain.get_builder_from_protocol` calls aiida-quantumespresso's and adds what molecules need:
a box (the protocol's vacuum), the Gamma point, ``assume_isolated = 'mt'``, no stress, fixed occupations with
empty bands, the charge and the spin multiplicity; and the cutoffs of the pseudopotential family at the
protocol's stringency (``protocols/pw.yaml``, merged over aiida-quantumespresso's ``pw/base.yaml``).
"""
from __future__ import annotations

import math
import warnings

from aiida import orm
from aiida_quantumespresso.common.types import ElectronicType, SpinType
from aiida_quantumespresso.workflows.pw.base import PwBaseWorkChain as QePwBaseWorkChain

from ..calculations.pw import PwCalculation
from ..protocols import GrimperiumProtocolMixin, deep_merge
from .base import ReattachesOutputs

#: aiida-quantumespresso's warning for structures that are not 3D-periodic: molecules are handled here.
_APERIODIC_WARNING = 'This protocol was developed for fully periodic'


class PwBaseWorkChain(ReattachesOutputs, GrimperiumProtocolMixin, QePwBaseWorkChain):
    """Run ``grimperium.pw`` with aiida-quantumespresso's restart handlers; protocols for crystals and molecules;
    the workaround of a worker killed while linking the outputs (:class:`~.base.ReattachesOutputs`)."""

    _process_class = PwCalculation
    _protocol_name = 'pw'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        # the exposed `pw` namespace is aiida-quantumespresso's: its default parser would drop the gap
        spec.inputs['pw']['metadata']['options']['parser_name'].default = 'grimperium.pw'
        # the same ports, registered for this package's CalcJob, so that `results` finds them on its node
        spec.expose_outputs(PwCalculation)

    @classmethod
    def get_protocol_inputs(cls, protocol=None, overrides=None):
        """aiida-quantumespresso's ``pw/base.yaml`` inputs, then this package's ``pw.yaml``, then ``overrides``."""
        upstream = QePwBaseWorkChain.get_protocol_inputs(protocol)
        return deep_merge(upstream, super().get_protocol_inputs(protocol, overrides))

    @classmethod
    def get_builder_from_protocol(cls, code, structure, protocol=None, overrides=None, options=None, *,
                                  electronic_type=None, spin_type=None, charge=0, multiplicity=1, pseudo_family=None,
                                  **kwargs):
        """A builder for ``structure`` with the inputs of ``protocol`` (``fast`` / ``balanced`` / ``stringent``).

        ``overrides`` has the builder's shape (``{'pw': {'parameters': {'SYSTEM': {'ecutwfc': 40}}}}``) and is
        deep-merged last; ``options`` is merged into the protocol's ``metadata.options``. A molecule (``pbc`` all
        False) is re-boxed, computed at Gamma and, unless ``electronic_type`` says otherwise, as an insulator.
        ``charge`` sets ``tot_charge``; a ``multiplicity`` above 1 sets ``nspin = 2`` and ``tot_magnetization``.
        ``pseudo_family``: an aiida-pseudo family label (default: ``grimperium setup --pseudo-family``'s, else the
        protocol's). Other keyword arguments go to aiida-quantumespresso's method (``initial_magnetic_moments``).
        """
        from ..pseudos import default_family_label, load_family
        from ..structures import molecule_structure, structure_symbols_positions

        if isinstance(code, str):
            code = orm.load_code(code)
        overrides = overrides or {}
        with warnings.catch_warnings():  # the unknown-key warnings come once, from aiida-quantumespresso's call
            warnings.simplefilter('ignore')
            inputs = cls.get_protocol_inputs(protocol, overrides)
        meta = inputs['meta_parameters']
        molecule = not any(structure.pbc)
        if molecule:  # the cost grows with the box volume: the protocol's vacuum, not the one it came with
            structure = molecule_structure(*structure_symbols_positions(structure), vacuum=meta['molecule_vacuum'],
                                           center=True)
        electronic_type = ElectronicType(electronic_type or ('insulator' if molecule else 'metal'))
        spin_type = SpinType(spin_type or ('collinear' if multiplicity > 1 else 'none'))

        label = pseudo_family or overrides.get('pseudo_family') or default_family_label() or inputs['pseudo_family']
        family = load_family(label)
        system = {}
        if 'pseudos' not in overrides.get('pw', {}):
            system.update(cls.recommended_cutoffs(family, structure, meta['cutoff_stringency']))
        if charge:
            system['tot_charge'] = float(charge)
        if multiplicity > 1:
            system.update(nspin=2, tot_magnetization=float(multiplicity - 1))
        if molecule:
            system['assume_isolated'] = 'mt'
        if electronic_type is ElectronicType.INSULATOR:
            pseudos = overrides.get('pw', {}).get('pseudos') or family.get_pseudos(structure=structure)
            valence = sum(pseudos[site.kind_name].z_valence for site in structure.sites) - charge
            system['nbnd'] = math.ceil(valence / 2) + int(meta['extra_empty_bands'])
        ours = {'pseudo_family': family.label, 'pw': {'parameters': {'SYSTEM': system}}}
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message=_APERIODIC_WARNING)
            builder = super().get_builder_from_protocol(
                code, structure, protocol=protocol, overrides=deep_merge(ours, overrides), options=options,
                electronic_type=electronic_type, spin_type=spin_type, **kwargs,
            )
        if molecule:
            parameters = builder.pw.parameters.get_dict()
            parameters['CONTROL'].pop('tstress', None)  # the stress of a molecule in a box means nothing
            builder.pw.parameters = orm.Dict(parameters)
            gamma = orm.KpointsData()
            gamma.set_kpoints_mesh([1, 1, 1])
            builder.kpoints = gamma
            builder.pop('kpoints_distance', None)
            settings = builder.pw.settings.get_dict() if 'settings' in builder.pw else {}
            builder.pw.settings = orm.Dict({**settings, 'gamma_only': True})  # real wavefunctions: half the cost
        return builder

    @staticmethod
    def recommended_cutoffs(family, structure, stringency: str) -> dict:
        """``{'ecutwfc', 'ecutrho'}`` (Ry) of ``family`` for ``structure`` at ``stringency``, or at the family's
        default stringency when it has no such one (SSSP and PseudoDojo families have their own names)."""
        stringencies = family.get_cutoff_stringencies() if hasattr(family, 'get_cutoff_stringencies') else ()
        if not stringencies:
            return {}  # a family without cutoffs: aiida-quantumespresso asks for both in `overrides`
        chosen = stringency if stringency in stringencies else family.get_default_stringency()
        ecutwfc, ecutrho = family.get_recommended_cutoffs(structure=structure, stringency=chosen, unit='Ry')
        return {'ecutwfc': ecutwfc, 'ecutrho': ecutrho}
