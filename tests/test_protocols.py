"""The one protocol API (aiida-quantumespresso's ``ProtocolMixin``) of the MOPAC, xtb, CREST, VASP and CRYSTAL builders.

Each case overrides one value of the builder's inputs and checks it together with a sibling the protocol sets; the
expected values are those of ``protocols/<code>.yaml`` (balanced, the default).
"""
from __future__ import annotations

import pathlib
import warnings

import pytest
from aiida import orm

FIXTURES = pathlib.Path(__file__).parent / 'fixtures'
POTCARS = FIXTURES / 'vasp' / 'potcar_library'
SERIAL = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}


def water():
    from aiida_grimperium.structures import molecule_structure

    return molecule_structure(['O', 'H', 'H'], [[0, 0, 0.12], [0, 0.76, -0.47], [0, -0.76, -0.47]])


def mgo():
    h = 4.21 / 2
    structure = orm.StructureData(cell=[[0, h, h], [h, 0, h], [h, h, 0]])
    structure.append_atom(position=(0, 0, 0), symbols='Mg')
    structure.append_atom(position=(h, h, h), symbols='O')
    return structure


def silicon():
    a = 5.43
    structure = orm.StructureData(cell=[[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]])
    structure.append_atom(position=(0, 0, 0), symbols='Si')
    structure.append_atom(position=(a / 4, a / 4, a / 4), symbols='Si')
    return structure


#: code -> (workchain module, class, structure, builder keywords, the override, its key, a sibling key and its value)
CASES = {
    'mopac': ('mopac', 'MopacBaseWorkChain', water, {}, ('method', 'PM6'), ('task', 'optimization')),
    'xtb': ('xtb', 'XtbBaseWorkChain', water, {}, ('accuracy', 0.5), ('opt_level', 'tight')),
    'crest': ('crest', 'CrestBaseWorkChain', water, {}, ('energy_window', 8.0), ('rmsd_threshold', 0.125)),
    'vasp': ('vasp', 'VaspBaseWorkChain', silicon, {'potcar_library': str(POTCARS)}, ('ENCUT', 600), ('EDIFF', 1e-6)),
    'crystal': ('crystal', 'CrystalBaseWorkChain', mgo, {}, ('hamiltonian', 'HF'), ('tolinteg', [7, 7, 7, 7, 14])),
}


def workchain(code):
    import importlib

    module, name, *_ = CASES[code]
    return getattr(importlib.import_module(f'aiida_grimperium.workchains.{module}'), name)


@pytest.fixture
def build(aiida_localhost):
    """``build(code, protocol=None, **kwargs)``: the builder of ``code``'s workchain for its test structure."""
    def factory(code, protocol=None, **kwargs):
        _, _, structure, keywords, *_ = CASES[code]
        installed = orm.InstalledCode(label=f'{code}-protocols', computer=aiida_localhost,
                                      filepath_executable='/bin/true', default_calc_job_plugin=f'grimperium.{code}').store()
        return workchain(code).get_builder_from_protocol(installed, structure(), protocol, **keywords, **kwargs)

    return factory


def unrecognised(records) -> list[str]:
    return [str(r.message) for r in records if 'unrecognised key' in str(r.message)]


@pytest.mark.parametrize('code', CASES)
def test_available_protocols_and_default(code):
    available = workchain(code).get_available_protocols()
    assert sorted(available) == ['balanced', 'fast', 'stringent']
    assert all(isinstance(p['description'], str) and len(p['description']) > 20 for p in available.values())
    assert workchain(code).get_default_protocol() == 'balanced'


@pytest.mark.parametrize('code', CASES)
def test_overrides_are_deep_merged_into_the_builder(code, build):
    *_, (key, value), (sibling, protocol_value) = CASES[code]
    overrides = {code: {'parameters': {key: value}}, 'max_iterations': 2}
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter('always')
        builder = build(code, overrides=overrides)
    assert unrecognised(records) == []
    parameters = builder[code].parameters.get_dict()
    assert parameters[key] == value and parameters[sibling] == protocol_value
    assert builder.max_iterations.value == 2
    assert builder[code].metadata.options.resources == SERIAL  # a sibling namespace of `parameters`, kept
    assert overrides == {code: {'parameters': {key: value}}, 'max_iterations': 2}  # not mutated
    default = build(code)[code].parameters.get_dict()
    assert default[key] != value and default[sibling] == protocol_value


