#!/usr/bin/env bash
# The main job: a small real campaign on the embedded default profile (core.sqlite_dos + ZeroMQ broker).
# Installs what it needs (scripts/setup.sh --profile: Debian codes, the package, the profile and codes), then
# runs the sample CSV shipped with the package through the daemon: SMILES -> RDKit conformers -> xtb (GFN2)
# -> MOPAC PM7 on the 3 lowest conformers (one job) -> a `fast` pw.x SCF on the PM7-lowest conformer;
# then exports the results to CSV and writes the report (parity plot + HTML) into ./output/.
# Running it again reuses the finished molecules and only refreshes the export and report.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=$(bash scripts/setup.sh --profile | tail -n 1 | sed 's/^PYTHON=//')
BIN=$(dirname "$PYTHON")
SAMPLE=$("$PYTHON" -c 'import aiida_grimperium, pathlib; print(pathlib.Path(aiida_grimperium.__file__).parent / "data/examples/sample_campaign.csv")')
GROUP=${GRIMPERIUM_SAMPLE_GROUP:-sample-campaign}
mkdir -p output
# A daemon left running by an earlier version would run that version's code: restart it on this one.
if "$BIN/verdi" daemon status >/dev/null 2>&1; then "$BIN/verdi" daemon restart >/dev/null; fi
"$BIN/grimperium" campaign run "$SAMPLE" --group "$GROUP" --engine rdkit-xtb --top-n 3 --num-conformers 6 \
    --dft pw --protocol fast --workers 2 --max-active 4
"$BIN/grimperium" export "$GROUP" -o output/sample_campaign.csv
"$BIN/grimperium" report "$GROUP" -o output/sample_report
"$PYTHON" - <<'PY'
import pandas as pd
table = pd.read_csv('output/sample_campaign.csv')
columns = ['mol_id', 'status', 'H298_cbs', 'most_stable_hof', 'delta_1', 'dft_energy_ev', 'dft_band_gap_ev']
print(table[columns].to_string(index=False))
PY
echo "results: output/sample_campaign.csv  report: output/sample_report/index.html"
