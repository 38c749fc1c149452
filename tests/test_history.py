"""History across run folders: first seen, unused since and the grace period, new and resolved."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from cleanup import schemas
from cleanup.findings_io import write_findings
from cleanup.history import change_summary, list_runs, load_history
from cleanup.rules import evaluate_rules
from cleanup.snapshot.model import Snapshot
from cleanup.snapshot.store import RUN_ID_FORMAT, save_snapshot

T = pd.Timestamp


def snapshot(*, status: str = "complete", used: bool = False, r2_bound: bool = False) -> Snapshot:
    """env1 with r1 (unused unless ``used``) and r2 (unbound unless ``r2_bound``)."""
    rows = {
        "environments": [{"environment_id": "env1", "display_name": "Env 1", "status": status}],
        "references": [
            {
                "environment_id": "env1",
                "reference_id": "r1",
                "logical_name": "new_a",
                "display_name": "HR – Dataverse – Service Principal",
                "connection_id": "c1",
            },
            {
                "environment_id": "env1",
                "reference_id": "r2",
                "logical_name": "new_b",
                "display_name": "HR – Dataverse – Service Principal",
                "connection_id": "c2" if r2_bound else None,
            },
        ],
        "connections": [
            {
                "environment_id": "env1",
                "connection_id": c,
                "identity": "service-principal",
                "status": "Connected",
                "is_connected": True,
            }
            for c in ("c1", "c2")
        ],
        "flows": [{"environment_id": "env1", "flow_id": "f1", "parse_status": "ok", "state": 1}],
        "usages": [{"environment_id": "env1", "flow_id": "f1", "logical_name": "new_b"}]
        + ([{"environment_id": "env1", "flow_id": "f1", "logical_name": "new_a"}] if used else []),
        "dependency_checks": [
            {"environment_id": "env1", "reference_id": "r1", "checked": True, "dependent_count": 0}
        ],
    }
    frames = {k: schemas.frame_from_rows(v, schemas.SNAPSHOT_TABLES[k]) for k, v in rows.items()}
    return Snapshot.from_tables(frames, {})


def run(runs: Path, when: str, snap: Snapshot) -> pd.DataFrame:
    """Analyse ``snap`` as a run at ``when`` with the history so far, and store the run folder."""
    now = T(when).to_pydatetime()
    run_id = now.strftime(RUN_ID_FORMAT)
    history = load_history(runs, run_id, {"env1"})
    result = evaluate_rules(snap, history=history, now=now)
    save_snapshot(snap, runs / run_id)
    write_findings(runs / run_id, result.findings, result.excluded)
    return result.findings


def key(findings: pd.DataFrame, rule: str, object_id: str) -> pd.Series:
    """The one finding of ``rule`` about ``object_id``."""
    hit = findings.loc[findings["rule"].eq(rule) & findings["object_id"].eq(object_id)]
    assert len(hit) == 1, hit
    return hit.iloc[0]


def test_unused_since_carries_over_an_incomplete_night_and_passes_grace(tmp_path: Path) -> None:
    run(tmp_path, "2025-02-01T02:00Z", snapshot())
    night2 = run(tmp_path, "2025-02-10T02:00Z", snapshot(status="incomplete"))
    assert "unused" not in set(night2["rule"])
    night3 = run(tmp_path, "2025-02-12T02:00Z", snapshot())
    extra = json.loads(key(night3, "unused", "r1")["extra"])
    assert extra["unused_since"].startswith("2025-02-01")
    assert extra["grace_passed"] is False
    assert key(night3, "unused", "r1")["change"] == "open"
    night4 = run(tmp_path, "2025-02-20T02:00Z", snapshot())
    extra = json.loads(key(night4, "unused", "r1")["extra"])
    assert extra["grace_passed"] is True
    assert key(night4, "unused", "r1")["first_seen"] == T("2025-02-01T02:00Z")


def test_a_night_in_use_restarts_the_clock(tmp_path: Path) -> None:
    run(tmp_path, "2025-02-01T02:00Z", snapshot())
    run(tmp_path, "2025-02-05T02:00Z", snapshot(used=True))
    later = run(tmp_path, "2025-02-25T02:00Z", snapshot())
    row = key(later, "unused", "r1")
    assert row["change"] == "new"
    assert json.loads(row["extra"])["grace_passed"] is False
    assert row["first_seen"] == T("2025-02-25T02:00Z")


def test_new_and_resolved_since_the_last_complete_run(tmp_path: Path) -> None:
    first = run(tmp_path, "2025-02-01T02:00Z", snapshot())
    assert first["change"].isna().all()  # nothing to compare with
    now = T("2025-02-02T02:00Z").to_pydatetime()
    history = load_history(tmp_path, now.strftime(RUN_ID_FORMAT))
    fixed = snapshot(r2_bound=True)
    result = evaluate_rules(fixed, history=history, now=now)
    resolved = history.resolved(result.findings, fixed, result.excluded)
    assert set(zip(resolved["rule"], resolved["object_id"], strict=True)) == {("unbound", "r2")}
    assert resolved.at[0, "last_run_id"] == "20250201T020000Z"
    summary = change_summary(result.findings, resolved).set_index("rule")
    assert summary.at["unbound", "resolved"] == 1
    assert summary.at["unused", "open"] == 1


def test_nothing_is_resolved_where_this_run_could_not_read(tmp_path: Path) -> None:
    run(tmp_path, "2025-02-01T02:00Z", snapshot())
    now = T("2025-02-02T02:00Z").to_pydatetime()
    history = load_history(tmp_path, now.strftime(RUN_ID_FORMAT))
    blind = snapshot(status="incomplete", r2_bound=True)
    result = evaluate_rules(blind, history=history, now=now)
    assert history.resolved(result.findings, blind).empty


def test_list_runs_ignores_folders_without_findings_and_later_runs(tmp_path: Path) -> None:
    for name in ("20250101T000000Z", "20250102T000000Z", "20250102T000000Z-2", "20250301T000000Z"):
        write_findings(tmp_path / name, schemas.empty_frame(schemas.FINDINGS))
    (tmp_path / "20250103T000000Z").mkdir()  # crashed before findings
    (tmp_path / "notes").mkdir()
    runs = list_runs(tmp_path, current_run_id="20250201T000000Z")
    assert list(runs["run_id"]) == ["20250101T000000Z", "20250102T000000Z", "20250102T000000Z-2"]
    assert runs["run_time"].iloc[0] == T("2025-01-01T00:00Z")


def test_runs_without_a_snapshot_are_no_baseline(tmp_path: Path) -> None:
    write_findings(tmp_path / "20250101T000000Z", schemas.empty_frame(schemas.FINDINGS))
    history = load_history(tmp_path, "20250201T000000Z")
    assert len(history.runs) == 1
    assert history.baseline.empty and history.findings.empty


def test_missing_runs_folder_is_an_empty_history(tmp_path: Path) -> None:
    history = load_history(tmp_path / "nope")
    assert history.runs.empty


@pytest.mark.parametrize("when", ["2025-02-01T02:00Z"])
def test_first_seen_without_history_is_the_run_time(when: str) -> None:
    now = datetime.fromisoformat(when.replace("Z", "+00:00"))
    found = evaluate_rules(snapshot(), now=now).findings
    assert (found["first_seen"] == T(when)).all()
