"""What every grimperium process (CalcJob and WorkChain) adds to AiiDA's ``Process``: less link bookkeeping.

AiiDA validates every provenance link it adds with database queries, also where the answer is known without
asking. In a campaign of small molecules that was about a fifth of the daemon's CPU time, and of the time the
``campaign run`` command spends submitting (``benchmarks/campaign.py``, py-spy on the workers):

* **Inputs.** A new process node is not stored yet when its input links are added. AiiDA still runs a
  recursive cycle-check query for each (no link can lead out of a node that is not stored, so it finds
  nothing), and checks the new link against the node's cached ones with ``==``, which for ``Int``, ``Float``,
  ``Str`` and ``Bool`` compares their *values*: two database reads per pair, so quadratic in the number of
  inputs (a campaign pipeline has 16).
* **Outputs.** AiiDA calls :meth:`Process.update_outputs` on every state change (a CalcJob has about ten, a
  workchain two per step). Each call asks for the labels already linked, and each new link is validated
  with two or three more queries that the first answer already settles.

:class:`LeanLinks` adds the same links with the same labels and types, and refuses what AiiDA refuses: every
case the shortcut does not cover exactly (a stored node, a cached link, a sealed node) goes through AiiDA's
own methods unchanged. ``tests/test_processes.py`` compares the graphs link by link.
"""
from __future__ import annotations

from aiida import orm
from aiida.common.links import LinkType, validate_link_label
from aiida.orm.utils.links import LinkTriple


class LeanLinks:
    """Mixin for a ``Process`` subclass (first in the bases): input and output links without redundant queries."""

    def _setup_inputs(self) -> None:
        """AiiDA's own ``_setup_inputs`` (and a CalcJob's, which also sets the computer), with lean input links.

        Only while it runs, and only on this node: ``add_incoming`` of an input link from a ``Data`` node to this
        new, unstored node with a label not yet used goes straight into the node's link cache, which
        ``store_all()`` writes. Anything else is AiiDA's ``add_incoming``, checks and errors included.
        """
        node = self.node
        links = node.base.links
        if node.is_stored or any(link.link_type not in (LinkType.CALL_CALC, LinkType.CALL_WORK)
                                 for link in links.incoming_cache):
            return super()._setup_inputs()  # not the situation AiiDA's engine is in here: its full checks
        labels = set()

        def add_input_link(source, link_type, link_label):
            if (link_type in (LinkType.INPUT_CALC, LinkType.INPUT_WORK) and isinstance(source, orm.Data)
                    and source.backend == node.backend and link_label not in labels and not node.is_sealed):
                # unstored target: no cycle possible and no stored links; the label is new: no clash in the cache.
                # An unstored source is stored with the node (``store_all``), as on AiiDA's path.
                validate_link_label(link_label)
                labels.add(link_label)
                links.incoming_cache.append(LinkTriple(source, link_type, link_label))
            else:
                type(links).add_incoming(links, source, link_type, link_label)

        links.add_incoming = add_input_link  # an instance attribute: shadows the method for this node only
        try:
            super()._setup_inputs()
        finally:
            del links.add_incoming

    def update_outputs(self) -> None:
        """Link the outputs added since the last call; nothing at all when there are none."""
        if self.metadata.store_provenance is False:
            return
        outputs = self._flat_outputs()
        linked = getattr(self, '_grimperium_linked_outputs', None)
        if not outputs or (linked is not None and outputs.keys() <= linked):
            return  # nothing new to link: AiiDA's query would find nothing to do
        # Something to link: which labels the database has, as AiiDA asks. Asked again each time, because an
        # earlier run of this process (a worker killed while linking) may have linked some of them already.
        outgoing = self.node.base.links.get_outgoing(link_type=(LinkType.CREATE, LinkType.RETURN))
        linked = set(outgoing.all_link_labels())
        for label, output in outputs.items():
            if label not in linked:
                self._link_output(output, label)
                linked.add(label)
        self._grimperium_linked_outputs = linked

    def _link_output(self, output: orm.Data, label: str) -> None:
        """Link one new output: the label is not among the node's CREATE and RETURN links (just asked)."""
        node = self.node
        usual = not node.is_sealed and node.is_stored and isinstance(output, orm.Data)
        if usual and isinstance(node, orm.CalculationNode) and not output.is_stored and not output.base.links.incoming_cache:
            validate_link_label(label)  # a new node: no cycle and no other creator possible
            output.base.links.incoming_cache.append(LinkTriple(node, LinkType.CREATE, label))
        elif usual and isinstance(node, orm.WorkflowNode) and output.is_stored:
            validate_link_label(label)  # RETURN links are not checked for cycles; the label is unique (above)
            output.backend_entity.add_incoming(node.backend_entity, LinkType.RETURN, label)
        else:
            link_type = LinkType.CREATE if isinstance(node, orm.CalculationNode) else LinkType.RETURN
            output.base.links.add_incoming(node, link_type, label)
        output.store()
