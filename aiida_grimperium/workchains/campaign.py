"""``grimperium.campaign``: the controller that runs a campaign's batches, at most ``max_active`` at a time.

The daemon runs it like any workchain, so ``campaign submit`` returns at once and no cron job is needed; it is
checkpointed after each step, so it goes on after ``verdi daemon stop`` / ``start`` (or a killed worker) from
where it was. It launches up to ``max_active`` :class:`~.batch.ConformerBatchWorkChain` batches, waits for
them, and puts the molecules that failed, while they have reruns left, into new batches of their own (``Dict``
rows that name their record, ``record``). It ends when nothing is left to run.

AiiDA's public workchain API waits for a set of children, not for the first of them. So a controller with more
batches than ``max_active`` runs them in **lanes**: ``max_active`` controllers of its own (``lane_001``...), each
running its share of the batches one after another with ``max_active`` 1, and rerunning its own failures. A slot
whose batch ends takes its next batch at once; a batch that waits long in a cluster's queue holds only its
lane. The batches have about the same estimated work (:mod:`aiida_grimperium.campaign.planning`) and are dealt
round-robin, so the lanes get about the same work. The lanes join the campaign's group (``campaign``), so that
the readers find their batches as they find any controller's. With at most ``max_active`` batches, the controller runs them
itself, all at once.
"""
from __future__ import annotations

from aiida import orm
from aiida.engine import ToContext, WorkChain, if_, while_

from ..campaign.layout import DEFAULT_SETTINGS, FAILED_EXTRA, RECORDS_EXTRA
from .base import LaunchOnce
from .batch import ConformerBatchWorkChain, batch_summaries


