"""The shell step: any command on a molecule's PM7-lowest conformer, through aiida-shell's ``ShellJob``.

For an in-house descriptor script, or a code this package has no plugin for. The ``shell`` namespace of
:class:`~.batch.ConformerBatchWorkChain` and :class:`~.pipeline.ConformerToDftWorkChain`:

* ``shell.command`` (``Str``): the command line, e.g. ``xtb {lowest} --ohess``. Its first word is the executable
  (found with ``which`` on the computer of the workchain's codes, by aiida-shell's ``prepare_code``, unless
  ``shell.code`` is given); ``{lowest}`` is replaced by the molecule's PM7-lowest conformer as an XYZ file
  (``lowest.xyz``, made by the calcfunction :func:`~aiida_grimperium.calculations.functions.structures.
  conformer_xyz`: its comment line holds ``mol_id``, ``charge`` and ``multiplicity``). Literal braces are doubled.
* ``shell.outputs`` (``List``): file names or globs of the working directory to keep as output nodes of the
  ``ShellJob`` (``stdout`` and ``stderr`` are always kept).
* ``shell.options`` (``Dict``): its ``metadata.options`` (default: one process on one machine).
* ``shell.code``: the code of the executable (campaigns give the one ``prepare_code`` made at submission).

After MOPAC (and DFT, if any) every molecule that succeeded gets one ``ShellJob``, called ``shell_<key>`` by a
batch (``shell`` by the pipeline), with the extra ``mol_id``. A command that fails (non-zero exit status, a kept
file missing) fails only that molecule's shell step: the summary gets ``shell_status`` ``FAILED`` and
``shell_error`` (the exit status and the tail of stderr); the PM7 and DFT results stand, and the molecule is not
counted as failed. A command that exits 0 but writes to stderr (xtb always does) succeeded.
"""
from __future__ import annotations

import shlex
import string

from aiida import orm

from ..calculations.functions.structures import conformer_xyz
from .base import LaunchOnce, outputs_of

#: The one placeholder of a shell command: the PM7-lowest conformer as an XYZ file.
PLACEHOLDER = 'lowest'
#: Files every ShellJob writes itself; they cannot be asked for in ``shell.outputs``.
RESERVED_OUTPUTS = ('stdout', 'stderr', 'status')
#: ``metadata.options`` of a ShellJob unless ``shell.options`` say otherwise: one serial process.
DEFAULT_SHELL_OPTIONS = {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}}
#: ShellJob exit statuses after which the command exited 0 (410: it wrote to stderr, as xtb always does).
SHELL_OK = (0, 410)
#: ShellJob's exit status for a command that exited non-zero.
SHELL_COMMAND_FAILED = 400
#: Characters of stderr kept in ``shell_error``.
STDERR_TAIL = 300


def parse_command(command: str) -> tuple[str, list[str]]:
    """The executable and the arguments of ``command``; ``ValueError`` saying what is wrong with it."""
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise ValueError(f'`{command}` cannot be split into words ({exc})') from None
    if not words:
        raise ValueError('the command is empty')
    executable, arguments = words[0], words[1:]
    if _placeholders(executable):
        raise ValueError(f'the executable of `{command}` cannot be a placeholder: write the command first')
    count = 0
    for word in arguments:
        names = _placeholders(word)
        wrong = [name for name in names if name != PLACEHOLDER]
        if wrong:
            raise ValueError(f'`{{{wrong[0]}}}` in `{command}` is not a placeholder: the only one is `{{lowest}}` '
                             '(the PM7-lowest conformer as an XYZ file); double literal braces ({{ }})')
        if len(names) > 1:
            raise ValueError(f'`{word}` in `{command}` has more than one placeholder: one per word')
        count += len(names)
    if not count:
        raise ValueError(f'`{command}` has no `{{lowest}}`: put it where the command takes the XYZ file')
    redirections = [word for word in arguments if word in ('<', '>')]
    if redirections:
        raise ValueError(f'`{redirections[0]}` in `{command}`: no redirections, stdout and stderr are kept as '
                         'the files `stdout` and `stderr`')
    return executable, arguments


def _placeholders(word: str) -> list[str]:
    try:
        return [name for _, name, _, _ in string.Formatter().parse(word) if name is not None]
    except ValueError as exc:  # a single brace
        raise ValueError(f'`{word}`: {exc}; double literal braces ({{{{ }}}})') from None


def check_outputs(outputs: list) -> None:
    """``ValueError`` unless ``outputs`` are relative file names or globs, none of them a reserved one."""
    for name in outputs:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f'`{name}` is not a file name')
        if name in RESERVED_OUTPUTS:
            raise ValueError(f'`{name}` is always kept: leave it out of the outputs')
        if name.startswith('/') or '..' in name.split('/'):
            raise ValueError(f'`{name}` is not inside the working directory: give a relative name')


def validate_shell_namespace(value, _=None) -> str | None:
    """The ``shell`` namespace: a command with ``{lowest}`` and kept files that can be kept."""
    if not value:
        return None
    try:
        parse_command(value['command'].value)
        if 'outputs' in value:
            check_outputs(value['outputs'].get_list())
    except ValueError as exc:
        return f'shell: {exc}'
    return None


