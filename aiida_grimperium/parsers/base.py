"""The base of every grimperium AiiDA parser.

A parser here does three things only: find the retrieved output, call the code's raw parser (which never
raises), and turn the raw dict into nodes plus an exit code from :mod:`aiida_grimperium.exit_codes`.
"""
from __future__ import annotations

import pathlib
import shutil
import tempfile

from aiida import orm
from aiida.engine import ExitCode
from aiida.parsers import Parser

from ..exit_codes import resolve


class GrimperiumParser(Parser):
    """Helpers shared by the package's parsers; subclasses implement :meth:`parse`."""

    #: Key of the code in ``parsers/raw`` and in :mod:`aiida_grimperium.exit_codes`.
    CODE = ''

    def exit_for(self, label: str | None) -> ExitCode:
        """The CalcJob's exit code for a raw parser's ``exit_label`` (``ExitCode(0)`` for ``None``)."""
        if label is None:
            return ExitCode(0)
        status, label = resolve(self.CODE, label)
        return self.exit_codes[label]

    def retrieved_names(self) -> list[str]:
        return self.retrieved.base.repository.list_object_names()

    def copy_retrieved(self, names: list[str], destination: pathlib.Path) -> None:
        """Copy retrieved files that exist into ``destination``, so a raw parser can stream them from disk."""
        present = set(self.retrieved_names())
        for name in names:
            if name in present:
                with self.retrieved.base.repository.open(name, 'rb') as source, open(destination / name, 'wb') as target:
                    shutil.copyfileobj(source, target)

    def parse_retrieved(self, raw_parse_path, names: list[str], main: str) -> dict:
        """Copy ``names`` out of the retrieved folder and run ``raw_parse_path`` on ``main`` (a file or '.')."""
        with tempfile.TemporaryDirectory() as tmp:
            folder = pathlib.Path(tmp)
            self.copy_retrieved(names, folder)
            return raw_parse_path(folder / main if main != '.' else folder)

    @staticmethod
    def dict_node(data: dict) -> orm.Dict:
        """A ``Dict`` of the JSON-safe part of ``data`` (``None`` values dropped: they cannot be queried)."""
        return orm.Dict({k: v for k, v in data.items() if v is not None})
