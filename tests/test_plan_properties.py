"""Property tests: over random snapshots, grouping, proposals and plans keep their promises."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_consolidate import (
    DEFAULT_SOLUTION_ID,
    DV,
    SPO,
    component,
    conn,
    duplicate_groups,
    flow,
    make_snapshot,
    ref,
    solution,
    use,
)

from cleanup.consolidate import BASIS_SAME_CONNECTION, propose
from cleanup.plan import (
    REFERENCE_HASH_FIELDS,
    DeleteReference,
    FlowPreconditions,
    PlanSettings,
    ReferencePreconditions,
    RenameReference,
    RewireFlowKey,
    Skipped,
    _action_text,
    _as_json,
    _canonical,
    _iso_values,
    _plain,
    _plain_values,
    _reference_hash_text,
    _skipped_text,
    build_plan,
    compute_content_hash,
    load_plan,
    plan_from_document,
    reference_content_sha256,
    save_plan,
)
from cleanup.snapshot.model import Snapshot

SETTINGS = settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOLUTIONS = [("s-hr", "HR"), ("s-fin", "Finance"), ("s-def", "Default"), (DEFAULT_SOLUTION_ID, "x")]


@st.composite
def environment(draw: st.DrawFn, env: str) -> dict[str, list[dict[str, Any]]]:
    """Random tables for one environment."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    status = draw(st.sampled_from(["complete"] * 5 + ["incomplete"]))
    out["environments"].append({"environment_id": env, "status": status})
    conn_ids = [f"c{i}" for i in range(draw(st.integers(0, 2)))]
    for cid in conn_ids:
        identity = draw(st.sampled_from(["user", "service-principal", "unknown"]))
        out["connections"].append(conn(cid, env=env, identity=identity))
    ref_names = []
    for i in range(draw(st.integers(0, 7))):
        name = f"p_ref{i}"
        ref_names.append(name)
        out["references"].append(
            ref(
                f"r{i}",
                env=env,
                logical_name=name,
                display_name=draw(st.sampled_from(["HR – Dataverse – User", f"{name}_4f2a1"])),
                connector=draw(st.sampled_from([DV, DV, DV.upper(), SPO])),
                connection_id=draw(st.sampled_from([None, *conn_ids, *conn_ids])),
                is_managed=draw(st.sampled_from([False, False, False, True, None])),
                created_on=draw(st.sampled_from([None, "2020-01-01", "2023-04-01"])),
            )
        )
    for sid, unique_name in SOLUTIONS:
        out["solutions"].append(solution(sid, unique_name, env=env))
    flow_ids = [f"f{i}" for i in range(draw(st.integers(0, 5)))]
    for fid in flow_ids:
        out["flows"].append(
            flow(
                fid,
                env=env,
                state=draw(st.sampled_from([0, 1, 2])),
                is_managed=draw(st.sampled_from([False, False, False, True])),
                parse_status=draw(st.sampled_from(["ok"] * 15 + ["invalid-json"])),
            )
        )
        for key in ("k0", "k1", "k2"):
            target = draw(st.sampled_from([None, "unknown_ref", *ref_names]))
            if target is not None:
                spelled = target.upper() if draw(st.booleans()) else target
                out["usages"].append(use(fid, key, spelled, env=env))
    for object_id, object_type in [(f"r{i}", "reference") for i in range(len(ref_names))] + [
        (fid, "flow") for fid in flow_ids
    ]:
        for sid, _ in SOLUTIONS:
            if draw(st.integers(0, 3)) == 0:
                out["components"].append(component(sid, object_id, object_type, env=env))
    for i in range(len(ref_names)):
        choice = draw(st.sampled_from(["none", "none", "unused", "stale", "bad-name", "dep"]))
        if choice in ("unused", "stale"):
            extra = {"unused_since": "2026-09-01T00:00:00Z", "grace_passed": choice == "unused"}
            out["findings"].append(_finding("unused", env, f"r{i}", extra))
        elif choice == "bad-name":
            extra = {"proposed_name": draw(st.sampled_from(["A – B – C", "HR – Dataverse – User"]))}
            out["findings"].append(_finding("bad-name", env, f"r{i}", extra))
        elif choice == "dep":
            deps = draw(st.sampled_from(["29:f0", "300:app-1", ""]))
            out["dependency_checks"].append(
                {
                    "environment_id": env,
                    "reference_id": f"r{i}",
                    "checked": True,
                    "dependents": deps,
                }
            )
    return out


