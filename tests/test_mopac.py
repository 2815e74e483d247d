"""MOPAC through AiiDA with the real ``mopac`` binary, checked against ``mopac`` run by hand on the same input.

The reference numbers are read from MOPAC's own output with a regular expression written here, independent of
the package's parser; heats of formation must agree to the printed precision (5 decimals, 1e-5 kcal/mol).
"""
from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_grimperium.calculations.mopac import MopacCalculation
from aiida_grimperium.structures import make_ensemble, molecule_structure, structure_from_smiles

HOF = re.compile(r'FINAL HEAT OF FORMATION =\s+(-?\d+\.\d+) KCAL/MOL')
PRINTED_PRECISION = 1e-5  # MOPAC prints the heat of formation with 5 decimals

WATER = (['O', 'H', 'H'], [[0.0, 0.0, 0.11779], [0.0, 0.755453, -0.471161], [0.0, -0.755453, -0.471161]])


def mopac_by_hand(input_text: str, tmp_path) -> str:
    """Run /usr/bin/mopac on ``input_text`` in a fresh folder and return its ``.out``."""
    folder = tmp_path / 'by_hand'
    folder.mkdir(exist_ok=True)
    (folder / 'job.mop').write_text(input_text)
    subprocess.run(['mopac', 'job.mop'], cwd=folder, check=True, capture_output=True, timeout=120)
    return (folder / 'job.out').read_text()


def run_mopac(code, charge=0, multiplicity=1, parameters=None, **geometry):
    inputs = {'code': code, 'charge': orm.Int(charge), 'multiplicity': orm.Int(multiplicity), **geometry}
    if parameters is not None:
        inputs['parameters'] = orm.Dict(parameters)
    return run_get_node(MopacCalculation, **inputs)


@pytest.fixture
def mopac_code(real_code):
    return real_code('mopac', 'grimperium.mopac')


@pytest.mark.parametrize(
    'smiles, charge, multiplicity',
    [
        ('CCO', 0, 1),  # closed-shell neutral
        ('C[NH3+]', 1, 1),  # cation
        ('CC(=O)[O-]', -1, 1),  # anion
        ('[CH2]C', 0, 2),  # doublet radical (ethyl)
    ],
)
def test_heat_of_formation_equals_mopac_by_hand(mopac_code, tmp_path, smiles, charge, multiplicity):
    results, node = run_mopac(mopac_code, charge, multiplicity, structure=structure_from_smiles(smiles),
                              parameters={'task': 'optimization'})
    assert node.is_finished_ok, node.exit_message
    input_text = node.base.repository.get_object_content('aiida.mop')
    assert f'CHARGE={charge}' in input_text.splitlines()[0]
    assert ('DOUBLET' in input_text) == (multiplicity == 2)
    reference = [float(x) for x in HOF.findall(mopac_by_hand(input_text, tmp_path))]
    assert len(reference) == 1
    parameters = results['output_parameters'].get_dict()
    assert parameters['heat_of_formation_kcal_mol'] == pytest.approx(reference[0], abs=PRINTED_PRECISION)
    assert parameters['lowest_heat_of_formation_kcal_mol'] == pytest.approx(reference[0], abs=PRINTED_PRECISION)
    assert parameters['ended_normally'] is True
    assert parameters['dipole_debye'] >= 0
    assert results['output_structure'].get_formula() == structure_from_smiles(smiles).get_formula()
    if multiplicity == 2:
        assert 'alpha_somo_ev' in parameters or 'homo_ev' in parameters


