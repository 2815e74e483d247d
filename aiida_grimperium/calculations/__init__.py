"""One CalcJob per code, all built on :class:`~aiida_grimperium.calculations.base.GrimperiumCalcJob`."""
