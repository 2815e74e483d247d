"""Line-by-line reader of VASP's OUTCAR and of its standard output, AiiDA-free.

Both are plain text and share one streaming pass: the OUTCAR gives the energies of every completed ionic step
(the ``FREE ENERGIE OF THE ION-ELECTRON SYSTEM`` block), the Fermi energy and the run parameters; the standard
output gives one ``F= ... E0= ...`` line per ionic step and one ``DAV:``/``RMM:`` line per electronic step.
They are the fallback when ``vasprun.xml`` is cut, and the source of the convergence messages VASP prints
only there (``reached required accuracy``).
"""
from __future__ import annotations

import re
from collections.abc import Iterable

from . import floats, to_float_or_none
from .vasp_messages import MessageReader

#: Electronic-minimiser lines of the standard output (and OSZICAR): ``DAV:   3  -0.71E+01 ...``.
ELECTRONIC_STEP = re.compile(r'^\s*(DAV|RMM|CG|SDA|DMP|DIA|EDA|ORT|BLK):\s*\d+')
#: Ionic-step line of the standard output: ``   1 F= -.65021466E+01 E0= -.65016163E+01  d E =...``.
#: Counts have at most 9 digits: a mangled 5000-digit field is no step (``int()`` would refuse it).
IONIC_STEP = re.compile(r'^\s*(\d{1,9})\s+F=\s*(\S+)\s+E0=\s*(\S+)')
ITERATION = re.compile(r'Iteration\s+(\d{1,9})\s*\(\s*(\d{1,9})\)')
PARAMETER = re.compile(r'^\s*(NELM|EDIFF|EDIFFG|NSW|IBRION|ISIF|ISMEAR|ISPIN)\s*=\s*([-+.\dEeDd]+)')
#: Lines worth showing a user: VASP's fatal messages (kept short; the full text is in the retrieved files).
ERROR_MARKERS = (
    'VERY BAD NEWS', 'I REFUSE TO CONTINUE', 'ZBRENT: fatal error', 'Error EDDDAV', 'EDDRMM: call to ZHEGV',
    'Sub-Space-Matrix is not hermitian', 'TOO FEW BANDS', 'internal error', 'BRIONS problems', 'exceeded limit',
    'Error reading item', 'ERROR: ',
)
MAX_MESSAGES = 20


def parse_text_lines(lines: Iterable[str]) -> dict:
    """Read an OUTCAR or a VASP standard output (or both, concatenated); never raises."""
    res: dict = {
        'vasp_version': None,
        'parameters': {},
        'finished': False,
        'reached_required_accuracy': False,
        'nelm_reached_message': False,
        'num_ionic_steps': 0,
        'num_electronic_steps': None,
        'energies': None,
        'fermi_energy': None,
        'potcars': [],
        'errors': [],
        'has_outcar_blocks': False,
        'messages': [],
    }
    messages = MessageReader()  # VASP's boxed and plain messages, with their words (see vasp_messages)
    electronic = 0  # electronic steps of the ionic step being read
    pending_totens: float | None = None
    in_final_block = False
    for line in lines:
        try:
            messages.feed(line)
        except (ValueError, IndexError, TypeError):
            messages.box = messages.pending = None
        try:
            _line(res, line)
        except (ValueError, IndexError):  # an odd line is skipped, never fatal
            continue
        stripped = line.strip()
        if ELECTRONIC_STEP.match(line):
            electronic += 1
            res['num_electronic_steps'] = electronic
            continue
        match = ITERATION.search(line)
        if match:
            res['has_outcar_blocks'] = True
            res['num_electronic_steps'] = int(match.group(2))
            if res['num_electronic_steps'] == 1:  # a new ionic step: NELM breached in an earlier one is history
                res['nelm_reached_message'] = False
            continue
        match = IONIC_STEP.match(line)
        if match:
            free, sigma0 = to_float_or_none(match.group(2)), to_float_or_none(match.group(3))
            res['num_ionic_steps'] = max(res['num_ionic_steps'], int(match.group(1)))
            if free is not None and sigma0 is not None and not res['has_outcar_blocks']:
                res['energies'] = {'e_fr_energy': free, 'e_0_energy': sigma0, 'source': 'stdout'}
            electronic = 0
            continue
        if stripped.startswith('FREE ENERGIE OF THE ION-ELECTRON SYSTEM'):
            in_final_block = True
        elif in_final_block and stripped.startswith('free  energy   TOTEN'):
            values = floats(stripped.split('=', 1)[1])
            pending_totens = values[0] if values else None
        elif in_final_block and stripped.startswith('energy  without entropy'):
            values = floats(stripped.split('=', 1)[1])
            if pending_totens is not None and len(values) >= 2:
                res['energies'] = {
                    'e_fr_energy': pending_totens, 'e_wo_entrp': values[0], 'e_0_energy': values[-1], 'source': 'OUTCAR'
                }
                res['num_ionic_steps'] = max(res['num_ionic_steps'], _count_block(res))
            in_final_block, pending_totens = False, None
    res.pop('_blocks', None)
    res['messages'] = messages.close()
    potcars = res['potcars']
    half = len(potcars) // 2
    if potcars and len(potcars) % 2 == 0 and potcars[:half] == potcars[half:]:
        res['potcars'] = potcars[:half]  # OUTCAR lists the POTCARs twice
    return res


def _count_block(res: dict) -> int:
    res['_blocks'] = res.get('_blocks', 0) + 1
    return res['_blocks']


def _line(res: dict, line: str) -> None:
    """Single-line facts: version, parameters, Fermi energy, messages."""
    if res['vasp_version'] is None and line.lstrip().startswith('vasp.'):
        res['vasp_version'] = line.split()[0][len('vasp.'):]
    elif 'E-fermi :' in line:
        values = floats(line.split(':', 1)[1])
        if values:
            res['fermi_energy'] = values[0]
    elif line.startswith(' POTCAR:'):
        res['potcars'].append(line.split(':', 1)[1].strip())
    elif 'reached required accuracy' in line:
        res['reached_required_accuracy'] = True
    elif 'EDIFF was not reached' in line:  # VASP 6 prints this when NELM is exhausted
        res['nelm_reached_message'] = True
    elif 'General timing and accounting informations' in line:
        res['finished'] = True
    elif any(marker in line for marker in ERROR_MARKERS) and len(res['errors']) < MAX_MESSAGES:
        res['errors'].append(line.strip())
    else:
        match = PARAMETER.match(line)
        if match and match.group(1) not in res['parameters']:
            value = to_float_or_none(match.group(2))
            if value is not None:
                res['parameters'][match.group(1)] = int(value) if value.is_integer() and 'EDIFF' not in match.group(1) else value
