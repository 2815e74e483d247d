"""The base of every grimperium AiiDA parser.

A parser here does three things only: find the retrieved output, call the code's raw parser (which never
raises), and turn the raw dict into nodes plus an exit code from :mod:`aiida_grimperium.exit_codes`.

A job the scheduler stopped (walltime, ``scancel``) leaves an incomplete or missing output; :meth:`exit_for`
then answers with what happened to the job instead of "output incomplete", so that restart handlers can act:
``ERROR_OUT_OF_WALLTIME`` (400) for a walltime kill, ``ERROR_SCHEDULER_CANCELLED`` (401) for a cancellation.

A raw parser that read the code's own words for a failure returns them as ``exit_detail`` (e.g. MOPAC's
``SPECIFIED SPIN COMPONENT NOT SPANNED BY ACTIVE SPACE``); :meth:`exit_for` puts them into the exit message,
through the code's ``{message}`` placeholder (``ExitCode.format``) or after the code's own message.
"""
from __future__ import annotations

import functools
import math
import pathlib
import re
import shutil
import tempfile

from aiida import orm
from aiida.engine import ExitCode
from aiida.parsers import Parser

from ..exit_codes import resolve

#: What a job killed before the code's end leaves behind: the raw parsers' verdicts for a cut output.
INCOMPLETE_LABELS = frozenset({'ERROR_OUTPUT_MISSING', 'ERROR_OUTPUT_READ', 'ERROR_OUTPUT_PARSE', 'ERROR_OUTPUT_INCOMPLETE'})
#: slurmstepd's line in the job's stderr, e.g. ``*** JOB 12 ON node CANCELLED AT 2026-01-01T10:00:00 ***``
#: (``... DUE TO TIME LIMIT ***`` for a walltime kill). AiiDA's own check only looks at the first line.
SLURM_CANCELLED = re.compile(r'\*\*\* JOB \S+ ON \S+ CANCELLED AT \S+(?P<walltime> DUE TO TIME LIMIT)?', re.IGNORECASE)
#: AiiDA's scheduler exit codes (set on the node before the parser runs) meaning "killed at the walltime".
SCHEDULER_WALLTIME_STATUSES = (120,)


