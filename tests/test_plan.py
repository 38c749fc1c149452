"""The plan: what is planned, what is refused, the file format and its explanation."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from test_consolidate import (
    ENV,
    component,
    conn,
    duplicate_groups,
    flow,
    make_snapshot,
    ref,
    solution,
    use,
)

from cleanup import __version__, schemas
from cleanup.config import settings_from_dict
from cleanup.consolidate import propose
from cleanup.errors import ConfigError, PlanError
from cleanup.plan import (
    DeleteReference,
    FlowPreconditions,
    Plan,
    PlanSettings,
    RenameReference,
    RewireFlowKey,
    build_plan,
    compute_content_hash,
    describe,
    ensure_safe,
    load_plan,
    reference_content_sha256,
    save_plan,
)
from cleanup.plan_explain import line_count
from cleanup.snapshot.model import Snapshot

NOW = datetime(2026, 10, 20, 2, 0, tzinfo=UTC)
SURVIVOR_NAME = "HR – Dataverse – Service Principal"


def finding(rule: str, object_id: str, env: str = ENV, **extra: Any) -> dict[str, Any]:
    """A findings row about a reference, with ``extra`` as its JSON facts."""
    return {
        "rule": rule,
        "severity": "low",
        "environment_id": env,
        "object_type": "reference",
        "object_id": object_id,
        "extra": json.dumps(extra),
    }


def unused(object_id: str, *, grace_passed: bool = True, env: str = ENV) -> dict[str, Any]:
    """An ``unused`` finding, unused since 2026-10-01."""
    return finding(
        "unused", object_id, env, unused_since="2026-10-01T00:00:00.000Z", grace_passed=grace_passed
    )


def duplicate_findings(snap: Snapshot, *, set_aside: tuple[str, ...] = ()) -> list[dict]:
    """A ``duplicate`` finding for every group member except those set aside."""
    groups = duplicate_groups(snap)
    return [
        finding("duplicate", ref_id, env)
        for env, ref_id in zip(groups["environment_id"], groups["reference_id"], strict=True)
        if ref_id not in set_aside
    ]


def plan_for(
    snap: Snapshot,
    findings: list[dict[str, Any]] | None = None,
    settings: PlanSettings | None = None,
    proposals: Any = None,
) -> Plan:
    """Group, propose (reference 'a' has the compliant name) and plan.

    Given findings get a ``duplicate`` finding for every group member added, as the rule
    would report them; without findings the plan follows the proposals alone.
    """
    if proposals is None:
        proposals = propose(
            snap,
            duplicate_groups(snap),
            name_is_compliant=lambda row: row["reference_id"] == "a",
        )
    frame = None
    if findings:
        # Conformed like the rules' output, with a row of missing values to be ignored.
        rows = findings + duplicate_findings(snap) + [{"rule": None, "object_type": None}]
        frame = schemas.frame_from_rows(rows, schemas.FINDINGS)
    return build_plan(
        snap,
        proposals,
        frame,
        settings or PlanSettings(),
        run_id="run-1",
        config_fingerprint="cfg123",
        now=NOW,
    )


def duplicate_snapshot(**changes: Any) -> Snapshot:
    """Survivor a (bound, compliant), leftover b used by flow f1 (on) and f2 (draft, two keys)."""
    tables: dict[str, Any] = {
        "references": [
            ref("a", connection_id="c1", display_name=SURVIVOR_NAME),
            ref("b", connection_id="c1", logical_name="new_sharedx_4f2a1"),
        ],
        "connections": [conn("c1", identity="service-principal")],
        "flows": [flow("f1", name="Leave approval"), flow("f2", state=0)],
        "usages": [
            use("f1", "shared_x_1", "new_sharedx_4f2a1"),
            use("f2", "shared_x", "NEW_SHAREDX_4F2A1"),
            use("f2", "shared_x_2", "new_sharedx_4f2a1"),
        ],
    }
    tables.update(changes)
    return make_snapshot(**tables)


def kinds(plan: Plan) -> list[str]:
    """The action types in plan order."""
    return [a.kind for a in plan.actions]


def deleted(plan: Plan) -> set[str]:
    """Reference ids the plan deletes."""
    return {a.reference_id for a in plan.actions if isinstance(a, DeleteReference)}


def skip_reasons(plan: Plan, object_id: str) -> list[str]:
    """Why an object was skipped."""
    return [s.reason for s in plan.skipped if s.object_id == object_id]


# --------------------------------------------------------------------------------------------
# Building


def test_a_duplicate_group_becomes_rewires_then_a_delete_that_depends_on_them() -> None:
    plan = plan_for(duplicate_snapshot())
    assert kinds(plan) == ["rewire-flow-key"] * 3 + ["delete-reference"]
    rewires = [a for a in plan.actions if isinstance(a, RewireFlowKey)]
    assert [(a.flow_id, a.key) for a in rewires] == [
        ("f1", "shared_x_1"),
        ("f2", "shared_x"),
        ("f2", "shared_x_2"),
    ]
    assert {a.to_reference_id for a in rewires} == {"a"}
    delete = plan.actions[-1]
    assert isinstance(delete, DeleteReference)
    assert delete.reference_id == "b"
    assert set(delete.depends_on) == {a.action_id for a in rewires}


def test_rewire_preconditions_are_what_the_flow_looked_like() -> None:
    plan = plan_for(duplicate_snapshot())
    first, second = plan.actions[0], plan.actions[1]
    assert isinstance(first, RewireFlowKey) and isinstance(second, RewireFlowKey)
    assert first.preconditions == FlowPreconditions(
        etag='W/"f1-1"',
        modified_on="2024-07-01T00:00:00+00:00",
        clientdata_sha256="sha-f1",
        state="on",
    )
    assert second.preconditions.state == "off"
    assert second.from_logical_name == "NEW_SHAREDX_4F2A1"  # as the flow spells it


def test_delete_preconditions_hash_the_reference_row() -> None:
    snap = duplicate_snapshot()
    delete = plan_for(snap).actions[-1]
    assert isinstance(delete, DeleteReference)
    row = snap.references.set_index("reference_id").loc["b"].to_dict()
    row["reference_id"] = "b"
    assert delete.preconditions.content_sha256 == reference_content_sha256(row)
    assert delete.preconditions.etag == 'W/"b-1"'
    changed = {**row, "connection_id": "c2"}
    assert reference_content_sha256(changed) != delete.preconditions.content_sha256


def test_building_is_deterministic() -> None:
    first, second = plan_for(duplicate_snapshot()), plan_for(duplicate_snapshot())
    assert first == second
    assert first.content_hash == second.content_hash
    assert [a.action_id for a in first.actions] == [a.action_id for a in second.actions]


def test_plan_metadata() -> None:
    plan = plan_for(duplicate_snapshot())
    assert plan.run_id == "run-1"
    assert plan.config_fingerprint == "cfg123"
    assert plan.tool_version == __version__
    assert plan.environment_ids == (ENV,)
    assert plan.created_at == NOW


# --------------------------------------------------------------------------------------------
# Never delete what is still used


def test_a_key_missing_from_the_proposals_keeps_its_reference() -> None:
    # Stale or hand-edited proposals: the second key of the draft flow is not moved.
    snap = duplicate_snapshot()
    proposals = propose(
        snap, duplicate_groups(snap), name_is_compliant=lambda r: r["reference_id"] == "a"
    )
    moves = proposals.moves[proposals.moves["key"] != "shared_x_2"].reset_index(drop=True)
    proposals = dataclasses.replace(proposals, moves=moves)
    plan = plan_for(snap, proposals=proposals)
    assert "b" not in deleted(plan)
    assert any("still used after the planned rewires" in r for r in skip_reasons(plan, "b"))


def test_a_draft_flow_that_appeared_after_the_proposals_keeps_its_reference() -> None:
    snap = duplicate_snapshot()
    proposals = propose(
        snap, duplicate_groups(snap), name_is_compliant=lambda r: r["reference_id"] == "a"
    )
    later = duplicate_snapshot(
        flows=[flow("f1"), flow("f2", state=0), flow("f3", state=0)],
        usages=[
            use("f1", "shared_x_1", "new_sharedx_4f2a1"),
            use("f2", "shared_x", "NEW_SHAREDX_4F2A1"),
            use("f2", "shared_x_2", "new_sharedx_4f2a1"),
            use("f3", "k", "New_SharedX_4f2a1"),
        ],
    )
    plan = plan_for(later, proposals=proposals)
    assert "b" not in deleted(plan)
    assert kinds(plan) == ["rewire-flow-key"] * 3


def test_unused_finding_for_a_reference_a_flow_uses_is_refused() -> None:
    snap = make_snapshot(
        references=[ref("u")], flows=[flow("f1", state=0)], usages=[use("f1", "k", "NEW_U")]
    )
    plan = plan_for(snap, [unused("u")])
    assert plan.actions == ()
    assert skip_reasons(plan, "u") == ["still used by 1 flow(s)"]


def test_survivor_with_an_unused_finding_is_not_deleted_under_its_new_flows() -> None:
    # 'a' has no flows before the rewires, so a rule may call it unused; after them it is used.
    plan = plan_for(duplicate_snapshot(), [unused("a")])
    assert deleted(plan) == {"b"}
    assert any("still used after the planned rewires" in r for r in skip_reasons(plan, "a"))


# --------------------------------------------------------------------------------------------
# Unused references


def test_unused_reference_past_its_grace_period_is_deleted() -> None:
    snap = make_snapshot(references=[ref("u", display_name="Old")])
    plan = plan_for(snap, [unused("u")])
    (action,) = plan.actions
    assert isinstance(action, DeleteReference)
    assert action.reason == "unused since 2026-10-01"
    assert action.unused_since == "2026-10-01T00:00:00+00:00"
    assert action.depends_on == ()


def test_grace_period_not_passed_is_skipped() -> None:
    snap = make_snapshot(references=[ref("u")])
    plan = plan_for(snap, [unused("u", grace_passed=False)])
    assert plan.actions == ()
    assert skip_reasons(plan, "u") == ["grace period not passed (unused since 2026-10-01)"]


def test_unreadable_extra_means_no_delete() -> None:
    snap = make_snapshot(references=[ref("u")])
    bad = {**unused("u"), "extra": "not json"}
    assert plan_for(snap, [bad]).actions == ()


def test_managed_unused_reference_is_skipped() -> None:
    snap = make_snapshot(references=[ref("u", is_managed=True)])
    plan = plan_for(snap, [unused("u")])
    assert plan.actions == ()
    assert skip_reasons(plan, "u") == ["managed: fix it in the source environment"]


def test_no_delete_in_an_incomplete_environment() -> None:
    snap = make_snapshot(
        references=[ref("u")],
        environments=[{"environment_id": ENV, "status": "incomplete", "status_reason": "429"}],
    )
    plan = plan_for(snap, [unused("u")])
    assert plan.actions == ()
    assert "not complete (429)" in skip_reasons(plan, "u")[0]


def test_no_delete_where_the_environment_status_is_missing() -> None:
    snap = make_snapshot(references=[ref("u")], environments=[{"environment_id": ENV}])
    assert plan_for(snap, [unused("u")]).actions == ()


def test_findings_without_the_contract_columns_are_refused() -> None:
    snap = make_snapshot(references=[ref("u")])
    with pytest.raises(PlanError, match="lacks column"):
        build_plan(
            snap,
            propose(snap, duplicate_groups(snap)),
            pd.DataFrame([{"rule": "unused"}]),
            PlanSettings(),
            run_id="r",
            config_fingerprint="c",
            now=NOW,
        )


def test_no_delete_where_a_flow_could_not_be_read() -> None:
    snap = make_snapshot(references=[ref("u")], flows=[flow("f-bad", parse_status="invalid-json")])
    plan = plan_for(snap, [unused("u")])
    assert plan.actions == ()
    assert "could not be read" in skip_reasons(plan, "u")[0]


def test_incomplete_environment_still_gets_rewires_but_no_deletes() -> None:
    snap = duplicate_snapshot(environments=[{"environment_id": ENV, "status": "incomplete"}])
    plan = plan_for(snap)
    assert kinds(plan) == ["rewire-flow-key"] * 3
    assert "not complete" in skip_reasons(plan, "b")[0]


def test_other_dependents_block_the_delete() -> None:
    check = {
        "environment_id": ENV,
        "reference_id": "u",
        "checked": True,
        "dependent_count": 1,
        "dependents": "300:canvas-app-1",
    }
    snap = make_snapshot(references=[ref("u")], dependency_checks=[check])
    plan = plan_for(snap, [unused("u")])
    assert plan.actions == ()
    assert "canvas-app-1" in skip_reasons(plan, "u")[0]


def test_unused_leftover_is_deleted_once() -> None:
    snap = duplicate_snapshot()
    plan = plan_for(snap, [unused("b")])
    assert [a.reference_id for a in plan.actions if isinstance(a, DeleteReference)] == ["b"]


def test_an_excluded_leftover_keeps_its_flows_and_is_not_deleted() -> None:
    snap = duplicate_snapshot()
    findings = pd.DataFrame(duplicate_findings(snap, set_aside=("b",)))
    proposals = propose(
        snap, duplicate_groups(snap), name_is_compliant=lambda r: r["reference_id"] == "a"
    )
    plan = build_plan(
        snap, proposals, findings, PlanSettings(), run_id="r", config_fingerprint="c", now=NOW
    )
    assert plan.actions == ()
    assert skip_reasons(plan, "b")[0].startswith("set aside: no active duplicate finding")


def test_an_excluded_survivor_sets_the_whole_group_aside() -> None:
    snap = duplicate_snapshot()
    findings = pd.DataFrame(duplicate_findings(snap, set_aside=("a",)))
    proposals = propose(
        snap, duplicate_groups(snap), name_is_compliant=lambda r: r["reference_id"] == "a"
    )
    plan = build_plan(
        snap, proposals, findings, PlanSettings(), run_id="r", config_fingerprint="c", now=NOW
    )
    assert plan.actions == ()
    assert skip_reasons(plan, "a")[0].startswith("set aside")


def test_with_the_duplicate_rule_off_no_group_is_planned_and_nothing_is_said() -> None:
    snap = duplicate_snapshot()
    plan = build_plan(
        snap,
        propose(snap, duplicate_groups(snap)),
        pd.DataFrame([unused("zzz")]),
        PlanSettings(),
        run_id="r",
        config_fingerprint="c",
        now=NOW,
    )
    assert plan.actions == ()
    assert [s.object_id for s in plan.skipped] == ["zzz"]


# --------------------------------------------------------------------------------------------
# Managed rows and unbound survivors


def test_managed_flow_is_not_rewired_and_its_leftover_is_kept() -> None:
    snap = duplicate_snapshot(flows=[flow("f1", is_managed=True), flow("f2", state=0)])
    plan = plan_for(snap)
    assert kinds(plan) == ["rewire-flow-key"] * 2
    assert {a.flow_id for a in plan.actions if isinstance(a, RewireFlowKey)} == {"f2"}
    assert "unmanaged layer" in skip_reasons(plan, "f1/shared_x_1")[0]
    assert "b" not in deleted(plan)


def test_managed_leftover_is_not_deleted_but_flows_still_move() -> None:
    snap = duplicate_snapshot(
        references=[
            ref("a", connection_id="c1", display_name=SURVIVOR_NAME),
            ref("b", connection_id="c1", logical_name="new_sharedx_4f2a1", is_managed=True),
        ]
    )
    plan = plan_for(snap)
    assert kinds(plan) == ["rewire-flow-key"] * 3
    assert skip_reasons(plan, "b") == ["managed: fix it in the source environment"]


def test_no_rewire_to_an_unbound_survivor() -> None:
    snap = duplicate_snapshot(
        references=[
            ref("a", display_name=SURVIVOR_NAME),
            ref("b", logical_name="new_sharedx_4f2a1"),
        ],
        solutions=[solution("s1", "HR")],
        components=[component("s1", "a", "reference"), component("s1", "b", "reference")],
    )
    plan = plan_for(snap)
    assert plan.actions == ()
    assert "not bound to a connection" in skip_reasons(plan, "f1/shared_x_1")[0]


def test_no_rewire_to_a_survivor_without_a_logical_name(tmp_path: Path) -> None:
    snap = duplicate_snapshot(
        references=[
            ref("a", connection_id="c1", display_name=SURVIVOR_NAME, logical_name=None),
            ref("b", connection_id="c1", logical_name="new_sharedx_4f2a1"),
        ]
    )
    plan = plan_for(snap)
    assert plan.actions == ()
    assert "no logical name" in skip_reasons(plan, "f1/shared_x_1")[0]
    assert skip_reasons(plan, "b") == ["a flow key that uses it could not be rewired"]
    assert load_plan(save_plan(plan, tmp_path / "plan.json")).content_hash == plan.content_hash


# --------------------------------------------------------------------------------------------
# Settings: protected names, renames, limits


def test_protected_references_are_neither_deleted_nor_left_by_their_flows() -> None:
    settings = PlanSettings(protected_patterns=("NEW_SHAREDX_*",))
    plan = plan_for(duplicate_snapshot(), settings=settings)
    assert plan.actions == ()
    assert skip_reasons(plan, "b") == ["protected by plan.protected_patterns"]


def test_protected_unused_reference_is_kept() -> None:
    snap = make_snapshot(references=[ref("u", logical_name="cat_keepme")])
    plan = plan_for(snap, [unused("u")], PlanSettings(protected_patterns=("cat_*",)))
    assert plan.actions == ()


def bad_name_snapshot() -> Snapshot:
    return make_snapshot(
        references=[
            ref("r1", display_name="new_sharedoffice365_4262b"),
            ref("r2", display_name="Taken – Name – User"),
            ref("r3", display_name="x", logical_name="cat_protected"),
        ]
    )


BAD_NAMES = [
    finding("bad-name", "r1", proposed_name="HR – Office 365 Outlook – User"),
    finding("bad-name", "r3", proposed_name="CoE – Dataverse – User"),
]


def test_renames_only_when_asked() -> None:
    assert plan_for(bad_name_snapshot(), BAD_NAMES).actions == ()
    settings = PlanSettings(propose_renames=True, protected_patterns=("cat_*",))
    plan = plan_for(bad_name_snapshot(), BAD_NAMES, settings)
    (action,) = plan.actions
    assert isinstance(action, RenameReference)
    assert (action.reference_id, action.to_display_name) == ("r1", "HR – Office 365 Outlook – User")
    assert action.from_display_name == "new_sharedoffice365_4262b"
    assert skip_reasons(plan, "r3") == ["rename: protected by plan.protected_patterns"]


def test_rename_to_a_name_another_reference_has_is_skipped() -> None:
    clash = [finding("bad-name", "r1", proposed_name="taken – name – user")]
    plan = plan_for(bad_name_snapshot(), clash, PlanSettings(propose_renames=True))
    assert plan.actions == ()
    assert "already used" in skip_reasons(plan, "r1")[0]


def test_per_environment_limit_keeps_whole_groups() -> None:
    refs = [
        ref("a", connection_id="c1", created_on="2020-01-01"),
        ref("b", connection_id="c1"),
        ref("c", connection_id="c2", created_on="2020-01-01"),
        ref("d", connection_id="c2"),
    ]
    snap = make_snapshot(
        references=refs,
        connections=[conn("c1"), conn("c2")],
        flows=[flow("f1"), flow("f2")],
        usages=[use("f1", "k", "new_b"), use("f2", "k", "new_d")],
    )
    proposals = propose(
        snap, duplicate_groups(snap), name_is_compliant=lambda r: r["reference_id"] in ("a", "c")
    )
    full = plan_for(snap, proposals=proposals)
    assert len(full.actions) == 4
    limited = plan_for(
        snap, settings=PlanSettings(max_actions_per_environment=3), proposals=proposals
    )
    assert len(limited.actions) == 2
    groups = {a.group_id for a in limited.actions}  # type: ignore[union-attr]
    assert len(groups) == 1
    over = [s for s in limited.skipped if "per-environment limit of 3" in s.reason]
    assert len(over) == 2


def test_actions_are_ordered_rewires_renames_deletes_per_environment() -> None:
    snap = duplicate_snapshot(
        references=[
            ref("a", connection_id="c1", display_name=SURVIVOR_NAME),
            ref("b", connection_id="c1", logical_name="new_sharedx_4f2a1"),
            ref("u", logical_name="aaa_unused"),
            ref("r", display_name="new_sharedoffice365_4262b"),
            ref("z", env="env-b", logical_name="zzz_unused"),
        ]
    )
    findings = [
        unused("u"),
        unused("z", env="env-b"),
        finding("bad-name", "r", proposed_name="HR – Office 365 Outlook – User"),
    ]
    plan = plan_for(snap, findings, PlanSettings(propose_renames=True))
    order = [(a.environment_id, a.kind) for a in plan.actions]
    assert order == [
        *[(ENV, "rewire-flow-key")] * 3,
        (ENV, "rename-reference"),
        (ENV, "delete-reference"),
        (ENV, "delete-reference"),
        ("env-b", "delete-reference"),
    ]


def test_plan_settings_validate_and_load_from_toml_shape() -> None:
    with pytest.raises(ConfigError, match="at least 1"):
        PlanSettings(max_actions_per_environment=0)
    settings = PlanSettings(protected_patterns=("cat_*", "admin_*"))
    assert settings.is_protected("CAT_Thing")
    assert not settings.is_protected("new_x")
    assert not settings.is_protected(None)
    # The generic config loader can build it (the lead wires it in as [plan]).
    assert settings_from_dict({"simulator": {"enabled": True}}) is not None


# --------------------------------------------------------------------------------------------
# The guard on the finished plan


def test_ensure_safe_refuses_a_hand_made_unsafe_plan() -> None:
    snap = duplicate_snapshot()
    delete = plan_for(snap).actions[-1]
    unsafe = Plan(
        run_id="r",
        created_at=NOW,
        tool_version="x",
        config_fingerprint="c",
        environment_ids=(ENV,),
        actions=(delete,),  # the rewires it needs are missing
    )
    with pytest.raises(PlanError, match="still used after rewires"):
        ensure_safe(unsafe, snap, PlanSettings())


def test_ensure_safe_counts_every_rewire_of_a_key_rewired_twice() -> None:
    snap = duplicate_snapshot()
    plan = plan_for(snap)
    first = plan.actions[0]
    assert isinstance(first, RewireFlowKey)
    # The same flow key also "rewired" back to the reference the plan deletes.
    back = dataclasses.replace(first, to_logical_name="new_sharedx_4f2a1", to_reference_id="a")
    unsafe = dataclasses.replace(plan, actions=(back, *plan.actions))
    with pytest.raises(PlanError, match="still used after rewires"):
        ensure_safe(unsafe, snap, PlanSettings())
    ensure_safe(plan, snap, PlanSettings())


def test_ensure_safe_refuses_actions_on_managed_rows() -> None:
    snap = make_snapshot(references=[ref("u")])
    delete = plan_for(snap, [unused("u")]).actions[0]
    managed = make_snapshot(references=[ref("u", is_managed=True)])
    plan = Plan("r", NOW, "x", "c", (ENV,), (delete,))
    with pytest.raises(PlanError, match="managed"):
        ensure_safe(plan, managed, PlanSettings())


# --------------------------------------------------------------------------------------------
# plan.json


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Plan, Path]:
    snap = duplicate_snapshot(
        references=[
            ref("a", connection_id="c1", display_name=SURVIVOR_NAME),
            ref("b", connection_id="c1", logical_name="new_sharedx_4f2a1"),
            ref("r", display_name="new_sharedoffice365_4262b"),
            ref("m", is_managed=True),
        ]
    )
    findings = [
        unused("m"),
        finding("bad-name", "r", proposed_name="HR – Office 365 Outlook – Ünïcode"),
    ]
    plan = plan_for(snap, findings, PlanSettings(propose_renames=True))
    return plan, save_plan(plan, tmp_path / "plan.json")


def test_save_and_load_round_trip(saved: tuple[Plan, Path]) -> None:
    plan, path = saved
    loaded = load_plan(path)
    assert loaded == plan
    assert loaded.content_hash == plan.content_hash
    assert {type(a) for a in loaded.actions} == {RewireFlowKey, RenameReference, DeleteReference}
    assert loaded.skipped and loaded.skipped == plan.skipped
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["content_hash"] == plan.content_hash
    assert document["format_version"] == 1


def test_one_changed_character_is_detected(saved: tuple[Plan, Path]) -> None:
    _plan, path = saved
    text = path.read_text(encoding="utf-8")
    changed = text.replace('"key":"shared_x_1"', '"key":"shared_x_2"', 1)
    assert changed != text
    path.write_text(changed, "utf-8")
    with pytest.raises(PlanError, match="altered after it was written; re-run the job"):
        load_plan(path)


def test_editing_the_hash_too_is_still_detected_through_the_action_id(
    saved: tuple[Plan, Path],
) -> None:
    _plan, path = saved
    document = json.loads(path.read_text(encoding="utf-8"))
    document["actions"][0]["to_reference_id"] = "someone-elses"
    rewrite(path, document)
    with pytest.raises(PlanError, match="id that does not match"):
        load_plan(path)


def rewrite(path: Path, document: dict[str, Any]) -> None:
    """Write a document with a freshly computed hash (a careful forger)."""
    document["content_hash"] = compute_content_hash(document)
    path.write_text(json.dumps(document), encoding="utf-8")


def test_the_file_has_one_action_or_skipped_item_per_line(saved: tuple[Plan, Path]) -> None:
    plan, path = saved
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[:3] == ["{", '  "format": "connref-cleanup-plan",', '  "format_version": 1,']
    items = [line.strip().rstrip(",") for line in lines if line.startswith("    ")]
    assert len(items) == len(plan.actions) + len(plan.skipped)
    assert [json.loads(item) for item in items[: len(plan.actions)]] == [
        a.to_dict() for a in plan.actions
    ]
    assert lines[-2] == f'  "content_hash": "{plan.content_hash}"'


@pytest.mark.parametrize(
    "layout",
    [
        lambda doc: json.dumps(doc, indent=2),  # re-indented by an editor
        lambda doc: json.dumps(doc, ensure_ascii=True),  # one line, escaped
        lambda doc: (
            "{\n"  # as the previous version wrote it: readable, keys in field order
            + ",\n".join(
                f"  {json.dumps(k)}: [\n"
                + ",\n".join("    " + json.dumps(v, ensure_ascii=False) for v in value)
                + "\n  ]"
                if isinstance(value, list) and value and isinstance(value[0], dict)
                else f"  {json.dumps(k)}: {json.dumps(value, ensure_ascii=False)}"
                for k, value in doc.items()
            )
            + "\n}\n"
        ),
    ],
)
def test_the_same_plan_in_another_layout_still_loads(saved: tuple[Plan, Path], layout: Any) -> None:
    plan, path = saved
    document = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(layout(document), encoding="utf-8")
    assert load_plan(path) == plan


def test_a_member_the_plan_does_not_know_is_covered_by_the_hash(
    saved: tuple[Plan, Path],
) -> None:
    plan, path = saved
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("{\n", '{\n  "note": "hello",\n', 1), encoding="utf-8")
    with pytest.raises(PlanError, match="altered after it was written"):
        load_plan(path)
    document = json.loads(path.read_text(encoding="utf-8"))
    rewrite(path, document)
    assert load_plan(path) == plan


def test_a_repeated_member_is_read_as_json_reads_it(saved: tuple[Plan, Path]) -> None:
    plan, path = saved
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("{\n", '{\n  "run_id": "other",\n', 1), encoding="utf-8")
    assert load_plan(path) == plan  # json keeps the last of repeated keys: the plan's own
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('  "content_hash"', '  "run_id": "other",\n  "content_hash"'))
    with pytest.raises(PlanError, match="altered after it was written"):
        load_plan(path)


def test_a_broken_line_is_a_json_error(saved: tuple[Plan, Path]) -> None:
    _plan, path = saved
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if line.startswith("    {"))
    lines[index] = lines[index].replace("{", "{{", 1)
    path.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(PlanError, match=rf"is not JSON \(line {index + 1}, column"):
        load_plan(path)


def test_not_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text("{ nope", encoding="utf-8")
    with pytest.raises(PlanError, match="is not JSON"):
        load_plan(path)


def test_not_a_plan_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(PlanError, match="not a connref-cleanup plan"):
        load_plan(path)


def test_wrong_format_version_is_refused(saved: tuple[Plan, Path]) -> None:
    _plan, path = saved
    document = json.loads(path.read_text(encoding="utf-8"))
    document["format_version"] = 99
    rewrite(path, document)
    with pytest.raises(PlanError, match="format version 99; .* reads version 1"):
        load_plan(path)


def test_missing_field_is_named(saved: tuple[Plan, Path]) -> None:
    _plan, path = saved
    document = json.loads(path.read_text(encoding="utf-8"))
    del document["config_fingerprint"]
    rewrite(path, document)
    with pytest.raises(PlanError, match="missing the field 'config_fingerprint'"):
        load_plan(path)


def test_missing_action_field_is_named(saved: tuple[Plan, Path]) -> None:
    _plan, path = saved
    document = json.loads(path.read_text(encoding="utf-8"))
    del document["actions"][0]["preconditions"]["clientdata_sha256"]
    rewrite(path, document)
    with pytest.raises(PlanError, match="action #1 .*missing the field 'clientdata_sha256'"):
        load_plan(path)


def test_unknown_action_type_is_refused(saved: tuple[Plan, Path]) -> None:
    _plan, path = saved
    document = json.loads(path.read_text(encoding="utf-8"))
    document["actions"][1]["type"] = "delete-environment"
    rewrite(path, document)
    with pytest.raises(
        PlanError, match="action #2 has the unknown action type 'delete-environment'"
    ):
        load_plan(path)


def test_wrong_field_type_is_refused(saved: tuple[Plan, Path]) -> None:
    _plan, path = saved
    document = json.loads(path.read_text(encoding="utf-8"))
    document["actions"][0]["key"] = 7
    rewrite(path, document)
    with pytest.raises(PlanError, match="field 'key' must be str"):
        load_plan(path)


def test_missing_file_is_a_plan_error(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="Cannot read the plan"):
        load_plan(tmp_path / "nope.json")


# --------------------------------------------------------------------------------------------
# describe()


def test_describe_speaks_plain_words(saved: tuple[Plan, Path]) -> None:
    plan, _path = saved
    lines = describe(plan)
    assert lines[0].startswith("Plan run-1, created 2026-10-20 02:00 UTC by connref-cleanup")
    assert (
        f"  Would rewire flow 'Leave approval' (env {ENV}), key shared_x_1: "
        f"new_sharedx_4f2a1 -> {SURVIVOR_NAME} "
        "(the flow is on: it is turned off, changed and turned back on)"
    ) in lines
    assert any(
        line.startswith("  Would delete connection reference 'new_b' (new_sharedx_4f2a1)")
        and "after 3 rewires" in line
        for line in lines
    )
    assert any("Would rename connection reference new_r" in line for line in lines)
    assert any(
        line.startswith("  Skipped reference new_m") and "source environment" in line
        for line in lines
    )
    assert (
        lines[-1] == "Total: would rewire 3 flow keys, rename 1 reference, delete 1 reference "
        "in 1 environment; 1 skipped."
    )


def test_describe_unused_delete_and_empty_plan() -> None:
    plan = plan_for(make_snapshot(references=[ref("u", display_name="Old")]), [unused("u")])
    assert (
        f"  Would delete connection reference 'Old' (new_u) (env {ENV}) (unused since "
        "2026-10-01)" in describe(plan)
    )
    empty = plan_for(make_snapshot())
    assert describe(empty)[-1] == "Nothing to do; 0 skipped."


def test_line_count_is_the_number_of_lines_describe_gives(saved: tuple[Plan, Path]) -> None:
    plans = [saved[0], plan_for(make_snapshot()), plan_for(duplicate_snapshot())]
    plans.append(plan_for(make_snapshot(references=[ref("u")]), [unused("u")]))
    for plan in plans:
        assert line_count(plan) == len(describe(plan))


@pytest.mark.parametrize("unique_ids", [True, False])
def test_row_positions_by_arrow_match_single_lookups(unique_ids: bool) -> None:
    """Whole-column lookups (arrow, or the index when ids repeat) agree with ``find``."""
    from cleanup.plan import _Rows

    n = 3000
    ids = [f"f{i}" if unique_ids else f"f{i % 1000}" for i in range(n)]
    frame = pd.DataFrame(
        {
            "environment_id": pd.array([f"e{i % 7}" for i in range(n)], dtype="string[pyarrow]"),
            "flow_id": pd.array(ids, dtype="string[pyarrow]"),
        }
    )
    rows = _Rows(frame, "flow_id", ("environment_id", "flow_id"))
    envs = [f"e{i % 5}" for i in range(n)] + [None, "e1"]
    wanted = [f"f{(i * 7) % (n + 50)}" for i in range(n)] + ["f1", None]
    expected = [-1 if p is None else p for p in map(rows.find, envs, wanted)]
    assert rows.positions(envs, wanted).tolist() == expected
    series = [pd.Series(pd.array(v, dtype="string[pyarrow]")) for v in (envs, wanted)]
    assert rows.positions(*series).tolist() == expected
    assert rows._arrow_keys is not None  # repeated ids too: those rows by the index


def test_column_json_is_what_canonical_gives() -> None:
    from cleanup.plan import _canonical, _json_list, _objects

    values = ["a", 'q"\\\n', "ünï – 😀", None, True, 3, 1.5]
    assert _json_list(_objects(values)) == [_canonical(v) for v in values]
    assert _json_list(_objects(values[:3])) == [_canonical(v) for v in values[:3]]


def test_rewired_ids_keep_move_order_and_say_when_one_is_blocked() -> None:
    """Per (group, reference left): its planned rewires' ids in move order, None if blocked."""
    import numpy as np

    from cleanup.plan import _objects, _Rewired

    rewired = _Rewired(
        np.array([0, 0, 0, 1, 1, 1]),
        _objects(["a", "b", "a", "a", None, "b"]),
        np.array([False, False, False, True, False, False]),
        ["i0", "i1", "i2", "i4", "i5"],  # the rows not blocked
    )
    asked = rewired.ids(np.array([0, 0, 1, 1, 1, 0]), _objects(["a", "b", "a", None, "b", "z"]))
    assert asked == [("i0", "i2"), ("i1",), None, ("i4",), ("i5",), ()]


