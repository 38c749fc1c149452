"""Duplicate groups and survivor choice, on small hand-built snapshots.

The ``make_snapshot`` helper and the row builders (``ref``, ``conn``, ``flow``, ``use``,
``solution``, ``component``) are shared with ``test_plan.py`` and ``test_plan_properties.py``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
import pytest

from cleanup import schemas
from cleanup.consolidate import (
    BASIS_SAME_CONNECTION,
    BASIS_UNBOUND_SAME_SOLUTION,
    BLOCK_FLOW_UNKNOWN,
    DEFAULT_SOLUTION_ID,
    GROUP_COLUMNS,
    duplicate_groups,
    group_id_for,
    looks_compliant,
    propose,
)
from cleanup.snapshot.model import Snapshot

ENV = "env-a"
DV = "shared_commondataserviceforapps"
SPO = "shared_sharepointonline"


# --------------------------------------------------------------------------------------------
# Snapshot builders


def ref(reference_id: str, *, env: str = ENV, **overrides: Any) -> dict[str, Any]:
    """A ``references`` row; unmanaged, unbound Dataverse reference unless overridden."""
    row = {
        "environment_id": env,
        "reference_id": reference_id,
        "logical_name": f"new_{reference_id}",
        "display_name": f"new_{reference_id}",
        "connector": DV,
        "connector_id": f"/providers/Microsoft.PowerApps/apis/{overrides.get('connector', DV)}",
        "connection_id": None,
        "is_managed": False,
        "is_customizable": True,
        "owner_id": "owner-1",
        "owner_type": "systemuser",
        "created_on": "2024-01-01T00:00:00Z",
        "modified_on": "2024-06-01T00:00:00Z",
        "etag": f'W/"{reference_id}-1"',
    }
    row.update(overrides)
    return row


def conn(connection_id: str, *, env: str = ENV, identity: str = "user", **overrides: Any) -> dict:
    """A ``connections`` row."""
    row = {
        "environment_id": env,
        "connection_id": connection_id,
        "connector": DV,
        "status": "Connected",
        "is_connected": True,
        "identity": identity,
    }
    row.update(overrides)
    return row


def flow(flow_id: str, *, env: str = ENV, **overrides: Any) -> dict[str, Any]:
    """A ``flows`` row: an unmanaged flow that is on and parsed fine."""
    row = {
        "environment_id": env,
        "flow_id": flow_id,
        "name": f"Flow {flow_id}",
        "state": 1,
        "status_code": 2,
        "is_managed": False,
        "modified_on": "2024-07-01T00:00:00Z",
        "etag": f'W/"{flow_id}-1"',
        "parse_status": "ok",
        "clientdata_sha256": f"sha-{flow_id}",
    }
    row.update(overrides)
    return row


def use(flow_id: str, key: str, logical_name: str | None, *, env: str = ENV, **kw: Any) -> dict:
    """A ``usages`` row: flow key -> logical name."""
    return {
        "environment_id": env,
        "flow_id": flow_id,
        "key": key,
        "logical_name": logical_name,
        "connector": kw.get("connector", DV),
        "runtime_source": "embedded",
        "action_count": 1,
    }


def solution(solution_id: str, unique_name: str, *, env: str = ENV, **kw: Any) -> dict:
    """A ``solutions`` row."""
    return {
        "environment_id": env,
        "solution_id": solution_id,
        "unique_name": unique_name,
        "friendly_name": kw.get("friendly_name", unique_name),
        "is_managed": kw.get("is_managed", False),
    }


def component(solution_id: str, object_id: str, object_type: str, *, env: str = ENV) -> dict:
    """A ``solution_components`` row."""
    return {
        "environment_id": env,
        "solution_id": solution_id,
        "object_id": object_id,
        "component_type": 29 if object_type == "flow" else 10091,
        "object_type": object_type,
    }


def make_snapshot(
    *,
    references: Iterable[Mapping[str, Any]] = (),
    connections: Iterable[Mapping[str, Any]] = (),
    flows: Iterable[Mapping[str, Any]] = (),
    usages: Iterable[Mapping[str, Any]] = (),
    solutions: Iterable[Mapping[str, Any]] = (),
    components: Iterable[Mapping[str, Any]] = (),
    dependency_checks: Iterable[Mapping[str, Any]] = (),
    environments: Iterable[Mapping[str, Any]] | None = None,
) -> Snapshot:
    """Build a conforming snapshot from row dicts (every environment complete by default)."""
    rows = {
        "references": list(references),
        "connections": list(connections),
        "flows": list(flows),
        "usages": list(usages),
        "solutions": list(solutions),
        "solution_components": list(components),
        "dependency_checks": list(dependency_checks),
    }
    if environments is None:
        envs = {r["environment_id"] for table in rows.values() for r in table} | {ENV}
        environments = [{"environment_id": e, "status": "complete"} for e in sorted(envs)]
    rows["environments"] = list(environments)
    tables = {
        name: schemas.frame_from_rows(table, schemas.SNAPSHOT_TABLES[name])
        for name, table in rows.items()
    }
    return Snapshot.from_tables(tables, {})


def members(groups: pd.DataFrame) -> list[set[str]]:
    """The member sets of each group."""
    return [set(g["reference_id"]) for _, g in groups.groupby("group_id")]


# --------------------------------------------------------------------------------------------
# Grouping


def test_same_connection_is_grouped_and_other_connections_are_not() -> None:
    snap = make_snapshot(
        references=[
            ref("a", connection_id="c1"),
            ref("b", connection_id="c1"),
            ref("c", connection_id="c2"),
            ref("d", connection_id="c3"),
        ]
    )
    groups = duplicate_groups(snap)
    assert tuple(groups.columns) == GROUP_COLUMNS
    assert members(groups) == [{"a", "b"}]
    assert set(groups["basis"]) == {BASIS_SAME_CONNECTION}
    assert set(groups["connection_id"]) == {"c1"}


def test_same_connector_with_different_connections_is_not_a_duplicate() -> None:
    snap = make_snapshot(references=[ref("a", connection_id="c1"), ref("b", connection_id="c2")])
    assert duplicate_groups(snap).empty


def test_groups_never_cross_environments() -> None:
    snap = make_snapshot(
        references=[
            ref("a", connection_id="c1", env="env-a"),
            ref("b", connection_id="c1", env="env-b"),
        ]
    )
    assert duplicate_groups(snap).empty


def test_connector_is_compared_case_insensitively() -> None:
    snap = make_snapshot(
        references=[
            ref("a", connection_id="c1", connector="shared_Office365"),
            ref("b", connection_id="c1", connector="shared_office365"),
        ]
    )
    assert members(duplicate_groups(snap)) == [{"a", "b"}]


def test_different_connectors_on_one_connection_id_are_not_grouped() -> None:
    snap = make_snapshot(
        references=[ref("a", connection_id="c1"), ref("b", connection_id="c1", connector=SPO)]
    )
    assert duplicate_groups(snap).empty


def test_unbound_references_sharing_a_solution_are_grouped() -> None:
    snap = make_snapshot(
        references=[ref("a"), ref("b"), ref("c")],
        solutions=[solution("s-hr", "HR")],
        components=[component("s-hr", "a", "reference"), component("s-hr", "B", "reference")],
    )
    groups = duplicate_groups(snap)
    assert members(groups) == [{"a", "b"}]  # object ids match references case-insensitively
    assert set(groups["basis"]) == {BASIS_UNBOUND_SAME_SOLUTION}
    assert groups["connection_id"].isna().all()


@pytest.mark.parametrize(
    ("solution_id", "unique_name"),
    [("s-def", "Default"), ("s-act", "Active"), ("s-basic", "basic"), (DEFAULT_SOLUTION_ID, "x")],
)
def test_default_solutions_do_not_make_unbound_duplicates(
    solution_id: str, unique_name: str
) -> None:
    snap = make_snapshot(
        references=[ref("a"), ref("b")],
        solutions=[solution(solution_id, unique_name)],
        components=[
            component(solution_id, "a", "reference"),
            component(solution_id, "b", "reference"),
        ],
    )
    assert duplicate_groups(snap).empty


def test_the_well_known_default_solution_id_is_excluded_even_without_a_solutions_row() -> None:
    snap = make_snapshot(
        references=[ref("a"), ref("b")],
        components=[
            component(DEFAULT_SOLUTION_ID.upper(), "a", "reference"),
            component(DEFAULT_SOLUTION_ID.upper(), "b", "reference"),
        ],
    )
    assert duplicate_groups(snap).empty


def test_unbound_references_in_different_solutions_are_not_grouped() -> None:
    snap = make_snapshot(
        references=[ref("a"), ref("b")],
        solutions=[solution("s1", "One"), solution("s2", "Two")],
        components=[component("s1", "a", "reference"), component("s2", "b", "reference")],
    )
    assert duplicate_groups(snap).empty


def test_bound_and_unbound_references_are_never_mixed() -> None:
    snap = make_snapshot(
        references=[ref("a", connection_id="c1"), ref("b")],
        solutions=[solution("s1", "One")],
        components=[component("s1", "a", "reference"), component("s1", "b", "reference")],
    )
    assert duplicate_groups(snap).empty


def test_overlapping_solutions_the_largest_claims_first() -> None:
    # a, b in S-small; b, c, d in S-big: S-big wins, a is left alone (no partner left).
    snap = make_snapshot(
        references=[ref(x) for x in "abcd"],
        solutions=[solution("s-small", "Small"), solution("s-big", "Big")],
        components=[
            component("s-small", "a", "reference"),
            component("s-small", "b", "reference"),
            *(component("s-big", x, "reference") for x in "bcd"),
        ],
    )
    assert members(duplicate_groups(snap)) == [{"b", "c", "d"}]


def test_overlapping_solutions_of_equal_size_break_ties_by_name() -> None:
    snap = make_snapshot(
        references=[ref(x) for x in "abcd"],
        solutions=[solution("s1", "Zeta"), solution("s2", "Alpha")],
        components=[
            *(component("s1", x, "reference") for x in "ab"),
            *(component("s2", x, "reference") for x in "bc"),
            component("s1", "d", "reference"),
            component("s2", "d", "reference"),
        ],
    )
    # Both have 3 members; 'Alpha' goes first and takes b, c, d; 'Zeta' keeps only a.
    assert members(duplicate_groups(snap)) == [{"b", "c", "d"}]


def test_group_ids_are_stable_and_independent_of_row_order() -> None:
    refs = [ref(x, connection_id="c1") for x in "abc"] + [ref(x, connection_id="c2") for x in "de"]
    first = duplicate_groups(make_snapshot(references=refs))
    shuffled = refs[:]
    random.Random(4).shuffle(shuffled)
    second = duplicate_groups(make_snapshot(references=shuffled))
    pd.testing.assert_frame_equal(first, second)
    assert set(first["group_id"]) == {group_id_for(ENV, "abc"), group_id_for(ENV, "de")}


def test_empty_snapshot_gives_empty_groups_with_the_contract_columns() -> None:
    groups = duplicate_groups(make_snapshot())
    assert groups.empty and tuple(groups.columns) == GROUP_COLUMNS


# --------------------------------------------------------------------------------------------
# Survivor choice: each criterion decides a tie that all earlier criteria leave open


def two_way(a: dict[str, Any], b: dict[str, Any], **tables: Any) -> Snapshot:
    """A snapshot with references a and b bound to connection c1 (plus extra tables)."""
    a["connection_id"] = a["connection_id"] or "c1"
    b["connection_id"] = b["connection_id"] or "c1"
    tables.setdefault("connections", [conn("c1")])
    return make_snapshot(references=[a, b], **tables)


def survivor(snap: Snapshot, **kw: Any) -> pd.Series:
    """The single survivor row of a snapshot holding one duplicate group."""
    proposals = propose(snap, duplicate_groups(snap), **kw)
    assert len(proposals.survivors) == 1
    return proposals.survivors.iloc[0]


def test_unmanaged_beats_managed() -> None:
    snap = two_way(
        ref("a", is_managed=True, created_on="2020-01-01"),
        ref("b", created_on="2024-01-01"),
        flows=[flow("f1")],
        usages=[use("f1", "k", "new_a")],
    )
    row = survivor(snap)
    assert row["survivor_id"] == "b"
    assert row["decided_by"] == "unmanaged over managed"
    assert row["reason"].startswith("kept: unmanaged (others managed)")


def test_in_the_solution_of_the_flows_beats_a_compliant_name() -> None:
    snap = two_way(
        ref("a", display_name="HR – Dataverse – User", created_on="2020-01-01"),
        ref("b", display_name="new_sharedcommondataserviceforapps_4f2a1"),
        flows=[flow("f1"), flow("f2"), flow("f3")],
        usages=[use("f1", "k", "new_a"), use("f2", "k", "new_a"), use("f3", "k", "new_b")],
        solutions=[solution("s-hr", "HR", friendly_name="Human Resources")],
        components=[
            component("s-hr", "b", "reference"),
            component("s-hr", "f1", "flow"),
            component("s-hr", "f2", "flow"),
        ],
    )
    row = survivor(snap)
    assert row["survivor_id"] == "b"
    assert row["decided_by"] == "in the solution of the flows that use the group"
    assert "in solution 'Human Resources' like 2 of 3 flows that use the group" in row["reason"]


def test_compliant_name_beats_service_principal() -> None:
    snap = two_way(
        ref("a", display_name="HR – Dataverse – User"),
        ref("b", display_name="new_sharedcommondataserviceforapps_4f2a1", connection_id="c-sp"),
        connections=[conn("c1"), conn("c-sp", identity="service-principal")],
    )
    # Different connections are not duplicates, so make them one group by hand.
    groups = pd.DataFrame(
        {
            "group_id": ["g"] * 2,
            "environment_id": [ENV] * 2,
            "reference_id": ["a", "b"],
            "connector": [DV] * 2,
            "connection_id": ["c1", "c-sp"],
            "basis": [BASIS_SAME_CONNECTION] * 2,
        },
        dtype="string",
    )
    row = propose(snap, groups).survivors.iloc[0]
    assert row["survivor_id"] == "a"
    assert row["decided_by"] == "compliant name"


def test_injected_name_check_is_used() -> None:
    snap = two_way(ref("a"), ref("b"))
    row = survivor(snap, name_is_compliant=lambda r: r["reference_id"] == "b")
    assert row["survivor_id"] == "b"
    assert row["decided_by"] == "compliant name"


def test_service_principal_beats_usage_and_age() -> None:
    groups = pd.DataFrame(
        {
            "group_id": ["g"] * 2,
            "environment_id": [ENV] * 2,
            "reference_id": ["a", "b"],
            "connector": [DV] * 2,
            "connection_id": ["c-user", "c-sp"],
            "basis": [BASIS_SAME_CONNECTION] * 2,
        },
        dtype="string",
    )
    snap = make_snapshot(
        references=[
            ref("a", connection_id="c-user", created_on="2019-01-01"),
            ref("b", connection_id="c-sp"),
        ],
        connections=[conn("c-user"), conn("c-sp", identity="service-principal")],
        flows=[flow("f1"), flow("f2")],
        usages=[use("f1", "k", "new_a"), use("f2", "k", "new_a")],
    )
    row = propose(snap, groups).survivors.iloc[0]
    assert row["survivor_id"] == "b"
    assert row["decided_by"] == "service principal connection"
    assert "service principal connection" in row["reason"]


def test_most_used_beats_oldest() -> None:
    snap = two_way(
        ref("a", created_on="2019-01-01"),
        ref("b", created_on="2024-01-01"),
        flows=[flow("f1"), flow("f2"), flow("f3")],
        usages=[
            use("f1", "k", "new_a"),
            use("f2", "k", "NEW_B"),
            use("f3", "k", "new_b"),
            use("f3", "k2", "new_b"),  # a second key of the same flow counts once
        ],
    )
    row = survivor(snap)
    assert row["survivor_id"] == "b"
    assert row["decided_by"] == "most used"
    assert "used by 2 flows" in row["reason"]


def test_oldest_wins_when_all_else_is_equal() -> None:
    snap = two_way(ref("b", created_on="2023-04-01"), ref("a", created_on="2024-01-01"))
    row = survivor(snap)
    assert row["survivor_id"] == "b"
    assert row["decided_by"] == "oldest"
    assert "created 2023-04-01" in row["reason"]


def test_logical_name_decides_last() -> None:
    snap = two_way(ref("b", logical_name="x_beta"), ref("a", logical_name="x_alpha"))
    row = survivor(snap)
    assert row["survivor_id"] == "a"
    assert row["decided_by"] == "logical name"


def test_unknown_creation_date_ranks_last() -> None:
    snap = two_way(ref("a", created_on=None), ref("b", created_on="2024-01-01"))
    assert survivor(snap)["survivor_id"] == "b"


def test_reason_lists_every_criterion_in_order() -> None:
    snap = two_way(
        ref("a", display_name="HR – Dataverse – Service Principal", created_on="2023-04-01"),
        ref("b", is_managed=True),
        connections=[conn("c1", identity="service-principal")],
        flows=[flow(f"f{i}") for i in range(12)],
        usages=[use(f"f{i}", "k", "new_a") for i in range(12)],
        solutions=[solution("s-hr", "HR")],
        components=[component("s-hr", "a", "reference")]
        + [component("s-hr", f"f{i}", "flow") for i in range(12)],
    )
    reason = survivor(snap)["reason"]
    assert reason == (
        "kept: unmanaged (others managed); in solution 'HR' like 12 of 12 flows that use the "
        "group; compliant name; service principal connection; used by 12 flows; created "
        "2023-04-01 (decided by: unmanaged over managed)"
    )


def test_heuristic_name_check() -> None:
    assert looks_compliant({"display_name": "HR – Dataverse – Service Principal"})
    assert looks_compliant({"display_name": "HR - Dataverse - User"})
    assert not looks_compliant({"display_name": "new_sharedcommondataserviceforapps_4f2a1"})
    assert not looks_compliant({"display_name": "Dataverse"})
    assert not looks_compliant({"display_name": None})


# --------------------------------------------------------------------------------------------
# Moves and leftovers

A_IS_COMPLIANT = {"name_is_compliant": lambda row: row["reference_id"] == "a"}


def test_moves_list_every_key_pointing_at_a_leftover() -> None:
    snap = two_way(
        ref("a", created_on="2020-01-01"),
        ref("b"),
        flows=[flow("f1"), flow("f2", state=0)],
        usages=[
            use("f1", "k1", "new_a"),
            use("f1", "k2", "NEW_B"),
            use("f2", "k1", "new_b"),  # a draft flow counts too
            use("f2", "k9", "other_ref"),
        ],
    )
    proposals = propose(snap, duplicate_groups(snap), **A_IS_COMPLIANT)
    moves = proposals.moves
    assert list(zip(moves["flow_id"], moves["key"], strict=True)) == [("f1", "k2"), ("f2", "k1")]
    assert set(moves["to_reference_id"]) == {"a"}
    assert list(moves["from_logical_name"]) == ["NEW_B", "new_b"]  # as the flow spells it
    assert not moves["blocked"].any()
    leftovers = proposals.leftovers
    assert list(leftovers["reference_id"]) == ["b"]
    assert leftovers["deletable"].tolist() == [True]


def test_managed_flow_is_a_blocked_move_and_keeps_its_leftover() -> None:
    snap = two_way(
        ref("a", created_on="2020-01-01"),
        ref("b"),
        flows=[flow("f1", is_managed=True), flow("f2")],
        usages=[use("f1", "k", "new_b"), use("f2", "k", "new_b")],
    )
    proposals = propose(snap, duplicate_groups(snap), **A_IS_COMPLIANT)
    blocked = proposals.moves.set_index("flow_id")
    assert bool(blocked.at["f1", "blocked"])
    assert "unmanaged layer" in blocked.at["f1", "why_blocked"]
    assert not bool(blocked.at["f2", "blocked"])
    leftover = proposals.leftovers.iloc[0]
    assert not leftover["deletable"]
    assert "cannot be moved" in leftover["why_not"]


def test_managed_leftover_is_not_deletable() -> None:
    snap = two_way(ref("a"), ref("b", is_managed=True))
    leftover = propose(snap, duplicate_groups(snap)).leftovers.iloc[0]
    assert leftover["reference_id"] == "b"
    assert not leftover["deletable"]
    assert "fix it in the source environment" in leftover["why_not"]


def test_managed_survivor_when_all_members_are_managed() -> None:
    snap = two_way(
        ref("a", is_managed=True, created_on="2020-01-01"),
        ref("b", is_managed=True),
        flows=[flow("f1")],
        usages=[use("f1", "k", "new_b")],
    )
    proposals = propose(snap, duplicate_groups(snap))
    assert proposals.survivors.iloc[0]["reason"].startswith("kept: managed (all members")
    assert not proposals.moves["blocked"].any()  # flows may point at a managed survivor
    assert not proposals.leftovers.iloc[0]["deletable"]


def test_unbound_survivor_blocks_every_move() -> None:
    snap = make_snapshot(
        references=[ref("a", created_on="2020-01-01"), ref("b")],
        flows=[flow("f1")],
        usages=[use("f1", "k", "new_b")],
        solutions=[solution("s1", "HR")],
        components=[component("s1", "a", "reference"), component("s1", "b", "reference")],
    )
    proposals = propose(snap, duplicate_groups(snap), **A_IS_COMPLIANT)
    move = proposals.moves.iloc[0]
    assert bool(move["blocked"])
    assert "not bound to a connection" in move["why_blocked"]
    assert not proposals.leftovers.iloc[0]["deletable"]


def test_other_dependents_make_a_leftover_not_deletable() -> None:
    snap = two_way(
        ref("a", created_on="2020-01-01"),
        ref("b"),
        dependency_checks=[
            {
                "environment_id": ENV,
                "reference_id": "b",
                "checked": True,
                "dependent_count": 2,
                "dependents": "29:f1;300:app-1",
            }
        ],
    )
    leftover = propose(snap, duplicate_groups(snap)).leftovers.iloc[0]
    assert not leftover["deletable"]
    assert "300:app-1" in leftover["why_not"] and "29:f1" not in leftover["why_not"]


def test_propose_on_no_groups_is_empty() -> None:
    snap = make_snapshot(references=[ref("a")])
    proposals = propose(snap, duplicate_groups(snap))
    assert proposals.survivors.empty and proposals.moves.empty and proposals.leftovers.empty


def test_the_naming_rule_decides_compliance_when_naming_settings_are_given() -> None:
    from cleanup.rules.settings import NamingSettings

    snap = two_way(
        ref(
            "a",
            display_name="Dataverse HR-4f2a1",
            logical_name="new_sharedcommondataserviceforapps_4f2a1",
        ),
        ref("b", display_name="HR – Dataverse – Service Principal", created_on="2025-01-01"),
        connections=[conn("c1", identity="service-principal")],
    )
    row = survivor(snap, naming=NamingSettings())
    assert row["survivor_id"] == "b"
    assert row["decided_by"] == "compliant name"


def test_a_key_naming_two_members_moves_from_the_first_by_reference_id() -> None:
    # Logical names are matched case-insensitively, so "new_x" names both a and b.
    snap = make_snapshot(
        references=[
            ref("b", logical_name="NEW_X", connection_id="c1"),
            ref("a", logical_name="new_x", connection_id="c1"),
            ref("c", connection_id="c1"),
        ],
        connections=[conn("c1")],
        flows=[flow("f1")],
        usages=[use("f1", "k1", "new_x"), use("f1", "k2", "new_c")],
    )
    check = {"name_is_compliant": lambda row: row["reference_id"] == "c"}
    proposals = propose(snap, duplicate_groups(snap), **check)
    moves = proposals.moves
    assert moves[["key", "from_reference_id", "to_reference_id"]].values.tolist() == [
        ["k1", "a", "c"]
    ]
    survivor_row = proposals.survivors.iloc[0]
    assert "used by 1 flow" in survivor_row["reason"]


def test_a_flow_listed_twice_is_judged_by_its_first_row() -> None:
    snap = two_way(
        ref("a", created_on="2020-01-01"),
        ref("b"),
        flows=[flow("f1"), flow("f1", is_managed=True)],
        usages=[use("f1", "k", "new_b")],
    )
    moves = propose(snap, duplicate_groups(snap), **A_IS_COMPLIANT).moves
    assert moves["flow_id"].tolist() == ["f1"] and not moves["blocked"].any()


def test_a_flow_id_in_two_environments_is_judged_in_the_moves_environment() -> None:
    snap = two_way(
        ref("a", created_on="2020-01-01"),
        ref("b"),
        flows=[flow("f1", env="env-b", is_managed=True), flow("f1"), flow("f2", env="env-b")],
        usages=[use("f1", "k", "new_b"), use("f2", "k", "new_b")],
    )
    moves = propose(snap, duplicate_groups(snap), **A_IS_COMPLIANT).moves
    assert moves["flow_id"].tolist() == ["f1", "f2"]
    assert moves["why_blocked"].tolist() == [pd.NA, BLOCK_FLOW_UNKNOWN]


def test_flows_count_for_a_solution_whatever_the_case_of_their_ids() -> None:
    snap = two_way(
        ref("a", created_on="2020-01-01"),
        ref("b"),
        flows=[flow("F1"), flow("f2")],
        usages=[use("F1", "k", "new_a"), use("f2", "k", "new_b")],
        solutions=[solution("s1", "hr"), solution("s2", "it")],
        components=[
            component("s1", "A", "reference"),
            component("s1", "f1", "flow"),
            component("s2", "b", "reference"),
            component("s2", "F2", "flow"),
            component("s2", "f2", "flow"),  # listed twice: one flow
        ],
    )
    kept = survivor(snap, **A_IS_COMPLIANT)
    assert kept["survivor_id"] == "a"
    assert "in solution 'hr' like 1 of 2 flows that use the group" in kept["reason"]


def test_the_rules_hand_over_the_proposals_they_computed() -> None:
    from cleanup.config import Settings
    from cleanup.rules import evaluate_rules
    from cleanup.rules.settings import NamingSettings, RulesSettings

    snap = two_way(
        ref("a", display_name="HR – Dataverse – User", created_on="2020-01-01"),
        ref("b"),
        flows=[flow("f1")],
        usages=[use("f1", "k", "new_b")],
    )
    expected = propose(snap, duplicate_groups(snap), naming=NamingSettings())
    handed = evaluate_rules(snap, Settings()).proposals
    assert handed is not None
    for part in ("survivors", "moves", "leftovers"):
        pd.testing.assert_frame_equal(getattr(handed, part), getattr(expected, part))
    without = Settings(rules=RulesSettings(disable=("duplicate",)))
    assert evaluate_rules(snap, without).proposals is None
