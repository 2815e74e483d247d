"""``grimperium.pw.base``: run ``pw.x`` and recover from its common failures, as aiida-quantumespresso does.

Handlers (each tied to exit codes of :mod:`aiida_grimperium.parsers.raw.pw`, each reports what it changes):

* 400 ``ERROR_OUT_OF_WALLTIME`` → ``restart_mode = 'restart'`` from the parent folder (pw.x stopped cleanly
  at ``max_seconds`` and wrote its restart files);
* 410 ``ERROR_SCF_NOT_CONVERGED`` → ``mixing_beta`` times :attr:`MIXING_BETA_FACTOR`, restart from the
  parent's charge density and wavefunctions;
* 462 / 463 diagonalisation failures → next algorithm of :attr:`DIAGONALIZATIONS`;
* 500 / 501 / 502 ionic minimisation stopped → continue from the last structure, from scratch.
"""
from __future__ import annotations

from aiida import orm
from aiida.engine import ProcessHandlerReport, process_handler
from aiida.plugins import CalculationFactory

from .base import GrimperiumBaseRestartWorkChain

PwCalculation = CalculationFactory('grimperium.pw')


def _upper(parameters: dict) -> dict:
    return {k.upper(): dict(v) for k, v in parameters.items()}


class PwBaseWorkChain(GrimperiumBaseRestartWorkChain):
    """Run a ``grimperium.pw`` calculation, restarting it when a handler knows how to recover."""

    _process_class = PwCalculation
    _inputs_namespace = 'pw'

    #: Factor applied to ``mixing_beta`` at each SCF failure, and the floor below which it gives up.
    MIXING_BETA_FACTOR = 0.7
    MIXING_BETA_MIN = 0.05
    #: Diagonalisation algorithms tried in turn after a diagonalisation failure (pw.x 6.7 names).
    DIAGONALIZATIONS = ('david', 'cg', 'ppcg', 'paro')
    #: Share of the scheduler's wallclock given to pw.x as ``max_seconds``, so it stops cleanly before the kill.
    WALLTIME_SAFETY = 0.95

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.exit_code(401, 'ERROR_SCF_UNRECOVERABLE', message='The SCF did not converge even with the smallest mixing_beta.')
        spec.exit_code(402, 'ERROR_DIAGONALIZATION_UNRECOVERABLE', message='Every diagonalisation algorithm failed.')

    @classmethod
    def get_builder_from_protocol(cls, code, structure, protocol=None, overrides=None, **kwargs):
        """A builder with the inputs of ``protocol`` (``fast`` / ``balanced`` / ``stringent``) for ``structure``.

        ``overrides`` is deep-merged onto the protocol (``{'parameters': {'CONTROL': {'calculation': 'relax'}}}``)
        without being mutated; unknown keys are warned about. Keyword arguments: ``electronic_type``
        (``'metal'``: smearing, the default for crystals; ``'insulator'``: fixed occupations plus empty bands, the
        default for molecules), ``pseudo_overrides`` (``{element: UPF file name}``) and ``options`` (metadata).
        """
        return builder_from_protocol(cls, code, structure, protocol=protocol, overrides=overrides, **kwargs)

    def setup(self):
        super().setup()
        self.ctx.inputs.parameters = _upper(self.ctx.inputs.parameters.get_dict())

    def prepare_process(self):
        """Give pw.x a ``max_seconds`` inside the scheduler's wallclock, unless the user set one."""
        control = self.ctx.inputs.parameters.setdefault('CONTROL', {})
        wallclock = self.ctx.inputs.get('metadata', {}).get('options', {}).get('max_wallclock_seconds')
        if wallclock and 'max_seconds' not in control:
            control['max_seconds'] = int(wallclock * self.WALLTIME_SAFETY)

    def run_process(self):
        self.prepare_process()
        parameters = self.ctx.inputs.parameters
        self.ctx.inputs.parameters = orm.Dict(parameters)
        try:
            return super().run_process()
        finally:
            self.ctx.inputs.parameters = parameters

    def _restart_from(self, calculation, mode: str) -> None:
        """Point the next run at ``calculation``'s folder: ``restart`` (interrupted run) or ``file`` (density)."""
        self.ctx.inputs.parent_folder = calculation.outputs.remote_folder
        control = self.ctx.inputs.parameters.setdefault('CONTROL', {})
        electrons = self.ctx.inputs.parameters.setdefault('ELECTRONS', {})
        if mode == 'restart':
            control['restart_mode'] = 'restart'
        else:
            control['restart_mode'] = 'from_scratch'
            electrons['startingpot'] = 'file'
            electrons['startingwfc'] = 'file'

    def _from_scratch(self) -> None:
        self.ctx.inputs.pop('parent_folder', None)
        self.ctx.inputs.parameters.setdefault('CONTROL', {})['restart_mode'] = 'from_scratch'
        for key in ('startingpot', 'startingwfc'):
            self.ctx.inputs.parameters.get('ELECTRONS', {}).pop(key, None)

    @process_handler(priority=600, exit_codes=[PwCalculation.exit_codes.ERROR_OUT_OF_WALLTIME])
    def handle_out_of_walltime(self, calculation):
        """pw.x stopped at ``max_seconds`` and wrote restart files: continue the same run from the parent folder."""
        self._restart_from(calculation, 'restart')
        self.report(f'{calculation.process_label}<{calculation.pk}> ran out of walltime: restarting from its folder')
        return ProcessHandlerReport(do_break=True)

    @process_handler(priority=500, exit_codes=[
        PwCalculation.exit_codes.ERROR_DIAGONALIZATION_CHOLESKY, PwCalculation.exit_codes.ERROR_DIAGONALIZATION_EIGENVECTORS,
    ])
    def handle_diagonalization(self, calculation):
        """Switch to the next diagonalisation algorithm; restart from scratch (the wavefunctions are suspect)."""
        electrons = self.ctx.inputs.parameters.setdefault('ELECTRONS', {})
        current = electrons.get('diagonalization', 'david')
        tried = self.ctx.setdefault('diagonalizations_tried', [])
        tried.append(current)
        remaining = [d for d in self.DIAGONALIZATIONS if d not in tried]
        if not remaining:
            self.report(f'{calculation.process_label}<{calculation.pk}> failed in diagonalisation with {tried}: giving up')
            return ProcessHandlerReport(do_break=True, exit_code=self.exit_codes.ERROR_DIAGONALIZATION_UNRECOVERABLE)
        electrons['diagonalization'] = remaining[0]
        self._from_scratch()
        self.report(f'{calculation.process_label}<{calculation.pk}> diagonalisation `{current}` failed: switching to `{remaining[0]}`')
        return ProcessHandlerReport(do_break=True)

    @process_handler(priority=410, exit_codes=[PwCalculation.exit_codes.ERROR_SCF_NOT_CONVERGED])
    def handle_scf_not_converged(self, calculation):
        """Lower ``mixing_beta`` and restart from the last charge density and wavefunctions."""
        electrons = self.ctx.inputs.parameters.setdefault('ELECTRONS', {})
        old = float(electrons.get('mixing_beta', 0.7))
        new = round(old * self.MIXING_BETA_FACTOR, 4)
        if new < self.MIXING_BETA_MIN:
            self.report(f'{calculation.process_label}<{calculation.pk}> SCF not converged with mixing_beta {old}: giving up')
            return ProcessHandlerReport(do_break=True, exit_code=self.exit_codes.ERROR_SCF_UNRECOVERABLE)
        electrons['mixing_beta'] = new
        self._restart_from(calculation, 'file')
        self.report(
            f'{calculation.process_label}<{calculation.pk}> SCF not converged: mixing_beta {old} -> {new}, '
            'restarting from its charge density'
        )
        return ProcessHandlerReport(do_break=True)

    @process_handler(priority=400, exit_codes=[
        PwCalculation.exit_codes.ERROR_IONIC_NOT_CONVERGED, PwCalculation.exit_codes.ERROR_IONIC_BFGS_HISTORY_FAILURE,
        PwCalculation.exit_codes.ERROR_IONIC_FINAL_SCF_FAILED,
    ])
    def handle_ionic_not_converged(self, calculation):
        """Continue the relaxation from the last structure pw.x reached, with a fresh BFGS history."""
        if 'output_structure' not in calculation.outputs:
            self.report(f'{calculation.process_label}<{calculation.pk}> stopped its relaxation without a structure')
            return ProcessHandlerReport(do_break=True, exit_code=self.exit_codes.ERROR_UNRECOVERABLE_FAILURE)
        self.ctx.inputs.structure = calculation.outputs.output_structure
        self._from_scratch()
        self.report(
            f'{calculation.process_label}<{calculation.pk}> ionic minimisation not converged ({calculation.exit_status}): '
            f'continuing from its last structure<{calculation.outputs.output_structure.pk}>'
        )
        return ProcessHandlerReport(do_break=True)


