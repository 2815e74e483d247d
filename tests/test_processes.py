"""``LeanLinks``: the same provenance links as AiiDA's own methods make, with far fewer database queries."""
from __future__ import annotations

import contextlib

import pytest
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import Process, WorkChain, run_get_node

from aiida_grimperium.processes import LeanLinks
from aiida_grimperium.structures import structure_from_smiles
from aiida_grimperium.workchains.mopac import MopacBaseWorkChain


@contextlib.contextmanager
def counting_queries():
    """Count the SQL statements the profile's storage runs inside the block."""
    from sqlalchemy import event

    engine = orm.User.collection.get_default().backend.get_session().get_bind()
    count = {'statements': 0}

    def before(*_):
        count['statements'] += 1

    event.listen(engine, 'before_cursor_execute', before)
    try:
        yield count
    finally:
        event.remove(engine, 'before_cursor_execute', before)


@pytest.fixture
def plain_aiida(monkeypatch):
    """Make ``LeanLinks`` call AiiDA's own ``_setup_inputs`` and ``update_outputs``: the reference."""
    def plain(monkeypatch_=monkeypatch):
        monkeypatch_.setattr(LeanLinks, '_setup_inputs', lambda self: super(LeanLinks, self)._setup_inputs())
        monkeypatch_.setattr(LeanLinks, 'update_outputs', lambda self: super(LeanLinks, self).update_outputs())
    return plain


def link_summary(node: orm.ProcessNode) -> dict:
    """Every link of the process and its children: (type, label) → what is at the other end, by content."""
    summary = {}
    for process in [node, *node.called_descendants]:
        name = process.process_label
        for triple in process.base.links.get_incoming().all():
            other = triple.node
            # inputs are the same stored nodes in both runs; outputs are new nodes with the same content
            key = (name, 'in', triple.link_type.value, triple.link_label)
            summary[key] = other.uuid if isinstance(other, orm.Data) else other.process_label
        for triple in process.base.links.get_outgoing().all():
            other = triple.node
            key = (name, 'out', triple.link_type.value, triple.link_label)
            if isinstance(other, orm.Dict):
                summary[key] = ('Dict', sorted(k for k in other.keys() if 'time' not in k and 'wall' not in k))
            elif isinstance(other, orm.Data):
                summary[key] = type(other).__name__
            else:
                summary[key] = other.process_label
    return summary


def test_same_links_as_aiida_with_far_fewer_queries(real_code, plain_aiida):
    """A MOPAC restart workchain and its CalcJob, run twice on the same input nodes: lean, then AiiDA's way."""
    code = real_code('mopac', 'grimperium.mopac')
    builder = MopacBaseWorkChain.get_builder_from_protocol(code, structure_from_smiles('CO'), 'fast')
    for name in ('max_iterations', 'clean_workdir'):
        builder[name].store()
    for name in ('structure', 'charge', 'multiplicity', 'parameters'):
        builder.mopac[name].store()

    with counting_queries() as lean_queries:
        _, lean = run_get_node(builder)
    plain_aiida()
    with counting_queries() as aiida_queries:
        _, plain = run_get_node(builder)

    assert lean.is_finished_ok and plain.is_finished_ok, (lean.exit_message, plain.exit_message)
    lean_links, plain_links = link_summary(lean), link_summary(plain)
    assert lean_links == plain_links
    assert ('MopacCalculation', 'out', LinkType.CREATE.value, 'output_parameters') in lean_links
    assert ('MopacBaseWorkChain', 'in', LinkType.INPUT_WORK.value, 'mopac__parameters') in lean_links
    # every output of the workchain is its calculation's own node
    calc = lean.called[0]
    returned = {t.link_label: t.node.uuid for t in lean.base.links.get_outgoing(link_type=LinkType.RETURN).all()}
    created = {t.link_label: t.node.uuid for t in calc.base.links.get_outgoing(link_type=LinkType.CREATE).all()}
    assert returned == created and len(returned) == 4
    # AiiDA spends two or more queries validating each data link (a cycle check, a label check...): they go
    data_links = sum(1 for key in lean_links if key[2] in ('input_calc', 'input_work', 'create', 'return'))
    assert aiida_queries['statements'] - lean_queries['statements'] >= 2 * data_links, (lean_queries, aiida_queries)


class ReturnsInput(LeanLinks, WorkChain):
    """Returns its own stored input: an ordinary RETURN link."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('x', valid_type=orm.Int)
        spec.output('y', valid_type=orm.Int)
        spec.outline(cls.work)

    def work(self):
        self.out('y', self.inputs.x)


class ReturnsNew(ReturnsInput):
    """Creates data inside a workflow: AiiDA forbids returning it, and so must the lean path."""

    def work(self):
        self.out('y', orm.Int(self.inputs.x.value + 1))


def test_unstored_return_refused_as_aiida_does(aiida_profile):
    with pytest.raises(ValueError, match='tried returning an unstored `Data` node'):
        run_get_node(ReturnsNew, x=orm.Int(1))


def test_inputs_unstored_or_stored_and_return_links(aiida_profile):
    stored = orm.Int(3).store()
    _, node = run_get_node(ReturnsInput, x=stored)
    assert node.is_finished_ok
    assert node.outputs.y.uuid == stored.uuid
    assert [(t.link_type, t.link_label) for t in node.base.links.get_outgoing().all()] == [(LinkType.RETURN, 'y')]
    fresh = orm.Int(4)  # unstored: linked in the cache and stored with the process, as AiiDA does
    _, node = run_get_node(ReturnsInput, x=fresh)
    assert node.is_finished_ok and fresh.is_stored
    assert node.base.links.get_incoming(link_type=LinkType.INPUT_WORK).one().node.uuid == fresh.uuid


def test_input_link_validation_still_applies(aiida_profile):
    """A label AiiDA refuses is refused on the lean path too (here: a double underscore at the end)."""
    with pytest.raises(ValueError, match='underscore'):
        class BadLabel(LeanLinks, WorkChain):
            @classmethod
            def define(cls, spec):
                super().define(spec)
                spec.input_namespace('ns', dynamic=True)
                spec.outline(cls.work)

            def work(self):
                pass

        run_get_node(BadLabel, ns={'bad_': orm.Int(1).store()})


def test_process_base_methods_are_the_ones_replaced():
    """The lean methods stand in for these AiiDA methods: if AiiDA renames them, this fails instead of a silent miss."""
    assert Process._setup_inputs is not LeanLinks._setup_inputs
    assert Process.update_outputs is not LeanLinks.update_outputs
    assert MopacBaseWorkChain._setup_inputs is LeanLinks._setup_inputs
