"""ConformerSearchWorkChain for real (RDKit + xtb) and with a REPLAY of a recorded CREST run."""
from __future__ import annotations

import pathlib
import shutil

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_grimperium.parsers.raw import crest as raw_crest
from aiida_grimperium.structures import conformer_values
from aiida_grimperium.workchains.conformers import ConformerSearchWorkChain

FIXTURES = pathlib.Path(__file__).parent / 'fixtures' / 'crest'
#: The arrays of an ensemble node, whichever engine made it (structures.make_ensemble).
LAYOUT_ARRAYS = sorted(['cells', 'positions', 'steps'])  # the energies are attributes (structures.CONFORMER_VALUES)


def dihedral(p0, p1, p2, p3) -> float:
    b0, b1, b2 = p0 - p1, p2 - p1, p3 - p2
    b1 = b1 / np.linalg.norm(b1)
    v, w = b0 - np.dot(b0, b1) * b1, b2 - np.dot(b2, b1) * b1
    return float(np.degrees(np.arctan2(np.dot(np.cross(b1, v), w), np.dot(v, w))))


@pytest.fixture
def xtb_code(real_code):
    return real_code('xtb', 'grimperium.xtb')


@pytest.fixture(scope='module')
def butane_crest():
    return raw_crest.parse_path(FIXTURES / 'butane')


def test_rdkit_xtb_finds_anti_and_gauche_butane(xtb_code, butane_crest):
    """From SMILES 'CCCC', for real: anti lowest, gauche ~0.6 kcal/mol above, as CREST at GFN2-xTB found.

    Tolerance: 0.1 kcal/mol against the recorded CREST run's 0.596 (both GFN2-xTB tight optimisations; the rest
    is the optimiser's convergence), and the two absolute energies within 0.2 mEh of CREST's.
    """
    results, node = run_get_node(ConformerSearchWorkChain, smiles=orm.Str('CCCC'), xtb_code=xtb_code,
                                 engine=orm.Str('rdkit-xtb'), num_conformers=orm.Int(12))
    assert node.is_finished_ok, node.exit_status
    ensemble = results['ensemble']
    positions = ensemble.get_positions()
    carbons = [i for i, s in enumerate(ensemble.symbols) if s == 'C']
    angles = [abs(dihedral(*frame[carbons])) for frame in positions]
    assert len(angles) == 2, angles
    assert angles[0] == pytest.approx(180.0, abs=5.0)  # anti first (lowest)
    assert angles[1] == pytest.approx(65.0, abs=10.0)  # gauche
    relative = conformer_values(ensemble, 'relative_energies_kcal_mol')
    crest_gap = butane_crest['conformers'][1]['relative_energy_kcal_mol']
    assert relative[1] == pytest.approx(crest_gap, abs=0.1)
    energies = conformer_values(ensemble, 'energies_hartree')
    assert energies[0] == pytest.approx(butane_crest['conformers'][0]['energy_hartree'], abs=2e-4)
    assert energies[1] == pytest.approx(butane_crest['conformers'][1]['energy_hartree'], abs=2e-4)
    assert ensemble.base.attributes.get('engine') == 'rdkit-xtb'
    assert sorted(ensemble.get_arraynames()) == LAYOUT_ARRAYS
    # one job (through its restart workchain): it embeds the 12 RDKit conformers itself, optimises them all and
    # keeps the two
    called = node.called
    assert [c.process_label for c in called] == ['XtbBaseWorkChain']
    job = called[0].called[0]
    assert job.inputs.smiles.value == 'CCCC' and job.inputs.embedding['num_conformers'] == 12
    started_from = [n for n in job.base.repository.list_object_names() if n.startswith('conf') and n.endswith('.xyz')]
    assert len(started_from) > 2  # the RDKit conformers, kept as the job's input files
    assert ensemble.uuid == job.outputs.output_ensemble.uuid  # created by the job: provenance unbroken
    params = results['output_parameters']
    assert params.uuid == job.outputs.output_parameters.uuid and params['num_input_conformers'] == len(started_from)
    assert params['num_conformers'] == 2 and params['population_lowest'] == pytest.approx(conformer_values(ensemble, 'populations')[0])
    assert np.allclose([s.position for s in results['lowest_structure'].sites], positions[0])


