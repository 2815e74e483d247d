"""Data made by calcfunctions: every summary a workchain returns has a creator in the graph."""
