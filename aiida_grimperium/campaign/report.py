"""Campaign report: PM7 vs reference parity plot (PNG), error statistics, and an HTML page showing both."""
from __future__ import annotations

import html
import pathlib

import numpy as np
import pandas as pd


def error_statistics(table: pd.DataFrame) -> dict:
    """MAE, RMSE, max |error| (kcal/mol) of ``most_stable_hof - H298_cbs`` overall and by heavy-atom count."""
    done = table.dropna(subset=['most_stable_hof', 'H298_cbs'])
    errors = (done['most_stable_hof'] - done['H298_cbs']).to_numpy(dtype=float)

    def stats(values: np.ndarray) -> dict:
        if not len(values):
            return {'n': 0, 'mae': None, 'rmse': None, 'max_error': None}
        return {'n': int(len(values)), 'mae': float(np.mean(np.abs(values))),
                'rmse': float(np.sqrt(np.mean(values ** 2))), 'max_error': float(np.max(np.abs(values)))}

    by_size = {}
    if 'nheavy' in done:
        for size, part in done.groupby(done['nheavy'].fillna(-1).astype(int)):
            label = 'unknown' if size < 0 else str(size)
            by_size[label] = stats((part['most_stable_hof'] - part['H298_cbs']).to_numpy(dtype=float))
    return {'overall': stats(errors), 'by_nheavy': by_size,
            'molecules': int(len(table)), 'with_result_and_reference': int(len(done))}


def parity_plot(table: pd.DataFrame, path: pathlib.Path, title: str) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    done = table.dropna(subset=['most_stable_hof', 'H298_cbs'])
    fig, ax = plt.subplots(figsize=(5.5, 5.5), dpi=120)
    x, y = done['H298_cbs'].to_numpy(dtype=float), done['most_stable_hof'].to_numpy(dtype=float)
    if len(x):
        low, high = min(x.min(), y.min()), max(x.max(), y.max())
        pad = 0.05 * (high - low or 1.0)
        ax.plot([low - pad, high + pad], [low - pad, high + pad], color='0.6', lw=1, zorder=1, label='y = x')
        ax.scatter(x, y, s=28, zorder=2, label='molecules')
        for xi, yi, name in zip(x, y, done['mol_id']):
            ax.annotate(str(name), (xi, yi), fontsize=7, xytext=(3, 3), textcoords='offset points')
        ax.set_xlim(low - pad, high + pad)
        ax.set_ylim(low - pad, high + pad)
        ax.legend(loc='upper left')
    else:
        ax.text(0.5, 0.5, 'no molecule with both a result and a reference', ha='center', transform=ax.transAxes)
    ax.set_xlabel('reference ΔHf(298 K) (kcal/mol)')
    ax.set_ylabel('PM7 heat of formation, most stable conformer (kcal/mol)')
    ax.set_title(title)
    ax.set_aspect('equal', adjustable='box')
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _fmt(value) -> str:
    return '—' if value is None else f'{value:.2f}'


def write_report(table: pd.DataFrame, directory: str | pathlib.Path, title: str) -> dict:
    """Write ``parity.png``, ``statistics.json`` and ``index.html`` into ``directory``; return the statistics."""
    import json

    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stats = error_statistics(table)
    parity_plot(table, directory / 'parity.png', title)
    (directory / 'statistics.json').write_text(json.dumps(stats, indent=2))
    overall = stats['overall']
    size_rows = ''.join(
        f'<tr><td>{html.escape(size)}</td><td>{s["n"]}</td><td>{_fmt(s["mae"])}</td><td>{_fmt(s["rmse"])}</td>'
        f'<td>{_fmt(s["max_error"])}</td></tr>' for size, s in sorted(stats['by_nheavy'].items()))
    columns = ['mol_id', 'status', 'smiles', 'H298_cbs', 'most_stable_hof', 'delta_1', 'error_message']
    molecule_rows = ''.join(
        '<tr>' + ''.join(f'<td>{html.escape("" if pd.isna(v) else (f"{v:.2f}" if isinstance(v, float) else str(v)))}</td>'
                         for v in row) + '</tr>'
        for row in table.reindex(columns=columns).itertuples(index=False))
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:right}} td:first-child{{text-align:left}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>{stats['molecules']} molecules, {stats['with_result_and_reference']} with a PM7 result and a reference.
Errors are PM7 (most stable conformer) minus reference, kcal/mol.</p>
<table><tr><th></th><th>n</th><th>MAE</th><th>RMSE</th><th>max |error|</th></tr>
<tr><td>all</td><td>{overall['n']}</td><td>{_fmt(overall['mae'])}</td><td>{_fmt(overall['rmse'])}</td>
<td>{_fmt(overall['max_error'])}</td></tr></table>
<h2>Parity plot</h2><img src="parity.png" alt="PM7 vs reference parity plot" width="550">
<h2>By number of heavy atoms</h2>
<table><tr><th>heavy atoms</th><th>n</th><th>MAE</th><th>RMSE</th><th>max |error|</th></tr>{size_rows}</table>
<h2>Molecules</h2>
<table><tr>{''.join(f'<th>{c}</th>' for c in columns)}</tr>{molecule_rows}</table>
</body></html>
"""
    (directory / 'index.html').write_text(page, encoding='utf-8')
    return stats
