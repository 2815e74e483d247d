"""The documentation builds with Sphinx (MyST) without a single warning."""
from __future__ import annotations

import pathlib
import subprocess
import sys

DOCS = pathlib.Path(__file__).parent.parent / 'docs'


def test_docs_build_without_warnings(tmp_path):
    result = subprocess.run(
        [sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-q', '-b', 'html', str(DOCS), str(tmp_path / 'html')],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / 'html' / 'campaigns.html').is_file()
    assert 'QueryBuilder recipes' in (tmp_path / 'html' / 'campaigns.html').read_text()
