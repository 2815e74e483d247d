"""Injection and bad input: sandboxed templates, shell metacharacters in every CalcJob, file names, campaign CSVs.

Every attack is a real dry run (``metadata.dry_run``) of a grimperium CalcJob: the plugin writes its input files and
AiiDA renders ``_aiidasubmit.sh``. An attempt must end in one of two ways:

* **refused**: the inputs are rejected before anything is written, with a message; or
* **quoted**: the job script is then EXECUTED with bash in its folder (the code is ``/bin/echo``, so the run line
  prints its arguments instead of running a program) and no payload may have run. Each payload, if a shell ever
  ran it, creates a file ``ESCAPED-<n>``; the test looks for those files.

The totals (attempts, refused, quoted, escapes) go to ``benchmarks/results/injection.json``.
"""
from __future__ import annotations

import json
import pathlib
import subprocess

import pytest
from aiida import engine, orm
from aiida.plugins import CalculationFactory
from jinja2.exceptions import SecurityError, UndefinedError

from aiida_grimperium.templating import render_string

FIXTURES = pathlib.Path(__file__).parent / 'fixtures'
RESULTS = pathlib.Path(__file__).parent.parent / 'benchmarks' / 'results'

#: Each payload, if a shell runs it, creates ``ESCAPED-<n>`` in the working directory.
PAYLOADS = [
    '$(touch ESCAPED-1)', '`touch ESCAPED-2`', "x'; touch ESCAPED-3; '", 'x"; touch ESCAPED-4; "', 'x\ntouch ESCAPED-5',
    'x; touch ESCAPED-6', 'x | touch ESCAPED-7', 'x && touch ESCAPED-8', '${IFS}$(touch${IFS}ESCAPED-9)',
    'x\r\ntouch ESCAPED-10 #',
]
TALLY = {'attempts': 0, 'refused': 0, 'quoted': 0, 'escapes': 0}


@pytest.fixture(scope='module', autouse=True)
def write_tally():
    yield
    if TALLY['attempts']:  # a run of other tests only (-k) leaves the last numbers as they are
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / 'injection.json').write_text(json.dumps(TALLY, indent=2) + '\n')


# ------------------------------------------------------------------ the Jinja2 sandbox

