"""YAML protocols (``fast`` / ``balanced`` / ``stringent``) for every code, as in aiida-quantumespresso.

``protocols/<code>.yaml`` holds ``default_protocol``, a ``default_inputs`` mapping shared by all protocols,
and ``protocols: {name: {description, ...overrides of default_inputs}}``.
"""
from __future__ import annotations

import copy
import functools
import pathlib
import warnings

import yaml

PROTOCOL_DIR = pathlib.Path(__file__).parent


@functools.lru_cache(maxsize=None)
def _load(code: str) -> dict:
    path = PROTOCOL_DIR / f'{code}.yaml'
    with open(path, encoding='utf-8') as handle:
        return yaml.safe_load(handle)


def available(code: str) -> list[str]:
    """Names of the protocols defined for ``code``."""
    return list(_load(code)['protocols'])


def default_protocol(code: str) -> str:
    return _load(code)['default_protocol']


def deep_merge(base: dict, overrides: dict, *, path: str = '', warn_unknown: bool = True) -> dict:
    """Return a new dict: ``base`` updated recursively with ``overrides``; neither argument is mutated.

    A key of ``overrides`` that ``base`` does not have is still applied, but warned about: in a protocol it is
    usually a misspelling (``ecutwfc`` vs ``ecut_wfc``) that would otherwise be silently ignored downstream.
    """
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        where = f'{path}.{key}' if path else str(key)
        if key not in merged:
            if warn_unknown:
                warnings.warn(f'override `{where}` is not a key of the protocol; it is applied as given', UserWarning, stacklevel=2)
            merged[key] = copy.deepcopy(value)
        elif isinstance(merged[key], dict) and isinstance(value, dict):
            merged[key] = deep_merge(merged[key], value, path=where, warn_unknown=warn_unknown)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def get_protocol_inputs(code: str, protocol: str | None = None, overrides: dict | None = None) -> dict:
    """Return the inputs of ``protocol`` for ``code``, with ``overrides`` merged on top (nothing is mutated)."""
    data = _load(code)
    protocol = protocol or data['default_protocol']
    if protocol not in data['protocols']:
        raise ValueError(f'unknown protocol `{protocol}` for {code}; choose one of {sorted(data["protocols"])}')
    chosen = {k: v for k, v in data['protocols'][protocol].items() if k != 'description'}
    inputs = deep_merge(data.get('default_inputs', {}), chosen, warn_unknown=False)
    return deep_merge(inputs, overrides or {})
