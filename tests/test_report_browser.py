"""The campaign report opens in a real browser (headless Chromium from Debian) with its plot drawn.

The table fed to the report here is input for the renderer (two molecules with a result and a reference);
the numbers of a real campaign are checked in test_campaign.py.
"""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from aiida_grimperium.campaign.report import write_report

CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                  '--disable-background-networking', '--disable-component-update', '--disable-sync',
                  '--hide-scrollbars', '--window-size=900,1400']


def test_report_renders_in_chromium(tmp_path):
    chromium = shutil.which('chromium')
    if chromium is None:
        pytest.fail('chromium is not installed: scripts/test.sh installs the Debian package')
    table = pd.DataFrame({'mol_id': ['a', 'b', 'c'], 'status': ['OK', 'OK', 'Skip'], 'smiles': ['C', 'CC', 'CCC'],
                          'nheavy': [1, 2, 3], 'H298_cbs': [-17.9, -20.0, -25.0],
                          'most_stable_hof': [-13.0, -18.2, None], 'delta_1': [4.9, 1.8, None],
                          'error_message': [None, None, 'MOPAC: failed']})
    stats = write_report(table, tmp_path / 'report', 'browser check')
    assert stats['overall']['n'] == 2 and stats['overall']['mae'] == pytest.approx((4.9 + 1.8) / 2)
    screenshot = tmp_path / 'page.png'
    subprocess.run([chromium, *CHROMIUM_FLAGS, f'--user-data-dir={tmp_path / "profile"}',
                    f'--screenshot={screenshot}', (tmp_path / 'report' / 'index.html').as_uri()],
                   check=True, capture_output=True, timeout=120)
    import matplotlib.image

    pixels = (matplotlib.image.imread(screenshot)[..., :3] * 255).round().astype(int)
    # matplotlib's first colour (#1f77b4) marks the points: present only if the browser drew parity.png
    blue = np.all(np.abs(pixels - np.array([0x1F, 0x77, 0xB4])) <= 12, axis=-1)
    assert blue.sum() > 50, 'the parity plot is not visible in the rendered page'
    dom = subprocess.run([chromium, *CHROMIUM_FLAGS, f'--user-data-dir={tmp_path / "profile2"}', '--dump-dom',
                          (tmp_path / 'report' / 'index.html').as_uri()], check=True, capture_output=True, text=True,
                         timeout=120).stdout
    assert 'MAE' in dom and 'MOPAC: failed' in dom