@pytest.mark.parametrize('code', CASES)
def test_options_are_merged_into_the_protocol_options(code, build):
    builder = build(code, options={'max_wallclock_seconds': 600})
    options = builder[code].metadata.options
    assert options.max_wallclock_seconds == 600 and options.resources == SERIAL
    builder = build(code, options={'resources': {'num_mpiprocs_per_machine': 4}})
    options = builder[code].metadata.options
    assert options.resources == {'num_machines': 1, 'num_mpiprocs_per_machine': 4}
    assert options.max_wallclock_seconds == workchain(code).get_protocol_inputs()[code]['metadata']['options'][
        'max_wallclock_seconds'] > 600


@pytest.mark.parametrize('code', CASES)
def test_an_unknown_override_key_warns(code, build):
    with pytest.warns(UserWarning, match=f'unrecognised key in overrides: {code}.paramters'):
        build(code, overrides={code: {'paramters': {'x': 1}}})
    with pytest.warns(UserWarning, match='unrecognised key in overrides: max_iteration$'):
        build(code, overrides={'max_iteration': 2})


@pytest.mark.parametrize('code', CASES)
def test_a_mistyped_protocol_raises(code, build):
    with pytest.raises(ValueError, match=r"`fats` is not a protocol of .*\['balanced', 'fast', 'stringent'\]"):
        build(code, 'fats')


def test_the_ecosystem_aliases_of_protocol_names_are_accepted(build):
    """aiida-quantumespresso's (and aiida-common-workflows') ``moderate`` and ``precise``."""
    assert build('mopac', 'precise').mopac.parameters['keywords'] == build('mopac', 'stringent').mopac.parameters['keywords']
    assert build('xtb', 'moderate').xtb.parameters['opt_level'] == 'tight'


def test_protocols_differ_where_their_descriptions_say(build):
    """The values each protocol changes, as protocols/*.yaml set them."""
    keywords = {p: build('mopac', p).mopac.parameters['keywords'] for p in ('fast', 'balanced', 'stringent')}
    assert keywords == {'fast': ['GNORM=5.0'], 'balanced': [], 'stringent': ['PRECISE', 'GNORM=0.05']}
    assert [build('xtb', p).xtb.parameters['opt_level'] for p in ('fast', 'balanced', 'stringent')] == \
        ['loose', 'tight', 'vtight']
    assert [build('crest', p).crest.parameters['mode'] for p in ('fast', 'balanced', 'stringent')] == \
        ['quick', 'default', 'default']
    assert [build('vasp', p).vasp.kpoints_spacing.value for p in ('fast', 'balanced', 'stringent')] == [0.5, 0.25, 0.15]
    assert [build('crystal', p).crystal.parameters['toldee'] for p in ('fast', 'balanced', 'stringent')] == [6, 7, 9]


def test_meta_inputs_are_overridable_without_a_warning(build):
    """VASP's ``relax_parameters`` and CRYSTAL's ``optgeom`` are meta inputs: listed in ``meta_inputs_schema``."""
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter('always')
        vasp = build('vasp', relax=True, overrides={'relax_parameters': {'NSW': 7}})
        crystal = build('crystal', relax=True, overrides={'optgeom': {'maxcycle': 9}})
    assert unrecognised(records) == []
    assert {k: vasp.vasp.parameters[k] for k in ('NSW', 'IBRION', 'ISIF')} == {'NSW': 7, 'IBRION': 2, 'ISIF': 3}
    assert crystal.crystal.parameters['optgeom'] == {'type': 'FULLOPTG', 'maxcycle': 9}


def test_the_callers_parameters_win_over_the_relaxation_block(build):
    vasp = build('vasp', relax=True, overrides={'vasp': {'parameters': {'ISIF': 2}}})
    assert vasp.vasp.parameters['ISIF'] == 2 and vasp.vasp.parameters['NSW'] == 60
    crystal = build('crystal', relax=True, overrides={'crystal': {'parameters': {'optgeom': {'type': 'ATOMONLY'}}}})
    assert crystal.crystal.parameters['optgeom'] == {'type': 'ATOMONLY', 'maxcycle': 100}

