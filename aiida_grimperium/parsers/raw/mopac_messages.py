"""MOPAC's error messages and the exit codes they map to (used by :mod:`.mopac`).

MOPAC reports a failure through ``mopend(text)`` (``src/mopend.F90`` of openmopac/mopac): the text is written in
the job's body (a blank line, then ten spaces and the text) and collected into the summary box at the end of
the file (``Error and normal termination messages reported in this calculation``). Its ~400 literal texts were
grouped into the families below by reading the sources (``grep -rn "call mopend" src``); a text no family
knows is still an error (``ERROR_MOPAC_FAILED``), with MOPAC's words kept.

A few ``mopend`` texts are not failures but the end of a job that did what it was asked (``ADD-H: SYSTEM HAS
BEEN HYDROGENATED``, ``GEO_REF with 0SCF: Job complete``): they are :data:`NOTES`.
"""
from __future__ import annotations

import re

from ...exit_codes import ExitCodeSpec, make_table

EXIT_CODES = make_table(
    ExitCodeSpec(314, 'ERROR_NO_HEAT_OF_FORMATION',
                 'MOPAC ended normally but printed no heat of formation for any job.'),
    ExitCodeSpec(410, 'ERROR_SCF_NOT_CONVERGED', 'MOPAC could not achieve a self-consistent field.'),
    ExitCodeSpec(420, 'ERROR_MAX_CYCLES', 'The geometry optimisation stopped at the cycle limit (CYCLES).'),
    ExitCodeSpec(421, 'ERROR_GEOMETRY_NOT_CONVERGED', 'The geometry optimisation could not lower the gradient any more.'),
    ExitCodeSpec(422, 'ERROR_TRANSITION_STATE_NOT_LOCATED', 'The transition-state search (TS, SADDLE, LOCATE-TS) failed.'),
    ExitCodeSpec(423, 'ERROR_VIBRATIONAL_ANALYSIS', 'The FORCE / THERMO calculation failed (not a stationary point, '
                                                    'zero force constant).'),
    ExitCodeSpec(430, 'ERROR_INVALID_CHARGE_MULTIPLICITY', 'MOPAC refused the charge / spin state of the system.'),
    ExitCodeSpec(431, 'ERROR_INPUT_REJECTED', 'MOPAC refused the input (unknown keyword or bad geometry).'),
    ExitCodeSpec(432, 'ERROR_MISSING_PARAMETERS', 'MOPAC has no parameters for an element of the system '
                                                  '(method parameters or van der Waals radius).'),
    ExitCodeSpec(433, 'ERROR_ACTIVE_SPACE', 'The open-shell / C.I. active space cannot describe the requested state.'),
    ExitCodeSpec(440, 'ERROR_RESTART_FILE', 'A restart or density file MOPAC needed is missing, corrupt or does '
                                            'not match the data set.'),
    ExitCodeSpec(441, 'ERROR_FILE_UNAVAILABLE', 'MOPAC could not open or write a file it needed.'),
    ExitCodeSpec(450, 'ERROR_INSUFFICIENT_MEMORY', 'MOPAC could not allocate the memory the job needs.'),
    ExitCodeSpec(500, 'ERROR_MOPAC_FAILED', 'MOPAC stopped with an error: {message}'),
)

_I = re.IGNORECASE

#: Informational ``mopend`` texts: the job stopped where the user's keywords asked it to.
NOTES = re.compile(
    r'ADD-H: SYSTEM HAS BEEN HYDROGENATED|GEOMETRY RESEQUENCED|HYDROGEN ATOMS ADDED OR DELETED'
    r'|GEO_REF with 0SCF: Job complete|CHARGES MODIFIED BY SITE COMMAND|RUN STOPPED BECAUSE KEYWORD'
    r'|JOB STOPPED HERE BECAUSE KEYWORD|The two systems are identical, so the job will stop here'
    r'|SOME COORDINATES WERE IN INTERNAL\. THESE HAVE BEEN CHANGED TO CARTESIAN', _I)

