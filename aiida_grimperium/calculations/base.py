"""The base class of every grimperium CalcJob: common options and the shared exit codes.

Subclasses set the class attributes below, call ``super().define(spec)`` and then declare their own inputs,
outputs and ``EXIT_CODES`` (from ``parsers/raw/<code>.py``) with :meth:`declare_exit_codes`.
"""
from __future__ import annotations

import re

from aiida import orm
from aiida.engine import CalcJob

from ..chemistry import check_charge_multiplicity
from ..exit_codes import COMMON, ExitCodeSpec
from ..structures import structure_symbols_positions

#: What a label or file name supplied by a user may contain; everything else is refused. ``\Z``, not ``$``:
#: ``$`` also matches before a trailing newline, which would let ``name\n`` through.
SAFE_NAME = re.compile(r'^[A-Za-z0-9_.+-]{1,128}\Z')
#: A scheduler option that AiiDA writes unquoted into a ``#SBATCH``/``#PBS`` line (queue, account, qos,
#: priority): a newline there would start a shell line of its own, so only plain words pass.
SAFE_SCHEDULER_WORD = re.compile(r'^[A-Za-z0-9_.:@+,=-]{1,128}\Z')
#: An environment variable name: AiiDA writes ``export NAME=<quoted value>`` with the name unquoted.
SAFE_VARIABLE = re.compile(r'^[A-Za-z_][A-Za-z0-9_]{0,127}\Z')


def threads_of(resources: dict) -> int:
    """Threads for one process of a job: all cores the job asked for on its (single) machine."""
    return int(resources.get('num_mpiprocs_per_machine', 1) or 1) * int(resources.get('num_cores_per_mpiproc', 1) or 1)


def threads_prepend_text(options) -> str:
    """``export OMP_NUM_THREADS=<threads_of>``, unless the job's ``environment_variables`` set it.

    Without it an OpenMP code takes every core of the node: two such jobs side by side on a 2-core machine run
    four threads that spin-wait on each other.
    """
    if 'OMP_NUM_THREADS' in (options.get('environment_variables') or {}):
        return ''
    return f'export OMP_NUM_THREADS={threads_of(options.resources)}'


def validate_filename(name: str) -> str | None:
    """Return an error message when ``name`` is not a plain file name (no ``/``, no ``..``, no shell characters)."""
    if not isinstance(name, str) or not SAFE_NAME.match(name) or name in {'.', '..'} or '..' in name:
        return f'`{name}` is not an allowed file name: use letters, digits, `_`, `-`, `+` and single dots only'
    return None


def validate_filename_option(value, _=None) -> str | None:
    """Port validator of the file-name options (input/output file, scheduler stdout/stderr, submit script)."""
    return None if value is None else validate_filename(value)


def validate_scheduler_word(value, _=None) -> str | None:
    """Port validator of ``queue_name``, ``account``, ``qos`` and ``priority``: one plain word."""
    if value is None or (isinstance(value, str) and SAFE_SCHEDULER_WORD.match(value)):
        return None
    return (f'{value!r} is not allowed here: a scheduler option is one word of letters, digits and `_.:@+,=-` '
            '(no spaces, quotes, `;`, `$`, backticks or newlines)')


def validate_environment(value, _=None) -> str | None:
    """Port validator of ``environment_variables``: plain names (the values are quoted by AiiDA)."""
    bad = [name for name in (value or {}) if not SAFE_VARIABLE.match(str(name))]
    return f'environment variable names {bad!r} are not plain names `[A-Za-z_][A-Za-z0-9_]*`' if bad else None


def validate_retrieve_list(value, _=None) -> str | None:
    """Port validator of ``additional_retrieve_list``: relative paths inside the working directory only."""
    for item in value or []:
        parts = str(item).split('/')
        if not isinstance(item, str) or item.startswith('/') or '..' in parts or any(c in item for c in '\n\r\0'):
            return f'`{item}` is not a path inside the working directory (no leading `/`, no `..`, no newlines)'
    return None


#: Option ports of every grimperium CalcJob and the validator that guards each (see docs/security.md).
OPTION_VALIDATORS = {
    'input_filename': validate_filename_option, 'output_filename': validate_filename_option,
    'scheduler_stdout': validate_filename_option, 'scheduler_stderr': validate_filename_option,
    'submit_script_filename': validate_filename_option,
    'queue_name': validate_scheduler_word, 'account': validate_scheduler_word, 'qos': validate_scheduler_word,
    'priority': validate_scheduler_word,
    'environment_variables': validate_environment, 'additional_retrieve_list': validate_retrieve_list,
}


