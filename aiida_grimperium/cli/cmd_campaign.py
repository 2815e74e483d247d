"""``grimperium validate | campaign submit/run/status/rerun/list | export | report``: CSV campaigns on the daemon.

Exit status of every command: 0 done; 1 refused (bad input, a campaign that does not exist, an error named in
the message); 2 wrong usage (click's); 3 (``campaign run``) finished, but some molecules ended Failed or Skip.
"""
from __future__ import annotations

import pathlib
import sys
import time

import click

from . import cmd_root, load_profile
from .options import campaign_options, max_active_option, strictness_option, user_errors

#: ``campaign run`` exit status when molecules ended Skip or Rerun (failed).
EXIT_MOLECULES_FAILED = 3


def validate_or_exit(csv_path: pathlib.Path, strict: bool, fragments: str = 'refuse'):
    """Validate the CSV; print every error and warning; exit 1 in strict mode when there are errors. The log file
    next to the CSV is rewritten every time (when that folder is writable: a pipe has none)."""
    from ..campaign.molecules import CsvFileError, read_csv, write_validation_log

    try:
        validation = read_csv(csv_path, strict=strict, fragments=fragments)
    except CsvFileError as exc:
        _write_log(write_validation_log, exc.validation)
        raise click.ClickException(str(exc))
    except ValueError as exc:
        raise click.ClickException(str(exc))
    log = _write_log(write_validation_log, validation)
    if validation.errors or validation.warnings:
        click.echo(validation.report(), err=True)
        if log is not None:
            click.echo(f'(also written to {log})', err=True)
    if validation.errors:
        if strict:
            click.echo(f'strict mode: nothing submitted; fix the {len(validation.bad_rows)} row(s) or use --permissive',
                       err=True)
            sys.exit(1)
        click.echo(f'permissive mode: skipping {len(validation.bad_rows)} bad row(s)', err=True)
    elif not validation.warnings:
        click.echo(f'{csv_path}: {validation.rows_read} rows, all valid')
    if not validation.molecules:
        raise click.ClickException(f'{csv_path}: no molecule to run')
    return validation


def _write_log(write, validation) -> pathlib.Path | None:
    try:
        return write(validation)
    except OSError:
        return None  # a pipe or a read-only folder: the report is printed all the same


@cmd_root.command('validate')
@click.argument('csv_path', type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path))
@strictness_option
def cmd_validate(csv_path, strict, fragments):
    """Validate a campaign CSV (every error with its row, mol_id and field)."""
    validate_or_exit(csv_path, strict, fragments)


@cmd_root.group('campaign')
def cmd_campaign():
    """Run CSV campaigns: batches of molecules (one xtb and one MOPAC job each), one group per campaign."""


def _settings(engine, top_n, num_conformers, dft, protocol, max_reruns, batch_size, code_labels, computer=None,
              queue=None, account=None, walltime=None, cores=None, memory_mb=None, shell_step=None,
              shell_outputs=()) -> dict:
    from ..campaign.layout import DEFAULT_SETTINGS

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
            'max_reruns': max_reruns, 'batch_size': batch_size, 'codes': codes, 'scheduler': scheduler,
            'shell': _shell_setting(shell_step, shell_outputs)}


def _shell_setting(command: str | None, outputs: tuple) -> dict | None:
    """The ``shell`` setting of ``--shell-step``/``--shell-output``, its command and files checked."""
    from ..workchains.shell import check_outputs, parse_command

    if command is None:
        if outputs:
            raise click.BadParameter('keeps the files of --shell-step: give the command too', param_hint='--shell-output')
        return None
    try:
        parse_command(command)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint='--shell-step') from None
    try:
        check_outputs(list(outputs))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint='--shell-output') from None
    return {'command': command, 'outputs': list(outputs)}


