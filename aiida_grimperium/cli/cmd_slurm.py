"""``grimperium setup-slurm``: a SLURM computer (``grimperium.slurm``, else ``core.slurm``) and the codes on PATH on it.

On this machine (``scripts/slurm.sh`` runs a one-node cluster on localhost) the transport is ``core.local``; on a
real cluster's login node it is the same, and from a workstation it is ``core.ssh`` to the login node (then run
``verdi computer configure core.ssh LABEL`` once, as the command says). Running it twice changes nothing.
"""
from __future__ import annotations

import getpass
import pathlib
import shutil

import click

from . import cmd_root

#: SLURM's own MPI launcher; our serial codes (withmpi False) never use it, MPI builds of pw.x/VASP do.
SRUN = ['srun', '-n', '{tot_num_mpiprocs}']
#: The scheduler plugins a SLURM computer may have; the first one installed is used for new computers.
SLURM_SCHEDULERS = ('grimperium.slurm', 'core.slurm')


def slurm_scheduler_type() -> str:
    """``grimperium.slurm`` (exactly-once sbatch, :mod:`aiida_grimperium.schedulers`) when its entry point is
    installed, else AiiDA's ``core.slurm``."""
    from aiida.plugins.entry_point import get_entry_point_names

    installed = set(get_entry_point_names('aiida.schedulers'))
    return next(name for name in SLURM_SCHEDULERS if name in installed)


def setup_slurm_computer(label: str = 'slurm', *, hostname: str = 'localhost', transport: str = 'core.local',
                         workdir: str | None = None, cpus_per_node: int = 2, poll_interval: float = 2.0,
                         echo=click.echo) -> tuple[object, str]:
    """Create (or load) the SLURM computer ``label``; return ``(computer, 'created' | 'exists')``.

    ``poll_interval`` is the minimum time between two ``squeue`` calls of the daemon for this computer (AiiDA's
    default for SLURM is 10 s; a real cluster's admins may ask for more, the one-node test cluster takes less).
    A ``core.local`` computer is configured for the current user at once; a ``core.ssh`` one must be configured
    with ``verdi computer configure core.ssh LABEL`` (host keys, user name and key file are the user's to give).
    """
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    try:
        computer = orm.load_computer(label)
        status = 'exists'
        if computer.scheduler_type not in SLURM_SCHEDULERS:
            raise click.ClickException(f'computer `{label}` exists with scheduler {computer.scheduler_type}, not '
                                       'SLURM: choose another --computer-label')
    except NotExistent:
        workdir = workdir or str(pathlib.Path.home() / 'aiida_slurm_run' if transport == 'core.local'
                                 else f'/scratch/{getpass.getuser()}/aiida')
        computer = orm.Computer(
            label=label, hostname=hostname, transport_type=transport, scheduler_type=slurm_scheduler_type(), workdir=workdir,
            description=f'SLURM cluster via {transport} (grimperium setup-slurm)',
        ).store()
        computer.set_mpirun_command(SRUN)
        computer.set_default_mpiprocs_per_machine(cpus_per_node)
        computer.set_minimum_job_poll_interval(poll_interval)
        status = 'created'
    if transport == 'core.local' and not computer.is_user_configured(orm.User.collection.get_default()):
        computer.configure(safe_interval=0.0)  # same machine: no reason to space out connections
    echo(f'computer {label:<14} {status:<10} {computer.scheduler_type} via {computer.transport_type} on {computer.hostname}, '
         f'workdir {computer.get_workdir()}')
    if computer.transport_type != 'core.local' and not computer.is_user_configured(orm.User.collection.get_default()):
        echo(f'  next: verdi computer configure {computer.transport_type} {label}   (then verdi computer test {label})')
    return computer, status


@cmd_root.command('setup-slurm')
@click.option('--computer-label', 'label', default='slurm', show_default=True, help='Label of the SLURM computer.')
@click.option('--hostname', default='localhost', show_default=True, help='Host of the cluster (its login node).')
@click.option('--transport', type=click.Choice(['core.local', 'core.ssh']), default='core.local', show_default=True,
              help='core.local on the login node itself, core.ssh from elsewhere.')
@click.option('--workdir', default=None, help='Scratch directory of the jobs on the cluster (default ~/aiida_slurm_run).')
@click.option('--cpus-per-node', type=click.IntRange(1), default=2, show_default=True)
@click.option('--poll-interval', type=click.FloatRange(0.0), default=2.0, show_default=True,
              help='Minimum seconds between two squeue calls for this computer.')
@click.option('--no-codes', is_flag=True, help='Only the computer; register no codes.')
@click.pass_context
def cmd_setup_slurm(ctx, label, hostname, transport, workdir, cpus_per_node, poll_interval, no_codes):
    """Register a SLURM computer and the codes found on PATH on it (idempotent).

    Use it in a campaign with `grimperium campaign run CSV --computer LABEL [--queue P --walltime 2h ...]`.
    """
    from . import load_profile
    from .cmd_setup import register_codes

    if shutil.which('sbatch') is None and transport == 'core.local':
        click.echo('warning: `sbatch` is not on PATH here; on this machine run `bash scripts/slurm.sh` first', err=True)
    load_profile(ctx)
    computer, _ = setup_slurm_computer(label, hostname=hostname, transport=transport, workdir=workdir,
                                       cpus_per_node=cpus_per_node, poll_interval=poll_interval)
    if not no_codes:
        register_codes(computer.label)