def _finding(rule: str, env: str, object_id: str, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "rule": rule,
        "environment_id": env,
        "object_type": "reference",
        "object_id": object_id,
        "extra": json.dumps(extra),
    }


@st.composite
def worlds(draw: st.DrawFn) -> tuple[Snapshot, pd.DataFrame]:
    """A random snapshot of one to three environments, with its findings."""
    envs = draw(st.lists(st.sampled_from(["e1", "e2", "e3"]), min_size=1, max_size=3, unique=True))
    tables: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for env in envs:
        for name, rows in draw(environment(env)).items():
            tables[name].extend(rows)
    findings = pd.DataFrame(tables.pop("findings", []))
    return make_snapshot(**tables), findings


def plan_world(snap: Snapshot, findings: pd.DataFrame, limit: int = 500) -> Any:
    groups = duplicate_groups(snap)
    proposals = propose(snap, groups)
    # The duplicate rule reports every member; members named r3 play "set aside by exclusion".
    reported = [
        _finding("duplicate", env, ref_id, {})
        for env, ref_id in zip(groups["environment_id"], groups["reference_id"], strict=True)
        if ref_id != "r3"
    ]
    findings = pd.concat([findings, pd.DataFrame(reported)], ignore_index=True)
    settings = PlanSettings(
        propose_renames=True,
        protected_patterns=("p_ref6",),
        max_actions_per_environment=limit,
    )
    plan = build_plan(
        snap,
        proposals,
        findings,
        settings,
        run_id="r",
        config_fingerprint="c",
        now=datetime(2026, 10, 20, tzinfo=UTC),
    )
    return proposals, plan


def rows_by_id(frame: pd.DataFrame, id_column: str) -> dict[tuple[str, str], dict[str, Any]]:
    frame = frame.astype(object).where(frame.notna(), None)
    return {(r["environment_id"], r[id_column]): r for r in frame.to_dict("records")}


@SETTINGS
@given(worlds())
def test_groups_partition_references_within_one_environment_and_connection(world: Any) -> None:
    snap, _findings = world
    groups = duplicate_groups(snap)
    assert not groups.duplicated(["environment_id", "reference_id"]).any()
    refs = rows_by_id(snap.references, "reference_id")
    for _gid, group in groups.groupby("group_id"):
        assert len(group) >= 2
        assert group["environment_id"].nunique() == 1
        env = group["environment_id"].iloc[0]
        rows = [refs[(env, r)] for r in group["reference_id"]]
        assert len({r["connector"].lower() for r in rows}) == 1
        connections = {r["connection_id"] for r in rows}
        if group["basis"].iloc[0] == BASIS_SAME_CONNECTION:
            assert len(connections) == 1 and None not in connections
        else:
            assert connections == {None}


@SETTINGS
@given(worlds())
def test_survivor_is_in_its_group_and_moves_lead_to_it(world: Any) -> None:
    snap, _findings = world
    groups = duplicate_groups(snap)
    proposals = propose(snap, groups)
    assert set(proposals.survivors["group_id"]) == set(groups["group_id"])
    group_members = groups.groupby("group_id")["reference_id"].agg(set).to_dict()
    survivor_of = dict(
        zip(proposals.survivors["group_id"], proposals.survivors["survivor_id"], strict=True)
    )
    for gid, survivor_id in survivor_of.items():
        assert survivor_id in group_members[gid]
    for move in proposals.moves.to_dict("records"):
        assert move["to_reference_id"] == survivor_of[move["group_id"]]
        assert move["from_reference_id"] in group_members[move["group_id"]]
        assert move["from_reference_id"] != move["to_reference_id"]
    for left in proposals.leftovers.to_dict("records"):
        assert left["reference_id"] in group_members[left["group_id"]]
        assert left["reference_id"] != survivor_of[left["group_id"]]


