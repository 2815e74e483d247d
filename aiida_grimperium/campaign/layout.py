"""How a campaign lives in the database, for the commands that only read it: its group, settings, records and
process types. Importing this does not import AiiDA's engine (``campaign status`` and ``export`` start faster).

The process types are the entry points of :class:`~aiida_grimperium.workchains.campaign.CampaignWorkChain` and
:class:`~aiida_grimperium.workchains.batch.ConformerBatchWorkChain` (``tests/test_plugins.py`` checks them), so
that the readers query their nodes without importing the workchains.
"""
from __future__ import annotations

from aiida import orm

#: Extra that marks a ``Dict`` of the campaign's group as a record (``{key: validated CSV row}``).
RECORDS_EXTRA = 'grimperium_records'
#: ``{mol_id: error message}`` of the molecules that failed after their reruns, set when a controller ends.
FAILED_EXTRA = 'failed'
CONTROLLER_PROCESS_TYPE = 'aiida.workflows:grimperium.campaign'
BATCH_PROCESS_TYPE = 'aiida.workflows:grimperium.conformer_batch'

DEFAULT_SETTINGS = {
    'engine': 'rdkit-xtb',
    'top_n': 3,
    'dft': None,
    'protocol': 'fast',
    'max_reruns': 3,
    'num_conformers': 10,
    'batch_size': 50,
    'codes': {'xtb': 'xtb@localhost', 'mopac': 'mopac@localhost', 'crest': 'crest@localhost',
              'pw': 'pw@localhost', 'vasp': 'vasp@localhost', 'crystal': 'crystal@localhost'},
    # Scheduler overrides of every job's metadata.options (None: as the code's protocol says); see
    # builders.scheduler_options: SLURM partition, account, walltime in seconds, threads, memory in MB.
    'scheduler': {'queue': None, 'account': None, 'walltime': None, 'cores': None, 'memory_mb': None},
    # The shell step (workchains/shell.py), or None: {'command': 'xtb {lowest} --ohess', 'outputs': [...]}.
    'shell': None,
}


class CampaignError(Exception):
    """A campaign command cannot do what was asked; the message says why (no traceback for users)."""


def batch_key(index: int) -> str:
    """The key of the ``index``-th molecule of a batch (0-based): ``m0001``..."""
    return f'm{index + 1:04d}'


def load_campaign(name: str) -> orm.Group:
    """The campaign ``name``; :class:`CampaignError` when there is none (nothing is created)."""
    from aiida.common.exceptions import NotExistent

    try:
        group = orm.load_group(label=name)
    except NotExistent:
        raise CampaignError(f'no campaign `{name}`: `grimperium campaign list` shows the campaigns') from None
    if 'settings' not in group.base.extras.all:
        raise CampaignError(f'group `{name}` is not a grimperium campaign (it has no campaign settings)')
    return group


def campaigns() -> list[str]:
    query = orm.QueryBuilder().append(orm.Group, filters={'extras': {'has_key': 'settings'}}, project=['label'])
    return sorted(label for label, in query.iterall())


def settings_of(group: orm.Group) -> dict:
    return {**DEFAULT_SETTINGS, **group.base.extras.get('settings', {})}


def batches_query(group_filters: dict, project=('id',)) -> orm.QueryBuilder:
    """A query of the batches of the campaigns whose group matches ``group_filters``, tagged ``batch`` (projecting
    ``project``): campaign group → its controllers (lanes included: they join the group) → the batches they ran."""
    query = orm.QueryBuilder()
    query.append(orm.Group, filters=group_filters, tag='group')
    query.append(orm.WorkChainNode, with_group='group', filters={'process_type': CONTROLLER_PROCESS_TYPE},
                 tag='controller')
    query.append(orm.WorkChainNode, with_incoming='controller', filters={'process_type': BATCH_PROCESS_TYPE},
                 tag='batch', project=list(project))
    return query
