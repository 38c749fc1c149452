"""``duplicate``: same connector and connection, within one environment, never further."""

from __future__ import annotations

import json

from cleanup.rules import run_rules


def test_same_connection_is_a_group_with_a_named_survivor(build) -> None:
    snap = build.snapshot(
        connections=[build.conn("c1", display_name="svc-dataverse")],
        references=[
            build.ref("r1", "new_a", "HR – Dataverse – Service Principal", connection_id="c1"),
            build.ref(
                "r2",
                "new_sharedcommondataserviceforapps_1a2b3",
                "Microsoft Dataverse HR-1a2b3",
                connection_id="c1",
            ),
        ],
        flows=[build.flow("f1")],
        usages=[build.use("f1", "new_sharedcommondataserviceforapps_1a2b3")],
    )
    dup = build.of_rule(run_rules(snap), "duplicate").set_index("object_id")
    assert set(dup.index) == {"r1", "r2"}
    assert dup["group_id"].nunique() == 1
    extras = {k: json.loads(v) for k, v in dup["extra"].items()}
    survivor = [k for k, v in extras.items() if v["is_survivor"]]
    assert len(survivor) == 1
    other = ({"r1", "r2"} - set(survivor)).pop()
    assert "svc-dataverse" in dup.at[other, "detail"]
    assert "Keep '" in dup.at[other, "detail"]
    assert "Move its flows to" in dup.at[other, "suggested_fix"]
    assert extras[other]["group_size"] == 2


def test_different_connections_are_not_duplicates(build) -> None:
    snap = build.snapshot(
        connections=[build.conn("c1"), build.conn("c2", identity="user")],
        references=[
            build.ref("r1", "new_a", connection_id="c1"),
            build.ref("r2", "new_b", connection_id="c2"),
        ],
    )
    assert build.ids(run_rules(snap), "duplicate") == set()


def test_same_connection_id_in_two_environments_is_never_grouped(build) -> None:
    snap = build.snapshot(
        environments=[build.env("env1"), build.env("env2")],
        connections=[build.conn("c1"), build.conn("c1", env="env2")],
        references=[
            build.ref("r1", "new_a", connection_id="c1"),
            build.ref("r2", "new_a", connection_id="c1", env="env2"),
        ],
    )
    assert build.ids(run_rules(snap), "duplicate") == set()


def test_unbound_references_in_one_solution_are_grouped(build) -> None:
    snap = build.snapshot(
        references=[build.ref("r1", "new_a"), build.ref("r2", "new_b"), build.ref("r3", "new_c")],
        solutions=[build.solution("s1", "Leave"), build.solution("s2", "Other")],
        solution_components=[
            build.member("s1", "r1"),
            build.member("s1", "r2"),
            build.member("s2", "r3"),
        ],
    )
    dup = build.of_rule(run_rules(snap), "duplicate")
    assert set(dup["object_id"]) == {"r1", "r2"}
    assert "unbound" in dup.at[0, "detail"]