@SETTINGS
@given(worlds(), st.sampled_from([500, 3, 1]))
def test_plan_is_safe(world: Any, limit: int) -> None:
    snap, findings = world
    _proposals, plan = plan_world(snap, findings, limit)
    refs = rows_by_id(snap.references, "reference_id")
    flows = rows_by_id(snap.flows, "flow_id")
    statuses = dict(
        zip(snap.environments["environment_id"], snap.environments["status"], strict=True)
    )
    unreadable = set(snap.flows.loc[snap.flows["parse_status"] != "ok", "environment_id"])
    rewired = {
        (a.environment_id, a.flow_id, a.key): a.to_logical_name.lower()
        for a in plan.actions
        if isinstance(a, RewireFlowKey)
    }
    used_after = {
        (env, rewired.get((env, fid, key), (ln or "").lower()))
        for env, fid, key, ln in zip(
            snap.usages["environment_id"],
            snap.usages["flow_id"],
            snap.usages["key"],
            snap.usages["logical_name"],
            strict=True,
        )
    }
    seen: set[str] = set()
    per_env: dict[str, int] = defaultdict(int)
    for action in plan.actions:
        per_env[action.environment_id] += 1
        env = action.environment_id
        if isinstance(action, RewireFlowKey):
            assert flows[(env, action.flow_id)]["is_managed"] is False
            target = refs[(env, action.to_reference_id)]
            assert target["connection_id"], "rewire to an unbound reference"
            assert action.from_reference_id != "r3", "moves flows off a member set aside"
            source = refs[(env, action.from_reference_id)]
            assert source["logical_name"].lower() == action.from_logical_name.lower()
        else:
            row = refs[(env, action.reference_id)]
            assert row["is_managed"] is False, "action on a managed reference"
            assert row["logical_name"] != "p_ref6", "action on a protected reference"
            if action.kind == "delete-reference" and action.group_id:
                assert action.reference_id != "r3", "deletes a member set aside"
        if isinstance(action, DeleteReference):
            assert (env, action.logical_name.lower()) not in used_after, "deletes a used reference"
            assert statuses[env] == "complete" and env not in unreadable
            assert set(action.depends_on) <= seen, "a delete comes before its rewires"
        if isinstance(action, RenameReference):
            assert action.reference_id not in {
                a.reference_id
                for a in plan.actions
                if isinstance(a, DeleteReference) and a.environment_id == env
            }
        seen.add(action.action_id)
    assert all(count <= limit for count in per_env.values())
    assert len(seen) == len(plan.actions), "action ids are unique"


@SETTINGS
@given(worlds())
def test_plan_survives_its_file_format(world: Any) -> None:
    snap, findings = world
    _proposals, plan = plan_world(snap, findings)
    document = json.loads(json.dumps(plan.to_dict()))
    document["content_hash"] = compute_content_hash(document)
    assert plan_from_document(document) == plan


@SETTINGS
@given(worlds())
def test_saved_file_holds_the_document_and_its_hash(world: Any) -> None:
    snap, findings = world
    _proposals, plan = plan_world(snap, findings)
    with TemporaryDirectory() as folder:
        path = save_plan(plan, Path(folder) / "plan.json")
        document = json.loads(path.read_text(encoding="utf-8"))
        loaded = load_plan(path)
    assert document == {**plan.to_dict(), "content_hash": plan.content_hash}
    assert plan.content_hash == compute_content_hash(plan.to_dict())
    assert loaded == plan and loaded.content_hash == plan.content_hash


