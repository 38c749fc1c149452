"""Split a tenant's environments over machines (``--shard i/n``) and merge the shard runs.

The split hashes each environment id (SHA-256, case-insensitive), so it depends neither on the
order the admin API lists environments in nor on Python's per-process hash seed: every worker
of a batch engine (a Kubernetes Indexed Job, a CI matrix) computes the same partition, and a
new environment lands in one shard without moving the others.

``merge_runs`` combines the shard run folders into one run folder whose snapshot looks like a
single run's, so rules, plan and report run on it unchanged.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from cleanup import schemas
from cleanup.errors import ConfigError, SnapshotError
from cleanup.snapshot.model import Snapshot
from cleanup.snapshot.store import METADATA_FILE, SNAPSHOT_DIR, load_snapshot, save_snapshot

_SHARD_TEXT = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
SKIPPED_PREFIX = "in shard "


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based, as JOB_COMPLETION_INDEX counts) of ``count`` shards."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(
                f"Shard {self.index}/{self.count} does not exist: use i/n with 0 <= i < n "
                "(e.g. --shard 0/4 ... --shard 3/4)."
            )

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, environment_id: str) -> bool:
        """Whether this shard reads the environment."""
        return shard_of(environment_id, self.count) == self.index


def parse_shard(text: str) -> Shard:
    """Parse ``"i/n"`` (0-based index) into a ``Shard``; ConfigError when malformed."""
    match = _SHARD_TEXT.match(text or "")
    if match is None:
        raise ConfigError(f"--shard {text!r}: expected i/n, e.g. 0/4 (0-based index).")
    return Shard(int(match.group(1)), int(match.group(2)))


def shard_of(environment_id: str, count: int) -> int:
    """The 0-based shard an environment belongs to among ``count`` shards."""
    digest = hashlib.sha256(environment_id.strip().lower().encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def skip_reason(environment_id: str, count: int) -> str:
    """The ``status_reason`` of an environment another shard reads."""
    return f"{SKIPPED_PREFIX}{shard_of(environment_id, count)}/{count}"


def latest_shard_runs(
    runs_dir: str | Path, count: int, *, within: timedelta = timedelta(hours=12)
) -> list[Path]:
    """The newest run folder of each of ``count`` shards under ``runs_dir``, in shard order.

    Folders older than the newest one by more than ``within`` belong to an earlier night and
    are ignored, so a shard that failed tonight is missing (its environments become unknown)
    rather than silently replaced by yesterday's data.
    """
    found: dict[int, tuple[datetime, Path]] = {}
    base = Path(runs_dir)
    folders = (
        sorted((p for p in base.iterdir() if p.is_dir()), reverse=True) if base.is_dir() else []
    )
    newest: datetime | None = None
    for folder in folders:
        meta = _metadata(folder)
        shard = (meta or {}).get("shard") or {}
        if shard.get("count") != count or shard.get("index") in found:
            continue
        started = _started(meta)
        if started is None:
            continue
        newest = newest or started
        if newest - started <= within:
            found[int(shard["index"])] = (started, folder)
    return [found[index][1] for index in sorted(found)]


def _metadata(folder: Path) -> dict[str, Any] | None:
    path = folder / SNAPSHOT_DIR / METADATA_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return None


def _started(meta: dict[str, Any] | None) -> datetime | None:
    try:
        stamp = datetime.fromisoformat(str((meta or {}).get("started_at")))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def merge_runs(folders: Sequence[str | Path], out_folder: str | Path) -> Path:
    """Merge shard run folders into ``out_folder``; return its snapshot folder.

    Each environment is taken from the shard that owns it. An environment that no merged shard
    read (its shard's folder is missing) is marked ``incomplete``: unknown, never "unused".
    """
    if not folders:
        raise SnapshotError("Nothing to merge: pass the run folders of the shards.")
    snapshots = [load_snapshot(folder) for folder in folders]
    _check_compatible(snapshots, folders)
    environments = _merge_environments(snapshots)
    tables: dict[str, pd.DataFrame] = {"environments": environments}
    for name in schemas.SNAPSHOT_TABLES:
        if name != "environments":
            frames = [getattr(s, name) for s in snapshots if not getattr(s, name).empty]
            tables[name] = (
                pd.concat(frames, ignore_index=True)
                if frames
                else schemas.empty_frame(schemas.SNAPSHOT_TABLES[name])
            )
    _check_disjoint(tables)
    metadata = _merge_metadata(snapshots, folders, environments, Path(out_folder).name)
    return save_snapshot(Snapshot.from_tables(tables, metadata), out_folder)


def _check_compatible(snapshots: list[Snapshot], folders: Sequence[str | Path]) -> None:
    # The parser and table shapes belong to the version; config differences (a runs folder
    # per worker) are legitimate and are recorded in the merged metadata instead.
    versions = {str(s.metadata.get("tool_version")) for s in snapshots}
    if len(versions) > 1:
        raise SnapshotError(
            f"The shard runs differ in tool_version ({', '.join(sorted(versions))}); merge only "
            "the shards of one run, taken with the same version."
        )
    counts = {s.metadata.get("shard", {}).get("count") for s in snapshots} - {None}
    if len(counts) > 1:
        raise SnapshotError(f"The shard runs were split differently ({sorted(counts)} shards).")
    seen: dict[str, str] = {}
    for snapshot, folder in zip(snapshots, folders, strict=True):
        shard = snapshot.metadata.get("shard")
        if shard:
            label = f"{shard['index']}/{shard['count']}"
            if label in seen:
                raise SnapshotError(f"Shard {label} appears twice: {seen[label]} and {folder}.")
            seen[label] = str(folder)


def _merge_environments(snapshots: list[Snapshot]) -> pd.DataFrame:
    frame = pd.concat([s.environments for s in snapshots], ignore_index=True)
    read = frame["status"].ne("skipped") | ~frame["status_reason"].fillna("").str.startswith(
        SKIPPED_PREFIX
    )
    owned = frame.loc[read]
    twice = owned.loc[
        owned["environment_id"].duplicated(keep=False) & owned["status"].ne("skipped")
    ]
    if not twice.empty:
        ids = ", ".join(sorted(set(twice["environment_id"])))
        raise SnapshotError(f"Environment(s) read by more than one shard run: {ids}.")
    owned = owned.drop_duplicates("environment_id", keep="first")
    missing = frame.loc[~frame["environment_id"].isin(owned["environment_id"])]
    missing = missing.drop_duplicates("environment_id", keep="first").copy()
    if not missing.empty:
        missing["status"] = "incomplete"
        missing["status_reason"] = (
            "not read: the run folder of its shard ("
            + missing["status_reason"].str.removeprefix(SKIPPED_PREFIX)
            + ") was not merged"
        )
    merged = pd.concat([owned, missing], ignore_index=True)
    return merged.sort_values("environment_id", kind="stable").reset_index(drop=True)


def _check_disjoint(tables: dict[str, pd.DataFrame]) -> None:
    # Shards read disjoint environments, so a duplicate key means a folder was merged twice.
    for name, keys in (
        ("flows", ["environment_id", "flow_id"]),
        ("references", ["environment_id", "reference_id"]),
    ):
        if tables[name].duplicated(keys).any():
            raise SnapshotError(
                f"The merged {name} table has duplicate rows: a run was merged twice."
            )


def _merge_metadata(
    snapshots: list[Snapshot],
    folders: Sequence[str | Path],
    environments: pd.DataFrame,
    run_id: str,
) -> dict[str, Any]:
    metas = [s.metadata for s in snapshots]
    by_env: dict[str, Any] = {}
    for meta in metas:
        for env_id, info in (meta.get("environments") or {}).items():
            if env_id not in by_env or info.get("status") != "skipped":
                by_env[env_id] = info
    for row in environments.itertuples(index=False):
        entry = dict(by_env.get(row.environment_id) or {})
        entry.update(status=row.status, reason=_none(row.status_reason))
        by_env[row.environment_id] = entry
    requests = [m.get("requests") or {} for m in metas]
    first = metas[0]
    return {
        "tool_version": first.get("tool_version"),
        "config_fingerprint": first.get("config_fingerprint"),
        "shard_config_fingerprints": sorted({str(m.get("config_fingerprint")) for m in metas}),
        "run_id": run_id,
        "merged_from": [
            {"folder": str(folder), "run_id": meta.get("run_id"), "shard": meta.get("shard")}
            for folder, meta in zip(folders, metas, strict=True)
        ],
        "started_at": min(str(m.get("started_at") or "") for m in metas) or None,
        "finished_at": max(str(m.get("finished_at") or "") for m in metas) or None,
        "seconds": max(float(m.get("seconds") or 0.0) for m in metas),
        "requests": {
            "total": sum(int(r.get("total") or 0) for r in requests),
            "by_environment": _sum_maps(r.get("by_environment") or {} for r in requests),
            "by_table": _sum_maps(r.get("by_table") or {} for r in requests),
            "throttled": sum(int(r.get("throttled") or 0) for r in requests),
        },
        "bytes": sum(int(m.get("bytes") or 0) for m in metas),
        "environments": by_env,
        "complete": bool(environments["status"].ne("incomplete").all()),
    }


def _sum_maps(maps: Iterable[dict[str, Any]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for mapping in maps:
        for key, value in mapping.items():
            total[key] = total.get(key, 0) + int(value or 0)
    return total


def _none(value: Any) -> Any:
    return (
        None
        if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA
        else value
    )