def find_shell_code(command: str, computer: orm.Computer) -> orm.AbstractCode:
    """The code of ``command``'s executable on ``computer``: aiida-shell's ``prepare_code`` (the code of that
    label on the computer, or a new ``ShellCode`` of what ``which`` finds there); ``ValueError`` if it is not
    there."""
    from aiida_shell.launch import prepare_code

    executable, _ = parse_command(command)
    try:
        return prepare_code(executable, computer)
    except ValueError:
        raise ValueError(f'`{executable}` is not on computer `{computer.label}` (`which {executable}` found '
                         'nothing): give its full path, or install it there') from None


def shell_error(node: orm.ProcessNode) -> str:
    """Why the ShellJob ``node`` failed: the command's exit status and the tail of its stderr, or the job's own
    message."""
    if node.is_excepted:
        return 'the shell job excepted (see `verdi process report`)'
    if node.is_killed:
        return 'the shell job was killed'
    if node.exit_status == SHELL_COMMAND_FAILED:
        outputs = outputs_of(node)
        stderr = outputs['stderr'].get_content().strip() if 'stderr' in outputs else ''
        # ShellJob's message is "... non-zero status: <status> <stderr>."; the status is its first word
        status = (node.exit_message or '').partition('status: ')[2].split(' ', 1)[0] or '?'
        tail = stderr[-STDERR_TAIL:].strip()
        return f'the command exited with status {status}' + (f': {tail}' if tail else ' (stderr empty)')
    return f'{node.exit_message or "failed"} (exit {node.exit_status})'


def shell_fields(node: orm.ProcessNode) -> dict:
    """The summary's shell fields of the finished ShellJob ``node``: ``shell_status`` (``OK``/``FAILED``),
    ``shell_pk``, ``shell_outputs`` (``{file name: pk}`` of the files kept, stdout and stderr included) and, when
    it failed, ``shell_error``."""
    kept = {}
    for label, output in outputs_of(node).items():
        if isinstance(output, orm.SinglefileData):
            kept[output.filename] = output.pk
        elif isinstance(output, orm.FolderData) and label != 'retrieved':
            kept[label] = output.pk
    fields = {'shell_pk': node.pk, 'shell_outputs': kept}
    if node.is_finished and node.exit_status in SHELL_OK:
        return {**fields, 'shell_status': 'OK'}
    return {**fields, 'shell_status': 'FAILED', 'shell_error': shell_error(node)}


class ShellStep(LaunchOnce):
    """Mixin of a ``WorkChain`` with the ``shell`` namespace (:func:`define_shell` in its ``define``)."""

    @classmethod
    def define_shell(cls, spec) -> None:
        spec.input_namespace('shell', required=False, populate_defaults=False,
                             validator=validate_shell_namespace,
                             help='Run a command on each PM7-lowest conformer after MOPAC (and DFT): '
                                  'aiida-shell ShellJobs; see aiida_grimperium.workchains.shell.')
        spec.input('shell.command', valid_type=orm.Str, help='The command line, `{lowest}` for the XYZ file.')
        spec.input('shell.outputs', valid_type=orm.List, required=False,
                   help='File names or globs to keep as output nodes (stdout and stderr are kept).')
        spec.input('shell.options', valid_type=orm.Dict, required=False, help='metadata.options of the ShellJobs.')
        spec.input('shell.code', valid_type=orm.AbstractCode, required=False,
                   help='The code of the executable (default: aiida-shell prepare_code on the computer of the codes).')

    def has_shell_step(self) -> bool:
        return 'shell' in self.inputs and 'command' in self.inputs.shell

    def shell_computer(self) -> orm.Computer:
        """The computer the ShellJobs run on when no ``shell.code`` is given (the workchain's codes')."""
        raise NotImplementedError

    def shell_code(self) -> orm.AbstractCode:
        """``shell.code``, or the executable's code on :meth:`shell_computer`; ``ValueError`` if there is none."""
        if 'code' in self.inputs.shell:
            return self.inputs.shell.code
        return find_shell_code(self.inputs.shell.command.value, self.shell_computer())

    def submit_shell(self, key: str | None, code: orm.AbstractCode, structure: orm.StructureData,
                     molecule: dict) -> orm.ProcessNode:
        """Submit the ShellJob of one molecule (``molecule``: mol_id, charge, multiplicity) on its ``structure``,
        called ``shell_<key>`` (``shell`` without a key) after the calcfunction ``xyz_<key>`` that writes the XYZ
        file; ``ValueError`` if the ShellJob refuses its inputs (e.g. bad ``shell.options``)."""
        from aiida_shell import ShellJob

        suffix = f'_{key}' if key else ''
        xyz = self.run_once(f'xyz{suffix}', conformer_xyz, structure=structure, molecule=orm.Dict(molecule))['result']
        _, arguments = parse_command(self.inputs.shell.command.value)
        options = {**DEFAULT_SHELL_OPTIONS, **(self.inputs.shell.options.get_dict() if 'options' in self.inputs.shell else {})}
        inputs = {'code': code, 'arguments': orm.List(arguments), 'nodes': {PLACEHOLDER: xyz},
                  'metadata': {'options': options, 'label': str(molecule.get('mol_id', ''))}}
        if 'outputs' in self.inputs.shell:
            inputs['outputs'] = self.inputs.shell.outputs
        node = self.submit_once(f'shell{suffix}', ShellJob, **inputs)
        if molecule.get('mol_id') is not None:  # the QueryBuilder finds a molecule's ShellJob by this extra
            node.base.extras.set('mol_id', molecule['mol_id'])
        return node