# --------------------------------------------------------------------------------------------
# The fast paths give what the plain ones give

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12) | st.sampled_from(
    ['W/"1"', "a\\b", "line\nbreak", "\x00\x1f\x7f", "HR – Dataverse – Ünïcode", "😀"]
)
OPTIONAL = st.none() | TEXT


@given(
    st.lists(TEXT, min_size=14, max_size=14),
    st.lists(OPTIONAL, min_size=8, max_size=8),
    st.lists(TEXT, max_size=3),
)
@settings(max_examples=300, deadline=None)
def test_action_templates_render_canonical_json(
    texts: list[str], optional: list[str | None], depends_on: list[str]
) -> None:
    flow_pre = FlowPreconditions(optional[0], optional[1], texts[0], texts[1])
    ref_pre = ReferencePreconditions(optional[2], optional[3], texts[2])
    actions = [
        RewireFlowKey(*texts[3:13], flow_pre),
        DeleteReference(
            texts[3],
            texts[4],
            texts[5],
            *optional[4:7],
            texts[6],
            optional[7],
            optional[0],
            tuple(depends_on),
            ref_pre,
        ),
        RenameReference(texts[3], texts[4], texts[5], optional[5], texts[13], ref_pre),
    ]
    for action in actions:
        assert action.canonical_body() == _canonical({"type": action.kind, **_as_json(action)})
        assert _action_text(action) == _canonical(action.to_dict())
    skipped = Skipped(*texts[:5])
    assert _skipped_text(skipped) == _canonical(_as_json(skipped))


@given(st.lists(OPTIONAL | st.booleans(), min_size=10, max_size=10))
@settings(max_examples=200, deadline=None)
def test_reference_hash_template_matches_the_plain_hash(values: list[Any]) -> None:
    row = dict(
        zip(
            sorted(REFERENCE_HASH_FIELDS),
            values,
            strict=True,
        )
    )
    assert _reference_hash_text(*values) == _canonical({k: _plain(v) for k, v in row.items()})
    assert reference_content_sha256(row)  # the plain path still takes any row


def test_templates_fall_back_for_values_they_do_not_know() -> None:
    pre = FlowPreconditions(None, None, "sha", "on")
    action = RewireFlowKey("e", "f", "n", 7, "r", None, "t", "tr", "d", "g", pre)  # type: ignore[arg-type]
    assert action.canonical_body() == _canonical({"type": action.kind, **_as_json(action)})


STAMPS = st.none() | st.datetimes(
    min_value=datetime(1700, 1, 1), max_value=datetime(2250, 1, 1)
).map(lambda d: d.replace(microsecond=d.microsecond if d.second % 2 else 0))


@given(st.lists(STAMPS, max_size=8), st.booleans(), st.sampled_from(["ns", "us", "s"]))
@settings(max_examples=200, deadline=None)
def test_column_values_are_what_plain_gives(
    stamps: list[datetime | None], aware: bool, unit: str
) -> None:
    series = pd.Series(pd.to_datetime(stamps), dtype=f"datetime64[{unit}]")
    if aware:
        series = series.dt.tz_localize("UTC").dt.tz_convert("Europe/Paris")
    if unit == "ns" and len(stamps) % 3 == 0:
        series = series + pd.Timedelta(nanoseconds=1)  # fractions below a microsecond
    expected = [_plain(v) for v in series.to_numpy(dtype=object)]
    assert _iso_values(series) == expected
    assert _plain_values(series) == expected
    text = pd.Series([None if s is None else str(s) for s in stamps], dtype="string")
    for shared in (False, True):
        assert _plain_values(text, shared=shared) == [_plain(v) for v in text]
    flags = pd.Series([None if s is None else s.second % 2 == 0 for s in stamps], dtype="boolean")
    assert _plain_values(flags) == [_plain(v) for v in flags]
