"""The :class:`ConformerToDftWorkChain` builder of one campaign molecule, from the campaign's settings."""
from __future__ import annotations

from aiida import orm

from ..protocols import get_protocol_inputs
from .molecules import Molecule

DFT_CODES = ('pw', 'vasp', 'crystal')


def load_codes(settings: dict) -> dict[str, orm.AbstractCode]:
    """The codes the settings need, loaded by label; a missing one is a clear error naming the label."""
    from aiida.common.exceptions import NotExistent

    needed = ['xtb', 'mopac']
    if settings['engine'] == 'crest':
        needed.append('crest')
    if settings.get('dft'):
        needed.append(settings['dft'])
    codes = {}
    for name in needed:
        label = settings['codes'][name]
        try:
            codes[name] = orm.load_code(label)
        except NotExistent:
            raise ValueError(f'code `{label}` for {name} does not exist: run `grimperium setup` or pass its label') from None
    return codes


def scheduler_options(settings: dict, base: dict) -> dict:
    """``metadata.options`` from a protocol's ``base`` with the campaign's scheduler overrides on top."""
    return {**base, **{k: v for k, v in settings.get('scheduler', {}).items() if v is not None}}


def pipeline_builder(molecule: Molecule, settings: dict, codes: dict | None = None):
    """A builder of the pipeline for ``molecule`` with the campaign ``settings`` (see ``store.DEFAULT_SETTINGS``)."""
    from ..workchains.pipeline import ConformerToDftWorkChain

    codes = codes or load_codes(settings)
    builder = ConformerToDftWorkChain.get_builder()
    builder.smiles = orm.Str(molecule.smiles)
    builder.charge = orm.Int(molecule.charge)
    builder.multiplicity = orm.Int(molecule.multiplicity)
    builder.top_n = orm.Int(int(settings['top_n']))

    builder.conformers.engine = orm.Str(settings['engine'])
    builder.conformers.xtb_code = codes['xtb']
    if 'crest' in codes:
        builder.conformers.crest_code = codes['crest']
    builder.conformers.num_conformers = orm.Int(int(settings['num_conformers']))
    if settings.get('scheduler'):
        builder.conformers.options = orm.Dict(scheduler_options(settings, {
            'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}}))

    mopac = get_protocol_inputs('mopac', 'balanced')
    builder.mopac.max_iterations = orm.Int(mopac['max_iterations'])
    builder.mopac.mopac.code = codes['mopac']
    builder.mopac.mopac.parameters = orm.Dict(mopac['mopac']['parameters'])
    builder.mopac.mopac.metadata.options = scheduler_options(settings, mopac['mopac']['metadata']['options'])

    if settings.get('dft'):
        builder.dft.code = codes[settings['dft']]
        builder.dft.protocol = orm.Str(settings['protocol'])
        if settings.get('scheduler'):
            builder.dft.options = orm.Dict(scheduler_options(settings, {
                'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}}))
    return builder
