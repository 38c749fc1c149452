"""A clean apply of the demo plan, applying it again, and restoring it: server state diffed."""

from __future__ import annotations

import dataclasses
import json
import stat

import pytest

from cleanup.apply import ApplyCancelled, ApplyRefused
from cleanup.apply.journal import fold, read_journal
from cleanup.plan import RewireFlowKey
from tests.apply.conftest import (
    VOLATILE,
    Demo,
    flows_on,
    server_state,
    successful_writes,
    without,
    writes,
)
from tests.conftest import SECRET


def test_clean_apply_changes_exactly_the_plan(demo: Demo) -> None:
    plan = demo.plan
    assert len(plan.actions) == 5 and len(demo.planned_flows()) == 2  # two keys share a flow
    on_before = flows_on(demo.sim.tenant)

    result = demo.apply()

    assert result.exit_code == 0, result.to_dict()
    assert {o.status for o in result.outcomes} == {"done"}
    assert len(result.outcomes) == len(plan.actions)
    assert flows_on(demo.sim.tenant) == on_before  # every flow on before is on after
    after = server_state(demo.sim.tenant)
    for env_id, env_before in demo.before.items():
        env_after = after[env_id]
        refs_before = dict(env_before["references"])
        if env_id == demo.hr.id:
            for ref_id in demo.planned_deletes():
                del refs_before[ref_id]  # planned deletes are gone...
        assert env_after["references"] == refs_before, env_id  # ...and nothing else changed
        for flow_id, flow in env_before["flows"].items():
            now = env_after["flows"][flow_id]
            if flow_id in demo.planned_flows():
                assert without(now, *VOLATILE, "clientdata") == without(
                    flow, *VOLATILE, "clientdata"
                )
                assert now["clientdata"] != flow["clientdata"]
            else:
                assert now == flow, flow["name"]
        rest = ("flows", "references")
        assert without(env_after, *rest) == without(env_before, *rest)


def test_rewired_clientdata_changes_only_the_planned_keys(demo: Demo) -> None:
    originals = {f.id: json.loads(f.clientdata or "{}") for f in demo.hr.flows}
    demo.apply()
    for action in demo.plan.actions:
        if not isinstance(action, RewireFlowKey):
            continue
        flow = next(f for f in demo.hr.flows if f.id == action.flow_id)
        expected = originals[flow.id]
        refs = expected["properties"]["connectionReferences"]
        for other in demo.plan.actions:
            if isinstance(other, RewireFlowKey) and other.flow_id == flow.id:
                refs[other.key]["connection"]["connectionReferenceLogicalName"] = (
                    other.to_logical_name
                )
        assert json.loads(flow.clientdata or "{}") == expected


def test_each_on_flow_is_turned_off_patched_and_turned_on_once(demo: Demo) -> None:
    demo.apply()
    for flow_id in demo.planned_flows():
        assert [r.method for r in successful_writes(demo.sim, flow_id)] == ["PATCH"] * 3
    deletes = [r for r in writes(demo.sim) if r.method == "DELETE"]
    assert len(deletes) == 2 and all(r.status == 204 for r in deletes)
    assert all(r.status < 300 for r in writes(demo.sim))
    assert demo.sim.internal_errors == []


def test_journal_backups_and_reports_are_written(demo: Demo) -> None:
    result = demo.apply()
    folder = result.folder
    assert folder.parent == demo.run_folder and folder.name.startswith("apply-")
    records = read_journal(folder / "journal.jsonl")
    state = fold(records)
    assert state.finished and state.header is not None
    assert state.header["plan_hash"] == demo.plan.content_hash
    assert state.header["who"]["client_id"] == demo.sim.tenant.client_id
    assert {"user", "host"} <= set(state.header["who"])
    events = [r["event"] for r in records]
    # write-ahead: every object's backup is journalled before its first intent
    for trail in state.objects.values():
        if trail.changed:
            assert trail.backup is not None
            first_intent = next(
                r["seq"] for r in records if r.get("object") == trail.key and r["event"] == "intent"
            )
            assert trail.backup["seq"] < first_intent
    assert events.count("outcome") == 4  # one per object: 2 flows, 2 references
    backups = sorted((folder / "backups").rglob("*.json"))
    assert len(backups) == 4
    for path in backups:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((folder / "journal.jsonl").stat().st_mode) == 0o600
    report = json.loads((folder / "apply-report.json").read_text())
    assert report["exit_code"] == 0 and report["counts"] == {"done": 5}
    html = (folder / "apply-report.html").read_text()
    assert "Everything in scope is done" in html and "<script" not in html
    assert (folder / "plan.json").read_bytes() == (demo.run_folder / "plan.json").read_bytes()
    for path in folder.rglob("*"):  # no secret and no token ever reaches the apply's files
        if path.is_file():
            data = path.read_bytes()
            assert SECRET.encode() not in data and b"Bearer" not in data and b"eyJ" not in data


