"""How many molecules a campaign keeps running at once by default (``--max-active``)."""
from __future__ import annotations

import os

from aiida import orm

from aiida_grimperium.campaign.builders import CLUSTER_MAX_ACTIVE, default_max_active


def test_local_jobs_two_per_core_cluster_jobs_the_cluster_default(aiida_localhost, tmp_path):
    local = orm.InstalledCode(label='true-local', computer=aiida_localhost, filepath_executable='/bin/true').store()
    assert aiida_localhost.scheduler_type == 'core.direct'
    assert default_max_active({'xtb': local, 'mopac': local}) == 2 * os.cpu_count()

    cluster = orm.Computer(label='throttle-cluster', hostname='localhost', transport_type='core.local',
                           scheduler_type='core.slurm', workdir=str(tmp_path)).store()
    remote = orm.InstalledCode(label='true-cluster', computer=cluster, filepath_executable='/bin/true').store()
    assert default_max_active({'xtb': local, 'mopac': remote}) == CLUSTER_MAX_ACTIVE