#: ``(pattern, label)`` families, checked in this order; the first match of a text wins.
FAMILIES: tuple[tuple[re.Pattern, str], ...] = tuple((re.compile(p, f), label) for p, f, label in (
    (r'NOT ENOUGH TIME|WITHIN TIME LIMIT|TIME LIMIT (REACHED|EXCEEDED)', _I, 'ERROR_OUT_OF_WALLTIME'),
    (r'UNABLE TO ACHIEVE SELF-CONSISTENCE|SCF CALCULATION FAILED|FAILED TO ACHIEVE SCF', 0, 'ERROR_SCF_NOT_CONVERGED'),
    (r'EXCESS NUMBER OF OPTIMIZATION CYCLES', 0, 'ERROR_MAX_CYCLES'),
    (r'Gradient in FORCE is too large|force constant is exactly zero|SINGLE ATOM HAS NO VIBRATIONAL MODES'
     r'|FORCE CALCULATION (RESTART|ON A SYSTEM THAT HAS DUMMY)|Lattice vectors cannot move during vibrational',
     _I, 'ERROR_VIBRATIONAL_ANALYSIS'),
    (r'TS FAILED TO LOCATE|TS SEARCH|SAME SIDE OF THE TRANSITION STATE|TWO GEOMETRIES IN SADDLE ARE IDENTICAL'
     r'|BEFORE LOCATE-TS|LOCATE-TS must', _I, 'ERROR_TRANSITION_STATE_NOT_LOCATED'),
    (r'GRADIENT IS TOO LARGE|HEAT OF FORMATION IS NOT DECREASING|FAILED TO LOCATE|GEOMETRY NOT CONVERGED'
     r'|CALCULATION ABANDONED IN FLEPO|NOT APPEAR TO BE OPTIMIZABLE|LAMBDA BISECT|^in (FORMD|UPDHES|EF)$'
     r'|ERROR DETECTED IN EF|MODE IS LARGER THAN NVAR', _I, 'ERROR_GEOMETRY_NOT_CONVERGED'),
    (r'SPIN COMPONENT NOT SPANNED|ACTIVE SPACE|\bC\.I\.|\bC\.A\.S\.|CONFIGURATIONS|DELTA S|size of open space'
     r'|OPEN\(M,N\)|ROOT REQUESTED', _I, 'ERROR_ACTIVE_SPACE'),
    (r'SPECIFIED WITH (EVEN|ODD) NUMBER OF ELECTRONS|IMPOSSIBLE NUMBER OF (OPEN|FILLED|CLOSED) SHELL'
     r'|CHARGE (ON SYSTEM|SPECIFIED) IS INCORRECT|NUMBER OF ELECTRONS .* IS (ODD|EVEN)|NUMBER OF ALPHA ELECTRONS'
     r'|value of MS|radical run with RHF|Unit cell has a charge|OXIDATION STATE|MS cannot be used'
     r'|CHARGE SPECIFIED IN DATA SET', _I, 'ERROR_INVALID_CHARGE_MULTIPLICITY'),
    (r'VAN DER WAALS RADIUS|Parameters for some elements are missing|DATA ARE NOT AVAILABLE FOR'
     r'|No parameters read in|MIXED PARAMETER SETS|(ELEMENT|ATOM) .*NOT (AVAILABLE|PARAMETERI[SZ]ED)'
     r'|PARAMETERS? (FOR .* )?(ARE |IS )?(NOT AVAILABLE|MISSING)', _I, 'ERROR_MISSING_PARAMETERS'),
    (r'RESTART|Density (Restart )?file|DENSITY file|OLDENS FILE|state of MOPAC|incompatible MO(PAC|ZYME) state',
     _I, 'ERROR_RESTART_FILE'),
    (r'memory|allocat|storage for|Running out of storage|too big to run|ijbo-type arrays'
     r'|interatomic distance array could not be assigned', _I, 'ERROR_INSUFFICIENT_MEMORY'),
    (r'unavailable|Problem opening file|COULD NOT OPEN|Cannot write|Temporary file|Failed to open'
     r'|ERROR DETECTED WHILE TRYING TO WRITE', _I, 'ERROR_FILE_UNAVAILABLE'),
    (r'UNRECOGNI[SZ]ED|ERROR IN READ|ATOMS .* TOO CLOSE|GEOMETRY IS UNREASONABLE|keyword|incompatible with'
     r'|only compatible|only works|cannot (both )?be used|must be|not allowed|GEOMETRY|geometry|coordinates'
     r'|COINCIDENT|TRANSLATION VECTOR|translation vector|lattice vector|DUMMY ATOMS|NO ATOMS|No atoms|atoms!'
     r'|NO REAL ATOMS|optimization flags|OPTIMIZATION FLAGS|INCONSISTENT|data[ -]set|DATA SET|Data set|PDB'
     r'|atom label|SYMMETRY FUNCTION|Symmetry Data|Equals sign|parenthesis|square bracket|dot separator'
     r'|IMPOSSIBLE OPTION|ECHO is not|GEO_DAT|GEO_REF|EXTERNAL file|INPUT FILE|Unknown semiempirical'
     r'|method requested|value of|VALUE OF|Nonsense value|positive number|must not|MUST NOT|STRUCTURE UNRECOGNIZABLE'
     r'|Structure Unrecognizable|residue|RESIDUE|Too many|TOO MANY|Maximum number|FIRST 3 ATOMS|Invalid number'
     r'|hydrogen atom is badly|Charge on an atom is unreasonable|SETUP FILE|SALT|NTRP|Step size|NO POINTS SUPPLIED'
     r'|REACTION COORDINATE|USE SEPARATE JOBS|MULTIPLE REQUESTS|MORE THAN ONE|GEO-OK|RESEQ|XENO|CVB|SETPI'
     r'|AUTOSYM|VELOCITY|velocity|unit cell|Unit cell|RSOLV|dielectric|COSMO|electrostatics|START_RES|CHAINS',
     0, 'ERROR_INPUT_REJECTED'),
    (r'\bJOB STOPPED\b|\bFATAL\b|CALCULATION ABANDONED|ERROR|Error|error|fault|FAULT|BUG IN', 0, 'ERROR_MOPAC_FAILED'),
))

