"""``grimperium validate | campaign submit/run/status/rerun | export | report``: CSV campaigns on the daemon."""
from __future__ import annotations

import pathlib
import sys
import time

import click

from . import cmd_root, load_profile

STAGE_LABELS = ('selected', 'pre-optimisation', 'conformer search', 'MOPAC', 'done')
#: ``stage`` extra of a run → how many of the five stages it has reached.
STAGE_REACHED = {'selected': 1, 'preoptimization': 2, 'conformer_search': 3, 'mopac': 4, 'dft': 4, 'done': 5}


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
    return click.option('--strict/--permissive', default=True, show_default=True,
                        help='strict: any bad row refuses the whole file; permissive: bad rows are reported and skipped.')(function)


max_active_option = click.option(
    '--max-active', type=click.IntRange(1), default=None,
    help='Throttle: at most this many molecules running at once. Default: 20; for `campaign run` with every job '
         'on this machine (core.direct), 8 per core.')


def campaign_options(function):
    options = [
        click.option('--group', 'group_name', required=True, help='Name of the campaign (an AiiDA group).'),
        click.option('--engine', type=click.Choice(['rdkit-xtb', 'crest']), default='rdkit-xtb', show_default=True),
        click.option('--top-n', type=click.IntRange(1), default=3, show_default=True,
                     help='Conformers computed with MOPAC (in one job).'),
        click.option('--num-conformers', type=click.IntRange(1), default=10, show_default=True,
                     help='RDKit conformers embedded per molecule (rdkit-xtb engine).'),
        click.option('--dft', type=click.Choice(['pw', 'vasp', 'crystal']), default=None,
                     help='Run DFT on the PM7-lowest conformer with this code.'),
        click.option('--protocol', type=click.Choice(['fast', 'balanced', 'stringent']), default='fast', show_default=True),
        click.option('--max-reruns', type=click.IntRange(0), default=3, show_default=True),
        max_active_option,
        click.option('--code', 'code_labels', multiple=True, metavar='NAME=LABEL',
                     help='Code to use, e.g. --code mopac=mopac@cluster (default NAME@localhost).'),
        scheduler_options,
        strictness_option,
        click.option('--dry-run', is_flag=True, help='Validate and show what would be submitted; submit nothing.'),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def validate_or_exit(csv_path: pathlib.Path, strict: bool):
    """Validate the CSV; print every error; exit 1 in strict mode when there are errors."""
    from ..campaign.molecules import read_csv

    try:
        validation = read_csv(csv_path)
    except ValueError as exc:
        raise click.ClickException(str(exc))
    if validation.errors:
        log = pathlib.Path(str(csv_path) + '.validation.log')
        log.write_text(validation.report() + '\n', encoding='utf-8')
        click.echo(validation.report(), err=True)
        click.echo(f'(errors also written to {log})', err=True)
        if strict:
            click.echo(f'strict mode: nothing submitted; fix the {len(validation.bad_rows)} row(s) or use --permissive',
                       err=True)
            sys.exit(1)
        click.echo(f'permissive mode: skipping {len(validation.bad_rows)} bad row(s)', err=True)
    else:
        click.echo(f'{csv_path}: {validation.rows_read} rows, all valid')
    return validation


@cmd_root.command('validate')
@click.argument('csv_path', type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path))
@strictness_option
def cmd_validate(csv_path, strict):
    """Validate a campaign CSV (every error with its row and field)."""
    validate_or_exit(csv_path, strict)


@cmd_root.group('campaign')
def cmd_campaign():
    """Run CSV campaigns: one ConformerToDftWorkChain per molecule, one group per campaign."""


def _settings(engine, top_n, num_conformers, dft, protocol, max_reruns, code_labels, computer=None, queue=None,
              account=None, walltime=None, cores=None, memory_mb=None) -> dict:
    from ..campaign.store import DEFAULT_SETTINGS

    codes = dict(DEFAULT_SETTINGS['codes'])
    if computer:
        codes = {name: f'{label.partition("@")[0]}@{computer}' for name, label in codes.items()}
    for item in code_labels:
        name, _, label = item.partition('=')
        if name not in codes or not label:
            raise click.BadParameter(f'`{item}`: use NAME=LABEL with NAME one of {", ".join(codes)}', param_hint='--code')
        codes[name] = label
    scheduler = {'queue': queue, 'account': account, 'walltime': walltime, 'cores': cores, 'memory_mb': memory_mb}
    return {'engine': engine, 'top_n': top_n, 'num_conformers': num_conformers, 'dft': dft, 'protocol': protocol,
            'max_reruns': max_reruns, 'codes': codes, 'scheduler': scheduler}


