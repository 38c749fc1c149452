"""The plan at a size where its whole-column paths run: same plan, streamed file, no surprises.

Below a couple of thousand keys the plan looks rows up one by one; above, a column at a time.
These tests build a tenant big enough for the second way and hold it to the first.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from test_consolidate import conn, duplicate_groups, flow, make_snapshot, ref, use

import cleanup.plan as plan_module
from cleanup.consolidate import propose
from cleanup.plan import (
    DeleteReference,
    Plan,
    PlanSettings,
    RewireFlowKey,
    build_plan,
    describe,
    ensure_safe,
    load_plan,
    save_plan,
)
from cleanup.snapshot.model import Snapshot

ENVS = ("env-a", "env-b", "env-c")
REFERENCES = 12  # per environment, all on one connection: one duplicate group each
FLOWS = 900  # per environment; the same flow ids in every environment
NOW = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)


def tenant() -> Snapshot:
    """Three environments, each with a duplicate group whose leftovers 900 flows use."""
    tables: dict[str, list[dict[str, Any]]] = {
        "references": [],
        "connections": [],
        "flows": [],
        "usages": [],
    }
    for e, env in enumerate(ENVS):
        tables["connections"].append(conn("c1", env=env))
        for r in range(REFERENCES):
            tables["references"].append(
                ref(
                    f"{env}-r{r}",
                    env=env,
                    connection_id="c1",
                    logical_name=f"new_shared_{r}",
                    display_name="HR – Dataverse – Service Principal" if r == 0 else f'"r{r}"',
                    is_managed=(r == 5 and e == 1),
                )
            )
        for f in range(FLOWS):
            fid = f"f{f}"
            tables["flows"].append(
                flow(
                    fid,
                    env=env,
                    name=f"Flow {f} – ünïcode",
                    state=f % 3,
                    is_managed=f % 97 == 0,
                    modified_on=f"2024-07-01T00:00:{f % 60:02d}.{f:03d}Z",
                )
            )
            tables["usages"].append(
                use(fid, "shared_x", f"new_shared_{1 + f % (REFERENCES - 1)}", env=env)
            )
            if f % 7 == 0:
                tables["usages"].append(
                    use(fid, "shared_x_2", f"NEW_SHARED_{f % REFERENCES}", env=env)
                )
    return make_snapshot(**tables)


@pytest.fixture(scope="module")
def world() -> tuple[Snapshot, Any]:
    snap = tenant()
    proposals = propose(
        snap,
        duplicate_groups(snap),
        name_is_compliant=lambda row: row["reference_id"].endswith("-r0"),
    )
    return snap, proposals


def plan_of(world: tuple[Snapshot, Any]) -> Plan:
    snap, proposals = world
    settings = PlanSettings(max_actions_per_environment=5000)
    return build_plan(
        snap, proposals, None, settings, run_id="scale", config_fingerprint="cfg", now=NOW
    )


def test_column_lookups_give_the_plan_row_lookups_give(
    world: tuple[Snapshot, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = plan_of(world)
    rewires = [a for a in plan.actions if isinstance(a, RewireFlowKey)]
    assert len(rewires) > plan_module._FEW  # the whole-column paths ran
    monkeypatch.setattr(plan_module, "_FEW", 10**9)
    one_by_one = plan_of(world)
    assert one_by_one == plan
    assert one_by_one.content_hash == plan.content_hash


def test_the_plan_at_scale_is_safe_and_consistent(world: tuple[Snapshot, Any]) -> None:
    plan = plan_of(world)
    snap, _ = world
    ensure_safe(plan, snap, PlanSettings(max_actions_per_environment=5000))
    ids = [a.action_id for a in plan.actions]
    assert len(set(ids)) == len(ids)
    deletes = [a for a in plan.actions if isinstance(a, DeleteReference)]
    assert deletes and all(set(d.depends_on) <= set(ids) for d in deletes)
    managed = {(s.environment_id, s.object_id) for s in plan.skipped if "managed" in s.reason}
    assert ("env-a", "f0/shared_x") in managed  # flow f0 is managed
    states = {a.preconditions.state for a in plan.actions if isinstance(a, RewireFlowKey)}
    assert states == {"off", "on", "suspended"}
    stamp = next(a for a in plan.actions if isinstance(a, RewireFlowKey) and a.flow_id == "f61")
    assert stamp.preconditions.modified_on == "2024-07-01T00:00:01.061000+00:00"


def test_save_streams_the_file(
    world: tuple[Snapshot, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = plan_of(world)
    monkeypatch.setattr(plan_module, "_BATCH", 100)
    out = io.BytesIO()
    writes: list[int] = []
    write = out.write

    def counted(data: bytes) -> int:
        writes.append(len(data))
        return write(data)

    out.write = counted  # type: ignore[method-assign]
    digest = plan_module._stream_plan(plan, out)
    assert digest == plan.content_hash
    assert max(writes) < sum(writes) / 20  # in pieces, never the whole document at once
    path = save_plan(plan, tmp_path / "plan.json")
    assert path.read_bytes() == out.getvalue()
    assert json.loads(out.getvalue())["content_hash"] == digest


def test_load_and_describe_at_scale(world: tuple[Snapshot, Any], tmp_path: Path) -> None:
    plan = plan_of(world)
    loaded = load_plan(save_plan(plan, tmp_path / "plan.json"))
    assert loaded == plan
    lines = describe(loaded)
    assert len(lines) == 1 + len(ENVS) + len(plan.actions) + len(plan.skipped) + 1
    assert lines[-1].startswith("Total: would rewire ")