def test_a_second_apply_of_the_same_plan_writes_nothing(demo: Demo) -> None:
    first = demo.apply()
    state = server_state(demo.sim.tenant)
    demo.sim.reset_log()

    second = demo.apply()

    assert writes(demo.sim) == []
    assert server_state(demo.sim.tenant) == state
    assert {o.status for o in second.outcomes} == {"already-done"}
    assert second.exit_code == 0 and second.folder != first.folder


def test_restore_after_apply_gives_back_the_state_before(demo: Demo) -> None:
    demo.apply()
    demo.sim.reset_log()

    restored = demo.restore()

    assert restored.exit_code == 0, restored.to_dict()
    assert {o.kind for o in restored.outcomes} == {"recreate", "restore-flow"}
    after = server_state(demo.sim.tenant)
    touched = demo.planned_flows() | demo.planned_deletes()
    for env_id, env_before in demo.before.items():
        for table in ("flows", "references"):
            rows_after = after[env_id][table]
            assert set(rows_after) == set(env_before[table]), (env_id, table)
            for row_id, row in env_before[table].items():
                volatile = (*VOLATILE, "created_on") if row_id in touched else ()
                assert without(rows_after[row_id], *volatile) == without(row, *volatile)
    # re-created references come back with the same id, name, connection and solution
    for ref_id in demo.planned_deletes():
        ref = next(r for r in demo.hr.references if r.id == ref_id)
        assert ref.solution_ids == demo.before[demo.hr.id]["references"][ref_id]["solution_ids"]
    assert [r.method for r in writes(demo.sim)].count("POST") == 2


def test_a_second_restore_writes_nothing(demo: Demo) -> None:
    demo.apply()
    demo.restore()
    state = server_state(demo.sim.tenant)
    demo.sim.reset_log()

    again = demo.restore()

    assert writes(demo.sim) == []
    assert server_state(demo.sim.tenant) == state
    assert {o.status for o in again.outcomes} == {"already-done"}
    assert (again.folder / "restore-report.json").is_file()


def test_restore_refuses_an_object_edited_since_the_apply(demo: Demo) -> None:
    demo.apply()
    edited = demo.flow("Absence: sync calendar")
    with demo.sim._data_lock:
        edited.name = "Absence: sync calendar (edited by a maker)"
        edited.version += 100
    content = edited.clientdata
    demo.sim.reset_log()

    restored = demo.restore()

    by_kind = {(o.kind, o.object_id): o for o in restored.outcomes}
    assert by_kind[("restore-flow", edited.id)].status == "drift"
    assert edited.clientdata == content  # not overwritten
    assert not successful_writes(demo.sim, edited.id)
    assert restored.exit_code == 3
    others = [o for o in restored.outcomes if o.object_id != edited.id]
    assert {o.status for o in others} == {"done"}


def test_restore_asks_unless_yes_and_refuses_without_a_terminal(demo: Demo) -> None:
    demo.apply()
    state = server_state(demo.sim.tenant)
    demo.sim.reset_log()
    with pytest.raises(ApplyRefused, match="--yes"):
        demo.restore(assume_yes=False, interactive=False)
    with pytest.raises(ApplyCancelled):
        demo.restore(assume_yes=False, interactive=True, confirm=lambda text: False)
    assert writes(demo.sim) == [] and server_state(demo.sim.tenant) == state
    restored = demo.restore(assume_yes=False, interactive=True, confirm=lambda text: True)
    assert restored.exit_code == 0


def test_restore_of_a_run_folder_puts_back_every_apply_of_it(demo: Demo) -> None:
    survivor = next(r for r in demo.hr.references if r.logical_name == "hr_AbsenceDataverseSP")
    connection = survivor.connection_id
    with demo.sim._data_lock:
        survivor.connection_id = None  # the first apply skips everything
    first = demo.apply()
    assert {o.status for o in first.outcomes} == {"skipped"}
    with demo.sim._data_lock:
        survivor.connection_id = connection
    second = demo.apply()
    assert {o.status for o in second.outcomes} == {"done"}

    restored = demo.restore()  # the run folder: newest apply first, then the older ones

    assert restored.exit_code == 0 and len(restored.outcomes) == 4
    assert (first.folder / "restore-report.json").is_file()
    after = server_state(demo.sim.tenant)
    touched = demo.planned_flows() | demo.planned_deletes()
    for env_id, env_before in demo.before.items():
        for table in ("flows", "references"):
            for row_id, row in env_before[table].items():
                drop = (*VOLATILE, "created_on") if row_id in touched else ()
                assert without(after[env_id][table][row_id], *drop) == without(row, *drop)


def test_objects_run_side_by_side_with_the_same_result(demo: Demo) -> None:
    demo.limits = dataclasses.replace(demo.limits, concurrency=4)
    result = demo.apply()
    assert {o.status for o in result.outcomes} == {"done"}
    assert flows_on(demo.sim.tenant) == flows_on_before(demo)
    assert not any(r.id in demo.planned_deletes() for r in demo.hr.references)


def flows_on_before(demo: Demo) -> set[str]:
    return {i for e in demo.before.values() for i, f in e["flows"].items() if f["state"] == 1}