def _check_shell_step(settings: dict, codes: dict, create: bool) -> None:
    """The --shell-step executable is on the computer of the codes (``which`` there); with ``create``, its code is
    made now (aiida-shell's ``prepare_code``), so the daemon only loads it."""
    from ..workchains.shell import parse_command

    shell = settings.get('shell')
    if not shell:
        return
    from ..workchains.shell import find_shell_code

    computer = codes['mopac'].computer
    executable, _ = parse_command(shell['command'])
    try:
        if create:
            find_shell_code(shell['command'], computer)
        elif not _on_computer(executable, computer):
            raise ValueError(f'`{executable}` is not on computer `{computer.label}` (`which {executable}` found '
                             'nothing): give its full path, or install it there')
    except ValueError as exc:
        raise click.ClickException(f'--shell-step: {exc}') from None
    except Exception as exc:  # noqa: BLE001 - the transport's own reason (SSH refused, ...), in one line
        raise click.ClickException(f'--shell-step: cannot look for `{executable}` on computer `{computer.label}`: '
                                   f'{exc}') from None


def _on_computer(executable: str, computer) -> bool:
    """Whether ``prepare_code`` would find ``executable`` on ``computer``: a code of that label there, or what
    ``which`` finds (a dry run stores no code)."""
    import shlex

    from aiida import orm
    from aiida.common.exceptions import NotExistent

    try:
        orm.load_code(f'{executable}@{computer.label}')
        return True
    except NotExistent:
        pass
    with computer.get_transport() as transport:
        status, _, _ = transport.exec_command_wait(f'which {shlex.quote(executable)}')
    return status == 0


def _check_codes(settings: dict) -> dict:
    """The codes the settings need, each running the plugin of its step; a clear error otherwise."""
    from ..campaign.builders import load_codes

    try:
        codes = load_codes(settings)
    except ValueError as exc:
        raise click.ClickException(str(exc))
    for name, code in codes.items():
        if code.default_calc_job_plugin != f'grimperium.{name}':
            raise click.ClickException(f'code `{code.full_label}` runs `{code.default_calc_job_plugin}`, not '
                                       f'`grimperium.{name}`: pass --code {name}=LABEL of a {name} code')
    return codes


def _prepare(ctx, validation, group_name, dry_run, update, max_active, **settings_args):
    """Store the campaign's new molecules; return the group, the records added and the batches' concurrency."""
    from ..storage import enable_wal

    profile = load_profile(ctx)
    settings = _settings(**settings_args)
    codes = _check_codes(settings)
    _check_shell_step(settings, codes, create=not dry_run)
    from ..campaign.builders import default_max_active, min_batches
    from ..campaign.planning import plan_sizes
    from ..campaign.store import add_molecules, open_campaign

    max_active = max_active or default_max_active(codes)
    at_least = min_batches(codes, max_active)
    if dry_run:
        sizes = plan_sizes(len(validation.molecules), settings['batch_size'], at_least)
        click.echo(f'dry run: {len(validation.molecules)} molecule(s) in {len(sizes)} batch(es) of at most '
                   f'{max(sizes)} for campaign `{group_name}`, codes {", ".join(c.full_label for c in codes.values())}; '
                   'nothing stored')
        return None
    enable_wal(profile)  # idempotent; readers (status, export) never block the daemon's writes
    group, created = open_campaign(group_name, settings, update=update)
    records, added = add_molecules(group, validation.molecules, batch_size=settings['batch_size'],
                                   min_batches=at_least, num_conformers=settings['num_conformers'], update=update)
    click.echo(f'campaign `{group.label}`: {added} molecule(s) stored in {records} batch(es)'
               + ('' if created else ' (the others were there already)'))
    return group, max_active


def _daemon_running() -> bool:
    from aiida.engine.daemon.client import get_daemon_client

    return get_daemon_client().is_daemon_running


def _start(group, max_active: int) -> int | None:
    """Start a controller for what is left of the campaign; its pk, or ``None`` when nothing is left."""
    from ..campaign.store import read_molecules, rerun_batches, start_controller

    batches, attempts = rerun_batches(group, read_molecules(group))
    if not batches:
        return None
    node = start_controller(group, batches, max_active=max_active, attempts=attempts)
    click.echo(f'campaign `{group.label}`: CampaignWorkChain<{node.pk}> runs {len(batches)} batch(es), '
               f'at most {max_active} at once')
    return node.pk


