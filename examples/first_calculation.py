"""First calculation: MOPAC PM7 heats of formation of a few molecules, through AiiDA.

Run with ``verdi run examples/first_calculation.py`` (``scripts/main.sh`` does it for you). Each molecule
goes SMILES → RDKit 3D geometry → ``MopacBaseWorkChain`` (PM7 optimisation, ``fast`` protocol), and the heat of
formation is read back from the provenance graph.
"""
from aiida import orm
from aiida.engine import run_get_node

from aiida_grimperium.structures import structure_from_smiles
from aiida_grimperium.workchains.mopac import MopacBaseWorkChain

MOLECULES = [  # name, SMILES, charge, multiplicity
    ('ethanol', 'CCO', 0, 1),
    ('acetate', 'CC(=O)[O-]', -1, 1),
    ('methylammonium', 'C[NH3+]', 1, 1),
    ('ethyl radical', '[CH2]C', 0, 2),
]

code = orm.load_code('mopac@localhost')
group, _ = orm.Group.collection.get_or_create('grimperium/examples/first_calculation')
print(f'{"molecule":<16} {"charge":>6} {"mult":>4} {"PM7 ΔHf (kcal/mol)":>20}  workchain')
for name, smiles, charge, multiplicity in MOLECULES:
    builder = MopacBaseWorkChain.get_builder_from_protocol(
        code, structure_from_smiles(smiles), 'fast', charge=charge, multiplicity=multiplicity, task='optimization'
    )
    builder.metadata.label = name
    results, node = run_get_node(builder)
    group.add_nodes(node)
    heat = results['output_parameters']['heat_of_formation_kcal_mol'] if node.is_finished_ok else float('nan')
    print(f'{name:<16} {charge:>6} {multiplicity:>4} {heat:>20.3f}  pk={node.pk} exit_status={node.exit_status}')
