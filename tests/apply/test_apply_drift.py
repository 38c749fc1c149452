"""Drift and fresh safety checks: what changed since the plan is skipped, never overwritten."""

from __future__ import annotations

import dataclasses
import json
import random
from typing import Any

import pytest

from cleanup.apply import flows as flows_module
from cleanup.plan import (
    DeleteReference,
    RenameReference,
    RewireFlowKey,
    _index,
    _reference_preconditions,
    _rewire,
    save_plan,
)
from cleanup.simulator.demo import ENV_FINANCE, ENV_SANDBOX
from cleanup.simulator.faults import FaultRule
from cleanup.simulator.flowshapes import Use, build_clientdata
from cleanup.simulator.tenant import Flow
from cleanup.snapshot.store import load_snapshot
from tests.apply.conftest import HR_LIMITS, Demo, successful_writes, writes

DATAVERSE = "shared_commondataserviceforapps"
LEFTOVER_4F = "hr_sharedcommondataserviceforapps_4f2a1"
LEFTOVER_9C = "hr_sharedcommondataserviceforapps_9c3e7"
TURN_ON_FAILS = json.dumps(
    {
        "error": {
            "code": "0x80060467",
            "message": 'Flow client error returned with status code "BadRequest" and details '
            '"{\\"error\\":{\\"code\\":\\"XrmConnectionReferenceMissingConnection\\"}}".',
        }
    }
)


def by_object(result: Any) -> dict[str, Any]:
    return {o.object_id: o for o in result.outcomes}


def ref_id(demo: Demo, logical_name: str) -> str:
    refs = demo.before[demo.hr.id]["references"].values()
    return next(r["id"] for r in refs if r["logical_name"] == logical_name)


def fail_turn_on(demo: Demo, flow_id: str, times: int = 1) -> None:
    """The flow's third PATCH (turning it on) answers 0x80060467, ``times`` times."""
    path = rf"workflows\({flow_id}\)$"
    demo.sim.faults.rules += [
        FaultRule(method="PATCH", path=path, times=2),  # off and patch pass untouched
        FaultRule(method="PATCH", path=path, status=400, body=TURN_ON_FAILS, times=times),
    ]


def custom_plan(demo: Demo, actions: list[Any]) -> None:
    """Replace the demo's plan with one holding these actions (written by the tool's saver)."""
    plan = demo.plan
    save_plan(dataclasses.replace(plan, actions=tuple(actions)), demo.run_folder / "plan.json")


def snapshot_rows(demo: Demo) -> tuple[dict, dict]:
    snap = load_snapshot(demo.run_folder)
    return _index(snap.references, "reference_id"), _index(snap.flows, "flow_id")


def delete_of(demo: Demo, env: str, logical_name: str) -> DeleteReference:
    refs, _flows = snapshot_rows(demo)
    row = next(r for (e, _), r in refs.items() if e == env and r["logical_name"] == logical_name)
    return DeleteReference(
        environment_id=env,
        reference_id=row["reference_id"],
        logical_name=logical_name,
        display_name=row["display_name"],
        connector=row["connector"],
        connection_id=row["connection_id"],
        reason="hand-made for the test",
        group_id=None,
        unused_since=None,
        depends_on=(),
        preconditions=_reference_preconditions(row),
    )


# ---------------------------------------------------------------------------------------------


def test_a_flow_edited_between_plan_and_apply_is_skipped_with_its_leftover(demo: Demo) -> None:
    edited = demo.flow("Absence: sync calendar")
    with demo.sim._data_lock:
        edited.description = "edited by a maker after the plan"
        edited.version += 50
    result = demo.apply()
    outcomes = by_object(result)
    assert outcomes[edited.id].status == "drift" and "ETag" in outcomes[edited.id].reason
    assert outcomes[ref_id(demo, LEFTOVER_4F)].status == "skipped"
    assert "did not succeed (drift)" in outcomes[ref_id(demo, LEFTOVER_4F)].reason
    assert not successful_writes(demo.sim, edited.id)
    assert any(r.logical_name == LEFTOVER_4F for r in demo.hr.references)
    assert outcomes[demo.flow("Absence: monthly report").id].status == "done"
    assert not any(r.logical_name == LEFTOVER_9C for r in demo.hr.references)
    assert result.exit_code == 3


