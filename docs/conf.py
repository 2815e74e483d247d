"""Sphinx configuration: the Markdown pages of docs/ through MyST."""
project = 'aiida-grimperium'
author = 'aiida-grimperium developers'
extensions = ['myst_parser']
source_suffix = {'.md': 'markdown'}
root_doc = 'index'
exclude_patterns = ['_build']
myst_heading_anchors = 3
html_theme = 'alabaster'
