"""connref-cleanup: tenant-wide hygiene for Power Platform connection references.

The pipeline, one sub-package or module per stage::

    clients/ (HTTP edge) -> snapshot/ -> rules/ -> consolidate -> plan -> report / notify -> apply/

Only ``cleanup.clients`` talks HTTP; everything between the snapshot and the plan is pure pandas.
"""

__version__ = "0.1.0"