@pytest.mark.parametrize('smiles, charge, multiplicity, status', [
    ('C1CC', 0, 1, 201),            # unclosed ring
    ('not a smiles', 0, 1, 201),
    ('CCO', 0, 2, 202),              # 26 electrons cannot be a doublet
    ('CC(=O)[O-]', 0, 1, 202),       # neutral acetate radical has 31 electrons: not a singlet
])
def test_invalid_inputs_fail_before_any_job(xtb_code, smiles, charge, multiplicity, status):
    _, node = run_get_node(ConformerSearchWorkChain, smiles=orm.Str(smiles), xtb_code=xtb_code,
                           charge=orm.Int(charge), multiplicity=orm.Int(multiplicity))
    assert node.exit_status == status
    assert node.called == []
    assert node.exit_message


def test_crest_engine_needs_crest_code(xtb_code):
    _, node = run_get_node(ConformerSearchWorkChain, smiles=orm.Str('CCCC'), xtb_code=xtb_code, engine=orm.Str('crest'))
    assert node.exit_status == 203 and node.called == []


def test_replay_crest_engine_same_ensemble_layout(xtb_code, replay_code, tmp_path):
    """CREST engine: real xtb pre-optimisation, then a REPLAY of the recorded real CREST run on n-butane."""
    replay = tmp_path / 'crest-butane'
    replay.mkdir()
    for f in (FIXTURES / 'butane').iterdir():
        if f.name != 'input.xyz':
            shutil.copy(f, replay / ('crest.stdout' if f.name == 'crest.out' else f.name))
    crest = replay_code('grimperium.crest', [replay], label='crest-wc')
    results, node = run_get_node(ConformerSearchWorkChain, smiles=orm.Str('CCCC'), xtb_code=xtb_code,
                                 crest_code=crest, engine=orm.Str('crest'))
    assert node.is_finished_ok, node.exit_status
    ensemble = results['ensemble']
    assert ensemble.get_positions().shape == (2, 14, 3)
    assert sorted(ensemble.get_arraynames()) == LAYOUT_ARRAYS
    assert conformer_values(ensemble, 'relative_energies_kcal_mol')[1] == pytest.approx(0.596, abs=6e-4)
    assert ensemble.base.attributes.get('engine') == 'crest'
    assert set(ensemble.base.attributes.keys()) >= {'num_conformers', 'temperature', 'charge', 'multiplicity', 'engine'}


def test_ensemble_feeds_mopac_as_one_job(xtb_code, real_code):
    """The rdkit-xtb ensemble of n-butane, for real, goes into ONE MOPAC PM7 job holding every conformer."""
    from aiida.plugins import CalculationFactory

    results, node = run_get_node(ConformerSearchWorkChain, smiles=orm.Str('CCCC'), xtb_code=xtb_code,
                                 num_conformers=orm.Int(12), top_n=orm.Int(2))
    assert node.is_finished_ok
    ensemble = results['ensemble']
    mopac = real_code('mopac', 'grimperium.mopac')
    out, calc = run_get_node(CalculationFactory('grimperium.mopac'), code=mopac, ensemble=ensemble,
                             parameters=orm.Dict({'method': 'PM7', 'task': 'single_point'}))
    assert calc.is_finished_ok, calc.exit_status
    heats = out['output_parameters']['heats_of_formation_kcal_mol']
    assert len(heats) == len(ensemble.get_positions()) == 2
    assert out['output_parameters']['lowest_heat_of_formation_kcal_mol'] == pytest.approx(min(heats))
    # PM7 agrees with GFN2-xTB that anti (frame 0) is below gauche, by under a kcal/mol
    assert 0.0 < heats[1] - heats[0] < 1.5