@cmd_campaign.command('submit')
@click.argument('csv_path', type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path))
@campaign_options
@click.pass_context
@user_errors
def cmd_submit(ctx, csv_path, group_name, strict, fragments, dry_run, update, max_active, **settings_args):
    """Validate CSV_PATH, store its molecules and hand the campaign to the daemon; returns at once."""
    prepared = _prepare(ctx, validate_or_exit(csv_path, strict, fragments), group_name, dry_run, update, max_active, **settings_args)
    if prepared is None:
        return
    group, max_active = prepared
    if not _daemon_running():
        click.echo(f'the daemon is not running: the campaign is stored. Start it with `verdi daemon start`, then '
                   f'`grimperium campaign rerun {group.label}`')
        return
    from ..campaign.readers import active_controllers

    if active_controllers(group) and not update:
        click.echo(f'campaign `{group.label}` is already running; the new molecules run with `campaign rerun` '
                   'when it ends')
        return
    if _start(group, max_active) is None:
        click.echo(f'campaign `{group.label}`: nothing left to run')


@cmd_campaign.command('run')
@click.argument('csv_path', type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path))
@campaign_options
@click.option('--workers', type=click.IntRange(1), default=None, help='Daemon workers to start if it is not running.')
@click.pass_context
@user_errors
def cmd_run(ctx, csv_path, group_name, strict, fragments, dry_run, update, max_active, workers, **settings_args):
    """Like `submit`, but start the daemon if needed and wait with live progress until the campaign has ended.
    Exit status 3 when some molecules failed (Rerun or Skip)."""
    validation = validate_or_exit(csv_path, strict, fragments)
    prepared = _prepare(ctx, validation, group_name, dry_run, update, max_active, **settings_args)
    if prepared is None:
        return
    group, max_active = prepared
    _ensure_daemon(workers)
    from ..campaign.readers import active_controllers

    if not active_controllers(group):
        _start(group, max_active)
    _finish(group, _watch(group, until_done=True))


def _finish(group, counts: dict) -> None:
    failed = counts.get('Skip', 0) + counts.get('Rerun', 0)
    if failed:
        click.echo(f'campaign `{group.label}`: {failed} molecule(s) failed (`grimperium export` has their '
                   'error_message)', err=True)
        sys.exit(EXIT_MOLECULES_FAILED)


@cmd_campaign.command('rerun')
@click.argument('name')
@max_active_option
@click.pass_context
@user_errors
def cmd_rerun(ctx, name, max_active):
    """Run what is left of campaign NAME: molecules never run, and failed ones with reruns left."""
    load_profile(ctx)
    from ..campaign.builders import default_max_active, load_codes
    from ..campaign.readers import active_controllers
    from ..campaign.layout import load_campaign, settings_of

    group = load_campaign(name)
    if not _daemon_running():
        raise click.ClickException('the daemon is not running: start it with `verdi daemon start`, then run this again')
    if active_controllers(group):
        raise click.ClickException(f'campaign `{name}` is still running (`grimperium campaign status {name}`)')
    max_active = max_active or default_max_active(load_codes(settings_of(group)))
    if _start(group, max_active) is None:
        click.echo(f'campaign `{name}`: nothing to rerun')


@cmd_campaign.command('status')
@click.argument('name')
@click.option('--watch', is_flag=True, help='Refresh until the campaign has ended.')
@click.pass_context
@user_errors
def cmd_status(ctx, name, watch):
    """Counts per status and a progress bar per stage, counting only the molecules whose stage succeeded."""
    load_profile(ctx)
    from ..campaign.layout import load_campaign

    _watch(load_campaign(name), until_done=watch)


@cmd_campaign.command('list')
@click.pass_context
def cmd_list(ctx):
    """The campaigns of the profile."""
    load_profile(ctx)
    from ..campaign.layout import campaigns

    for name in campaigns():
        click.echo(name)


STAGES = (('conformer search', 'conformer_search_status', ('SUCCESS',)), ('MOPAC', 'mopac_status', ('OK',)),
          ('DFT', 'dft_status', ('OK',)), ('shell step', 'shell_status', ('OK',)))


