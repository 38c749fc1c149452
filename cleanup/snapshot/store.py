"""Run folders and Parquet storage of snapshots.

A run folder is ``<runs_dir>/<UTC timestamp>/``; its snapshot lives in ``snapshot/`` as one
Parquet file per table plus ``metadata.json``.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from cleanup import schemas
from cleanup.errors import SnapshotError
from cleanup.snapshot.model import Snapshot

SNAPSHOT_DIR = "snapshot"
METADATA_FILE = "metadata.json"
RUN_ID_FORMAT = "%Y%m%dT%H%M%SZ"


def new_run_folder(runs_dir: str | Path, now: datetime | None = None) -> Path:
    """Create and return a fresh run folder named by the UTC time."""
    now = now or datetime.now(UTC)
    base = Path(runs_dir)
    base.mkdir(parents=True, exist_ok=True)
    stamp = now.strftime(RUN_ID_FORMAT)
    for suffix in ["", *(f"-{n}" for n in range(2, 1000))]:
        folder = base / f"{stamp}{suffix}"
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise SnapshotError(f"Too many runs in the same second under {base}.")


def save_snapshot(snapshot: Snapshot, run_folder: str | Path) -> Path:
    """Write every table as Parquet and the metadata as JSON; return the snapshot folder."""
    folder = Path(run_folder) / SNAPSHOT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in snapshot.tables().items():
        tmp = folder / f".{name}.parquet.tmp"
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, folder / f"{name}.parquet")
    write_json(folder / METADATA_FILE, snapshot.metadata)
    return folder


def load_snapshot(run_folder: str | Path) -> Snapshot:
    """Load a snapshot written by ``save_snapshot`` (given the run or snapshot folder)."""
    folder = Path(run_folder)
    if (folder / SNAPSHOT_DIR).is_dir():
        folder = folder / SNAPSHOT_DIR
    meta_path = folder / METADATA_FILE
    if not meta_path.is_file():
        raise SnapshotError(
            f"{folder} holds no snapshot ({METADATA_FILE} missing). Pass a run folder "
            "written by 'connref-cleanup snapshot' or 'run'."
        )
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
        tables = {
            name: pd.read_parquet(folder / f"{name}.parquet")
            for name in schemas.SNAPSHOT_TABLES
            if (folder / f"{name}.parquet").is_file()
        }
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"Cannot read the snapshot in {folder}: {exc}") from None
    return Snapshot.from_tables(tables, metadata)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (a crash never leaves half a file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str), encoding="utf-8")
    os.replace(tmp, path)
