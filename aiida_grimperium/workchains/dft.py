"""``grimperium.dft``: one interface to a DFT energy with pw.x, VASP or CRYSTAL.

The code's ``default_calc_job_plugin`` picks the base workchain (:data:`BASE_WORKCHAINS`); its
``get_builder_from_protocol(code, structure, protocol, overrides)`` builds the inputs, and the outputs are the
same whatever the code: ``energy`` (eV), ``band_gap`` (eV, when the code reports one), ``structure`` (relaxed,
or the input one) and the code's ``output_parameters``. The base workchains are imported only when used, so
this module works before every code's plugin exists.
"""
from __future__ import annotations

import importlib

from aiida import orm
from aiida.engine import ToContext, WorkChain, calcfunction


#: ``default_calc_job_plugin`` of the code -> (module, class) of its base workchain.
BASE_WORKCHAINS = {
    'grimperium.pw': ('aiida_grimperium.workchains.pw', 'PwBaseWorkChain'),
    'grimperium.vasp': ('aiida_grimperium.workchains.vasp', 'VaspBaseWorkChain'),
    'grimperium.crystal': ('aiida_grimperium.workchains.crystal', 'CrystalBaseWorkChain'),
}


def base_workchain_for(code: orm.AbstractCode):
    """The base workchain class for ``code``; ``ValueError`` when its plugin has none."""
    plugin = code.default_calc_job_plugin
    if plugin not in BASE_WORKCHAINS:
        raise ValueError(f'code `{code.full_label}` runs `{plugin}`; the DFT interface supports {sorted(BASE_WORKCHAINS)}')
    module, name = BASE_WORKCHAINS[plugin]
    return getattr(importlib.import_module(module), name)


def validate_code(code, _):
    if code is not None and code.default_calc_job_plugin not in BASE_WORKCHAINS:
        return f'the code runs `{code.default_calc_job_plugin}`; use one of {sorted(BASE_WORKCHAINS)}'
    return None


@calcfunction
def extract_energy_and_gap(parameters: orm.Dict) -> dict:
    """``energy`` and, when present, ``band_gap`` (both eV) of a base workchain's ``output_parameters``."""
    results = {'energy': orm.Float(parameters['energy'])}
    if parameters.get('band_gap') is not None:
        results['band_gap'] = orm.Float(parameters['band_gap'])
    return results


class DftWorkChain(WorkChain):
    """Compute a DFT energy (and gap, and relaxed structure) with whichever DFT code ``code`` is."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('code', valid_type=orm.AbstractCode, validator=validate_code,
                   help='A code whose default plugin is grimperium.pw, grimperium.vasp or grimperium.crystal.')
        spec.input('structure', valid_type=orm.StructureData)
        spec.input('protocol', valid_type=orm.Str, required=False, help='fast, balanced or stringent.')
        spec.input('overrides', valid_type=orm.Dict, required=False, help='Deep-merged onto the protocol inputs.')
        spec.input('options', valid_type=orm.Dict, required=False, help='metadata.options of the calculations.')
        spec.input('charge', valid_type=orm.Int, required=False, help='Total charge (pw: tot_charge).')
        spec.input('multiplicity', valid_type=orm.Int, required=False,
                   help='Spin multiplicity (pw: nspin 2 and tot_magnetization = multiplicity - 1).')
        spec.inputs.validator = cls.validate_inputs
        spec.outline(cls.run_dft, cls.results)
        spec.output('energy', valid_type=orm.Float, help='Total energy in eV.')
        spec.output('band_gap', valid_type=orm.Float, required=False, help='Band gap (or HOMO-LUMO gap) in eV.')
        spec.output('structure', valid_type=orm.StructureData, help='The relaxed structure, or the input one.')
        spec.output('output_parameters', valid_type=orm.Dict, help="The code's own output parameters.")
        spec.exit_code(401, 'ERROR_SUB_PROCESS_FAILED', message='The base workchain of the DFT code failed.')
        spec.exit_code(402, 'ERROR_NO_ENERGY', message='The DFT code finished without an energy.')

    @staticmethod
    def validate_inputs(value, _=None):
        charged = 'charge' in value and value['charge'].value != 0
        open_shell = 'multiplicity' in value and value['multiplicity'].value != 1
        if (charged or open_shell) and 'code' in value and value['code'].default_calc_job_plugin != 'grimperium.pw':
            return ('a charged or open-shell system is passed on to pw.x only; for VASP (NELECT, ISPIN) or CRYSTAL '
                    '(CHARGED, SPINLOCK) give those settings in `overrides`')
        return None

    def charge_spin_overrides(self, overrides: dict | None) -> dict | None:
        """pw.x settings for the charge and multiplicity inputs, under the caller's own overrides."""
        system = {}
        if 'charge' in self.inputs and self.inputs.charge.value != 0:
            system['tot_charge'] = float(self.inputs.charge.value)
        if 'multiplicity' in self.inputs and self.inputs.multiplicity.value != 1:
            system.update(nspin=2, tot_magnetization=float(self.inputs.multiplicity.value - 1))
        if not system:
            return overrides
        from ..protocols import deep_merge

        return deep_merge({'parameters': {'SYSTEM': system}}, overrides or {}, warn_unknown=False)

    def run_dft(self):
        workchain = base_workchain_for(self.inputs.code)
        kwargs = {'options': self.inputs.options.get_dict()} if 'options' in self.inputs else {}
        builder = workchain.get_builder_from_protocol(
            self.inputs.code,
            self.inputs.structure,
            protocol=self.inputs.protocol.value if 'protocol' in self.inputs else None,
            overrides=self.charge_spin_overrides(self.inputs.overrides.get_dict() if 'overrides' in self.inputs else None),
            **kwargs,
        )
        node = self.submit(builder)
        self.report(f'launched {workchain.__name__}<{node.pk}> for code {self.inputs.code.full_label}')
        return ToContext(base=node)

    def results(self):
        base = self.ctx.base
        if not base.is_finished_ok:
            self.report(f'{base.process_label}<{base.pk}> failed with exit status {base.exit_status}')
            return self.exit_codes.ERROR_SUB_PROCESS_FAILED
        parameters = base.outputs.output_parameters
        if parameters.get('energy') is None:
            return self.exit_codes.ERROR_NO_ENERGY
        self.out_many(extract_energy_and_gap(parameters))
        self.out('output_parameters', parameters)
        self.out('structure', base.outputs.output_structure if 'output_structure' in base.outputs else self.inputs.structure)
        return None