def progress(group) -> tuple[dict, list[tuple[str, int]], int]:
    """Status counts, ``(stage, molecules whose stage succeeded)`` and the number of molecules."""
    from ..campaign.readers import read_molecules
    from ..campaign.layout import settings_of

    settings = settings_of(group)
    molecules = read_molecules(group)
    counts: dict[str, int] = {}
    done = {label: 0 for label, _, _ in STAGES}
    for molecule in molecules.values():
        status = molecule.status(settings['max_reruns'])
        counts[status] = counts.get(status, 0) + 1
        summary = (molecule.runs[-1].summary if molecule.runs else None) or {}
        for label, key, good in STAGES:
            done[label] += summary.get(key) in good
    shown = {'DFT': settings.get('dft'), 'shell step': settings.get('shell')}  # the optional stages, when asked
    stages = [(label, done[label]) for label, _, _ in STAGES if shown.get(label, True)]
    return counts, stages + [('done (OK)', counts.get('OK', 0))], len(molecules)


def render_progress(name: str, counts: dict, stages: list, total: int, width: int = 30) -> str:
    order = ('OK', 'Running', 'Pending', 'Rerun', 'Skip')
    lines = [f'campaign `{name}`: {total} molecules  ' + '  '.join(f'{k}={counts[k]}' for k in order if counts.get(k))]
    for label, count in stages:
        filled = int(round(width * count / total)) if total else 0
        lines.append(f'  {label:<17} [{"#" * filled}{"." * (width - filled)}] {count}/{total}')
    failed = counts.get('Rerun', 0) + counts.get('Skip', 0)
    if failed:
        lines.append(f'  failed: {failed} (Rerun {counts.get("Rerun", 0)}, Skip {counts.get("Skip", 0)})')
    return '\n'.join(lines)


def settled(counts: dict, controller_running: bool) -> bool:
    """Nothing is left to happen: no molecule runs, and none waits for a run or a rerun by a running controller.
    Batches go on when their controller ended early (wait for them); a controller that still shows as running when
    every molecule has ended (its task lost in a broker restart) has nothing left to do (do not wait for it)."""
    if counts.get('Running'):
        return False
    return not (controller_running and (counts.get('Pending') or counts.get('Rerun')))


def next_refresh(refresh: float, read_seconds: float) -> float:
    """Seconds until the next progress read: ``refresh``, or four times as long as the last read took, so that
    watching a campaign of 100 000 molecules (seconds per read) takes at most a fifth of a core from the daemon."""
    return max(refresh, 4 * read_seconds)


def _watch(group, until_done: bool, refresh: float = 2.0) -> dict:
    """Print the progress when it changes; with ``until_done`` until no controller of the campaign runs.
    Returns the last status counts."""
    from ..campaign.readers import active_controllers

    last_text = last_shown_hint = None
    while True:
        started = time.perf_counter()
        running = bool(active_controllers(group))
        counts, stages, total = progress(group)
        text = render_progress(group.label, counts, stages, total)
        if text != last_text:
            click.echo(text)
            last_text = text
        left = counts.get('Pending', 0) + counts.get('Rerun', 0)
        if not running and left and text != last_shown_hint:
            # a controller that was killed or excepted (e.g. a lost broker task) leaves molecules nobody runs
            click.echo(f'  no controller is running: `grimperium campaign rerun {group.label}` runs the {left} '
                       'molecule(s) left')
            last_shown_hint = text
        if not until_done or settled(counts, running):
            return counts
        time.sleep(next_refresh(refresh, time.perf_counter() - started))


def _ensure_daemon(workers: int | None) -> None:
    from aiida.engine.daemon.client import get_daemon_client

    client = get_daemon_client()
    if client.is_daemon_running:
        return
    click.echo(f'starting the daemon ({workers or 1} worker(s))')
    try:
        client.start_daemon(number_workers=workers or 1)
    except Exception as exc:  # noqa: BLE001 - AiiDA's own reason, in one line
        raise click.ClickException(f'the daemon did not start: {exc}')


