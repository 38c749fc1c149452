"""History: what earlier run folders found, for "first seen", "unused since" and run-to-run diffs.

A finding is keyed by (rule, environment_id, object_id). Each environment is compared with its
*baseline*: the latest earlier run whose snapshot read that environment completely. Runs where
the environment was incomplete are skipped rather than counted as "the finding went away",
because what could not be read is unknown, not fixed; sharded runs that did not cover an
environment are skipped the same way. Because every run stores ``first_seen`` in its findings,
one baseline run is enough to carry a streak forward.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from cleanup import schemas
from cleanup.errors import SnapshotError
from cleanup.findings_io import FINDINGS_FILE, read_findings
from cleanup.snapshot.model import Snapshot
from cleanup.snapshot.store import METADATA_FILE, RUN_ID_FORMAT, SNAPSHOT_DIR

KEY = ["rule", "environment_id", "object_id"]
RUNS: schemas.Schema = {"run_id": schemas.STR, "run_time": schemas.TIME, "folder": schemas.STR}
BASELINE: schemas.Schema = {
    "environment_id": schemas.STR,
    "run_id": schemas.STR,
    "run_time": schemas.TIME,
}
RESOLVED: schemas.Schema = {
    **schemas.FINDINGS,
    "last_run_id": schemas.STR,
    "last_run_time": schemas.TIME,
}


@dataclass(frozen=True)
class History:
    """Earlier runs and, per environment, the findings of its baseline run."""

    runs: pd.DataFrame  # RUNS: earlier runs with findings, oldest first
    baseline: pd.DataFrame  # BASELINE: per environment, its latest earlier complete run
    findings: pd.DataFrame  # FINDINGS of each environment's baseline run, plus run_id/run_time

    def first_seen(self, keys: pd.DataFrame, now: datetime) -> pd.Series:
        """Return when each key's current streak started (``now`` for a key not seen before)."""
        matched = self._match(keys)
        return matched["prev_first_seen"].fillna(pd.Timestamp(now)).astype(schemas.TIME)

    def annotate(self, findings: pd.DataFrame, now: datetime) -> pd.DataFrame:
        """Fill ``first_seen`` and ``change`` (new | open; <NA> without a baseline)."""
        matched = self._match(findings)
        has_baseline = findings["environment_id"].isin(self.baseline["environment_id"])
        change = pd.Series("open", index=findings.index, dtype="string")
        change = change.mask(matched["prev_first_seen"].isna(), "new")
        return findings.assign(
            first_seen=matched["prev_first_seen"].fillna(pd.Timestamp(now)).astype(schemas.TIME),
            change=change.where(has_baseline, pd.NA),
        )

    def resolved(
        self, findings: pd.DataFrame, snapshot: Snapshot, excluded: pd.DataFrame | None = None
    ) -> pd.DataFrame:
        """Return baseline findings that are gone now, where this run read the environment."""
        complete = snapshot.complete_environments()
        prev = self.findings.loc[self.findings["environment_id"].isin(complete)]
        current = [findings[KEY]] + ([excluded[KEY]] if excluded is not None else [])
        # An anti-join on the keys alone, so the wide baseline rows are copied once.
        still = (
            prev[KEY]
            .assign(_row=np.arange(len(prev)))
            .merge(pd.concat(current).drop_duplicates(), on=KEY)["_row"]
        )
        gone_rows = np.ones(len(prev), dtype=bool)
        gone_rows[still.to_numpy()] = False
        gone = prev.loc[gone_rows]
        gone = gone.rename(columns={"run_id": "last_run_id", "run_time": "last_run_time"})
        return schemas.conform(gone.reset_index(drop=True), RESOLVED, name="resolved findings")

    @cached_property
    def _previous(self) -> pd.DataFrame:
        """[*KEY, prev_first_seen]: one row per baseline finding, when its streak started."""
        prev = self.findings[[*KEY, "first_seen", "run_time"]].drop_duplicates(KEY)
        prev = prev.assign(prev_first_seen=prev["first_seen"].fillna(prev["run_time"]))
        return prev[[*KEY, "prev_first_seen"]]

    def _match(self, keys: pd.DataFrame) -> pd.DataFrame:
        out = keys[KEY].merge(self._previous, on=KEY, how="left")
        out.index = keys.index
        return out