def test_names_after_gives_a_pair_per_rewire_of_a_key() -> None:
    import numpy as np

    from cleanup.plan import _names_after

    rewired = np.array([5, -1, 5, 7])  # the key of each rewire (-1: no usage has it)
    used = np.array([5, 6, 7])  # the key of each usage
    rows, after = _names_after(rewired, used, np.array([0, 1, -1]), np.array([2, 3, 4, 5]))
    pairs = sorted(zip(rows.tolist(), after.tolist(), strict=True))
    assert pairs == [(0, 2), (0, 4), (1, 1), (2, 5)]


@pytest.mark.parametrize(
    "flow_name, key, etag, modified_on",
    [("n", "k", None, "2024-07-01T00:00:00+00:00"), (None, 7, 'W/"1" – ü', None)],
)
def test_rewire_bodies_are_the_canonical_json_of_the_action(
    flow_name: Any, key: Any, etag: Any, modified_on: Any
) -> None:
    """Column-wise bodies give what ``_canonical`` gives, strings or not (then the slow way)."""
    from cleanup.plan import (
        FlowPreconditions,
        RewireFlowKey,
        _as_json,
        _canonical,
        _json_value,
        _rewire_bodies,
        _rewire_target_json,
        _Target,
    )

    pre = FlowPreconditions(etag, modified_on, "sha", "on")
    action = RewireFlowKey("e", "f", flow_name, key, "r", "l", "t", "ti", "td – x", "g", pre)
    target = _Target(action.to_logical_name, action.to_reference_id, action.to_display_name, None)
    shared = [[_json_value(v)] for v in ("e", "l", "r", "g", key)] + [[_rewire_target_json(target)]]
    own = [["f"], [flow_name], ["sha"], [etag], [modified_on], ["on"]]
    assert _rewire_bodies(shared, own) == [_canonical({"type": action.kind, **_as_json(action)})]
