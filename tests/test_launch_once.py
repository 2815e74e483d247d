"""``LaunchOnce.submit_once``: a step's child is launched once, also by two instances of one process.

Two instances of one workchain run the same step after a broker restart (aiida-core 2.9). The one that launches
first claims the step with a group whose label the database keeps unique; the other waits for the claimed child.
The race itself needs a broker restart under load (``tests/test_scaleout.py``); here the claim is set up by hand.
"""
from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import ToContext, WorkChain, run_get_node

from aiida_grimperium.workchains import base
from aiida_grimperium.workchains.base import LaunchOnce


class Child(WorkChain):
    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.outline(cls.done)

    def done(self):
        pass


class StaleClaimParent(LaunchOnce, WorkChain):
    """Finds a claim left by an instance that stopped before launching (a worker killed at that moment)."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.outline(cls.launch, cls.launch_again)

    def launch(self):
        orm.Group(label=self.claim_label('child')).store()
        return ToContext(first=self.submit_once('child', Child))

    def launch_again(self):
        # the step run again (taken up from its checkpoint): the child is found, not launched a second time
        assert self.submit_once('child', Child).pk == self.ctx.first.pk


class ClaimHeldParent(LaunchOnce, WorkChain):
    """Another instance claimed the step and launched its child: this one uses that child."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.outline(cls.launch)

    def launch(self):
        orm.Group(label=self.claim_label('child')).store()
        other = self.submit(Child, metadata={'call_link_label': 'child'})  # what the holder launched
        return ToContext(found=self.submit_once('child', Child), other=other)


def launched_children(node) -> list:
    return [n for n in node.called if n.base.links.get_incoming(node_class=orm.WorkflowNode).one().link_label == 'child']


def claims() -> int:
    return orm.QueryBuilder().append(orm.Group, filters={'label': {'like': f'{base.CLAIM_PREFIX}/%'}}).count()


def test_a_stale_claim_is_taken_over_and_the_child_launched_once(monkeypatch):
    monkeypatch.setattr(base, 'CLAIM_WAIT_SECONDS', 0.5)
    _, node = run_get_node(StaleClaimParent)
    assert node.is_finished_ok, node.exit_status
    assert len(launched_children(node)) == 1
    assert claims() == 0  # released once the child was stored
    assert any('taking it over' in log.message for log in orm.Log.collection.get_logs_for(node))


def test_an_instance_that_finds_the_claimed_child_uses_it_and_clears_the_claim(monkeypatch):
    monkeypatch.setattr(base, 'CLAIM_WAIT_SECONDS', 5.0)
    _, node = run_get_node(ClaimHeldParent)
    assert node.is_finished_ok, node.exit_status
    children = launched_children(node)
    assert len(children) == 1  # only the holder's child: this instance launched none
    assert claims() == 0


def test_the_claim_is_unique_in_the_database():
    """What the mechanism rests on: a second group of the same label is refused by the database."""
    from aiida.common.exceptions import IntegrityError

    label = f'{base.CLAIM_PREFIX}/test'
    orm.Group(label=label).store()
    with pytest.raises(IntegrityError):
        orm.Group(label=label).store()
    orm.Group.collection.delete(orm.load_group(label).pk)