def test_rdkit_xtb_charged_solvated_from_structure(xtb_code):
    """Acetate in implicit water from a structure (bonds perceived by RDKit): one conformer class, for real."""
    from aiida_grimperium.structures import structure_from_smiles

    structure = structure_from_smiles('CC(=O)[O-]')
    results, node = run_get_node(ConformerSearchWorkChain, structure=structure, xtb_code=xtb_code, charge=orm.Int(-1),
                                 num_conformers=orm.Int(4), xtb_parameters=orm.Dict({'solvent': 'water'}))
    assert node.is_finished_ok, node.exit_status
    assert results['ensemble'].base.attributes.get('charge') == -1
    job = next(n for n in node.called_descendants if n.process_type == 'aiida.calculations:grimperium.xtb')
    assert job.outputs.output_parameters['solvent'] == 'water'
    assert "'--alpb' 'water'" in job.base.repository.get_object_content('_aiidasubmit.sh')
    # acetate has no heavy-atom conformers (only methyl rotamers): one conformer
    assert results['output_parameters']['num_conformers'] == 1
    # GFN2-xTB/ALPB(water) acetate: the recorded CREST run (same method and solvent) found -14.27354387 Eh
    assert results['output_parameters']['lowest_energy_hartree'] == pytest.approx(-14.27354387, abs=1e-4)


def test_failed_xtb_job_is_restarted_by_its_restart_workchain(xtb_code):
    """The xtb job of all conformers hits its cycle limit (real, 500): XtbBaseWorkChain restarts it (twice the
    cycles) and the search ends well, from the restarted job."""
    results, node = run_get_node(ConformerSearchWorkChain, smiles=orm.Str('CCO'), xtb_code=xtb_code,
                                 num_conformers=orm.Int(3), xtb_parameters=orm.Dict({'cycles': 2}))
    assert node.is_finished_ok, node.exit_status
    called = sorted(node.called, key=lambda n: n.ctime)
    assert [c.process_label for c in called] == ['XtbBaseWorkChain']
    jobs = sorted(called[0].called, key=lambda n: n.ctime)
    assert jobs[0].exit_status == 500 and jobs[1].inputs.parameters['cycles'] == 4  # the handler's fix
    assert jobs[1].inputs.smiles.value == 'CCO' and 'structure' not in jobs[1].inputs  # the same conformers again
    assert jobs[-1].is_finished_ok
    assert results['ensemble'].uuid == jobs[-1].outputs.output_ensemble.uuid
    assert results['output_parameters']['num_conformers'] >= 1


def test_pipeline_runs_the_search_inline_and_mopac_on_the_top_n(xtb_code, real_code):
    """The pipeline runs the search's steps itself: the xtb and the MOPAC restart workchains and the summary
    calcfunction, and MOPAC computes the ``top_n`` lowest conformers of the xtb job's ensemble."""
    from aiida_grimperium.campaign.builders import pipeline_builder
    from aiida_grimperium.campaign.molecules import Molecule
    from aiida_grimperium.campaign.store import DEFAULT_SETTINGS

    codes = {'xtb': xtb_code, 'mopac': real_code('mopac', 'grimperium.mopac')}
    settings = {**DEFAULT_SETTINGS, 'num_conformers': 12, 'top_n': 1}
    results, node = run_get_node(pipeline_builder(Molecule(mol_id='b', smiles='CCCC', charge=0, multiplicity=1),
                                                  settings, codes))
    assert node.is_finished_ok, node.exit_message
    called = sorted(node.called, key=lambda n: n.ctime)
    assert [c.process_label for c in called] == ['XtbBaseWorkChain', 'MopacBaseWorkChain', 'summarize_molecule']
    xtb, mopac = (workchain.called[0] for workchain in called[:2])
    assert results['ensemble'].uuid == xtb.outputs.output_ensemble.uuid
    assert results['ensemble'].numsteps == 2  # anti and gauche (its mirror image is the same conformer)
    assert mopac.inputs.ensemble.uuid == results['ensemble'].uuid and mopac.inputs.num_conformers.value == 1
    assert len(mopac.outputs.output_parameters['heats_of_formation_kcal_mol']) == 1  # only the lowest computed
    input_text = mopac.base.repository.get_object_content('aiida.mop')
    assert input_text.count('geometry 1 of 1') == 1
    summary = results['output_parameters'].get_dict()
    assert summary['conformer_search_status'] == 'SUCCESS' and summary['num_conformers'] == results['ensemble'].numsteps
    assert 0 < summary['conformer_search_time_s'] < (node.mtime - node.ctime).total_seconds()
    # the summary has a creator, whose inputs are the jobs' outputs
    assert results['output_parameters'].creator.uuid == called[2].uuid
    assert called[2].inputs.pm7.uuid == mopac.outputs.output_parameters.uuid
    assert summary['most_stable_hof'] == results['most_stable_hof'].value == pytest.approx(
        mopac.outputs.output_parameters['lowest_heat_of_formation_kcal_mol'], abs=1e-9)


