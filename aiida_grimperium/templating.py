"""Render the package's Jinja2 input templates in a sandbox.

Templates and the values put into them come partly from users (campaign CSVs, parameter dicts), so they are
rendered by :class:`jinja2.sandbox.SandboxedEnvironment`: attribute access to Python internals such as
``__class__`` or ``__subclasses__`` raises :class:`jinja2.exceptions.SecurityError` instead of running.
``StrictUndefined`` turns a missing variable into an error rather than an empty line in an input file.
"""
from __future__ import annotations

import functools

from jinja2 import PackageLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment


@functools.lru_cache(maxsize=1)
def environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=PackageLoader('aiida_grimperium', 'templates'),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters['fixed'] = lambda value, digits=8: f'{float(value):.{int(digits)}f}'
    return env


def render(template_name: str, **context) -> str:
    """Render ``templates/<template_name>`` with ``context``."""
    return environment().get_template(template_name).render(**context)


def render_string(source: str, **context) -> str:
    """Render a user-supplied template string in the same sandbox."""
    return environment().from_string(source).render(**context)
