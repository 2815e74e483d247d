"""``grimperium parse CODE PATH``: run a code's raw parser on a file or run folder and print JSON.

The contract every code follows: keys ``code``, ``exit_status`` (0 = success, else the number the AiiDA
parser would return), ``exit_message`` (that exit code's label, followed by the program's own words for the
failure when the raw parser read them, e.g. ``ERROR_ACTIVE_SPACE: SPECIFIED SPIN COMPONENT NOT SPANNED BY ACTIVE
SPACE``; those words are also in ``exit_detail``), then the code's results. A bad file never prints a traceback:
it gives a non-zero ``exit_status``.
"""
from __future__ import annotations

import importlib
import json
import pathlib

import click

from ..exit_codes import resolve
from . import cmd_root

CODES = ('mopac', 'xtb', 'crest', 'pw', 'vasp', 'crystal')


def parse_to_dict(code: str, path: pathlib.Path) -> dict:
    """The JSON document of the ``parse`` command, as a dict."""
    raw = importlib.import_module(f'aiida_grimperium.parsers.raw.{code}')
    try:
        result = raw.parse_path(path)
    except Exception as exc:  # a raw parser must not raise; if one does, report it as a parse failure
        result = {'exit_label': 'ERROR_OUTPUT_PARSE', 'error': f'{type(exc).__name__}: {exc}'}
    status, message = resolve(code, result.pop('exit_label', None))
    detail = result.get('exit_detail')
    if status and detail:
        message = f'{message}: {detail}'
    return {'code': code, 'exit_status': status, 'exit_message': message, **result}


@cmd_root.command('parse')
@click.argument('code', type=click.Choice(CODES))
@click.argument('path', type=click.Path(path_type=pathlib.Path))
@click.option('--indent', type=int, default=2, show_default=True, help='JSON indentation.')
def cmd_parse(code, path, indent):
    """Parse the output of CODE at PATH (a file or a run folder) and print JSON."""
    click.echo(json.dumps(parse_to_dict(code, path), indent=indent, default=str))
