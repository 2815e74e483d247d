"""The inputs of a campaign's batches (:func:`batch_inputs`), and the single-molecule pipeline builder of the same
settings (:func:`pipeline_builder`).

Every job's ``metadata.options`` start from its code's protocol (``protocols/<code>.yaml``: resources and
walltime) and get the campaign's ``scheduler`` settings on top (see :func:`scheduler_options`), so that
``grimperium campaign run ... --queue debug --walltime 2:00:00 --cores 4`` reaches every xtb, MOPAC and DFT job.
"""
from __future__ import annotations

import copy
import json

from aiida import orm

from .molecules import Molecule

DFT_CODES = ('pw', 'vasp', 'crystal')


def load_codes(settings: dict) -> dict[str, orm.AbstractCode]:
    """The codes the settings need, loaded by label; a missing one is a clear error naming the label."""
    from aiida.common.exceptions import NotExistent

    needed = ['xtb', 'mopac']
    if settings['engine'] == 'crest':
        needed.append('crest')
    if settings.get('dft'):
        needed.append(settings['dft'])
    codes = {}
    for name in needed:
        label = settings['codes'][name]
        try:
            codes[name] = orm.load_code(label)
        except NotExistent:
            raise ValueError(f'code `{label}` for {name} does not exist: run `grimperium setup` or pass its label') from None
    return codes


#: ``--max-active`` when the jobs go to a batch scheduler: the cluster, not this machine, runs them.
CLUSTER_MAX_ACTIVE = 50


def default_max_active(codes: dict[str, orm.AbstractCode]) -> int:
    """How many batches a campaign keeps running at once unless ``--max-active`` says otherwise.

    Every job on this machine (``core.direct``): two batches per core. A batch's xtb and MOPAC jobs are serial,
    and between them the daemon prepares and parses: with two batches per core, one batch's job keeps the core
    busy while the other's bookkeeping runs (``docs/performance.md``). With a batch scheduler:
    ``CLUSTER_MAX_ACTIVE``.
    """
    import os

    return 2 * (os.cpu_count() or 1) if runs_here(codes) else CLUSTER_MAX_ACTIVE


def min_batches(codes: dict[str, orm.AbstractCode], max_active: int) -> int:
    """How many batches a campaign is cut into at least: one per core on this machine (at most ``max_active``),
    so that a small campaign keeps every core busy; more would only add AiiDA's work per batch
    (``docs/performance.md``). With a batch scheduler: 1 (the batches are ``--batch-size`` molecules)."""
    import os

    return max(1, min(max_active, os.cpu_count() or 1)) if runs_here(codes) else 1


def runs_here(codes: dict[str, orm.AbstractCode]) -> bool:
    """Whether every code runs on a ``core.direct`` computer (this machine, no batch scheduler)."""
    return {code.computer.scheduler_type for code in codes.values() if code.computer is not None} <= {'core.direct'}


#: Campaign ``scheduler`` settings → AiiDA ``metadata.options`` (``cores`` and ``memory_mb`` are converted below).
SCHEDULER_KEYS = {'queue': 'queue_name', 'account': 'account', 'qos': 'qos', 'walltime': 'max_wallclock_seconds'}
#: One process per job (the codes are serial or threaded), as the protocols say.
SERIAL_RESOURCES = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}


def scheduler_options(settings: dict, base: dict) -> dict:
    """``metadata.options``: a protocol's ``base`` with the campaign's scheduler overrides on top.

    ``settings['scheduler']`` may hold ``queue`` (SLURM partition), ``account``, ``qos``, ``walltime`` (seconds),
    ``cores`` (threads of the one process: ``--cpus-per-task`` and ``OMP_NUM_THREADS``) and ``memory_mb``
    (``--mem``); ``None`` means "as the protocol says". Any other key is taken as an AiiDA option name as it is.
    """
    options = copy.deepcopy(base)
    for key, value in (settings.get('scheduler') or {}).items():
        if value is None:
            continue
        if key == 'cores':
            options['resources'] = {**options.get('resources', SERIAL_RESOURCES), 'num_cores_per_mpiproc': int(value)}
            options['environment_variables'] = {**options.get('environment_variables', {}),
                                                'OMP_NUM_THREADS': str(int(value))}
        elif key == 'memory_mb':
            options['max_memory_kb'] = int(value) * 1024
        elif key == 'walltime':
            options['max_wallclock_seconds'] = int(value)
        else:
            options[SCHEDULER_KEYS.get(key, key)] = value
    return options


