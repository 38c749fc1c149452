"""The write-ahead journal, backups and crash points, without a server."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from cleanup.apply.journal import (
    Journal,
    JournalError,
    SimulatedCrash,
    backup_path,
    crash_point,
    fold,
    read_backup,
    read_journal,
    set_crash_point,
    write_backup,
)


def journal_with(path: Path, *events: str) -> list[dict]:
    with Journal(path) as journal:
        return [journal.append(e, object="flow:e:1", step="turn-off") for e in events]


def test_records_are_numbered_checksummed_and_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal_with(path, "started", "intent")
    journal_with(path, "done")
    records = read_journal(path)
    assert [r["seq"] for r in records] == [1, 2, 3]
    assert [r["event"] for r in records] == ["started", "intent", "done"]
    assert all("crc" not in r and r["ts"].endswith("+00:00") for r in records)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_torn_last_line_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal_with(path, "started", "intent")
    with path.open("ab") as handle:
        handle.write(b'{"seq": 3, "event": "do')  # the process died mid-write
    assert [r["event"] for r in read_journal(path)] == ["started", "intent"]
    journal_with(path, "done")  # the torn fragment is dropped before appending
    assert [r["event"] for r in read_journal(path)] == ["started", "intent", "done"]
    assert [r["seq"] for r in read_journal(path)] == [1, 2, 3]


def test_a_complete_last_record_without_its_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal_with(path, "started", "intent")
    path.write_bytes(path.read_bytes()[:-1])
    journal_with(path, "done")
    assert [r["event"] for r in read_journal(path)] == ["started", "intent", "done"]


def test_a_damaged_line_in_the_middle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal_with(path, "started", "intent", "done")
    lines = path.read_text().splitlines()
    record = json.loads(lines[1])
    record["event"] = "done"  # edited by hand: the checksum no longer matches
    lines[1] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(JournalError, match="line 2 is damaged"):
        read_journal(path)


def test_fold_tracks_pending_writes_etags_and_outcomes(tmp_path: Path) -> None:
    records = [
        {"event": "started", "plan_hash": "h"},
        {"event": "backup", "object": "flow:e:1", "etag": 'W/"1"', "path": "p"},
        {"event": "intent", "object": "flow:e:1", "step": "turn-off"},
        {"event": "done", "object": "flow:e:1", "step": "turn-off", "etag": 'W/"2"'},
        {"event": "intent", "object": "flow:e:1", "step": "patch-clientdata"},
    ]
    state = fold(records)
    trail = state.objects["flow:e:1"]
    assert trail.etags == ['W/"1"', 'W/"2"'] and trail.last_etag == 'W/"2"'
    assert trail.pending is not None and trail.pending["step"] == "patch-clientdata"
    assert trail.did("turn-off") and not trail.did("patch-clientdata") and trail.changed
    assert not state.finished
    more = [
        *records,
        {"event": "write-failed", "object": "flow:e:1", "step": "patch-clientdata"},
        {"event": "outcome", "object": "flow:e:1", "action_ids": ["a", "b"], "status": "failed"},
        {"event": "finished"},
    ]
    state = fold(more)
    assert state.objects["flow:e:1"].pending is None
    assert set(state.outcomes) == {"a", "b"} and state.finished
    assert not fold([*more, {"event": "resumed"}]).finished


def test_a_backup_is_written_once_with_mode_0600(tmp_path: Path) -> None:
    path = backup_path(tmp_path, "flow", "Default-tenant", "A1B2C3D4-0000-4000-8000-000000000001")
    assert path.name == "flow-a1b2c3d4-0000-4000-8000-000000000001.json"
    assert write_backup(path, {"clientdata": "before"})
    assert not write_backup(path, {"clientdata": "after"})  # the first image is the "before"
    assert read_backup(path) == {"clientdata": "before"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(path.parent.glob(".*")) == []  # no temporary file left behind


@pytest.mark.parametrize("bad", ["../etc", "/abs", "a/b", "..", "", "x" * 200, "C:\\Windows"])
def test_backup_paths_never_leave_the_folder(tmp_path: Path, bad: str) -> None:
    with pytest.raises(JournalError, match="unsafe"):
        backup_path(tmp_path, "flow", bad, "1")
    with pytest.raises(JournalError, match="unsafe"):
        backup_path(tmp_path, "flow", "env", bad)


def test_crash_points_fire_on_the_nth_pass_only() -> None:
    set_crash_point("sent:delete#2")
    try:
        crash_point("sent:delete")
        crash_point("sent:patch")
        with pytest.raises(SimulatedCrash):
            crash_point("sent:delete")
    finally:
        set_crash_point(None)
    crash_point("sent:delete")  # disarmed


def test_a_simulated_crash_is_not_an_exception_apply_could_swallow() -> None:
    assert not issubclass(SimulatedCrash, Exception)
