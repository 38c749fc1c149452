"""``cross-solution``: a flow's unmanaged solution lacks a reference the flow uses."""

from __future__ import annotations

import json

from cleanup.rules import run_rules


def _snapshot(build, *, carrier_managed: bool):
    return build.snapshot(
        references=[
            build.ref("r1", "admin_CoEDataverse", "CoE – Dataverse – Unbound"),
            build.ref("r2", "new_own"),
        ],
        flows=[build.flow("f1", name="My flow"), build.flow("f2")],
        usages=[build.use("f1", "admin_coedataverse"), build.use("f2", "new_own")],
        solutions=[
            build.solution("sA", "MyApp"),
            build.solution("sB", "CoECore", is_managed=carrier_managed),
            build.solution("s0", "Default"),
        ],
        solution_components=[
            build.member("sA", "f1", "flow"),
            build.member("sA", "f2", "flow"),
            build.member("sA", "r2"),
            build.member("sB", "r1"),
            build.member("s0", "r1"),
            build.member("s0", "f1", "flow"),
        ],
    )


def test_flow_using_a_reference_only_another_solution_carries(build) -> None:
    found = build.of_rule(run_rules(_snapshot(build, carrier_managed=True)), "cross-solution")
    assert list(found["object_id"]) == ["r1"]
    assert found.at[0, "severity"] == "medium"
    extra = json.loads(found.at[0, "extra"])
    assert extra["lacking_solutions"] == ["MyApp"]
    assert extra["solutions"] == ["CoECore"]
    assert extra["flows"] == ["My flow"]
    assert "MyApp" in found.at[0, "detail"] and "CoECore" in found.at[0, "detail"]


def test_unmanaged_carrier_is_low(build) -> None:
    found = build.of_rule(run_rules(_snapshot(build, carrier_managed=False)), "cross-solution")
    assert list(found["severity"]) == ["low"]


def test_flows_in_managed_solutions_or_no_solution_are_not_reported(build) -> None:
    snap = build.snapshot(
        references=[build.ref("r1", "new_a")],
        flows=[build.flow("f1"), build.flow("f2")],
        usages=[build.use("f1", "new_a"), build.use("f2", "new_a")],
        solutions=[build.solution("sM", "Managed", is_managed=True)],
        solution_components=[build.member("sM", "f1", "flow")],
    )
    assert build.ids(run_rules(snap), "cross-solution") == set()
