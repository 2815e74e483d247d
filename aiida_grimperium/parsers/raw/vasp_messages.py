"""VASP's own failure and warning messages (standard output and OUTCAR), AiiDA-free.

VASP reports problems in two forms, both read here line by line by :class:`MessageReader`:

* boxes (VASP 5.4 and 6.x): a row of dashes, ``|``-framed lines with ASCII art (``EEEEEEE RRRRRR ...`` for an
  error, ``W    W    AA ...`` for a warning, ``AAAAAA DDDDD ...`` for advice), the text, and for a fatal error
  ``---->  I REFUSE TO CONTINUE WITH THIS SICK JOB ... BYE!!! <----``;
* plain lines (mostly VASP 5.x, some in 6.x): ``VERY BAD NEWS! internal error in subroutine IBZKPT:`` followed
  by the reason on the next line, ``Error EDDDAV: Call to ZHEGV failed``, ``POSMAP internal error: ...``,
  ``RHOSYG internal error: ...`` (sometimes glued to the end of a ``DAV:`` line), ``ZBRENT: fatal error ...``.

Each message keeps VASP's words (the box text without the art, whitespace collapsed) and gets an exit label of
:data:`EXIT_CODES` from :func:`classify`. Error boxes and the plain error lines are ``fatal``: they decide the
verdict when the run did not end; warnings and advice never do (``BRIONS problems: POTIM should be increased``
and ``TOO FEW BANDS`` in a WARNING box are advice VASP gives while it carries on).
"""
from __future__ import annotations

import re

from ...exit_codes import ExitCodeSpec, make_table

EXIT_CODES = make_table(
    ExitCodeSpec(411, 'ERROR_VASP_ELECTRONIC_SOLVER',
                 "VASP's electronic minimiser failed (eigensolver, subspace rotation, orthogonalisation or charge "
                 'mixing: EDDDAV, EDDIAG, ZHEGV, PSSYEVX/PDSYEVX, ZPOTRF, EDWAV, BRMIX).'),
    ExitCodeSpec(420, 'ERROR_VASP_SYMMETRY',
                 'VASP stopped on a symmetry or k-point mesh error (IBZKPT, POSMAP, PRICELV, SGRCON, RHOSYG, '
                 'HNFORM, Bravais lattice, point group).'),
    ExitCodeSpec(421, 'ERROR_VASP_TOO_FEW_BANDS', 'VASP stopped because NBANDS cannot hold the electrons.'),
    ExitCodeSpec(422, 'ERROR_VASP_PARALLELISATION',
                 'VASP refused the parallelisation settings (NPAR/NCORE/KPAR) for this calculation.'),
    ExitCodeSpec(501, 'ERROR_VASP_IONIC_SOLVER', 'The ionic minimiser failed (ZBRENT: fatal error in bracketing).'),
)

#: (label, pattern) in the order they are tried; the first match wins, anything else is ERROR_VASP_CRASHED.
CLASSES = (
    ('ERROR_VASP_PARALLELISATION', re.compile(r'\bNPAR\b|\bNCORE\b|\bKPAR\b', re.IGNORECASE)),
    ('ERROR_VASP_TOO_FEW_BANDS', re.compile(r'TOO FEW BANDS|number of bands is not sufficient', re.IGNORECASE)),
    ('ERROR_VASP_IONIC_SOLVER', re.compile(r'ZBRENT')),
    ('ERROR_VASP_ELECTRONIC_SOLVER', re.compile(
        r'EDDDAV|EDDIAG|EDDRMM|ZHEGV|ZHEEV|DSYEV|[PS]SYEVX|PDSYEVX|PZHEEVX|subspace rotation|Sub-Space-Matrix|'
        r'not hermitian|EDWAV|gradient is not orthogonal|ZPOTRF|ZTRTRI|CNORMN|BRMIX', re.IGNORECASE)),
    ('ERROR_VASP_SYMMETRY', re.compile(
        r'IBZKPT|POSMAP|PRICEL|SGRCON|RHOSYG|HNFORM|KPOINTS_TRANS|point group|Bravais|inverse of rotation|'
        r'symmetry|SYMPREC|incommensurate|k-lattice|unable to match k-point', re.IGNORECASE)),
)
#: Plain lines that report a failure, outside boxes; the reason may continue on the next line.
PLAIN_ERRORS = re.compile(
    r'VERY BAD NEWS|Error EDDDAV|ERROR in EDDIAG|ERROR in subspace rotation|EDWAV: internal error|'
    r'WARNING in EDDRMM: call to ZHEGV|Sub-Space-Matrix is not hermitian|POSMAP internal error|'
    r'RHOSYG internal error|internal error in subroutine (?:SGRCON|PRICEL)|inverse of rotation matrix was not found|'
    r'ZBRENT: fatal error|BRMIX: very serious problems|ERROR: SBESSELITER|Error reading item|ERROR FEXCF|'
    r'TOO FEW BANDS|ZPOTRF|ZTRTRI|internal error in SETUP_DEG_CLUSTERS')
