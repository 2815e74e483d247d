"""CSV campaigns: one workchain per molecule, one Group per campaign, state kept in the database."""