@pytest.mark.parametrize('template', [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ cycler.__init__.__globals__.os.popen('touch ESCAPED-0').read() }}",
    "{{ lipsum.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ '{0.__class__}'.format(value) }}",
    "{{ value|attr('__class__') }}",
    "{% set c = ''.__class__ %}{{ c }}",
    "{{ 'x' * 100000000 }}",
    "{{ 2 ** 100000000 }}",
])
def test_sandbox_refuses_python_internals(template, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    TALLY['attempts'] += 1
    with pytest.raises(SecurityError):
        render_string(template, value=1)
    TALLY['refused'] += 1
    TALLY['escapes'] += len(list(tmp_path.glob('ESCAPED-*')))


def test_sandbox_undefined_names_and_values_are_data():
    """Flask-style globals do not exist; a value that looks like a template is printed, never evaluated."""
    with pytest.raises(UndefinedError):
        render_string('{{ config.items() }}')
    assert render_string('{{ title }}', title="{{ 7*7 }} {% raw %}") == "{{ 7*7 }} {% raw %}"
    assert render_string('{{ 6 * 7 }} {{ "ab" * 3 }}') == '42 ababab'  # ordinary arithmetic still works


# ------------------------------------------------------------------ CalcJobs: dry runs and job scripts

@pytest.fixture(scope='module')
def slurm_computer(tmp_path_factory):
    """A SLURM computer on localhost: a dry run only RENDERS the ``#SBATCH`` script, it never calls sbatch."""
    workdir = tmp_path_factory.mktemp('slurm-work')
    computer = orm.Computer(label='injection-slurm', hostname='localhost', transport_type='core.local',
                            scheduler_type='core.slurm', workdir=str(workdir)).store()
    computer.configure()
    return computer


@pytest.fixture(scope='module')
def inputs(slurm_computer):
    """``inputs[plugin]()`` → a fresh valid builder of that CalcJob whose code is ``/bin/echo`` on the SLURM computer."""
    from pymatgen.io.vasp import Poscar

    from aiida_grimperium.basis_sets import get_basis_sets
    from aiida_grimperium.pseudos import get_pseudos
    from aiida_grimperium.structures import molecule_structure

    water = molecule_structure(['O', 'H', 'H'], [[0, 0, 0.117], [0, 0.755, -0.471], [0, -0.755, -0.471]])
    silicon = orm.StructureData(cell=[[0, 2.715, 2.715], [2.715, 0, 2.715], [2.715, 2.715, 0]])
    silicon.append_atom(position=(0, 0, 0), symbols='Si')
    silicon.append_atom(position=(1.3575, 1.3575, 1.3575), symbols='Si')
    mgo = orm.StructureData(cell=[[0, 2.105, 2.105], [2.105, 0, 2.105], [2.105, 2.105, 0]])
    mgo.append_atom(position=(0, 0, 0), symbols='Mg')
    mgo.append_atom(position=(2.105, 2.105, 2.105), symbols='O')
    mesh = orm.KpointsData()
    mesh.set_kpoints_mesh([2, 2, 2])
    vasp_si = orm.StructureData(pymatgen=Poscar.from_file(FIXTURES / 'vasp' / 'si-simple' / 'inputs' / 'POSCAR').structure)
    pseudos = get_pseudos(silicon, 'pz')
    basis = get_basis_sets('sto-3g', ['Mg', 'O'])
    for node in basis.values():
        node.store()
    codes = {}
    for plugin in ('mopac', 'xtb', 'crest', 'pw', 'vasp', 'crystal'):
        codes[plugin] = orm.InstalledCode(label=f'echo-{plugin}', computer=slurm_computer, filepath_executable='/bin/echo',
                                          default_calc_job_plugin=f'grimperium.{plugin}').store()

    def make(plugin: str):
        builder = CalculationFactory(f'grimperium.{plugin}').get_builder()
        builder.code = codes[plugin]
        builder.metadata.options.max_wallclock_seconds = 600
        if plugin in ('mopac', 'xtb', 'crest'):
            builder.structure = water
        elif plugin == 'pw':
            # grimperium's own CalcJobs default to one serial process; aiida-quantumespresso's (grimperium.pw) to MPI
            builder.metadata.options.resources = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}
            builder.metadata.options.withmpi = False
            builder.structure, builder.kpoints, builder.pseudos = silicon, mesh, pseudos
            builder.parameters = orm.Dict({'CONTROL': {'calculation': 'scf'}, 'SYSTEM': {'ecutwfc': 16.0}})
        elif plugin == 'vasp':
            builder.structure, builder.kpoints = vasp_si, mesh
            builder.parameters = orm.Dict({'ENCUT': 240, 'SYSTEM': 'silicon'})
            builder.potcar_library = orm.Str(str(FIXTURES / 'vasp' / 'potcar_library'))
        else:
            builder.structure, builder.basis_sets = mgo, basis
            builder.parameters = orm.Dict({'shrink': 4})
        return builder

    return make


def attempt(prepare, folder: pathlib.Path, monkeypatch) -> str:
    """Build (``prepare()``) and dry-run in ``folder``; run the job script if accepted. Returns 'refused' or 'quoted'.

    A builder checks each port when it is set, so a refusal can come from ``prepare()`` itself.
    """
    folder.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(folder)  # the dry run writes submit_test/ into the working directory
    TALLY['attempts'] += 1
    try:
        builder = prepare()
        builder.metadata.dry_run = True
        builder.metadata.store_provenance = False
        _, node = engine.run_get_node(builder)
    except (ValueError, TypeError) as exc:  # input validation (ports and validators) and prepare_for_submission
        assert str(exc).strip(), 'refused without a message'
        TALLY['refused'] += 1
        return 'refused'
    run = pathlib.Path(node.dry_run_info['folder'])
    script = run / '_aiidasubmit.sh'
    subprocess.run(['bash', script.name], cwd=run, capture_output=True, timeout=30, env={'PATH': '/usr/bin:/bin'})
    escaped = sorted(str(p.relative_to(folder)) for p in folder.rglob('ESCAPED-*'))
    TALLY['escapes'] += len(escaped)
    assert not escaped, f'payload ran: {escaped}\n{script.read_text()}'
    TALLY['quoted'] += 1
    return 'quoted'


