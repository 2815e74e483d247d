"""Submit one ConformerToDftWorkChain to the daemon: ``verdi run examples/submit_pipeline.py [SMILES]``.

SMILES → RDKit conformers → xtb (GFN2) → MOPAC PM7 on the 3 lowest conformers (one job) → a `fast` pw.x SCF
on the PM7-lowest conformer. Needs `grimperium setup` (codes) and a running daemon (`verdi daemon start`).
"""
import sys

from aiida import orm
from aiida.engine import submit

from aiida_grimperium.campaign.builders import pipeline_builder
from aiida_grimperium.campaign.molecules import Molecule
from aiida_grimperium.campaign.store import DEFAULT_SETTINGS

smiles = sys.argv[1] if len(sys.argv) > 1 else 'CCO'
molecule = Molecule(mol_id=smiles, smiles=smiles, charge=0, multiplicity=1)
settings = {**DEFAULT_SETTINGS, 'dft': 'pw', 'protocol': 'fast'}
node = submit(pipeline_builder(molecule, settings))
print(f'submitted ConformerToDftWorkChain<{node.pk}> for {smiles}; follow it with `verdi process status {node.pk}`')
print(f'afterwards: verdi calcjob res ... or orm.load_node({node.pk}).outputs.most_stable_hof.value')
