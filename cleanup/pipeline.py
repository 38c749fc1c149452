"""The read-only pipeline, stage by stage, writing everything into one run folder."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from cleanup.config import Settings
from cleanup.connect import open_tenant
from cleanup.progress import QUIET, Progress
from cleanup.snapshot.collect import take_snapshot
from cleanup.snapshot.model import Snapshot
from cleanup.snapshot.store import new_run_folder, save_snapshot

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_FINDINGS = 4


@dataclass(frozen=True)
class RunResult:
    """What a run produced and where."""

    folder: Path
    snapshot: Snapshot

    @property
    def exit_code(self) -> int:
        """Return the documented exit code for this run."""
        return EXIT_OK if self.snapshot.metadata.get("complete", False) else EXIT_PARTIAL


def run_snapshot(settings: Settings, progress: Progress = QUIET) -> RunResult:
    """Snapshot the tenant into a new run folder."""
    folder = new_run_folder(settings.run.runs_dir)
    with open_tenant(settings) as clients:
        snapshot = take_snapshot(clients, run_id=folder.name, progress=progress)
    save_snapshot(snapshot, folder)
    meta = snapshot.metadata
    log.info(
        "snapshot %s: %s requests in %.1f s", folder, meta["requests"]["total"], meta["seconds"]
    )
    return RunResult(folder=folder, snapshot=snapshot)
