"""Hypothesis properties over random small snapshots: conformance, grounding, determinism."""

from __future__ import annotations

import json

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cleanup import schemas
from cleanup.rules import run_rules, unused_candidates
from cleanup.snapshot.dependencies import likely_unused

ENVS = ["env1", "env2"]
CONNECTORS = ["shared_commondataserviceforapps", "shared_sharepointonline"]
LOGICAL = ["new_a", "new_b", "admin_CoE", "new_sharedcommondataserviceforapps_1a2b3"]
NAMES = st.one_of(
    st.none(),
    st.sampled_from(["HR – Dataverse – User", "Microsoft Dataverse x-1a2b3", "<script>"]),
    st.text(max_size=30),
)


def draw_snapshot(b, data):
    """Draw a small random snapshot of two environments, dependency checks for candidates."""
    draw = data.draw
    envs = [
        b.env(
            e,
            status=draw(st.sampled_from(["complete", "complete", "incomplete"])),
            sku=draw(st.sampled_from(["Production", "Sandbox"])),
        )
        for e in ENVS
    ]
    conns = [
        b.conn(
            f"c{i}",
            env=e,
            identity=draw(st.sampled_from(["user", "service-principal", "unknown"])),
            status=draw(st.sampled_from(["Connected", "Error"])),
            connector=draw(st.sampled_from(CONNECTORS)),
        )
        for e in ENVS
        for i in range(draw(st.integers(0, 3)))
    ]
    refs = []
    for i in range(draw(st.integers(0, 8))):
        e = draw(st.sampled_from(ENVS))
        refs.append(
            b.ref(
                f"r{i}",
                draw(st.sampled_from(LOGICAL)) + str(i % 3),
                draw(NAMES),
                env=e,
                connector=draw(st.sampled_from(CONNECTORS)),
                is_managed=draw(st.booleans()),
                connection_id=draw(st.sampled_from([None, "c0", "c1", "C1", "c9"])),
            )
        )
    flows = [
        b.flow(
            f"f{i}",
            env=draw(st.sampled_from(ENVS)),
            state=draw(st.sampled_from([0, 1])),
            parse_status=draw(st.sampled_from(["ok", "ok", "ok", "invalid-json", "empty"])),
        )
        for i in range(draw(st.integers(0, 5)))
    ]
    usages = [
        b.use(
            f["flow_id"],
            draw(st.sampled_from(LOGICAL)).upper() + str(draw(st.integers(0, 2))),
            env=f["environment_id"],
        )
        for f in flows
        for _ in range(draw(st.integers(0, 2)))
    ]
    sols = [
        b.solution(s, s, env=e, is_managed=draw(st.booleans()))
        for e in ENVS
        for s in ("s1", "s2", "Default")
    ]
    objects = [(r["reference_id"], "reference", r["environment_id"]) for r in refs]
    objects += [(f["flow_id"], "flow", f["environment_id"]) for f in flows]
    members = [
        b.member(draw(st.sampled_from(["s1", "s2", "Default"])), oid, kind, env=e)
        for oid, kind, e in objects
        if draw(st.booleans())
    ]
    snap = b.snapshot(
        environments=envs,
        connections=conns,
        references=refs,
        flows=flows,
        usages=usages,
        solutions=sols,
        solution_components=members,
    )
    cands = unused_candidates(snap)
    checks = [
        b.dep(ref_id, draw(st.sampled_from([0, 0, 1, None])), checked=draw(st.booleans()), env=e)
        for e, ref_id in cands.itertuples(index=False)
    ]
    return b.snapshot(
        environments=envs,
        connections=conns,
        references=refs,
        flows=flows,
        usages=usages,
        solutions=sols,
        solution_components=members,
        dependency_checks=checks,
    )


SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(data=st.data())
def test_invariants_of_the_findings(build, data) -> None:
    """Conforming rows about known objects; unused only where usage is known; no cross-env group."""
    snap = draw_snapshot(build, data)
    found = run_rules(snap)
    _conform_and_grounded(found, snap)
    _unused_only_where_known(found, snap)
    dup = found.loc[found["rule"].eq("duplicate")]
    assert (dup.groupby("group_id")["environment_id"].nunique() == 1).all()


def _conform_and_grounded(found: pd.DataFrame, snap) -> None:
    assert list(found.columns) == list(schemas.FINDINGS)
    assert {c: str(t) for c, t in found.dtypes.items()} == dict(schemas.FINDINGS)
    assert found["severity"].isin(["info", "low", "medium", "high"]).all()
    refs, envs = snap.references, snap.environments["environment_id"]
    known = {
        "reference": set(zip(refs["environment_id"], refs["reference_id"], strict=True)),
        "environment": set(zip(envs, envs, strict=True)),
    }
    for row in found.itertuples():
        assert (row.environment_id, row.object_id) in known[row.object_type]
        assert isinstance(json.loads(row.extra), dict)
        assert row.detail and row.suggested_fix


def _unused_only_where_known(found: pd.DataFrame, snap) -> None:
    unused = found.loc[found["rule"].eq("unused")]
    complete = snap.complete_environments()
    bad_flow_envs = set(snap.flows.loc[snap.flows["parse_status"].ne("ok"), "environment_id"])
    assert set(unused["environment_id"]) <= complete - bad_flow_envs
    used = {
        (e, ln.lower())
        for e, ln in zip(snap.usages["environment_id"], snap.usages["logical_name"], strict=True)
    }
    for row in unused.itertuples():
        assert (row.environment_id, row.logical_name.lower()) not in used


@SETTINGS
@given(data=st.data())
def test_rules_are_deterministic_whatever_the_row_order(build, data) -> None:
    snap = draw_snapshot(build, data)
    first = run_rules(snap)
    shuffled = type(snap).from_tables(
        {name: t.sample(frac=1, random_state=7) for name, t in snap.tables().items()},
        snap.metadata,
    )
    pd.testing.assert_frame_equal(first, run_rules(shuffled))


@SETTINGS
@given(data=st.data())
def test_early_dependency_guess_is_the_unused_candidates(build, data) -> None:
    """What the snapshot asks about as each environment finishes is what the rule names."""
    snap = draw_snapshot(build, data)
    stored = data.draw(st.booleans())  # flows and usages reused from a stored night, or read
    guessed = set()
    for env_row in _plain_rows(snap.environments):
        env_id = env_row["environment_id"]
        mine = {
            name: frame.loc[frame["environment_id"].eq(env_id).fillna(False)]
            for name, frame in snap.tables().items()
        }
        rows = {"references": _plain_rows(mine["references"])}
        frames = {}
        if stored:
            frames = {"flows": mine["flows"], "usages": mine["usages"]}
        else:
            rows.update(flows=_plain_rows(mine["flows"]), usages=_plain_rows(mine["usages"]))
        guessed |= {(env_id, ref_id) for ref_id in likely_unused(env_row, rows, frames)}
    assert guessed == set(unused_candidates(snap).itertuples(index=False, name=None))


def _plain_rows(frame: pd.DataFrame) -> list[dict]:
    """Rows as the snapshot's readers make them: None for a missing value."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")