def has_scheduler_overrides(settings: dict) -> bool:
    return any(value is not None for value in (settings.get('scheduler') or {}).values())


class SharedInputs:
    """Input nodes that many molecules of a campaign share: stored once, not once per molecule.

    A campaign's molecules differ only in SMILES, charge and multiplicity; the settings (``top_n``, the engine,
    the protocol parameters, the scheduler options, the ports' defaults) are the same ``Int``/``Str``/``Dict``
    for all of them. One stored node used as input by many processes is ordinary provenance (like a code), and
    it saves ~15 node stores per molecule, most of them in the daemon.
    """

    def __init__(self):
        self._nodes: dict[tuple, orm.Data] = {}

    def __call__(self, node_class, value):
        key = (node_class.__name__, json.dumps(value, sort_keys=True))
        if key not in self._nodes:
            self._nodes[key] = node_class(value).store()
        return self._nodes[key]

    def fill_defaults(self, builder, namespace) -> None:
        """Give every unset port of ``namespace`` that has a default the shared node of that default's value."""
        for name, port in namespace.items():
            if name == 'metadata':
                continue
            if hasattr(port, 'items'):  # a nested namespace (``mopac.mopac``)
                if name in builder or port.populate_defaults:
                    self.fill_defaults(builder[name], port)
                continue
            if name not in builder and port.has_default():
                default = port.default() if callable(port.default) else port.default
                if isinstance(default, orm.BaseType):
                    builder[name] = self(type(default), default.value)


def shell_inputs(settings: dict, codes: dict[str, orm.AbstractCode]) -> dict | None:
    """The ``shell`` namespace of the campaign's shell step (``settings['shell']``: ``command``, ``outputs``), or
    ``None``. The command's code is found by aiida-shell's ``prepare_code`` on the computer of the campaign's
    codes (made at submission, so the daemon only loads it); its jobs get the campaign's scheduler settings."""
    from ..workchains.shell import DEFAULT_SHELL_OPTIONS, find_shell_code

    shell = settings.get('shell')
    if not shell:
        return None
    inputs = {'command': orm.Str(shell['command']),
              'code': find_shell_code(shell['command'], codes['mopac'].computer),
              'options': orm.Dict(scheduler_options(settings, DEFAULT_SHELL_OPTIONS))}
    if shell.get('outputs'):
        inputs['outputs'] = orm.List(list(shell['outputs']))
    return inputs