PLUGINS = ('mopac', 'xtb', 'crest', 'pw', 'vasp', 'crystal')


def build(inputs, plugin: str, change=None):
    """A ``prepare`` for :func:`attempt`: a valid builder of ``plugin`` with ``change(builder)`` applied."""
    def prepare():
        builder = inputs(plugin)
        if change is not None:
            change(builder)
        return builder
    return prepare


def set_option(name, value):
    return lambda builder: builder.metadata.options.__setitem__(name, value)


@pytest.mark.parametrize('plugin', PLUGINS)
def test_label_and_description_never_reach_the_shell(plugin, inputs, tmp_path, monkeypatch):
    for index, payload in enumerate(PAYLOADS):
        def change(builder, payload=payload, other=PAYLOADS[-1 - index]):
            builder.metadata.label, builder.metadata.description = payload, other
        assert attempt(build(inputs, plugin, change), tmp_path / str(index), monkeypatch) == 'quoted'


@pytest.mark.parametrize('option', ['queue_name', 'account', 'qos', 'priority'])
def test_scheduler_options_with_metacharacters_are_refused(option, inputs, tmp_path, monkeypatch):
    """These options are written unquoted into ``#SBATCH`` lines: a newline would start a shell line."""
    for index, payload in enumerate(PAYLOADS):
        prepare = build(inputs, PLUGINS[index % len(PLUGINS)], set_option(option, payload))
        assert attempt(prepare, tmp_path / str(index), monkeypatch) == 'refused', payload
    # a plain word is still accepted and written
    assert attempt(build(inputs, 'mopac', set_option(option, 'debug-1')), tmp_path / 'plain', monkeypatch) == 'quoted'
    assert '=debug-1' in next((tmp_path / 'plain').rglob('_aiidasubmit.sh')).read_text()


def test_the_detector_sees_an_unguarded_option(slurm_computer, tmp_path, monkeypatch):
    """Control: aiida-core's own ``core.arithmetic.add`` has no such validator, and the same payload in ``account``
    becomes a shell line of its own that runs. This is what the checks above detect (not counted in the tally)."""
    code = orm.InstalledCode(label='echo-add', computer=slurm_computer, filepath_executable='/bin/echo',
                             default_calc_job_plugin='core.arithmetic.add').store()
    builder = CalculationFactory('core.arithmetic.add').get_builder()
    builder.code, builder.x, builder.y = code, orm.Int(1), orm.Int(2)
    builder.metadata.options.account = PAYLOADS[4]
    builder.metadata.dry_run, builder.metadata.store_provenance = True, False
    monkeypatch.chdir(tmp_path)
    _, node = engine.run_get_node(builder)
    run = pathlib.Path(node.dry_run_info['folder'])
    assert '\ntouch ESCAPED-5\n' in (run / '_aiidasubmit.sh').read_text()
    subprocess.run(['bash', '_aiidasubmit.sh'], cwd=run, capture_output=True, timeout=30)
    assert (run / 'ESCAPED-5').is_file()


@pytest.mark.parametrize('option', ['input_filename', 'output_filename', 'scheduler_stdout', 'scheduler_stderr'])
def test_file_name_options_refuse_paths_and_metacharacters(option, inputs, tmp_path, monkeypatch):
    names = ['../escape.out', '/tmp/escape.out', 'sub/dir.out', '..', 'a b.out', 'ok.out\n', *PAYLOADS[:4]]
    for index, name in enumerate(names):
        prepare = build(inputs, PLUGINS[index % len(PLUGINS)], set_option(option, name))
        assert attempt(prepare, tmp_path / str(index), monkeypatch) == 'refused', name


def test_environment_variables(inputs, tmp_path, monkeypatch):
    """Values are quoted by AiiDA (the payload reaches the program verbatim); names must be plain."""
    values = {f'GRIM_{i}': p for i, p in enumerate(PAYLOADS)}
    assert attempt(build(inputs, 'xtb', set_option('environment_variables', values)), tmp_path / 'v', monkeypatch) == 'quoted'
    for index, name in enumerate(['X; touch ESCAPED-11; Y', 'X=$(touch ESCAPED-12)', 'X\ntouch ESCAPED-13', '1X']):
        prepare = build(inputs, 'xtb', set_option('environment_variables', {name: '1'}))
        assert attempt(prepare, tmp_path / f'name{index}', monkeypatch) == 'refused', name


