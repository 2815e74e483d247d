"""Pseudopotentials for pw.x as aiida-pseudo families: Debian's UPF files, or the user's SSSP / PseudoDojo.

Debian's ``quantum-espresso-data`` puts a few dozen UPF files in :data:`DEFAULT_PSEUDO_DIR`, named
``<element>.<functional>-<flavour>.UPF``. :func:`install_family` picks one file per element for a functional
(:func:`find_pseudo`: ``pbe``, or ``pz`` = LDA) and stores them as an aiida-pseudo
``CutoffsPseudoPotentialFamily`` labelled :func:`family_label` with recommended cutoffs per stringency
(:func:`recommended_cutoffs`; ``docs/pseudopotentials.md`` says why). The default family of
``grimperium.pw.base`` is the one ``grimperium setup --pseudo-family LABEL`` recorded (:func:`set_default_family`),
else the protocol's (Debian PBE).
"""
from __future__ import annotations

import pathlib
import re
import shutil
import tempfile

DEFAULT_PSEUDO_DIR = pathlib.Path('/usr/share/espresso/pseudo')
FUNCTIONALS = ('pbe', 'pz')

#: Files chosen first when several match (the ones tested with the package), per (element, functional).
PREFERRED = {
    ('Si', 'pz'): 'Si.pz-vbc.UPF',
    ('Si', 'pbe'): 'Si.pbe-rrkj.UPF',
    ('H', 'pz'): 'H.pz-vbc.UPF',
    ('H', 'pbe'): 'H.pbe-kjpaw.UPF',
    ('O', 'pz'): 'O.pz-rrkjus.UPF',
    ('O', 'pbe'): 'O.pbe-rrkjus.UPF',
    ('C', 'pz'): 'C.pz-rrkjus.UPF',
    ('C', 'pbe'): 'C.pbe-rrkjus.UPF',
    ('N', 'pbe'): 'N.pbe-kjpaw.UPF',
}

#: Wavefunction cutoff (Ry) per stringency: the package's former fast / balanced / stringent values. ``normal``
#: and ``high`` are raised to a file's own suggested minimum where the file states one; ``low`` is for screening.
WFC_CUTOFFS = {'low': 20.0, 'normal': 30.0, 'high': 45.0}
#: ecutrho / ecutwfc: 8 suits the ultrasoft and PAW files among Debian's (4 would do for norm-conserving ones).
DUAL = 8.0
DEFAULT_STRINGENCY = 'normal'
#: Extra on the family group that marks the user's default family.
DEFAULT_EXTRA = 'grimperium_default_pw_family'

_NAME = re.compile(r'^(?P<element>[A-Z][a-z]?)[._](?P<rest>.*)\.(?:upf|UPF)$')
_SUGGESTED = {
    'wfc': re.compile(r'Suggested minimum cutoff for wavefunctions:\s*([\d.]+)|wfc_cutoff="\s*([-+\d.EeDd]+)"'),
    'rho': re.compile(r'Suggested minimum cutoff for charge density:\s*([\d.]+)|rho_cutoff="\s*([-+\d.EeDd]+)"'),
}


def family_label(functional: str = 'pbe') -> str:
    return f'Debian/QE/{functional.upper()}'


def available_pseudos(directory: str | pathlib.Path = DEFAULT_PSEUDO_DIR) -> dict[str, list[str]]:
    """``{element: [file names]}`` of the UPF files in ``directory`` (sorted names)."""
    table: dict[str, list[str]] = {}
    for path in sorted(pathlib.Path(directory).glob('*')):
        match = _NAME.match(path.name)
        if match and path.is_file():
            table.setdefault(match.group('element'), []).append(path.name)
    return table


def find_pseudo(element: str, functional: str = 'pbe', directory: str | pathlib.Path = DEFAULT_PSEUDO_DIR) -> pathlib.Path:
    """The UPF file for ``element`` and ``functional``; ``ValueError`` naming the choices if none.

    The preference: :data:`PREFERRED`, then the shortest scalar-relativistic ``<El>.<functional>-*`` name (a name
    with ``rel-`` is fully relativistic and needs ``lspinorb``, so it is never chosen).
    """
    directory = pathlib.Path(directory)
    names = available_pseudos(directory).get(element, [])
    preferred = PREFERRED.get((element, functional))
    if preferred in names:
        return directory / preferred
    candidates = [n for n in names if _NAME.match(n).group('rest').startswith(f'{functional}-')]
    if not candidates:
        raise ValueError(f'no `{functional}` pseudopotential for {element} in {directory}; files: {names or "none"}')
    return directory / sorted(candidates, key=lambda n: (len(n), n))[0]