def batch_inputs(settings: dict, codes: dict | None = None) -> dict:
    """The inputs of :class:`~aiida_grimperium.workchains.batch.ConformerBatchWorkChain` for the campaign
    ``settings`` (all but ``molecules``); the same nodes serve every batch a controller launches."""
    from ..workchains.mopac import MopacBaseWorkChain
    from ..workchains.xtb import XtbBaseWorkChain

    codes = codes or load_codes(settings)
    xtb = XtbBaseWorkChain.get_protocol_inputs('balanced')
    mopac = MopacBaseWorkChain.get_protocol_inputs('balanced')
    inputs = {
        'engine': orm.Str(settings['engine']),
        'xtb_code': codes['xtb'],
        'mopac_code': codes['mopac'],
        'num_conformers': orm.Int(int(settings['num_conformers'])),
        'top_n': orm.Int(int(settings['top_n'])),
        'xtb_options': orm.Dict(scheduler_options(settings, xtb['xtb']['metadata']['options'])),
        'mopac_parameters': orm.Dict(mopac['mopac']['parameters']),
        'mopac_options': orm.Dict(scheduler_options(settings, mopac['mopac']['metadata']['options'])),
    }
    if 'crest' in codes:
        inputs['crest_code'] = codes['crest']
    if settings.get('dft'):
        from ..workchains.dft import COMMON_PROTOCOLS

        # grimperium.dft takes the common-workflows inputs: a single point (relax_type none) on the PM7 geometry
        inputs['dft'] = {'engines': {'relax': {'code': codes[settings['dft']]}}, 'relax_type': orm.Str('none'),
                         'protocol': orm.Str(COMMON_PROTOCOLS[settings['protocol']])}
        if has_scheduler_overrides(settings):  # else the DFT code's own protocol decides
            inputs['dft']['engines']['relax']['options'] = scheduler_options(settings, {'resources': dict(SERIAL_RESOURCES)})
    shell = shell_inputs(settings, codes)
    if shell:
        inputs['shell'] = shell
    return inputs


def pipeline_builder(molecule: Molecule, settings: dict, codes: dict | None = None, shared: SharedInputs | None = None):
    """A builder of the pipeline for ``molecule`` with the campaign ``settings`` (see ``store.DEFAULT_SETTINGS``).

    Give the same ``shared`` to the builders of every molecule of a campaign (:class:`SharedInputs`).
    """
    from ..workchains.mopac import MopacBaseWorkChain
    from ..workchains.pipeline import ConformerToDftWorkChain
    from ..workchains.xtb import XtbBaseWorkChain

    codes = codes or load_codes(settings)
    shared = shared or SharedInputs()
    builder = ConformerToDftWorkChain.get_builder()
    builder.smiles = orm.Str(molecule.smiles)
    builder.charge = shared(orm.Int, molecule.charge)
    builder.multiplicity = shared(orm.Int, molecule.multiplicity)
    builder.top_n = shared(orm.Int, int(settings['top_n']))

    builder.conformers.engine = shared(orm.Str, settings['engine'])
    builder.conformers.xtb_code = codes['xtb']
    if 'crest' in codes:
        builder.conformers.crest_code = codes['crest']
    builder.conformers.num_conformers = shared(orm.Int, int(settings['num_conformers']))
    xtb = XtbBaseWorkChain.get_protocol_inputs('balanced')  # the conformer search runs xtb with these options
    builder.conformers.options = shared(orm.Dict, scheduler_options(settings, xtb['xtb']['metadata']['options']))

    mopac = MopacBaseWorkChain.get_protocol_inputs('balanced')
    builder.mopac.max_iterations = shared(orm.Int, mopac['max_iterations'])
    builder.mopac.mopac.code = codes['mopac']
    builder.mopac.mopac.parameters = shared(orm.Dict, mopac['mopac']['parameters'])
    builder.mopac.mopac.metadata.options = scheduler_options(settings, mopac['mopac']['metadata']['options'])

    if settings.get('dft'):
        from ..workchains.dft import COMMON_PROTOCOLS

        builder.dft.engines.relax.code = codes[settings['dft']]
        builder.dft.relax_type = shared(orm.Str, 'none')  # a single point on the PM7 geometry
        builder.dft.protocol = shared(orm.Str, COMMON_PROTOCOLS[settings['protocol']])
        if has_scheduler_overrides(settings):  # else the DFT code's own protocol decides
            builder.dft.engines.relax.options = scheduler_options(settings, {'resources': dict(SERIAL_RESOURCES)})
    shell = shell_inputs(settings, codes)
    if shell:
        builder.shell = shell
    spec = ConformerToDftWorkChain.spec().inputs
    shared.fill_defaults(builder.conformers, spec['conformers'])
    shared.fill_defaults(builder.mopac, spec['mopac'])
    return builder