#: Lines of the job's body that are MOPAC messages even when no summary box follows (a file cut short).
BODY = re.compile(
    r'NOT ENOUGH TIME FOR ANOTHER CYCLE|TIME LIMIT|UNABLE TO ACHIEVE SELF-CONSISTENCE|SCF CALCULATION FAILED'
    r'|FAILED TO ACHIEVE SCF|EXCESS NUMBER OF OPTIMIZATION CYCLES|GRADIENT IS TOO LARGE|HEAT OF FORMATION IS NOT '
    r'DECREASING|FAILED TO LOCATE|GEOMETRY NOT CONVERGED|SPECIFIED WITH (EVEN|ODD) NUMBER OF ELECTRONS'
    r'|IMPOSSIBLE NUMBER OF OPEN SHELL|CHARGE ON SYSTEM IS INCORRECT|NUMBER OF ELECTRONS .* IS (ODD|EVEN)'
    r'|UNRECOGNIZED KEY-?WORDS|ERROR IN READ|UNRECOGNI[SZ]ED ELEMENT|ATOMS .* TOO CLOSE|GEOMETRY IS UNREASONABLE'
    r'|(?i:DATA ARE NOT AVAILABLE FOR)|\bJOB STOPPED\b|\bFATAL\b|CALCULATION ABANDONED'
    r'|SPECIFIED SPIN COMPONENT NOT SPANNED|MISSING VAN DER WAALS RADIUS|Parameters for some elements are missing'
    r'|is incompatible with')

#: When one job has several problems, the one that explains the others is reported.
PRIORITY = (
    'ERROR_MISSING_PARAMETERS', 'ERROR_INVALID_CHARGE_MULTIPLICITY', 'ERROR_ACTIVE_SPACE', 'ERROR_INPUT_REJECTED',
    'ERROR_RESTART_FILE', 'ERROR_FILE_UNAVAILABLE', 'ERROR_INSUFFICIENT_MEMORY', 'ERROR_OUT_OF_WALLTIME',
    'ERROR_SCF_NOT_CONVERGED', 'ERROR_MAX_CYCLES', 'ERROR_TRANSITION_STATE_NOT_LOCATED', 'ERROR_GEOMETRY_NOT_CONVERGED',
    'ERROR_VIBRATIONAL_ANALYSIS', 'ERROR_MOPAC_FAILED', 'ERROR_OUTPUT_INCOMPLETE', 'ERROR_NO_HEAT_OF_FORMATION',
)


def classify(text: str) -> str | None:
    """The exit label of a MOPAC message; ``None`` for a note (:data:`NOTES`)."""
    if NOTES.search(text):
        return None
    for pattern, label in FAMILIES:
        if pattern.search(text):
            return label
    return 'ERROR_MOPAC_FAILED'


def clean(text: str) -> str:
    """A message as MOPAC wrote it, without the surrounding blanks (and the ``*`` of a box line)."""
    return text.strip().strip('*').strip().strip('"').strip()