def _prepare(ctx, validation, group_name, dry_run, **settings_args):
    if dry_run:
        click.echo(f'dry run: would submit {len(validation.molecules)} molecule(s) to campaign `{group_name}` with '
                   f'{_settings(**settings_args)}')
        return None
    from ..storage import enable_wal

    enable_wal(load_profile(ctx))  # idempotent; a campaign commits hundreds of times per molecule
    from ..campaign.builders import load_codes
    from ..campaign.store import add_molecules, get_campaign, schedule

    settings = _settings(**settings_args)
    try:
        load_codes(settings)
    except ValueError as exc:
        raise click.ClickException(str(exc))
    group = get_campaign(group_name, settings)
    added = add_molecules(group, validation.molecules)
    click.echo(f'campaign `{group.label}`: {len(added)} new molecule(s) added')
    return group, schedule(group)


@cmd_campaign.command('submit')
@click.argument('csv_path', type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path))
@campaign_options
@click.pass_context
def cmd_submit(ctx, csv_path, group_name, strict, dry_run, max_active, **settings_args):
    """Validate CSV_PATH and submit its molecules to the daemon (throttled); returns at once."""
    prepared = _prepare(ctx, validate_or_exit(csv_path, strict), group_name, dry_run, **settings_args)
    if prepared is None:
        return
    from ..campaign.store import submit_molecules

    group, todo = prepared
    submit_molecules(group, todo, max_active=max_active, wait=False, echo=click.echo)
    _ensure_daemon_hint()


@cmd_campaign.command('run')
@click.argument('csv_path', type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path))
@campaign_options
@click.option('--workers', type=click.IntRange(1), default=None, help='Daemon workers to start if it is not running.')
@click.pass_context
def cmd_run(ctx, csv_path, group_name, strict, dry_run, max_active, workers, **settings_args):
    """Like `submit`, but start the daemon if needed and wait with live progress until every molecule has finished."""
    validation = validate_or_exit(csv_path, strict)
    daemon = None if dry_run else _start_daemon_in_background(ctx, workers)  # it boots while the nodes are stored
    prepared = _prepare(ctx, validation, group_name, dry_run, **settings_args)
    if prepared is None:
        return
    from ..campaign.store import submit_molecules

    group, todo = prepared
    _await_daemon(daemon, workers)
    submit_molecules(group, todo, max_active=max_active, wait=True, echo=click.echo)
    _watch(group, until_done=True)


@cmd_campaign.command('rerun')
@click.argument('name')
@max_active_option
@click.pass_context
def cmd_rerun(ctx, name, max_active):
    """Rerun failed molecules with reruns left (first), then the ones not yet run."""
    load_profile(ctx)
    from ..campaign.store import get_campaign, schedule, submit_molecules

    group = get_campaign(name)
    todo = schedule(group)
    if not todo:
        click.echo(f'campaign `{name}`: nothing to rerun')
        return
    submit_molecules(group, todo, max_active=max_active, wait=False, echo=click.echo)
    _ensure_daemon_hint()


@cmd_campaign.command('status')
@click.argument('name')
@click.option('--watch', is_flag=True, help='Refresh until every molecule has finished.')
@click.pass_context
def cmd_status(ctx, name, watch):
    """Counts per status and a progress bar per stage (selected → pre-optimisation → conformer search → MOPAC → done)."""
    load_profile(ctx)
    from ..campaign.store import get_campaign

    _watch(get_campaign(name), until_done=watch)


def progress(group) -> tuple[dict, list[int], int]:
    """Status counts, molecules that reached each stage, and the number of molecules."""
    from ..campaign.store import records, runs, settings_of, status_of

    max_reruns = settings_of(group)['max_reruns']
    all_runs = runs(group)
    counts: dict[str, int] = {}
    reached = [0] * len(STAGE_LABELS)
    mol_ids = list(records(group))
    for mol_id in mol_ids:
        molecule_runs = all_runs.get(mol_id, [])
        status = status_of(molecule_runs, max_reruns)
        counts[status] = counts.get(status, 0) + 1
        level = 0
        if molecule_runs:
            last = molecule_runs[-1]
            level = 5 if last['state'] in ('finished', 'excepted', 'killed') else STAGE_REACHED.get(last['stage'], 1)
        for k in range(level):
            reached[k] += 1
    return counts, reached, len(mol_ids)


def render_progress(name: str, counts: dict, reached: list[int], total: int, width: int = 30) -> str:
    lines = [f'campaign `{name}`: {total} molecules  ' + '  '.join(f'{k}={v}' for k, v in sorted(counts.items()))]
    for label, count in zip(STAGE_LABELS, reached):
        filled = int(round(width * count / total)) if total else 0
        lines.append(f'  {label:<17} [{"#" * filled}{"." * (width - filled)}] {count}/{total}')
    return '\n'.join(lines)


