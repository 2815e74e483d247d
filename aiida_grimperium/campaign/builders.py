"""The :class:`ConformerToDftWorkChain` builder of one campaign molecule, from the campaign's settings.

Every job's ``metadata.options`` start from its code's protocol (``protocols/<code>.yaml``: resources and
walltime) and get the campaign's ``scheduler`` settings on top (see :func:`scheduler_options`), so that
``grimperium campaign run ... --queue debug --walltime 2:00:00 --cores 4`` reaches every xtb, MOPAC and DFT job.
"""
from __future__ import annotations

import copy

from aiida import orm

from ..protocols import get_protocol_inputs
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


#: ``--max-active`` when a code runs on a batch scheduler: the cluster, not this machine, runs the jobs.
CLUSTER_MAX_ACTIVE = 20


def default_max_active(codes: dict[str, orm.AbstractCode]) -> int:
    """How many molecules a campaign keeps running at once unless ``--max-active`` says otherwise.

    When every job runs on this machine (``core.direct``), the daemon's bookkeeping competes with the jobs for
    the same cores, and AiiDA's per-commit cost grows with the processes a worker holds: two molecules per core
    keep the cores busy without that cost (``benchmarks/campaign.py``: 20 small molecules on 2 cores took
    135 s at 20 active, 99 s at 4, 129 s at 2). On a cluster, the queue is the limit: ``CLUSTER_MAX_ACTIVE``.
    """
    import os

    schedulers = {code.computer.scheduler_type for code in codes.values() if code.computer is not None}
    if schedulers <= {'core.direct'}:
        return 2 * (os.cpu_count() or 1)
    return CLUSTER_MAX_ACTIVE


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


def pipeline_builder(molecule: Molecule, settings: dict, codes: dict | None = None):
    """A builder of the pipeline for ``molecule`` with the campaign ``settings`` (see ``store.DEFAULT_SETTINGS``)."""
    from ..workchains.pipeline import ConformerToDftWorkChain

    codes = codes or load_codes(settings)
    builder = ConformerToDftWorkChain.get_builder()
    builder.smiles = orm.Str(molecule.smiles)
    builder.charge = orm.Int(molecule.charge)
    builder.multiplicity = orm.Int(molecule.multiplicity)
    builder.top_n = orm.Int(int(settings['top_n']))

    builder.conformers.engine = orm.Str(settings['engine'])
    builder.conformers.xtb_code = codes['xtb']
    if 'crest' in codes:
        builder.conformers.crest_code = codes['crest']
    builder.conformers.num_conformers = orm.Int(int(settings['num_conformers']))
    xtb = get_protocol_inputs('xtb', 'balanced')  # the conformer search runs xtb with these options
    builder.conformers.options = orm.Dict(scheduler_options(settings, xtb['xtb']['metadata']['options']))

    mopac = get_protocol_inputs('mopac', 'balanced')
    builder.mopac.max_iterations = orm.Int(mopac['max_iterations'])
    builder.mopac.mopac.code = codes['mopac']
    builder.mopac.mopac.parameters = orm.Dict(mopac['mopac']['parameters'])
    builder.mopac.mopac.metadata.options = scheduler_options(settings, mopac['mopac']['metadata']['options'])

    if settings.get('dft'):
        builder.dft.code = codes[settings['dft']]
        builder.dft.protocol = orm.Str(settings['protocol'])
        if has_scheduler_overrides(settings):  # else the DFT code's own protocol decides
            builder.dft.options = orm.Dict(scheduler_options(settings, {'resources': dict(SERIAL_RESOURCES)}))
    return builder