def test_three_conformers_run_as_one_job(mopac_code, tmp_path):
    """An ensemble of 3 conformers is one CalcJob, one input file with 3 jobs, and gives 3 heats of formation."""
    from rdkit.Chem import AllChem

    from aiida_grimperium.chemistry import smiles_to_molecule

    mol = smiles_to_molecule('CCCC')
    conf_ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=3, randomSeed=7))
    frames = [mol.GetConformer(i).GetPositions() for i in conf_ids]
    ensemble = make_ensemble([a.GetSymbol() for a in mol.GetAtoms()], frames, engine='test')
    results, node = run_mopac(mopac_code, ensemble=ensemble, parameters={'task': 'single_point'})
    assert node.is_finished_ok, node.exit_message
    calcjobs = orm.QueryBuilder().append(orm.CalcJobNode, filters={'id': node.pk}).count()
    assert calcjobs == 1
    input_text = node.base.repository.get_object_content('aiida.mop')
    assert input_text.count('PM7 1SCF') == 3
    reference = [float(x) for x in HOF.findall(mopac_by_hand(input_text, tmp_path))]
    parameters = results['output_parameters'].get_dict()
    assert parameters['num_conformers'] == 3
    np.testing.assert_allclose(parameters['heats_of_formation_kcal_mol'], reference, atol=PRINTED_PRECISION)
    assert parameters['lowest_heat_of_formation_kcal_mol'] == pytest.approx(min(reference), abs=PRINTED_PRECISION)
    assert parameters['lowest_index'] == int(np.argmin(reference))
    assert results['output_ensemble'].numsteps == 3
    np.testing.assert_allclose(results['output_ensemble'].get_array('heats_of_formation_kcal_mol'), reference,
                               atol=PRINTED_PRECISION)


def stretched_water():
    return molecule_structure(['O', 'H', 'H'], [[0, 0, 0.11779], [0, 1.255453, -0.471161], [0, -0.955453, -0.671161]])


#: One SCF iteration with an unreachable criterion: MOPAC really fails ("UNABLE TO ACHIEVE SELF-CONSISTENCE").
SCF_TRAP = {'itry': 1, 'keywords': ['SCFCRT=1.D-15']}
FE_CLUSTER = (['Fe', 'O', 'O', 'C', 'N'], [[0, 0, 0], [1.0, 0, 0], [-1.0, 0.3, 0], [0, 1.0, 0.2], [0, -1.0, 0.7]])


@pytest.mark.parametrize(
    'structure, multiplicity, parameters, exit_status, label',
    [
        (stretched_water, 1, {'task': 'optimization', 'cycles': 2}, 420, 'ERROR_MAX_CYCLES'),
        (lambda: molecule_structure(*FE_CLUSTER), 2, SCF_TRAP, 410, 'ERROR_SCF_NOT_CONVERGED'),
        (lambda: molecule_structure(*WATER), 1, {'keywords': ['FOOBAR']}, 431, 'ERROR_INPUT_REJECTED'),
    ],
    ids=['cycle-limit', 'scf', 'unknown-keyword'],
)
def test_real_failures_map_to_exit_codes(mopac_code, structure, multiplicity, parameters, exit_status, label):
    results, node = run_mopac(mopac_code, multiplicity=multiplicity, structure=structure(), parameters=parameters)
    assert node.exit_status == exit_status
    assert node.exit_message.startswith(MopacCalculation.exit_codes[label].message.split('{')[0].rstrip(': '))
    assert 'output_parameters' in results  # what was computed is kept even when the job failed


def test_time_limit_maps_to_walltime(mopac_code):
    """MOPAC's own time limit (T=) on a long optimisation: 'NOT ENOUGH TIME FOR ANOTHER CYCLE' → 400."""
    rng = np.random.default_rng(3)
    structure = structure_from_smiles('CCCCCCCCCCCCCCCC(=O)O')
    symbols = [s.kind_name for s in structure.sites]
    positions = np.array([s.position for s in structure.sites]) + rng.uniform(-0.3, 0.3, (len(symbols), 3))
    results, node = run_mopac(mopac_code, structure=molecule_structure(symbols, positions),
                              parameters={'task': 'optimization', 'time_limit_seconds': 0.05})
    assert node.exit_status == 400, node.exit_message
    assert 'output_structure' in results  # the last geometry, to restart from


def test_impossible_charge_multiplicity_is_refused_before_submission(mopac_code):
    before = orm.QueryBuilder().append(orm.CalcJobNode).count()
    with pytest.raises(ValueError, match='impossible for OHH.*10 electrons'):
        run_mopac(mopac_code, multiplicity=2, structure=molecule_structure(*WATER))
    assert orm.QueryBuilder().append(orm.CalcJobNode).count() == before  # no process node was even created


@pytest.mark.parametrize('parameters, match', [
    ({'metod': 'PM7'}, 'metod'),
    ({'keywords': ['PM7 CHARGE=1']}, 'not a MOPAC keyword'),
    ({'keywords': ['CHARGE=2']}, 'set from the inputs'),
    ({'method': 'PM8'}, 'method'),
])
def test_bad_parameters_are_refused(mopac_code, parameters, match):
    with pytest.raises(ValueError, match=match):
        run_mopac(mopac_code, structure=molecule_structure(*WATER), parameters=parameters)


