"""Render the package's Jinja2 input templates in a sandbox.

Templates and the values put into them come partly from users (campaign CSVs, parameter dicts), so they are
rendered by :class:`jinja2.sandbox.SandboxedEnvironment`: attribute access to Python internals such as
``__class__`` or ``__subclasses__`` raises :class:`jinja2.exceptions.SecurityError` instead of running.
``StrictUndefined`` turns a missing variable into an error rather than an empty line in an input file.
The sandbox also refuses ``*`` and ``**`` results that would be huge (``{{ 'x' * 10**9 }}`` would fill memory).
"""
from __future__ import annotations

import functools

from jinja2 import PackageLoader, StrictUndefined
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

#: Largest string/list a template may build with ``*`` and largest exponent of ``**`` (an input file is small).
MAX_REPEAT = 1_000_000
MAX_EXPONENT = 1_000


class _Sandbox(SandboxedEnvironment):
    """Jinja2's sandbox plus limits on ``*`` and ``**``, which the stock sandbox lets through unbounded."""

    intercepted_binops = frozenset({'*', '**'})

    def call_binop(self, context, operator, left, right):
        if operator == '**' and isinstance(right, (int, float)) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f'exponent {right} is larger than the sandbox allows ({MAX_EXPONENT})')
        if operator == '*':
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(count, int) and len(seq) * count > MAX_REPEAT:
                    raise SecurityError(f'a repeated sequence of {len(seq) * count} items is larger than the sandbox allows')
        return super().call_binop(context, operator, left, right)


@functools.lru_cache(maxsize=1)
def environment() -> SandboxedEnvironment:
    """The package's one sandboxed environment (templates from ``aiida_grimperium/templates``)."""
    env = _Sandbox(
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