#: Plain lines that are advice VASP gives while it carries on.
PLAIN_WARNINGS = re.compile(r'BRIONS problems|DENTET: can.t reach specified precision')
REFUSE = 'I REFUSE TO CONTINUE'
DASHES = re.compile(r'^\s?-{40,}\s*$')
ART_ERROR = re.compile(r'^[\sERO#]+$')
ART_WARNING = re.compile(r'^[\sWARNIG!]+$')
ART_ADVICE = re.compile(r'^[\sADVICE]+$')
MAX_MESSAGES = 20
MAX_TEXT = 600


def classify(text: str) -> str:
    """The exit label of VASP's message ``text`` (``ERROR_VASP_CRASHED`` when no class fits)."""
    for label, pattern in CLASSES:
        if pattern.search(text):
            return label
    return 'ERROR_VASP_CRASHED'


def _clean(text: str) -> str:
    return ' '.join(text.split())[:MAX_TEXT]


class MessageReader:
    """Feed lines with :meth:`feed`; :attr:`messages` holds ``{'label', 'text', 'fatal'}`` dicts, each once."""

    def __init__(self):
        self.messages: list[dict] = []
        self.box: list[str] | None = None    # inner lines of the open box
        self.kind: str | None = None         # 'error' / 'warning' / 'advice' from the box art
        self.pending: dict | None = None     # a plain message whose reason may be on the next line

    def _add(self, text: str, fatal: bool) -> None:
        text = _clean(text)
        if not text or len(self.messages) >= MAX_MESSAGES or any(m['text'].startswith(text) for m in self.messages):
            return
        self.messages.append({'label': classify(text) if fatal else None, 'text': text, 'fatal': fatal})

    def _close_box(self) -> None:
        lines, kind, self.box, self.kind = self.box or [], self.kind, None, None
        refused = any(REFUSE in line for line in lines)
        text = ' '.join(line for line in lines if REFUSE not in line)
        if text or refused:
            self._add(text or REFUSE, fatal=kind == 'error' or refused)

    def _flush_pending(self, line: str | None) -> None:
        pending, self.pending = self.pending, None
        if pending is None:
            return
        text = pending['text'] if line is None else f"{pending['text']} {line.strip()}"
        self._add(text, pending['fatal'])

    def feed(self, line: str) -> None:
        if self.box is not None:
            if line.startswith('|'):
                inner = line.strip().strip('|').strip()
                if not inner:
                    return
                if ART_ERROR.match(inner) and inner != 'ERROR':
                    self.kind = 'error'
                elif ART_WARNING.match(inner) and inner != 'WARNING':
                    self.kind = self.kind or 'warning'
                elif ART_ADVICE.match(inner) and inner != 'ADVICE':
                    self.kind = self.kind or 'advice'
                elif len(self.box) < 40:
                    self.box.append(inner)
                return
            if self.box or self.kind:
                self._close_box()
                if DASHES.match(line):
                    return
            else:
                self.box, self.kind = None, None      # dashes not followed by a framed line: no box
        if self.pending is not None:
            if not line.strip():
                return                                # VERY BAD NEWS! ... then, after blank lines, the reason
            reason = not (DASHES.match(line) or line.lstrip().startswith('|') or PLAIN_ERRORS.search(line))
            self._flush_pending(line if reason else None)
            if reason:
                return
        if DASHES.match(line):
            self.box, self.kind = [], None
            return
        if line.lstrip().startswith('|'):
            return
        match = PLAIN_ERRORS.search(line)
        if match:
            text = line[match.start():].strip()
            self.pending = {'text': text, 'fatal': True}
            if not (text.endswith((':', ',', 'e.g.')) or 'VERY BAD NEWS' in text):
                self._flush_pending(None)
        elif PLAIN_WARNINGS.search(line):
            self._add(line[PLAIN_WARNINGS.search(line).start():], fatal=False)

    def close(self) -> list[dict]:
        """End of the file: close what is open and return the messages."""
        if self.box:
            self._close_box()
        self._flush_pending(None)
        return self.messages
