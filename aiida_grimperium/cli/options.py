"""Options and error handling shared by the ``grimperium`` campaign commands."""
from __future__ import annotations

import functools

import click

class Walltime(click.ParamType):
    """A walltime as seconds (``3600``), SLURM's ``[D-]HH:MM:SS`` / ``MM:SS``, or ``90m`` / ``2h`` / ``1d``."""

    name = 'walltime'
    UNITS = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400}

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        text = str(value).strip().lower()
        try:
            if text[-1:] in self.UNITS:
                seconds = float(text[:-1]) * self.UNITS[text[-1]]
            elif ':' in text:
                days, _, clock = text.rpartition('-')
                parts = [int(p) for p in clock.split(':')]
                if len(parts) > 3:
                    raise ValueError
                seconds = sum(p * 60 ** k for k, p in enumerate(reversed(parts))) + int(days or 0) * 86400
            else:
                seconds = float(text)
        except ValueError:
            self.fail(f'`{value}` is not a walltime: use seconds, [D-]HH:MM:SS, MM:SS or 90m / 2h / 1d', param, ctx)
        if seconds <= 0:
            self.fail(f'the walltime must be positive, not `{value}`', param, ctx)
        return int(round(seconds))


def scheduler_options(function):
    """Per-campaign scheduler overrides of every job; unset ones come from the codes' protocols."""
    options = [
        click.option('--computer', 'computer', default=None,
                     help='Computer of the codes (e.g. `slurm` from `grimperium setup-slurm`): codes default to '
                          'NAME@COMPUTER; --code still wins.'),
        click.option('--queue', default=None, help='Scheduler queue / SLURM partition of every job.'),
        click.option('--account', default=None, help='Scheduler account (project) charged for every job.'),
        click.option('--walltime', type=Walltime(), default=None,
                     help='Walltime of every job: seconds, [D-]HH:MM:SS or 90m/2h (default: the protocol\'s).'),
        click.option('--cores', type=click.IntRange(1), default=None,
                     help='Cores (threads) of every job: --cpus-per-task and OMP_NUM_THREADS.'),
        click.option('--memory', 'memory_mb', type=click.IntRange(1), default=None, help='Memory of every job in MB (--mem).'),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def strictness_option(function):
    options = [
        click.option('--strict/--permissive', default=True, show_default=True,
                     help='strict: any bad row refuses the whole file; permissive: bad rows are reported and skipped '
                          '(and of the rows that are the same molecule, the first is kept).'),
        click.option('--fragments', type=click.Choice(['refuse', 'largest']), default='refuse', show_default=True,
                     help='Salts and mixtures (SMILES with `.`): refuse the row, or keep its largest organic '
                          'fragment with a warning.'),
    ]
    for option in reversed(options):
        function = option(function)
    return function


max_active_option = click.option(
    '--max-active', type=click.IntRange(1), default=None,
    help='Batches running at once. Default: two per core when every job runs on this machine, else 50.')


def campaign_options(function):
    options = [
        click.option('--group', 'group_name', required=True, help='Name of the campaign (an AiiDA group).'),
        click.option('--engine', type=click.Choice(['rdkit-xtb', 'crest']), default='rdkit-xtb', show_default=True),
        click.option('--top-n', type=click.IntRange(1), default=3, show_default=True,
                     help='Conformers per molecule computed with MOPAC.'),
        click.option('--num-conformers', type=click.IntRange(1), default=10, show_default=True,
                     help='RDKit conformers embedded per molecule (rdkit-xtb engine).'),
        click.option('--dft', type=click.Choice(['pw', 'vasp', 'crystal']), default=None,
                     help='Run DFT on the PM7-lowest conformer with this code.'),
        click.option('--protocol', type=click.Choice(['fast', 'balanced', 'stringent']), default='fast', show_default=True),
        click.option('--max-reruns', type=click.IntRange(0), default=3, show_default=True),
        click.option('--batch-size', type=click.IntRange(1), default=50, show_default=True,
                     help='Molecules per batch: one xtb job and one MOPAC job each.'),
        max_active_option,
        click.option('--code', 'code_labels', multiple=True, metavar='NAME=LABEL',
                     help='Code to use, e.g. --code mopac=mopac@cluster (default NAME@localhost).'),
        click.option('--update', is_flag=True,
                     help='Apply changed rows and options to an existing campaign (old results stay, superseded).'),
        click.option('--shell-step', 'shell_step', default=None, metavar="'CMD {lowest} ...'",
                     help='After MOPAC (and DFT), run this command on each molecule\'s PM7-lowest conformer, '
                          '`{lowest}` being its XYZ file (an aiida-shell ShellJob on the computer of the codes), '
                          "e.g. 'xtb {lowest} --ohess'. Its failure fails only that step (export: shell_status)."),
        click.option('--shell-output', 'shell_outputs', multiple=True, metavar='FILE',
                     help='A file (or glob) the --shell-step command writes, kept as a node; repeat for more. '
                          'stdout and stderr are always kept.'),
        scheduler_options,
        strictness_option,
        click.option('--dry-run', is_flag=True, help='Validate, check the codes and show what would run; store nothing.'),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def user_errors(function):
    """Turn the package's refusals and OS errors into one-line messages with exit status 1 (no traceback)."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        from ..campaign.layout import CampaignError

        try:
            return function(*args, **kwargs)
        except CampaignError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            raise click.ClickException(f'{exc.filename or ""}: {exc.strerror or exc}'.lstrip(': ')) from None
    return wrapper