class GrimperiumParser(Parser):
    """Helpers shared by the package's parsers; subclasses implement :meth:`parse`."""

    #: Key of the code in ``parsers/raw`` and in :mod:`aiida_grimperium.exit_codes`.
    CODE = ''

    @functools.cached_property
    def retrieved(self) -> orm.FolderData:
        """The retrieved folder, looked up once: AiiDA's property queries the links at every use, and a parser
        that copies thirty files of an xtb batch used it sixty times."""
        return super().retrieved

    @functools.cached_property
    def inputs(self):
        """The job's input nodes by port name (an ``AttributeDict``), looked up once: each ``self.node.inputs.x``
        and each ``'x' in self.node.inputs`` is a database query of all the input links."""
        from aiida.common import AttributeDict
        from aiida.common.links import LinkType

        return AttributeDict(self.node.base.links.get_incoming(link_type=LinkType.INPUT_CALC).nested())

    @functools.cached_property
    def _retrieved_names(self) -> tuple[str, ...]:
        return tuple(self.retrieved.base.repository.list_object_names())

    #: The code's own words for the failure (``exit_detail`` of the raw result), picked up by
    #: :meth:`parse_retrieved` and :meth:`out`, used by :meth:`exit_for`.
    exit_detail: str | None = None

    def out(self, link_label: str, node) -> None:
        """:meth:`Parser.out`, remembering ``exit_detail`` of an ``output_parameters`` dict for :meth:`exit_for`."""
        if link_label == 'output_parameters' and isinstance(node, orm.Dict) and node.get('exit_detail'):
            self.exit_detail = str(node.get('exit_detail'))
        super().out(link_label, node)

    def exit_for(self, label: str | None, detail: str | None = None) -> ExitCode:
        """The CalcJob's exit code for a raw parser's ``exit_label`` (``ExitCode(0)`` for ``None``).

        An output cut short (missing, unreadable, incomplete) of a job the scheduler stopped becomes the
        scheduler's verdict (:meth:`scheduler_verdict`); every other label is returned as it is.
        """
        if label is None:
            return ExitCode(0)
        if label in INCOMPLETE_LABELS:
            verdict = self.scheduler_verdict()
            if verdict is not None:
                return verdict
        status, label = resolve(self.CODE, label)
        return with_detail(self.exit_codes[label], detail or self.exit_detail)

    def scheduler_verdict(self) -> ExitCode | None:
        """``ERROR_OUT_OF_WALLTIME`` or ``ERROR_SCHEDULER_CANCELLED`` when the scheduler stopped the job, else ``None``.

        Read from the exit status AiiDA's scheduler plugin already set on the node (120, from ``sacct`` or the first
        line of the scheduler's stderr) and from slurmstepd's ``CANCELLED AT`` line anywhere in that stderr.
        """
        if self.node.exit_status in SCHEDULER_WALLTIME_STATUSES:
            return self.exit_codes.ERROR_OUT_OF_WALLTIME
        match = SLURM_CANCELLED.search(self.scheduler_stderr())
        if match is None:
            return None
        if match.group('walltime'):
            return self.exit_codes.ERROR_OUT_OF_WALLTIME
        return self.exit_codes.ERROR_SCHEDULER_CANCELLED  # scancel, preemption: recoverable by resubmitting

    def scheduler_stderr(self) -> str:
        """The scheduler's stderr file of the job as retrieved ('' when there is none)."""
        name = self.node.get_option('scheduler_stderr')
        if not name or name not in self.retrieved_names():
            return ''
        return self.retrieved.base.repository.get_object_content(name, mode='r')

    def retrieved_names(self) -> list[str]:
        return list(self._retrieved_names)

    def copy_retrieved(self, names: list[str], destination: pathlib.Path) -> None:
        """Copy retrieved files that exist into ``destination``, so a raw parser can stream them from disk."""
        present = set(self._retrieved_names)
        copy_objects(self.retrieved, [name for name in names if name in present], destination)

    def parse_retrieved(self, raw_parse_path, names: list[str], main: str) -> dict:
        """Copy ``names`` out of the retrieved folder and run ``raw_parse_path`` on ``main`` (a file or '.')."""
        with tempfile.TemporaryDirectory() as tmp:
            folder = pathlib.Path(tmp)
            self.copy_retrieved(names, folder)
            result = raw_parse_path(folder / main if main != '.' else folder)
        if isinstance(result, dict) and result.get('exit_detail'):
            self.exit_detail = str(result['exit_detail'])
        return result

    @staticmethod
    def dict_node(data: dict) -> orm.Dict:
        """A ``Dict`` of the JSON-safe part of ``data``.

        ``None`` values are dropped (they cannot be queried), and so are NaN and infinities, which a damaged
        output can produce (``1e999``) and which ``Dict`` refuses to store: the parser must return its exit
        code, not crash on them.
        """
        return orm.Dict({k: v for k, v in ((k, _finite(v)) for k, v in data.items()) if v is not None})


def with_detail(code: ExitCode, detail: str | None) -> ExitCode:
    """``code`` with the program's own words ``detail`` in its message.

    A message with a ``{message}`` placeholder is formatted (``ExitCode.format``, as aiida-quantumespresso does);
    any other message gets ``detail`` appended. Without ``detail`` a placeholder reads "no message printed".
    """
    template = code.message or ''
    if '{message}' in template:
        try:
            return code.format(message=detail or 'no message printed')
        except ValueError:  # a template with other placeholders: leave it as declared
            return code
    if not detail:
        return code
    return ExitCode(code.status, f'{template} {detail}'.strip(), code.invalidates_cache)


def copy_objects(node: orm.Node, names: list[str], destination: pathlib.Path) -> None:
    """Copy the files ``names`` of ``node``'s repository into ``destination``, asking the object store once.

    ``node.base.repository.open`` looks each file up in the store on its own (on ``core.sqlite_dos`` a query of
    the pack index each); an xtb batch has tens of files, so the parser reads them all in one request instead.
    Files with the same content share one object: it is written once and copied to its other names.
    """
    repository = node.base.repository
    names_of: dict[str, list[str]] = {}
    for name in names:
        names_of.setdefault(repository.get_object(name).key, []).append(name)
    if not names_of:
        return
    for key, stream in node.backend.get_repository().iter_object_streams(list(names_of)):
        first, *others = names_of[key]
        with open(destination / first, 'wb') as target:
            shutil.copyfileobj(stream, target)
        for other in others:
            shutil.copyfile(destination / first, destination / other)


def _finite(value):
    """``value`` with every non-finite float (at any depth) replaced by ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
