"""Apply a reviewed plan: the job's only write path (``apply``, ``resume``, ``restore``).

Modules: ``settings`` (the ``[apply]`` section), ``checks`` (everything refused before the
first write), ``session`` (apply and resume: confirm, lock, journal, execute), ``executor``
(the visitor over action types), ``flows`` and ``references`` (one handler per action type),
``context`` (journalled exactly-once writes), ``journal`` (write-ahead journal and backups),
``restore``, ``report`` and ``outcomes``.

Run folder of an apply (inside the plan's run folder)::

    <run>/apply-<UTC time>/plan.json              copy of the plan applied (hash in the journal)
                          journal.jsonl          write-ahead journal: the audit trail
                          backups/<env>/flow-<id>.json, reference-<id>.json  (mode 0600)
                          apply-report.json, apply-report.html
                          restore-journal.jsonl, restore-report.json, restore-report.html
"""

from importlib import import_module
from typing import Any

# Loaded on first use: cleanup.config imports cleanup.apply.settings, and the other modules
# import cleanup.config, so eager imports here would be circular.
_EXPORTS = {
    "ActionOutcome": "outcomes",
    "ApplyCancelled": "outcomes",
    "ApplyRefused": "outcomes",
    "ApplyResult": "outcomes",
    "ApplySettings": "settings",
    "apply_plan": "session",
    "resume_run": "session",
    "restore_run": "restore",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import an exported name from its module on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cleanup.apply' has no attribute {name!r}")
    return getattr(import_module(f"cleanup.apply.{_EXPORTS[name]}"), name)
