"""aiida-grimperium: AiiDA plugins for CRYSTAL23, Quantum ESPRESSO, VASP, CREST, xtb and MOPAC.

Conformer-to-DFT workflows and CSV campaigns with the provenance graph as the database.
"""
__version__ = '0.1.0'