def empty_history() -> History:
    """Return a history with no earlier runs."""
    findings = schemas.empty_frame(
        {**schemas.FINDINGS, "run_id": schemas.STR, "run_time": schemas.TIME}
    )
    return History(schemas.empty_frame(RUNS), schemas.empty_frame(BASELINE), findings)


def list_runs(runs_dir: str | Path, current_run_id: str | None = None) -> pd.DataFrame:
    """Return earlier run folders that hold findings (RUNS columns), oldest first."""
    base = Path(runs_dir)
    rows = []
    for folder in sorted(base.iterdir()) if base.is_dir() else []:
        if current_run_id is not None and folder.name >= current_run_id:
            continue
        if not (folder / FINDINGS_FILE).is_file():
            continue
        run_time = _run_time(folder)
        if run_time is not None:
            rows.append({"run_id": folder.name, "run_time": run_time, "folder": str(folder)})
    return schemas.frame_from_rows(rows, RUNS)


def load_history(
    runs_dir: str | Path,
    current_run_id: str | None = None,
    environment_ids: set[str] | None = None,
) -> History:
    """Load, per environment, the findings of its latest earlier complete run."""
    runs = list_runs(runs_dir, current_run_id)
    baseline = _baselines(runs, environment_ids)
    frames = []
    for run_id, envs in baseline.groupby("run_id")["environment_id"]:
        run = runs.loc[runs["run_id"].eq(run_id)].iloc[0]
        found = read_findings(run["folder"])
        found = found.loc[found["environment_id"].isin(set(envs))]
        frames.append(found.assign(run_id=run_id, run_time=run["run_time"]))
    if not frames:
        return dataclasses.replace(empty_history(), runs=runs, baseline=baseline)
    return History(runs, baseline, pd.concat(frames, ignore_index=True))


def _baselines(runs: pd.DataFrame, wanted: set[str] | None) -> pd.DataFrame:
    # Newest first; stop as soon as every wanted environment has its baseline, so a year of
    # nightly folders costs one small Parquet read per night only when environments are missing.
    found: dict[str, tuple[str, pd.Timestamp]] = {}
    for run in runs.iloc[::-1].itertuples(index=False):
        for env_id in _complete_environments(Path(run.folder)) - found.keys():
            found[env_id] = (run.run_id, run.run_time)
        if wanted is not None and wanted <= found.keys():
            break
    if wanted is not None:
        found = {k: v for k, v in found.items() if k in wanted}
    rows = [{"environment_id": k, "run_id": v[0], "run_time": v[1]} for k, v in found.items()]
    return schemas.frame_from_rows(sorted(rows, key=lambda r: r["environment_id"]), BASELINE)


def _complete_environments(folder: Path) -> set[str]:
    path = folder / SNAPSHOT_DIR / "environments.parquet"
    if not path.is_file():
        return set()  # without its snapshot we cannot tell what the run read
    try:
        env = pd.read_parquet(path, columns=["environment_id", "status"])
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"Cannot read {path}: {exc}") from None
    return set(env.loc[env["status"].eq("complete"), "environment_id"].dropna())


def _run_time(folder: Path) -> pd.Timestamp | None:
    stamp = folder.name.split("-", 1)[0]
    try:
        return pd.Timestamp(datetime.strptime(stamp, RUN_ID_FORMAT).replace(tzinfo=UTC))
    except ValueError:
        pass
    meta = folder / SNAPSHOT_DIR / METADATA_FILE
    try:
        started = json.loads(meta.read_text(encoding="utf-8")).get("started_at")
        return pd.Timestamp(started).tz_convert(UTC) if started else None
    except (OSError, ValueError, TypeError):
        return None


def change_summary(findings: pd.DataFrame, resolved: pd.DataFrame) -> pd.DataFrame:
    """Count new, open and resolved findings per environment and rule, for the report."""
    cols = ["environment_id", "rule", "kind"]
    current = findings.assign(kind=findings["change"].fillna("unknown"))
    both = pd.concat([current[cols], resolved.assign(kind="resolved")[cols]])
    table = both.groupby(["environment_id", "rule", "kind"]).size().unstack("kind", fill_value=0)
    for col in ("new", "open", "resolved", "unknown"):
        if col not in table:
            table[col] = 0
    return table[["new", "open", "resolved", "unknown"]].astype("Int64").reset_index()
