"""Restart workchains per code, the conformer search, the common DFT interface and the pipeline."""
