"""Protocols (``fast`` / ``balanced`` / ``stringent``) for every code, on aiida-quantumespresso's ``ProtocolMixin``.

Every ``protocols/<code>.yaml`` has the layout of aiida-quantumespresso's protocol files:

* ``default_protocol``: the name used when none is given;
* ``default_inputs``: inputs shaped like the workchain's builder (``mopac: {parameters: ..., metadata: {options:
  ...}}``, ``max_iterations``, ...), plus the *meta* inputs that are not ports (``meta_parameters``: per-atom
  thresholds, k-point spacing, vacuum, ...);
* ``protocols``: ``{name: {description, ...}}``, each deep-merged onto ``default_inputs``;
* ``meta_inputs_schema``: the meta inputs' keys, so that an override with an unknown key is warned about.

A workchain mixes in :class:`GrimperiumProtocolMixin`, names its file with ``_protocol_name`` and gets
``get_available_protocols()``, ``get_default_protocol()`` and ``get_protocol_inputs(protocol, overrides)``, where
``overrides`` has the builder's shape and is deep-merged; its ``get_builder_from_protocol(code, structure,
protocol=None, overrides=None, options=None, **kwargs)`` merges ``options`` into the protocol's with
:meth:`GrimperiumProtocolMixin.merged_options`.
"""
from __future__ import annotations

import pathlib

from aiida_quantumespresso.workflows.protocols.utils import ProtocolMixin, recursive_merge

PROTOCOL_DIR = pathlib.Path(__file__).parent

__all__ = ('PROTOCOL_DIR', 'GrimperiumProtocolMixin', 'deep_merge')


def deep_merge(base: dict, overrides: dict | None) -> dict:
    """A new dict: ``base`` updated recursively with ``overrides`` (neither is mutated)."""
    return recursive_merge(base, overrides or {})


class GrimperiumProtocolMixin(ProtocolMixin):
    """aiida-quantumespresso's ``ProtocolMixin`` reading ``protocols/<_protocol_name>.yaml`` of this package."""

    #: The stem of the protocol file (``mopac`` for ``protocols/mopac.yaml``).
    _protocol_name: str = ''

    @classmethod
    def get_protocol_filepath(cls) -> pathlib.Path:
        return PROTOCOL_DIR / f'{cls._protocol_name}.yaml'

    @classmethod
    def get_protocol_inputs(cls, protocol=None, overrides=None) -> dict:
        """aiida-quantumespresso's, with a mistyped protocol name refused by a message that lists the names."""
        try:
            return super().get_protocol_inputs(protocol, overrides)
        except ValueError:  # the only ValueError it raises: an unknown protocol name (aliases are resolved first)
            names = sorted(cls.get_available_protocols())
            raise ValueError(f'`{protocol}` is not a protocol of {cls.__name__}; choose one of {names}') from None

    @classmethod
    def builder_from_protocol_inputs(cls, inputs: dict, code, options: dict | None = None):
        """A builder of one of this package's restart workchains with what every protocol sets: ``max_iterations``,
        ``clean_workdir``, the code, and the protocol's options of the CalcJob namespace (``_inputs_namespace``)
        with ``options`` merged on top (:meth:`merged_options`). The caller adds the code's own inputs."""
        from aiida import orm

        builder = cls.get_builder()
        builder.max_iterations = orm.Int(inputs['max_iterations'])
        builder.clean_workdir = orm.Bool(inputs['clean_workdir'])
        calculation = builder[cls._inputs_namespace]
        calculation.code = code
        protocol_options = inputs[cls._inputs_namespace]['metadata']['options']
        calculation.metadata.options = cls.merged_options(protocol_options, options, code)
        return builder

    @classmethod
    def merged_options(cls, protocol_options: dict | None, options: dict | None, code=None) -> dict:
        """The protocol's ``metadata.options`` with the caller's ``options`` deep-merged on top, and the
        default resources of ``code``'s scheduler (aiida-quantumespresso's ``set_default_resources``)."""
        merged = deep_merge(protocol_options or {}, options)
        if code is not None:
            merged = cls.set_default_resources(merged, code.computer.scheduler_type)
        return merged