def suggested_cutoffs(text: str) -> tuple[float, float]:
    """The (wavefunction, density) cutoffs in Ry a UPF file suggests, 0 where it states none."""
    found = []
    for key in ('wfc', 'rho'):
        match = _SUGGESTED[key].search(text)
        value = (match.group(1) or match.group(2)) if match else '0'
        found.append(float(value.replace('D', 'E').replace('d', 'e')))
    return found[0], found[1]


def recommended_cutoffs(text: str) -> dict[str, dict[str, float]]:
    """``{stringency: {'cutoff_wfc': Ry, 'cutoff_rho': Ry}}`` for one UPF file (see :data:`WFC_CUTOFFS`)."""
    wfc_min, rho_min = suggested_cutoffs(text)
    cutoffs = {}
    for stringency, wfc in WFC_CUTOFFS.items():
        if stringency != 'low':
            wfc = max(wfc, wfc_min)
        rho = wfc * DUAL if stringency == 'low' else max(wfc * DUAL, rho_min)
        cutoffs[stringency] = {'cutoff_wfc': wfc, 'cutoff_rho': rho}
    return cutoffs


def install_family(functional: str = 'pbe', directory: str | pathlib.Path = DEFAULT_PSEUDO_DIR):
    """The Debian family of ``functional``, created if missing (idempotent): ``(family, created)``."""
    from aiida import orm
    from aiida.plugins import DataFactory, GroupFactory

    family_class = GroupFactory('pseudo.family.cutoffs')
    label = family_label(functional)
    existing = orm.QueryBuilder().append(family_class, filters={'label': label}).first(flat=True)
    if existing is not None:
        return existing, False
    chosen = {}
    for element in available_pseudos(directory):
        try:
            chosen[element] = find_pseudo(element, functional, directory)
        except ValueError:
            continue
    with tempfile.TemporaryDirectory() as tmp:
        for path in chosen.values():
            shutil.copy(path, tmp)
        family = family_class.create_from_folder(
            pathlib.Path(tmp), label, pseudo_type=DataFactory('pseudo.upf'),
            description=f"Debian's quantum-espresso-data UPF files, {functional}, one per element (aiida-grimperium)",
        )
    per_element = {element: recommended_cutoffs(path.read_text(errors='replace')) for element, path in chosen.items()}
    for stringency in WFC_CUTOFFS:
        family.set_cutoffs({el: c[stringency] for el, c in per_element.items()}, stringency, unit='Ry')
    family.set_default_stringency(DEFAULT_STRINGENCY)
    return family, True


def load_family(label: str):
    """The aiida-pseudo family ``label``; the Debian ones are installed on first use."""
    from aiida import orm
    from aiida.plugins import GroupFactory

    for functional in FUNCTIONALS:
        if label == family_label(functional):
            return install_family(functional)[0]
    family = orm.QueryBuilder().append(GroupFactory('pseudo.family'), filters={'label': label}).first(flat=True)
    if family is None:
        raise ValueError(f'pseudopotential family `{label}` is not installed (see `aiida-pseudo install --help`)')
    return family


def set_default_family(label: str) -> None:
    """Record ``label`` as the default family of ``grimperium.pw.base`` (an extra on the family group)."""
    from aiida import orm
    from aiida.plugins import GroupFactory

    family = load_family(label)
    query = orm.QueryBuilder().append(GroupFactory('pseudo.family'), filters={f'extras.{DEFAULT_EXTRA}': True})
    for other in query.all(flat=True):
        other.base.extras.delete(DEFAULT_EXTRA)
    family.base.extras.set(DEFAULT_EXTRA, True)


def default_family_label() -> str | None:
    """The label recorded by :func:`set_default_family`, or None."""
    from aiida import orm
    from aiida.plugins import GroupFactory

    query = orm.QueryBuilder().append(GroupFactory('pseudo.family'), filters={f'extras.{DEFAULT_EXTRA}': True})
    family = query.first(flat=True)
    return family.label if family is not None else None


def get_pseudos(structure, functional: str = 'pbe') -> dict:
    """``{kind name: UpfData}`` for ``structure`` from the Debian family of ``functional``."""
    return install_family(functional)[0].get_pseudos(structure=structure)
