"""AiiDA parsers: thin wrappers that hand the retrieved files to ``parsers/raw`` and store the results."""
