"""``grimperium export | report``: a campaign's results as a CSV/JSON table, structure files and a parity plot."""
from __future__ import annotations

import pathlib

import click

from . import cmd_root, load_profile
from .options import user_errors


@cmd_root.command('export')
@click.argument('name')
@click.option('-o', '--output', 'output', required=True, type=click.Path(dir_okay=False, path_type=pathlib.Path))
@click.option('--format', 'fmt', type=click.Choice(['csv', 'json']), default='csv', show_default=True)
@click.option('--structures', 'structures', type=click.Path(file_okay=False, path_type=pathlib.Path), default=None,
              help='Also write each molecule\'s ensemble (XYZ with energies) and lowest structure (SDF) here.')
@click.pass_context
@user_errors
def cmd_export(ctx, name, output, fmt, structures):
    """Write one row per molecule of campaign NAME (the seed's columns, then new ones), atomically."""
    load_profile(ctx)
    from ..campaign.export import export_campaign
    from ..campaign.layout import load_campaign

    group = load_campaign(name)
    count = export_campaign(group, output, fmt)
    click.echo(f'wrote {count} molecule(s) to {output}')
    if structures is not None:
        from ..campaign.structures import write_structures

        written = write_structures(group, structures)
        click.echo(f'wrote the structures of {written} molecule(s) to {structures}')


@cmd_root.command('report')
@click.argument('name')
@click.option('-o', '--output', 'output', required=True, type=click.Path(file_okay=False, path_type=pathlib.Path))
@click.pass_context
@user_errors
def cmd_report(ctx, name, output):
    """Parity plot (PM7 vs reference), error statistics and an HTML page for campaign NAME."""
    load_profile(ctx)
    from ..campaign.export import campaign_table
    from ..campaign.report import write_report
    from ..campaign.layout import load_campaign

    stats = write_report(campaign_table(load_campaign(name)), output, f'Campaign {name}: PM7 vs reference')
    overall = stats['overall']
    shown = {key: 'n/a' if overall[key] is None else f'{overall[key]:.3f}' for key in ('mae', 'rmse', 'max_error')}
    click.echo(f'{output}/index.html: n={overall["n"]} MAE={shown["mae"]} RMSE={shown["rmse"]} '
               f'max={shown["max_error"]} kcal/mol')
