"""Can you trust the map? Attribution checked where the evidence is known (``notebooks/trust.ipynb`` and sheet 4's
section beyond the sheet).

:mod:`.groundtruth`: a small CNN trained on synthetic shapes whose evidence is known by construction, its data and
the synthesis checks; :mod:`.scores`: attribution maps scored against object masks and the standard sanity checks.
These modules import the top level of ``helpers`` and :mod:`helpers.toolbox`, never the reverse; their public names
are re-exported by ``helpers`` itself (``H.trained_stand_in``, ``H.pointing_game``).
"""
