"""How a campaign's molecules are cut into batches: by estimated cost, so that batches that run at once end together.

A batch is as slow as its xtb job, and a campaign (or a lane of its batches) as slow as its slowest batch: cut
in CSV order, batches of drug-sized molecules differ several-fold in work and the cores idle while the largest
finishes (``docs/performance.md``). Here each molecule gets an estimated cost, ``conformers x atoms²``, and
the molecules are dealt, most expensive first, to the batch with the least work so far (the LPT rule), with
batch sizes as even as ``plan_sizes`` makes them; a large campaign is dealt window by window
(:data:`WINDOW_BATCHES` batches of consecutive rows). A batch lists its molecules in CSV order, and the export
follows the CSV, not the batches (each stored row keeps its position, ``columns.POSITION_FIELD``).

The estimate: an xtb optimisation costs about ``atoms²`` (with hydrogens) per conformer, and RDKit's pruned
ETKDG embedding gives about ``1 + 2 x rotatable bonds + 3 x aliphatic rings`` distinct conformers, at most the
campaign's ``num_conformers``. Only the ratios between molecules matter; ``docs/performance.md`` compares the
estimate with measured times.
"""
from __future__ import annotations

import heapq


def cost_terms(mol) -> list[int]:
    """``[atoms with hydrogens, expected distinct conformers]`` of an RDKit molecule (its hydrogens may be implicit).

    RDKit's non-strict rotatable bonds: several times faster than its default (strict) SMARTS, and they rank the
    molecules of ``benchmarks/campaign.py`` the same (``docs/performance.md``)."""
    from rdkit.Chem import rdMolDescriptors

    rotatable = rdMolDescriptors.CalcNumRotatableBonds(mol, rdMolDescriptors.NumRotatableBondsOptions.NonStrict)
    flexibility = 1 + 2 * rotatable + 3 * rdMolDescriptors.CalcNumAliphaticRings(mol)
    return [mol.GetNumAtoms(onlyExplicit=False), flexibility]


def smiles_cost_terms(smiles: str) -> list[int]:
    """:func:`cost_terms` of a SMILES; ``[1, 1]`` when RDKit cannot read it (the run will say why)."""
    from rdkit import Chem, rdBase

    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
    return cost_terms(mol) if mol is not None else [1, 1]


def estimated_cost(terms: list[int] | None, num_conformers: int) -> float:
    """The relative work of one molecule: ``min(num_conformers, conformers) x atoms²``."""
    atoms, flexibility = terms or (1, 1)
    return float(min(max(1, num_conformers), flexibility) * atoms * atoms)


def plan_sizes(count: int, batch_size: int, min_batches: int = 1) -> list[int]:
    """Batch sizes for ``count`` molecules: at most ``batch_size`` each, at least ``min_batches`` batches (so a
    small campaign still keeps every core busy), as even as possible."""
    if count <= 0:
        return []
    batches = max(-(-count // max(1, batch_size)), min(min_batches, count))
    return [count // batches + (1 if i < count % batches else 0) for i in range(batches)]


#: Batches balanced together: a window of consecutive CSV rows is dealt into this many batches (all of them in a
#: smaller campaign). A large campaign's windows come in CSV order, so that its records, read back in the order
#: they were stored, hold nearby rows (dealt over all 2 000 batches of 100 000 rows, the export slowed down:
#: ``docs/performance.md``).
WINDOW_BATCHES = 16


def plan_batches(costs: list[float], batch_size: int, min_batches: int = 1) -> list[list[int]]:
    """The molecules (indices into ``costs``) of each batch: the sizes of :func:`plan_sizes`, the work as even as
    the LPT rule makes it within each window of :data:`WINDOW_BATCHES` batches. Each batch lists its molecules in
    index order; in a window, the costliest batch comes first."""
    sizes = plan_sizes(len(costs), batch_size, min_batches)
    batches, first = [], 0
    for start in range(0, len(sizes), WINDOW_BATCHES):
        window = sizes[start:start + WINDOW_BATCHES]
        members = range(first, first + sum(window))
        batches += [[members[i] for i in batch] for batch in _deal([costs[i] for i in members], window)]
        first += sum(window)
    return batches


def _deal(costs: list[float], sizes: list[int]) -> list[list[int]]:
    """LPT: the molecules, costliest first, each to the batch with the least work that has room."""
    room = list(sizes)
    batches: list[list[int]] = [[] for _ in sizes]
    totals = [0.0] * len(sizes)
    heap = [(0.0, b) for b in range(len(sizes))]  # (work so far, batch) of the batches with room left
    for index in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        total, b = heapq.heappop(heap)
        batches[b].append(index)
        totals[b] = total + costs[index]
        room[b] -= 1
        if room[b]:
            heapq.heappush(heap, (totals[b], b))
    order = sorted(range(len(batches)), key=lambda b: (-totals[b], min(batches[b])))
    return [sorted(batches[b]) for b in order]