def test_a_flow_edited_while_apply_runs_gets_412_and_is_left_alone(
    demo: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = demo.flow("Absence: sync calendar")
    real_read = flows_module.read_flow

    def read_then_someone_saves(dv: Any, flow_id: str) -> Any:
        image = real_read(dv, flow_id)
        if flow_id == target.id and target.name.endswith("sync calendar"):
            with demo.sim._data_lock:  # a maker saves right after our read
                target.name += " (saved by a maker)"
                target.version += 50
        return image

    monkeypatch.setattr(flows_module, "read_flow", read_then_someone_saves)
    result = demo.apply()

    flow_writes = [r for r in writes(demo.sim) if target.id in r.path]
    assert [r.status for r in flow_writes] == [412]  # one attempt, refused, nothing re-sent
    assert by_object(result)[target.id].status == "drift"
    assert target.state == 1 and LEFTOVER_4F in (target.clientdata or "")
    assert any(r.logical_name == LEFTOVER_4F for r in demo.hr.references)


def test_a_reference_changed_since_the_plan_is_not_deleted(demo: Demo) -> None:
    ref = next(r for r in demo.hr.references if r.logical_name == LEFTOVER_9C)
    with demo.sim._data_lock:
        ref.display_name = "Renamed by someone"
        ref.version += 50
    result = demo.apply()
    outcome = by_object(result)[ref.id]
    assert outcome.status == "drift" and "changed since the plan" in outcome.reason
    assert ref in demo.hr.references
    assert not [r for r in writes(demo.sim) if r.method == "DELETE" and ref.id in r.path]


def add_flow_using(demo: Demo, logical_name: str, state: int = 0) -> Flow:
    clientdata = build_clientdata([Use(DATAVERSE, logical_name, DATAVERSE)], random.Random(1))
    flow = Flow(
        id="5f0c2a8e-0000-4000-8000-00000000abcd",
        name="New flow made after the plan",
        clientdata=clientdata,
        state=state,
        status=state + 1,
    )
    with demo.sim._data_lock:
        demo.hr.flows.append(flow)
    return flow


def test_a_new_flow_using_a_planned_leftover_keeps_it(demo: Demo) -> None:
    add_flow_using(demo, LEFTOVER_4F)
    result = demo.apply()
    outcome = by_object(result)[ref_id(demo, LEFTOVER_4F)]
    assert outcome.status == "skipped" and "still used by 1 flow(s)" in outcome.reason
    assert "New flow made after the plan" in outcome.reason


def test_without_the_rescan_the_platform_dependencies_keep_it(demo: Demo) -> None:
    add_flow_using(demo, LEFTOVER_4F)
    demo.limits = dataclasses.replace(HR_LIMITS, rescan_flows_before_delete=False)
    outcome = by_object(demo.apply())[ref_id(demo, LEFTOVER_4F)]
    assert outcome.status == "skipped" and "dependent component" in outcome.reason
    assert any(r.logical_name == LEFTOVER_4F for r in demo.hr.references)


def test_a_platform_refusal_to_delete_is_a_skip_not_a_crash(demo: Demo) -> None:
    add_flow_using(demo, LEFTOVER_4F)
    demo.limits = dataclasses.replace(HR_LIMITS, rescan_flows_before_delete=False)
    demo.sim.faults.rules.append(  # a dependency check that misses the new flow
        FaultRule(path="RetrieveDependenciesForDelete", status=200, body='{"value": []}')
    )
    result = demo.apply()
    outcome = by_object(result)[ref_id(demo, LEFTOVER_4F)]
    assert outcome.status == "skipped" and "0x8004f01f" in outcome.reason
    refused = [r for r in writes(demo.sim) if r.method == "DELETE" and r.status == 400]
    assert len(refused) == 1
    assert any(r.logical_name == LEFTOVER_4F for r in demo.hr.references)
    assert by_object(result)[ref_id(demo, LEFTOVER_9C)].status == "done"


@pytest.mark.parametrize("rescan", [True, False])
def test_a_reference_only_a_canvas_app_uses_is_never_deleted(demo: Demo, rescan: bool) -> None:
    custom_plan(demo, [delete_of(demo, ENV_SANDBOX, "mk_ExpenseDataverseUser")])
    demo.limits = dataclasses.replace(
        HR_LIMITS, environments=("Maker Sandbox",), rescan_flows_before_delete=rescan
    )
    result = demo.apply()
    (outcome,) = result.outcomes
    assert outcome.status == "skipped"
    if not rescan:
        assert "dependent component(s) (component types 300)" in outcome.reason
    sandbox = demo.sim.tenant.environment(ENV_SANDBOX)
    assert any(r.logical_name == "mk_ExpenseDataverseUser" for r in sandbox.references)
    assert not [r for r in writes(demo.sim) if r.method == "DELETE"]


def test_managed_components_are_never_changed_even_if_a_plan_says_so(demo: Demo) -> None:
    refs, flows = snapshot_rows(demo)
    env = ENV_FINANCE
    flow = next(f for (e, _), f in flows.items() if e == env and f["name"] == "Invoice reminder")
    target = next(
        r for (e, _), r in refs.items() if e == env and r["logical_name"].endswith("a1b2c")
    )
    move = {
        "environment_id": env,
        "flow_id": flow["flow_id"],
        "key": DATAVERSE,
        "from_reference_id": "x",
        "from_logical_name": "fin_sharedcommondataserviceforapps_d3e4f",
        "group_id": "dup-test",
    }
    actions = [
        _rewire(move, flow, target),
        delete_of(demo, env, "fin_sharedcommondataserviceforapps_d3e4f"),
    ]
    custom_plan(demo, actions)
    demo.limits = dataclasses.replace(HR_LIMITS, environments=("Contoso Finance",))
    result = demo.apply()
    assert [(o.status, "managed" in o.reason) for o in result.outcomes] == [(SKIP, True)] * 2
    assert writes(demo.sim) == []
    assert demo.sim.unmanaged_layers == set()


SKIP = "skipped"


def test_a_survivor_unbound_since_the_plan_stops_its_rewires(demo: Demo) -> None:
    survivor = next(r for r in demo.hr.references if r.logical_name == "hr_AbsenceDataverseSP")
    with demo.sim._data_lock:
        survivor.connection_id = None
    result = demo.apply()
    assert writes(demo.sim) == []
    rewires = [o for o in result.outcomes if o.kind == RewireFlowKey.kind]
    assert {o.status for o in rewires} == {"skipped"}
    assert all("no longer bound" in o.reason for o in rewires)
    deletes = [o for o in result.outcomes if o.kind == DeleteReference.kind]
    assert {o.status for o in deletes} == {"skipped"}


def test_a_flow_whose_other_connection_is_gone_is_not_turned_off(demo: Demo) -> None:
    teams = next(r for r in demo.hr.references if r.logical_name == "hr_NotifyTeamsSP")
    with demo.sim._data_lock:
        demo.hr.connections = [c for c in demo.hr.connections if c.name != teams.connection_id]
    target = demo.flow("Absence: sync calendar")
    outcome = by_object(demo.apply())[target.id]
    assert outcome.status == "skipped" and "missing connection" in outcome.reason
    assert not successful_writes(demo.sim, target.id) and target.state == 1


def test_turning_on_fails_so_the_flow_is_put_back_and_reported(demo: Demo) -> None:
    target = demo.flow("Absence: sync calendar")
    original = target.clientdata
    fail_turn_on(demo, target.id)

    result = demo.apply()

    outcome = by_object(result)[target.id]
    assert outcome.status == "rolled-back" and "0x80060467" in outcome.reason
    assert result.attention == [outcome] and result.exit_code == 1
    assert target.state == 1 and target.clientdata == original
    assert any(r.logical_name == LEFTOVER_4F for r in demo.hr.references)  # not deleted
    assert by_object(result)[ref_id(demo, LEFTOVER_4F)].status == "skipped"
    html = (result.folder / "apply-report.html").read_text()
    top = html.index("need")
    assert top < html.index("Outcomes") and "rolled-back" in html[top : html.index("Outcomes")]


def test_a_flow_that_cannot_be_turned_on_at_all_is_reported_off_and_resume_fixes_it(
    demo: Demo,
) -> None:
    target = demo.flow("Absence: sync calendar")
    original = target.clientdata
    path = rf"workflows\({target.id}\)$"
    demo.sim.faults.rules += [
        FaultRule(method="PATCH", path=path, times=2),
        FaultRule(method="PATCH", path=path, status=400, body=TURN_ON_FAILS, times=1),
        FaultRule(method="PATCH", path=path, times=1),  # the rollback's clientdata patch
        FaultRule(method="PATCH", path=path, status=400, body=TURN_ON_FAILS, times=5),
    ]
    result = demo.apply()
    outcome = by_object(result)[target.id]
    assert outcome.status == "left-off" and "OFF" in outcome.reason
    assert target.state == 0 and result.exit_code == 1

    demo.sim.faults.rules.clear()
    resumed = demo.resume()

    assert by_object(resumed)[target.id].status == "rolled-back"
    assert target.state == 1 and target.clientdata == original


def test_a_rename_is_applied_verified_and_restored(demo: Demo) -> None:
    refs, _flows = snapshot_rows(demo)
    env = demo.hr.id
    row = next(r for (e, _), r in refs.items() if e == env and r["logical_name"] == "hr_PayrollSQL")
    new_name = "Payroll – SQL Server – Service Principal"
    action = RenameReference(
        environment_id=env,
        reference_id=row["reference_id"],
        logical_name="hr_PayrollSQL",
        from_display_name=row["display_name"],
        to_display_name=new_name,
        preconditions=_reference_preconditions(row),
    )
    custom_plan(demo, [action])
    ref = next(r for r in demo.hr.references if r.logical_name == "hr_PayrollSQL")

    assert demo.apply().counts() == {"done": 1}
    assert ref.display_name == new_name
    assert demo.apply().counts() == {"already-done": 1}

    restored = demo.restore()
    assert [(o.kind, o.status) for o in restored.outcomes] == [("rename-back", "done")]
    assert ref.display_name == "Payroll | SQL Server"
