"""How many batches a campaign keeps running at once by default (``--max-active``), and their sizes."""
from __future__ import annotations

import os

import pytest
from aiida import orm

from aiida_grimperium.campaign.builders import CLUSTER_MAX_ACTIVE, default_max_active, min_batches
from aiida_grimperium.campaign.planning import plan_sizes


def test_local_jobs_two_batches_per_core_cluster_jobs_the_cluster_default(aiida_localhost, tmp_path):
    local = orm.InstalledCode(label='true-local', computer=aiida_localhost, filepath_executable='/bin/true').store()
    assert aiida_localhost.scheduler_type == 'core.direct'
    assert default_max_active({'xtb': local, 'mopac': local}) == 2 * os.cpu_count()
    # a small campaign here is cut into one batch per core (no more than may run at once)
    assert min_batches({'xtb': local, 'mopac': local}, 2 * os.cpu_count()) == os.cpu_count()
    assert min_batches({'xtb': local, 'mopac': local}, 1) == 1

    cluster = orm.Computer(label='throttle-cluster', hostname='localhost', transport_type='core.local',
                           scheduler_type='core.slurm', workdir=str(tmp_path)).store()
    remote = orm.InstalledCode(label='true-cluster', computer=cluster, filepath_executable='/bin/true').store()
    assert default_max_active({'xtb': local, 'mopac': remote}) == CLUSTER_MAX_ACTIVE
    assert min_batches({'xtb': local, 'mopac': remote}, CLUSTER_MAX_ACTIVE) == 1  # batches of --batch-size


@pytest.mark.parametrize('count, batch_size, min_batches, expected', [
    (200, 50, 1, [50, 50, 50, 50]),  # a cluster: batches of --batch-size
    (201, 50, 1, [41, 40, 40, 40, 40]),  # as even as possible, none above the size
    (6, 50, 2, [3, 3]),  # a small campaign on a 2-core machine: both cores busy
    (1, 50, 2, [1]),
    (0, 50, 2, []),
])
def test_batch_sizes(count, batch_size, min_batches, expected):
    assert plan_sizes(count, batch_size, min_batches) == expected


def test_molecules_of_a_campaign_share_the_settings_nodes(real_code):
    """Two molecules' builders share every settings node (and the ports' defaults), never the SMILES."""
    from aiida_grimperium.campaign.builders import SharedInputs, pipeline_builder
    from aiida_grimperium.campaign.molecules import Molecule
    from aiida_grimperium.campaign.store import DEFAULT_SETTINGS

    codes = {'xtb': real_code('xtb', 'grimperium.xtb'), 'mopac': real_code('mopac', 'grimperium.mopac')}
    shared = SharedInputs()
    first, second = (pipeline_builder(Molecule(mol_id=m, smiles=s, charge=c, multiplicity=1), DEFAULT_SETTINGS, codes, shared)
                     for m, s, c in (('ethanol', 'CCO', 0), ('ammonium', '[NH4+]', 1)))
    for name in ('engine', 'num_conformers', 'options', 'energy_window', 'rmsd_threshold', 'temperature', 'seed'):
        assert first.conformers[name].uuid == second.conformers[name].uuid, name
    assert first.mopac.mopac.parameters.uuid == second.mopac.mopac.parameters.uuid
    assert first.mopac.clean_workdir.uuid == second.mopac.clean_workdir.uuid
    assert first.smiles.uuid != second.smiles.uuid
    assert (first.charge.value, second.charge.value) == (0, 1)
    assert second.charge.uuid == second.multiplicity.uuid == first.multiplicity.uuid  # Int(1) once
    assert first.conformers.energy_window.value == 6.0  # the port's own default