def _watch(group, until_done: bool, interval: float = 0.5, refresh: float = 2.0) -> None:
    """Print the progress when it changes, looking every ``refresh`` s (less often when a look itself is slow);
    with ``until_done``, see the end within ``interval`` s (a count of the running molecules: a cheap query)."""
    from ..campaign.store import count_active

    last_text, next_look = None, 0.0
    while True:
        start = time.perf_counter()
        if start >= next_look or (until_done and count_active(group) == 0):
            counts, reached, total = progress(group)
            # a huge campaign: never more than a third of the time looking
            next_look = time.perf_counter() + max(refresh, 2 * (time.perf_counter() - start))
            text = render_progress(group.label, counts, reached, total)
            if text != last_text:
                click.echo(text)
                last_text = text
            unfinished = counts.get('Running', 0) + counts.get('Pending', 0)
            if not until_done or unfinished == 0:
                return
        time.sleep(interval)


def _start_daemon_in_background(ctx, workers: int | None):
    """Start the daemon in a thread of this command unless it runs; return the thread (or ``None``).

    Starting the daemon takes seconds (circus, the broker and the workers each import AiiDA), which then overlap
    with this command's own start (reading the CSV, storing the campaign's nodes). The thread only waits on
    those processes; running ``verdi daemon start`` instead would import AiiDA once more.
    """
    import threading

    from aiida.engine.daemon.client import get_daemon_client
    from aiida.manage.configuration import get_config

    profile = load_profile(ctx)
    if pathlib.Path(get_config().filepaths(profile)['circus']['pid']).exists():
        return None  # running (or a stale file, which `_await_daemon` sees to)
    click.echo(f'starting the daemon ({workers or 1} worker(s))')
    client = get_daemon_client()

    def start():
        try:
            client.start_daemon(number_workers=workers or 1)
        except Exception as exc:  # noqa: BLE001 - `_await_daemon` reports it if the daemon is not running then
            thread.error = exc

    thread = threading.Thread(target=start, name='grimperium-daemon-start', daemon=True)
    thread.error = None
    thread.start()
    return thread


def _await_daemon(starting, workers: int | None) -> None:
    """Wait for the daemon started by :func:`_start_daemon_in_background`; start it here if it still is not running."""
    from aiida.engine.daemon.client import get_daemon_client

    if starting is not None:
        starting.join()
    client = get_daemon_client()
    if not client.is_daemon_running:
        try:
            client.start_daemon(number_workers=workers or 1)
        except Exception as exc:  # noqa: BLE001 - say what went wrong the first time too, then AiiDA's own error
            first = f'\n(first attempt: {starting.error})' if starting is not None and starting.error else ''
            raise click.ClickException(f'the daemon did not start: {exc}{first}')


def _ensure_daemon_hint() -> None:
    from aiida.engine.daemon.client import get_daemon_client

    if not get_daemon_client().is_daemon_running:
        click.echo('note: the daemon is not running; start it with `verdi daemon start` (or use `campaign run`)')


@cmd_root.command('export')
@click.argument('name')
@click.option('-o', '--output', 'output', required=True, type=click.Path(dir_okay=False, path_type=pathlib.Path))
@click.option('--format', 'fmt', type=click.Choice(['csv', 'json']), default='csv', show_default=True)
@click.pass_context
def cmd_export(ctx, name, output, fmt):
    """Write one row per molecule of campaign NAME (the seed's columns, then new ones), atomically."""
    profile = load_profile(ctx)
    # export_named reads a core.sqlite_dos campaign without importing the ORM or pandas (start-up time)
    from ..campaign.export import export_named

    count = export_named(name, output, fmt, profile=profile)
    click.echo(f'wrote {count} molecule(s) to {output}')


@cmd_root.command('report')
@click.argument('name')
@click.option('-o', '--output', 'output', required=True, type=click.Path(file_okay=False, path_type=pathlib.Path))
@click.pass_context
def cmd_report(ctx, name, output):
    """Parity plot (PM7 vs reference), error statistics and an HTML page for campaign NAME."""
    load_profile(ctx)
    from ..campaign.export import campaign_table
    from ..campaign.report import write_report
    from ..campaign.store import get_campaign

    stats = write_report(campaign_table(get_campaign(name)), output, f'Campaign {name}: PM7 vs reference')
    overall = stats['overall']
    click.echo(f'{output}/index.html: n={overall["n"]} MAE={overall["mae"]} RMSE={overall["rmse"]} '
               f'max={overall["max_error"]} kcal/mol')
