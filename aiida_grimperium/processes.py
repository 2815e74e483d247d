"""What every grimperium process (CalcJob and WorkChain) adds to AiiDA's ``Process``: less bookkeeping.

AiiDA calls :meth:`Process.update_outputs` on *every* state change of a process (a CalcJob has about ten, a
workchain two per step), and each call asks the database for the labels of the outputs already linked before
it links the new ones: one QueryBuilder query per state change, almost always to find that nothing is new. In
a campaign that was a sixth of the daemon's CPU time (``benchmarks/campaign.py``, py-spy on the workers).

:class:`LinkedOutputsMemo` remembers, in the running process, which output labels it has linked, and skips the
call while nothing new has been attached. The first call of a process object (a new process, or one a worker
reloaded from its checkpoint after a restart) always does the query, so what is linked is exactly what AiiDA
would link: only the redundant queries go.
"""
from __future__ import annotations


class LinkedOutputsMemo:
    """Mixin for a ``Process`` subclass (first in the bases): ``update_outputs`` only when there is a new output."""

    def update_outputs(self) -> None:
        labels = set(self._flat_outputs())
        linked = getattr(self, '_grimperium_linked_outputs', None)
        if linked is not None and labels <= linked:
            return  # every output is linked already: the query would find nothing to do
        super().update_outputs()
        self._grimperium_linked_outputs = labels
