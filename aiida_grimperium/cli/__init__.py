"""The ``grimperium`` command line, in the style of ``verdi``.

Subcommands live in one module each and register themselves on :data:`cmd_root` when imported below.
Commands that touch the database load the profile lazily (``-p/--profile`` or the default one), so that
``grimperium parse`` works on a machine without any AiiDA profile.
"""
from __future__ import annotations

import logging

import click


@click.group(context_settings={'help_option_names': ['-h', '--help']})
@click.option('-p', '--profile', 'profile', default=None, help='AiiDA profile to use (default: the default profile).')
@click.option('-v', '--verbosity', type=click.Choice(['error', 'warning', 'info', 'debug']), default='warning',
              show_default=True, help='Log level of the command.')
@click.version_option(package_name='aiida-grimperium')
@click.pass_context
def cmd_root(ctx, profile, verbosity):
    """grimperium: conformer-to-DFT campaigns on AiiDA (CREST, xtb, MOPAC, pw.x, VASP, CRYSTAL23)."""
    logging.basicConfig(level=verbosity.upper())
    ctx.ensure_object(dict)
    ctx.obj['profile'] = profile


def load_profile(ctx: click.Context | None = None):
    """Load the profile chosen with ``-p`` (or the default) once; return it."""
    from aiida import load_profile as _load

    ctx = ctx or click.get_current_context()
    name = (ctx.find_root().obj or {}).get('profile')
    try:
        return _load(name, allow_switch=True)
    except Exception as exc:  # no profile yet: say what to do instead of a traceback
        raise click.ClickException(f'cannot load AiiDA profile {name or "(default)"}: {exc}. Run `grimperium setup` first.')


from . import cmd_campaign, cmd_export, cmd_parse, cmd_setup, cmd_slurm  # noqa: E402,F401  (registers the subcommands)
