"""``grimperium setup``: an AiiDA profile when none exists, one ``InstalledCode`` per code found on PATH, and the
pw.x pseudopotential families (Debian's UPF files as aiida-pseudo families, :mod:`aiida_grimperium.pseudos`).

Running it twice changes nothing: an existing profile is kept, a code whose label already exists on the
computer is left as it is, and an installed family is not touched. A ``core.sqlite_dos`` profile is switched to SQLite's write-ahead log
(:mod:`aiida_grimperium.storage` says why); ``grimperium storage checkpoint`` goes with it. A computer with
the ``core.local`` transport runs its commands without a login shell (:func:`plain_local_shell` says why).
"""
from __future__ import annotations

import shutil
import subprocess
import sys

import click

from . import cmd_root

#: executable on PATH -> (code label, default calculation plugin)
KNOWN_CODES = {
    'mopac': ('mopac', 'grimperium.mopac'),
    'xtb': ('xtb', 'grimperium.xtb'),
    'pw.x': ('pw', 'grimperium.pw'),
    'crest': ('crest', 'grimperium.crest'),
    'vasp_std': ('vasp', 'grimperium.vasp'),
    'crystal': ('crystal', 'grimperium.crystal'),
}


def ensure_profile(name: str) -> str:
    """Make a ``core.sqlite_dos`` + ZeroMQ profile called ``name`` unless a default profile exists."""
    from aiida.manage.configuration import get_config, reset_config

    try:
        config = get_config(create=True)
        if config.default_profile_name:
            return config.default_profile_name
    except Exception:  # an unreadable config is reported by verdi below
        pass
    cmd = [sys.executable, '-m', 'aiida', 'presto', '--profile-name', name, '--use-zeromq']
    subprocess.run(cmd, check=True)
    reset_config()  # the profile was written by another process: drop the cached, profile-less config
    return name


def plain_local_shell(computer_label: str = 'localhost', echo=click.echo) -> bool:
    """Let a ``core.local`` computer run its commands with ``bash -c``, not AiiDA's default ``bash -l -c``.

    The daemon runs a command for every job submission and every scheduler poll. A login shell reads the
    user's profile first (pyenv, conda and the like): 0.14 s of CPU per command on the reference machine,
    about a sixth of a small-molecule campaign's wall time (``docs/performance.md``). Jobs on this machine need
    no login environment: the codes are absolute paths and their environment is in the job script. Other
    transports (``core.ssh`` to a cluster, where modules may need it) are left alone. Returns whether it changed.
    """
    from aiida import orm

    computer = orm.load_computer(computer_label)
    if computer.transport_type != 'core.local':
        return False
    if computer.get_configuration().get('use_login_shell', True) is False:  # {} when not configured yet
        return False
    computer.configure(use_login_shell=False)  # keeps the other settings; configures the computer if needed
    echo(f'computer {computer_label}: commands run without a login shell (use_login_shell False)')
    return True


def register_codes(computer_label: str = 'localhost', echo=click.echo) -> dict[str, str]:
    """Create the missing codes on ``computer_label``; return ``{label: 'created' | 'exists' | 'not found'}``."""
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    computer = orm.load_computer(computer_label)
    report = {}
    for executable, (label, plugin) in KNOWN_CODES.items():
        path = shutil.which(executable)
        try:
            orm.load_code(f'{label}@{computer_label}')
            report[label] = 'exists'
        except NotExistent:
            if path is None:
                report[label] = 'not found'
                echo(f'{label + "@" + computer_label:<20} not found  (no `{executable}` on PATH)')
                continue
            orm.InstalledCode(
                label=label,
                computer=computer,
                filepath_executable=path,
                default_calc_job_plugin=plugin,
                description=f'{executable} found on PATH by grimperium setup',
            ).store()
            report[label] = 'created'
        echo(f'{label + "@" + computer_label:<20} {report[label]:<10} {path or ""}')
    return report


def install_pseudo_families(default_family: str | None = None, echo=click.echo) -> dict[str, str]:
    """Install Debian's UPF files as aiida-pseudo families (when pw.x's data files are there) and record
    ``default_family`` as the default of ``grimperium.pw.base``; return ``{label: 'created' | 'exists'}``."""
    from .. import pseudos

    report = {}
    if pseudos.DEFAULT_PSEUDO_DIR.is_dir():
        for functional in pseudos.FUNCTIONALS:
            family, created = pseudos.install_family(functional)
            report[family.label] = 'created' if created else 'exists'
            echo(f'{family.label:<20} {report[family.label]:<10} {len(family.nodes)} UPF files, cutoffs '
                 f'{", ".join(family.get_cutoff_stringencies())}')
    if default_family:
        pseudos.set_default_family(default_family)
        echo(f'default pseudopotential family of pw: {default_family}')
    return report


@cmd_root.command('setup')
@click.option('--profile-name', default='grimperium', show_default=True,
              help='Name of the profile to create when no default profile exists.')
@click.option('--computer', 'computer_label', default='localhost', show_default=True,
              help='Computer on which to register the codes.')
@click.option('--pseudo-family', default=None, metavar='LABEL',
              help='An installed aiida-pseudo family (e.g. SSSP/1.3/PBE/efficiency) to use by default for pw.x.')
@click.pass_context
def cmd_setup(ctx, profile_name, computer_label, pseudo_family):
    """Create a profile if none exists, register the codes found on PATH and the pw.x pseudopotentials (idempotent)."""
    from . import load_profile

    if ctx.find_root().obj.get('profile') is None:
        ctx.find_root().obj['profile'] = ensure_profile(profile_name)
    profile = load_profile(ctx)
    click.echo(f'profile: {profile.name}')
    from ..storage import enable_wal

    mode = enable_wal(profile)
    if mode is not None:
        click.echo(f'SQLite journal mode: {mode}')
    plain_local_shell(computer_label)
    register_codes(computer_label)
    try:
        install_pseudo_families(pseudo_family)
    except ValueError as exc:  # an unknown --pseudo-family label
        raise click.BadParameter(str(exc), param_hint='--pseudo-family') from exc


@cmd_root.group('storage')
def cmd_storage():
    """The profile's SQLite database (``core.sqlite_dos``)."""


@cmd_storage.command('checkpoint')
@click.pass_context
def cmd_checkpoint(ctx):
    """Write the SQLite write-ahead log into the database file; run it just before `verdi storage backup`."""
    from . import load_profile
    from ..storage import checkpoint

    result = checkpoint(load_profile(ctx))
    if result is None:
        click.echo('nothing to do: the profile does not use SQLite storage')
    elif result[0] < 0:  # SQLite's answer when there is no write-ahead log
        click.echo('nothing to do: the database is not in write-ahead-log mode (run `grimperium setup`)')
    else:
        click.echo(f'checkpointed {result[1]} of {result[0]} page(s) of the write-ahead log')
