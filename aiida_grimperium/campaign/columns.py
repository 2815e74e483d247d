"""The columns of a campaign's CSV and of its export: the one place that lists them.

The export writes the seed tool's columns first (in its order), then the package's own; the validation refuses
a user column named like an output column, which the export would otherwise overwrite.
"""
from __future__ import annotations

REQUIRED_COLUMNS = ('mol_id', 'smiles', 'charge', 'multiplicity')
OPTIONAL_COLUMNS = ('nheavy', 'H298_cbs', 'batch_id')
#: the molecule's estimated work, set by the validation for the batches (:mod:`.planning`); not stored
COST_FIELD = 'cost_terms'
#: the molecule's position in the campaign's CSV(s), stored with its row: the export's order (batches are not)
POSITION_FIELD = 'position'
#: fields the validation (or the store) sets itself
COMPUTED_FIELDS = ('row', 'inchikey', 'smiles_input', COST_FIELD, POSITION_FIELD)

#: the old pipeline's export columns, in its order
SEED_COLUMNS = (
    'mol_id', 'status', 'reruns', 'smiles', 'multiplicity', 'charge', 'nheavy', 'timestamp_added', 'H298_cbs',
    'batch_id', 'timestamp_started', 'timestamp_completed', 'crest_status', 'crest_conformers_generated',
    'crest_time', 'mopac_status', 'mopac_time', 'delta_1', 'delta_2', 'delta_3', 'most_stable_hof', 'error_message',
)
#: the columns this package adds after them
NEW_COLUMNS = (
    'crest_conformers_kept', 'boltzmann_hof', 'pk', 'uuid', 'engine', 'top_n', 'pm7_heats_of_formation_kcal_mol',
    'dft_code', 'dft_status', 'dft_energy_ev', 'dft_band_gap_ev', 'dft_time', 'inchikey', 'shell_status',
    'shell_error', 'shell_pk', 'shell_outputs',
)
#: the columns the export adds to a campaign's own: a CSV column of the same name would be overwritten
OUTPUT_COLUMNS = tuple(name for name in SEED_COLUMNS + NEW_COLUMNS
                       if name not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS + COMPUTED_FIELDS)