def builder_from_protocol(cls, code, structure, protocol=None, overrides=None, electronic_type=None,
                          pseudo_overrides=None, options=None):
    """The body of :meth:`PwBaseWorkChain.get_builder_from_protocol`."""
    import math

    from ..protocols import get_protocol_inputs
    from ..pseudos import get_pseudos, z_valence_of_text
    from ..structures import molecule_structure, structure_symbols_positions

    inputs = get_protocol_inputs('pw', protocol, overrides)
    natoms = len(structure.sites)
    molecule = not any(structure.pbc)
    if molecule:  # the cost grows with the box volume: use the protocol's vacuum, not the one it came with
        structure = molecule_structure(*structure_symbols_positions(structure), vacuum=inputs['molecule_vacuum'],
                                       center=True)
    parameters = _upper(inputs['parameters'])
    control, system, electrons = (parameters.setdefault(n, {}) for n in ('CONTROL', 'SYSTEM', 'ELECTRONS'))
    # thresholds per atom: the same precision per atom for a 2-atom cell and a 200-atom one
    electrons.setdefault('conv_thr', inputs['conv_thr_per_atom'] * natoms)
    control.setdefault('etot_conv_thr', inputs['etot_conv_thr_per_atom'] * natoms)
    pseudos = get_pseudos(structure, inputs['pseudo_functional'], inputs['pseudo_dir'], pseudo_overrides)

    electronic_type = electronic_type or ('insulator' if molecule else 'metal')
    if electronic_type == 'metal':
        for key, value in inputs['smearing'].items():
            system.setdefault(key, value)
    elif electronic_type == 'insulator':
        system.setdefault('occupations', 'fixed')
        valence = {name: z_valence_of_text(upf.get_content()) or 0.0 for name, upf in pseudos.items()}
        electrons_total = sum(valence[site.kind_name] for site in structure.sites) - float(system.get('tot_charge', 0))
        system.setdefault('nbnd', math.ceil(electrons_total / 2) + int(inputs['extra_empty_bands']))
    else:
        raise ValueError(f'electronic_type must be `metal` or `insulator`, not `{electronic_type}`')
    if molecule:
        control.pop('tstress', None)  # the stress of a molecule in a box means nothing

    builder = cls.get_builder()
    builder.pw.code = code
    builder.pw.structure = structure
    builder.pw.parameters = orm.Dict(parameters)
    builder.pw.pseudos = pseudos
    if not molecule:
        kpoints = orm.KpointsData()
        kpoints.set_cell_from_structure(structure)
        kpoints.set_kpoints_mesh_from_density(float(inputs['kpoints_distance']))
        builder.pw.kpoints = kpoints
    builder.pw.metadata.options = options or {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}}
    builder.max_iterations = orm.Int(int(inputs['max_iterations']))
    return builder