def test_periodic_structure_is_refused(mopac_code):
    structure = molecule_structure(*WATER)
    structure.pbc = (True, True, True)
    with pytest.raises(ValueError, match='pbc'):
        run_mopac(mopac_code, structure=structure)


@pytest.mark.daemon
def test_submitted_to_running_daemon(mopac_code, submit_and_await, tmp_path):
    """The same calculation through the daemon and the ZeroMQ broker."""
    builder = MopacCalculation.get_builder()
    builder.code = mopac_code
    builder.structure = molecule_structure(*WATER)
    builder.parameters = orm.Dict({'task': 'single_point'})
    node = orm.load_node(submit_and_await(builder, timeout=180).pk)  # reload: the daemon wrote the repository
    assert node.is_finished_ok, node.exit_message
    reference = HOF.findall(mopac_by_hand(node.base.repository.get_object_content('aiida.mop'), tmp_path))
    assert node.outputs.output_parameters['heat_of_formation_kcal_mol'] == pytest.approx(float(reference[0]), abs=1e-5)


def test_restart_workchain_recovers_cycle_limit(mopac_code, tmp_path):
    """CYCLES=2 on a stretched water fails (420); the handler restarts from the last geometry with more cycles."""
    from aiida_grimperium.workchains.mopac import MopacBaseWorkChain

    builder = MopacBaseWorkChain.get_builder_from_protocol(mopac_code, stretched_water(), 'balanced')
    builder.mopac.parameters = orm.Dict({'task': 'optimization', 'cycles': 2})
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    calcs = sorted(node.called, key=lambda n: n.ctime)
    assert calcs[0].exit_status == 420 and calcs[-1].exit_status == 0
    assert calcs[1].inputs.structure.uuid == calcs[0].outputs.output_structure.uuid  # restarted from last geometry
    assert calcs[1].inputs.parameters['cycles'] == 4
    assert any('hit the cycle limit' in log.message for log in orm.Log.collection.get_logs_for(node))
    # the final heat equals MOPAC by hand on the last calculation's input
    reference = HOF.findall(mopac_by_hand(calcs[-1].base.repository.get_object_content('aiida.mop'), tmp_path))
    assert results['output_parameters']['heat_of_formation_kcal_mol'] == pytest.approx(float(reference[0]), abs=1e-5)