def guard_options(spec) -> None:
    """Put :data:`OPTION_VALIDATORS` on a CalcJob's option ports (also on subclasses of other plugins' CalcJobs)."""
    for name, validator in OPTION_VALIDATORS.items():
        if name in spec.inputs['metadata']['options']:
            spec.inputs['metadata']['options'][name].validator = validator


class KeepsRemoteFolder:
    """For every CalcJob of this package, aiida-quantumespresso's subclasses included (``calculations/pw.py``)."""

    def parse(self, retrieved_temporary_folder=None, existing_exit_code=None):
        """AiiDA's ``parse``, after giving back a ``remote_folder`` output that a killed worker lost.

        aiida-core 2.9 (``tasks.task_upload_job``) marks a job uploaded in one commit and links its ``remote_folder``
        only at the next state change; a worker killed in between leaves an uploaded job without that output, and
        the worker that takes it over skips the upload and the output with it. The job runs and is retrieved from
        the working directory the upload recorded (``get_remote_workdir``): the output is made from that.
        """
        node = self.node
        workdir = node.get_remote_workdir()
        if workdir and 'remote_folder' not in self.outputs and \
                node.base.links.get_outgoing(link_label_filter='remote_folder').first() is None:
            self.out('remote_folder', orm.RemoteData(computer=node.computer, remote_path=workdir))
        return super().parse(retrieved_temporary_folder, existing_exit_code)


class GrimperiumCalcJob(KeepsRemoteFolder, CalcJob):
    """Common spec of the package's CalcJobs."""

    #: Name of the input file the code reads and of its main output (stdout or the code's own file).
    _DEFAULT_INPUT_FILE = 'aiida.in'
    _DEFAULT_OUTPUT_FILE = 'aiida.out'
    #: Entry point of the parser (``grimperium.<code>``).
    _DEFAULT_PARSER = ''
    #: Serial codes run one process with all cores of the job as threads; MPI codes override this.
    _DEFAULT_WITHMPI = False

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.inputs['metadata']['options']['resources'].default = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}
        spec.inputs['metadata']['options']['input_filename'].default = cls._DEFAULT_INPUT_FILE
        spec.inputs['metadata']['options']['output_filename'].default = cls._DEFAULT_OUTPUT_FILE
        spec.inputs['metadata']['options']['withmpi'].default = cls._DEFAULT_WITHMPI
        if cls._DEFAULT_PARSER:
            spec.inputs['metadata']['options']['parser_name'].default = cls._DEFAULT_PARSER
        guard_options(spec)
        cls.declare_exit_codes(spec, COMMON)

    @staticmethod
    def declare_exit_codes(spec, table: dict[str, ExitCodeSpec]) -> None:
        for code in table.values():
            spec.exit_code(code.status, code.label, message=code.message)


def archived_file(node, name: str) -> str:
    """The text of file ``name`` of a batch job (``<key>.mop``, ``<key>.out``, ``m0001_c001.out``...), which the
    job keeps in archives: its inputs in the node's repository, its outputs in ``retrieved``.

    ``FileNotFoundError`` when no archive of the job holds it.
    """
    import io
    import tarfile

    folders = [node.base.repository]
    if 'retrieved' in node.outputs:
        folders.append(node.outputs.retrieved.base.repository)
    for repository in folders:
        for archive in repository.list_object_names():
            if not archive.endswith(('.tar', '.tar.gz')):
                continue
            with tarfile.open(fileobj=io.BytesIO(repository.get_object_content(archive, mode='rb'))) as tar:
                try:
                    member = tar.extractfile(name)
                except KeyError:
                    continue
                if member is not None:
                    return member.read().decode('utf-8', errors='replace')
    raise FileNotFoundError(f'no archive of {node.process_label}<{node.pk}> holds `{name}`')


def molecule_symbols(inputs) -> list[str] | None:
    """Element symbols of the one geometry input (``structure`` or ``ensemble``); ``None`` unless exactly one is given."""
    if ('structure' in inputs) == ('ensemble' in inputs):
        return None
    if 'structure' in inputs:
        return structure_symbols_positions(inputs['structure'])[0]
    return list(inputs['ensemble'].symbols)


def charge_multiplicity(inputs) -> tuple[int, int]:
    """``charge`` and ``multiplicity`` of an inputs mapping, with the ports' defaults (0 and 1)."""
    charge = inputs['charge'].value if 'charge' in inputs else 0
    multiplicity = inputs['multiplicity'].value if 'multiplicity' in inputs else 1
    return charge, multiplicity


def validate_charge_multiplicity(symbols, inputs) -> str | None:
    """The message of :func:`~aiida_grimperium.chemistry.check_charge_multiplicity` for ``inputs``, or ``None``."""
    try:
        check_charge_multiplicity(symbols, *charge_multiplicity(inputs))
    except ValueError as exc:
        return str(exc)
    return None