def test_pipeline_restarts_a_failed_mopac_job(xtb_code, real_code):
    """MOPAC's first job hits its cycle limit (real, 420): MopacBaseWorkChain restarts from the last geometry with
    twice the cycles, and the molecule ends well."""
    from aiida_grimperium.campaign.builders import pipeline_builder
    from aiida_grimperium.campaign.molecules import Molecule
    from aiida_grimperium.campaign.store import DEFAULT_SETTINGS

    codes = {'xtb': xtb_code, 'mopac': real_code('mopac', 'grimperium.mopac')}
    settings = {**DEFAULT_SETTINGS, 'num_conformers': 2, 'top_n': 1}
    builder = pipeline_builder(Molecule(mol_id='p', smiles='CCCO', charge=0, multiplicity=1), settings, codes)
    builder.mopac.mopac.parameters = orm.Dict({**builder.mopac.mopac.parameters.get_dict(), 'cycles': 1})
    builder.mopac.max_iterations = orm.Int(8)
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    restart = next(c for c in node.called if c.process_label == 'MopacBaseWorkChain')
    jobs = sorted(restart.called, key=lambda n: n.ctime)
    assert jobs[0].exit_status == 420 and jobs[1].inputs.parameters['cycles'] == 2  # the handler's fix
    assert jobs[-1].is_finished_ok and [j.exit_status for j in jobs[:-1]] == [420] * (len(jobs) - 1)
    assert results['most_stable_hof'].value == pytest.approx(
        jobs[-1].outputs.output_parameters['lowest_heat_of_formation_kcal_mol'], abs=1e-9)
    assert results['output_parameters']['mopac_status'] == 'OK'


def test_pipeline_search_failure_keeps_the_message(xtb_code, real_code):
    """A search that cannot start ends the molecule with 410 and the search's own message in the summary."""
    from aiida_grimperium.workchains.pipeline import ConformerToDftWorkChain

    builder = ConformerToDftWorkChain.get_builder()
    builder.smiles = orm.Str('CCO')
    builder.conformers.xtb_code = xtb_code
    builder.conformers.engine = orm.Str('crest')  # but no crest_code
    builder.mopac.mopac.code = real_code('mopac', 'grimperium.mopac')
    builder.mopac.mopac.parameters = orm.Dict({'method': 'PM7', 'task': 'single_point'})
    results, node = run_get_node(builder)
    assert node.exit_status == 410 and [c.process_label for c in node.called] == ['summarize_molecule']
    summary = results['output_parameters'].get_dict()
    assert summary['conformer_search_status'] == 'FAILED'
    assert summary['error_message'] == 'conformer search: engine `crest` needs a `crest_code`'