def test_outputs_linked_before_a_worker_was_killed_are_kept(mopac_code):
    """A worker killed while linking the outputs leaves links the reloaded workchain does not have in memory;
    the workchain must still end well (aiida-core's ``_attach_outputs`` skips them: exit 11; see
    ``ReattachesOutputs.results``)."""
    from aiida.common.links import LinkType

    from aiida_grimperium.workchains.mopac import MopacBaseWorkChain

    class LinkedBeforeKill(MopacBaseWorkChain):
        def results(self):
            calculation = self.ctx.children[self.ctx.iteration - 1]
            # what the killed worker left: this link is in the database, not among the process's outputs
            calculation.outputs.output_parameters.base.links.add_incoming(self.node, LinkType.RETURN, 'output_parameters')
            return super().results()

    builder = LinkedBeforeKill.get_builder_from_protocol(mopac_code, stretched_water(), 'fast')
    results, node = run_get_node(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    returned = [t.link_label for t in node.base.links.get_outgoing(link_type=LinkType.RETURN).all()]
    assert sorted(returned) == sorted(set(returned)) and 'output_parameters' in returned  # each link once
    assert results['output_parameters'].uuid == node.called[0].outputs.output_parameters.uuid


def test_restart_workchain_recovers_scf_failure(mopac_code):
    """A real SCF failure (410) is recovered by more iterations and a level shift."""
    from aiida_grimperium.workchains.mopac import MopacBaseWorkChain

    builder = MopacBaseWorkChain.get_builder_from_protocol(
        mopac_code, molecule_structure(*FE_CLUSTER), 'balanced', multiplicity=2, task='single_point')
    builder.mopac.parameters = orm.Dict({'task': 'single_point', **SCF_TRAP})
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    calcs = sorted(node.called, key=lambda n: n.ctime)
    assert [c.exit_status for c in calcs] == [410, 0]
    assert 'SHIFT=20' in calcs[1].inputs.parameters['keywords']
    assert 'SHIFT=20' in calcs[1].base.repository.get_object_content('aiida.mop').splitlines()[0]


def test_protocols_build_distinct_inputs(mopac_code):
    from aiida_grimperium.workchains.mopac import MopacBaseWorkChain

    keywords = {}
    for protocol in ('fast', 'balanced', 'stringent'):
        builder = MopacBaseWorkChain.get_builder_from_protocol(mopac_code, molecule_structure(*WATER), protocol)
        keywords[protocol] = builder.mopac.parameters['keywords']
        assert builder.mopac.parameters['method'] == 'PM7'
    assert keywords == {'fast': ['GNORM=5.0'], 'balanced': [], 'stringent': ['PRECISE', 'GNORM=0.05']}
    overrides = {'mopac': {'parameters': {'keywords': ['PRECISE']}}}
    builder = MopacBaseWorkChain.get_builder_from_protocol(mopac_code, molecule_structure(*WATER), 'fast', overrides)
    assert builder.mopac.parameters['keywords'] == ['PRECISE']
    assert overrides == {'mopac': {'parameters': {'keywords': ['PRECISE']}}}  # not mutated
    with pytest.warns(UserWarning, match='unrecognised key in overrides: max_iteration'):
        MopacBaseWorkChain.get_builder_from_protocol(mopac_code, molecule_structure(*WATER), 'fast', {'max_iteration': 2})


@pytest.mark.parametrize('environment, expected', [
    ({}, 'export OMP_NUM_THREADS=2'),  # the cores the job asked for, not every core of the node
    ({'OMP_NUM_THREADS': '3'}, "export OMP_NUM_THREADS='3'"),  # the user's own setting wins
])
def test_threads_follow_the_resources(mopac_code, tmp_path, monkeypatch, environment, expected):
    monkeypatch.chdir(tmp_path)  # a dry run writes its submit_test/ folder into the working directory
    options = {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 2}, 'environment_variables': environment}
    _, node = run_get_node(MopacCalculation, code=mopac_code, structure=molecule_structure(*WATER),
                           metadata={'dry_run': True, 'options': options})
    script = (tmp_path / node.dry_run_info['folder'] / '_aiidasubmit.sh').read_text()
    assert expected in script and script.count('OMP_NUM_THREADS') == 1


def test_restart_workchain_stops_at_once_without_parameters_and_retries_an_open_shell_with_uhf(mopac_code):
    """Real failures: [PoH2] has no PM7 van der Waals radius (432): nothing to restart, one job, MOPAC's words in
    the report. O2 as a restricted open-shell triplet (`uhf: false`) is outside MOPAC's active space (433): the
    handler restarts with UHF, which gives MOPAC's heat of formation for the triplet."""
    from aiida_grimperium.workchains.mopac import MopacBaseWorkChain

    builder = MopacBaseWorkChain.get_builder_from_protocol(mopac_code, structure_from_smiles('[PoH2]'), 'fast')
    _, node = run_get_node(builder)
    assert node.exit_status == MopacBaseWorkChain.exit_codes.ERROR_UNRECOVERABLE_FAILURE.status
    assert [c.exit_status for c in node.called] == [432]
    assert any('MISSING VAN DER WAALS RADIUS FOR PO' in log.message for log in orm.Log.collection.get_logs_for(node))

    builder = MopacBaseWorkChain.get_builder_from_protocol(mopac_code, structure_from_smiles('[O][O]'), 'fast',
                                                           multiplicity=3)
    builder.mopac.parameters = orm.Dict({**builder.mopac.parameters.get_dict(), 'uhf': False})
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    calcs = sorted(node.called, key=lambda n: n.ctime)
    assert [c.exit_status for c in calcs] == [433, 0]
    assert 'UHF' not in calcs[0].base.repository.get_object_content('aiida.mop').splitlines()[0].split()
    assert 'UHF' in calcs[1].base.repository.get_object_content('aiida.mop').splitlines()[0].split()
    printed = HOF.findall(calcs[1].outputs.retrieved.base.repository.get_object_content('aiida.out'))
    assert results['output_parameters']['heat_of_formation_kcal_mol'] == pytest.approx(float(printed[-1]), abs=1e-5)