def test_retrieve_lists_stay_inside_the_run_folder(inputs, tmp_path, monkeypatch):
    for index, path in enumerate(['../../etc/passwd', '/etc/passwd', 'a/../../b']):
        prepare = build(inputs, 'mopac', set_option('additional_retrieve_list', [path]))
        assert attempt(prepare, tmp_path / f'opt{index}', monkeypatch) == 'refused', path
        for key in ('additional_retrieve_list', 'parent_folder_files'):
            prepare = build(inputs, 'vasp', lambda b, key=key, path=path: setattr(b, 'settings', orm.Dict({key: [path]})))
            assert attempt(prepare, tmp_path / f'{key}{index}', monkeypatch) == 'refused', path


def test_vasp_potcar_mapping_cannot_leave_the_library(inputs, tmp_path, monkeypatch):
    for index, entry in enumerate(['../Si', 'Si/../../O', 'Si\n', '/etc']):
        prepare = build(inputs, 'vasp', lambda b, entry=entry: setattr(b, 'potcar_mapping', orm.Dict({'Si': entry})))
        assert attempt(prepare, tmp_path / str(index), monkeypatch) == 'refused', entry


#: Code parameters that carry user text: (plugin, how to put the payload in, what must happen).
#: 'refused': the validator rejects every payload; 'newline': refused only when the payload has a line break,
#: else written quoted into the input file (which no shell reads) or quoted on the command line.
PARAMETER_ATTACKS = [
    ('mopac', lambda b, p: setattr(b, 'parameters', orm.Dict({'keywords': [p]})), 'refused'),
    ('mopac', lambda b, p: setattr(b, 'parameters', orm.Dict({'keywords': ['GNORM=1.0' + p]})), 'refused'),
    ('xtb', lambda b, p: setattr(b, 'parameters', orm.Dict({'solvent': p})), 'refused'),
    ('xtb', lambda b, p: setattr(b, 'parameters', orm.Dict({'solvent': 'water\n'})), 'refused'),
    ('xtb', lambda b, p: setattr(b, 'parameters', orm.Dict({'method': p})), 'refused'),
    ('crest', lambda b, p: setattr(b, 'parameters', orm.Dict({'solvent': p})), 'refused'),
    ('crest', lambda b, p: setattr(b, 'parameters', orm.Dict({'mode': p})), 'refused'),
    ('pw', lambda b, p: setattr(b, 'parameters', orm.Dict({'CONTROL': {'calculation': 'scf', 'title': p}, 'SYSTEM': {'ecutwfc': 16.0}})), 'newline'),
    ('pw', lambda b, p: setattr(b, 'parameters', orm.Dict({'CONTROL': {'calculation': 'scf'}, 'SYSTEM': {'ecutwfc': 16.0, f'nbnd{p}': 8}})), 'refused'),
    ('pw', lambda b, p: setattr(b, 'parameters', orm.Dict({'CONTROL': {'calculation': 'scf'}, 'SYSTEM': {'ecutwfc': 16.0, 'starting_magnetization(1)' + p: 0.1}})), 'refused'),
    ('pw', lambda b, p: setattr(b, 'settings', orm.Dict({'cmdline': ['-nk', p]})), 'quoted'),
    ('vasp', lambda b, p: setattr(b, 'parameters', orm.Dict({'ENCUT': 240, 'SYSTEM': p})), 'newline'),
    ('vasp', lambda b, p: setattr(b, 'parameters', orm.Dict({'ENCUT': 240, f'SYSTEM{p}': 'x'})), 'refused'),
    ('crystal', lambda b, p: setattr(b, 'parameters', orm.Dict({'shrink': 4, 'title': p})), 'newline'),
    ('crystal', lambda b, p: setattr(b, 'parameters', orm.Dict({'shrink': 4, 'hamiltonian': p})), 'refused'),
]