class CampaignWorkChain(LaunchOnce, WorkChain):
    """Run batches of molecules (``batches``) with the campaign's ``settings``, rerunning failures."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input_namespace('batches', valid_type=orm.Dict, dynamic=True,
                             help='The molecules of each batch to run: a record, or rows that name their record.')
        spec.input('settings', valid_type=orm.Dict, help='The campaign settings (engine, top_n, codes, ...).')
        spec.input('max_active', valid_type=orm.Int, default=lambda: orm.Int(2), help='Batches running at once.')
        spec.input('max_reruns', valid_type=orm.Int, default=lambda: orm.Int(3), help='Reruns of a failed molecule.')
        spec.input('batch_size', valid_type=orm.Int, default=lambda: orm.Int(50), help='Molecules per rerun batch.')
        spec.input('attempts', valid_type=orm.Dict, required=False,
                   help='{mol_id: runs so far} of molecules that ran before this controller.')
        spec.input('campaign', valid_type=orm.Str, required=False,
                   help='UUID of the campaign\'s group: lanes join it. Without it, no lanes (one wave at a time).')
        spec.outline(
            cls.setup,
            if_(cls.runs_lanes)(cls.launch_lanes, cls.inspect_lanes).else_(
                while_(cls.has_work)(cls.launch, cls.inspect),
            ),
            cls.finalize,
        )
        spec.exit_code(400, 'ERROR_INVALID_SETTINGS', message='{message}')
        spec.exit_code(410, 'ERROR_SOME_MOLECULES_FAILED', message='{failed} molecule(s) failed after their reruns.')
        spec.exit_code(411, 'ERROR_LANE_ENDED', message='{lanes} lane(s) were killed or excepted: '
                                                        '`grimperium campaign rerun` runs what they left')

    def setup(self):
        from ..campaign.builders import batch_inputs

        try:
            batch_inputs(self.inputs.settings.get_dict())  # the codes exist: refuse now, not per batch
        except ValueError as exc:
            return self.exit_codes.ERROR_INVALID_SETTINGS.format(message=str(exc))
        self.ctx.queue = [self.inputs.batches[name].pk for name in sorted(self.inputs.batches)]
        self.ctx.attempts = self.inputs.attempts.get_dict() if 'attempts' in self.inputs else {}
        self.ctx.failed = {}
        self.ctx.wave = []
        self.ctx.launched = 0
        return None

    def runs_lanes(self):
        return 'campaign' in self.inputs and 1 < self.inputs.max_active.value < len(self.ctx.queue)

    def launch_lanes(self):
        """One controller per slot, each with every ``max_active``-th batch, in the campaign's group."""
        group = orm.load_group(uuid=self.inputs.campaign.value)
        count = self.inputs.max_active.value
        common = {name: self.inputs[name] for name in ('settings', 'max_reruns', 'batch_size', 'attempts')
                  if name in self.inputs}
        launched = {}
        for lane in range(count):
            pks = self.ctx.queue[lane::count]
            batches = {f'b{i + 1:05d}': orm.load_node(pk) for i, pk in enumerate(pks)}
            label = f'lane_{lane + 1:03d}'
            launched[label] = self.submit_once(label, CampaignWorkChain, **common, batches=batches,
                                               max_active=orm.Int(1), metadata={'label': f'{group.label} {label}'})
            group.add_nodes(launched[label])  # (a member already: nothing happens)
        self.report(f'launched {len(launched)} lanes for {len(self.ctx.queue)} batches')
        self.ctx.queue = []
        self.ctx.lanes = sorted(launched)
        return ToContext(**launched)

    def inspect_lanes(self):
        for label in self.ctx.lanes:
            lane = self.ctx[label]
            if lane.is_finished:
                self.ctx.failed.update(lane.base.extras.get(FAILED_EXTRA, {}))
            else:  # excepted or killed: its molecules that did not end are left for `campaign rerun`
                self.report(f'{label} {lane.process_label}<{lane.pk}> ended {lane.process_state.value}')
                self.ctx.lanes_lost = self.ctx.get('lanes_lost', 0) + 1

    def has_work(self):
        return bool(self.ctx.queue)

    def launch(self):
        from ..campaign.builders import batch_inputs

        inputs = batch_inputs(self.inputs.settings.get_dict())
        size = min(self.inputs.max_active.value, len(self.ctx.queue))
        wave, self.ctx.queue = self.ctx.queue[:size], self.ctx.queue[size:]
        launched = {}
        for pk in wave:
            molecules = orm.load_node(pk)
            self.ctx.launched += 1
            label = f'batch_{self.ctx.launched:05d}'
            launched[label] = self.submit_once(label, ConformerBatchWorkChain, **inputs, molecules=molecules,
                                               metadata={'label': f'{len(molecules.get_dict())} molecules'})
        self.ctx.wave = sorted(launched)
        self.report(f'launched {len(launched)} batch(es); {len(self.ctx.queue)} waiting')
        return ToContext(**launched)

    def inspect(self):
        """The molecules of this wave that failed go into new batches while they have reruns left."""
        again = []
        for label in self.ctx.wave:
            node = self.ctx[label]
            molecules = node.inputs.molecules
            is_record = molecules.base.extras.get(RECORDS_EXTRA, False)
            summaries = batch_summaries(node)
            for key, row in molecules.get_dict().items():
                summary = summaries.get(key)
                if summary is not None and 'error_message' not in summary.get_dict():
                    continue
                mol_id = row['mol_id']
                self.ctx.attempts[mol_id] = self.ctx.attempts.get(mol_id, 0) + 1
                if self.ctx.attempts[mol_id] <= self.inputs.max_reruns.value:
                    again.append({**row, 'record': molecules.pk if is_record else row['record']})
                else:
                    self.ctx.failed[mol_id] = summary.get('error_message') if summary is not None else 'batch failed'
        if again:
            from ..campaign.store import rerun_records

            num_conformers = self.inputs.settings.get('num_conformers', DEFAULT_SETTINGS['num_conformers'])
            batches = rerun_records(again, self.inputs.batch_size.value, num_conformers)
            self.ctx.queue.extend(batch.pk for batch in batches)
            self.report(f'{len(again)} failed molecule(s) go into {len(batches)} new batch(es)')

    def finalize(self):
        self.node.base.extras.set(FAILED_EXTRA, self.ctx.failed)  # what a controller of lanes reads
        if self.ctx.get('lanes_lost'):
            return self.exit_codes.ERROR_LANE_ENDED.format(lanes=self.ctx.lanes_lost)
        if self.ctx.failed:
            return self.exit_codes.ERROR_SOME_MOLECULES_FAILED.format(failed=len(self.ctx.failed))
        return None