@pytest.mark.parametrize('plugin,inject,expected', PARAMETER_ATTACKS, ids=lambda x: x if isinstance(x, str) else '')
def test_code_parameters_with_metacharacters(plugin, inject, expected, inputs, tmp_path, monkeypatch):
    for index, payload in enumerate(PAYLOADS):
        outcome = attempt(build(inputs, plugin, lambda b, p=payload: inject(b, p)), tmp_path / str(index), monkeypatch)
        if expected == 'newline':
            quote = plugin == 'pw' and "'" in payload  # pw text goes between single quotes, unescaped
            want = 'refused' if ('\n' in payload or '\r' in payload or quote) else 'quoted'
        else:
            want = expected
        assert outcome == want, (plugin, payload)


def test_quoted_parameters_arrive_verbatim(inputs, tmp_path, monkeypatch):
    """pw.x command-line flags and a one-line title: the program sees exactly the text given, as ONE value."""
    def change(builder):
        builder.settings = orm.Dict({'cmdline': ['-nk', PAYLOADS[0]]})
        builder.parameters = orm.Dict({'CONTROL': {'calculation': 'scf', 'title': 'a $(touch ESCAPED-14)'},
                                       'SYSTEM': {'ecutwfc': 16.0}})
    assert attempt(build(inputs, 'pw', change), tmp_path, monkeypatch) == 'quoted'
    run = next(tmp_path.rglob('_aiidasubmit.sh')).parent
    assert (run / 'aiida.out').read_text() == f'-nk {PAYLOADS[0]} -in aiida.in\n'  # what /bin/echo was given
    assert "  title = 'a $(touch ESCAPED-14)'" in (run / 'aiida.in').read_text()

    def quoted_title(builder):  # aiida-quantumespresso writes text between quotes as it is: refused here
        builder.parameters = orm.Dict({'CONTROL': {'calculation': 'scf', 'title': "it's"}, 'SYSTEM': {'ecutwfc': 16.0}})
    assert attempt(build(inputs, 'pw', quoted_title), tmp_path / 'quote', monkeypatch) == 'refused'


# ------------------------------------------------------------------ campaign CSVs

def test_campaign_csv_values_do_not_escape(tmp_path, monkeypatch):
    """mol_id is a label (never a path) and SMILES go to RDKit: neither reaches a shell or the file system."""
    import pandas as pd

    from aiida_grimperium.campaign.export import write_atomic
    from aiida_grimperium.campaign.molecules import read_csv
    from aiida_grimperium.campaign.report import write_report

    monkeypatch.chdir(tmp_path)
    (tmp_path / 'm.csv').write_text(
        'mol_id,smiles,charge,multiplicity\n'
        '../../evil,C,0,1\n'
        '"$(touch ESCAPED-20)",O,0,1\n'
        '<script>alert(1)</script>,CC,0,1\n'
        'nl,"C\n$(touch ESCAPED-21)",0,1\n'
        'bad,"C1CC$(touch ESCAPED-22)",0,1\n'
    )
    validation = read_csv(tmp_path / 'm.csv')
    TALLY['attempts'] += validation.rows_read
    assert any(error.mol_id == 'bad' for error in validation.errors)  # the SMILES with shell text is not a SMILES
    accepted = {m.mol_id: m for m in validation.molecules}
    table = pd.DataFrame({
        'mol_id': list(accepted), 'status': 'done', 'smiles': [m.smiles for m in accepted.values()],
        'H298_cbs': 1.0, 'most_stable_hof': 1.5, 'delta_1': 0.5, 'error_message': '<b>x</b>',
    })
    out = tmp_path / 'report'
    write_report(table, out, 'campaign <i>t</i>')
    write_atomic(tmp_path / 'export.csv', lambda handle: table.to_csv(handle, index=False))
    page = (out / 'index.html').read_text()
    assert '<script>' not in page and '&lt;script&gt;' in page
    assert sorted(p.name for p in out.iterdir()) == ['index.html', 'parity.png', 'statistics.json']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['export.csv', 'm.csv', 'report']  # nothing at ../../evil
    assert not list(tmp_path.parent.glob('evil*'))
    escaped = list(tmp_path.rglob('ESCAPED-*'))
    TALLY['escapes'] += len(escaped)
    TALLY['refused'] += len(validation.bad_rows)
    TALLY['quoted'] += len(validation.molecules)  # accepted as data: labels, extras, escaped HTML, CSV cells
    assert not escaped
