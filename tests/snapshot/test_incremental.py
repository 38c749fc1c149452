"""Incremental nights against the simulator: equal to a full read, at a fraction of the bytes."""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path
from urllib.parse import unquote

import pandas as pd
import pytest

from cleanup.clients.platform import build_clients
from cleanup.errors import ConfigError
from cleanup.simulator.faults import FaultRule
from cleanup.simulator.generator import generate_tenant
from cleanup.simulator.messages import utc_now_iso
from cleanup.simulator.tenant import Flow
from cleanup.snapshot.collect import take_snapshot
from cleanup.snapshot.incremental import SnapshotSettings, _full_read_is_cheaper
from cleanup.snapshot.model import Snapshot
from cleanup.snapshot.store import load_snapshot, new_run_folder, save_snapshot
from tests.conftest import settings_for

VOLATILE = {"requests", "seconds"}


def night(sim, runs: Path, **kwargs) -> tuple[Snapshot, list]:
    """One snapshot saved into a new run folder under ``runs``; returns it and its requests."""
    clients = build_clients(settings_for(sim, runs))
    folder = new_run_folder(runs)
    before = len(sim.request_log)
    snapshot = take_snapshot(clients, run_id=folder.name, **kwargs)
    save_snapshot(snapshot, folder)
    return snapshot, [r for r in sim.request_log[before:] if r.service != "identity"]


def comparable(snapshot: Snapshot) -> dict[str, pd.DataFrame]:
    out = {}
    for name, frame in snapshot.tables().items():
        cols = [c for c in frame.columns if c not in VOLATILE]
        out[name] = frame[cols].astype(str).sort_values(cols).reset_index(drop=True)
    return out


def assert_same_tables(one: Snapshot, two: Snapshot) -> None:
    a, b = comparable(one), comparable(two)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], obj=name)


def cloud(env) -> list[Flow]:
    return [f for f in env.flows if f.category == 5 and f.type == 1]


def modes(snapshot: Snapshot) -> dict[str, str]:
    return {k: v.get("mode") for k, v in snapshot.metadata["environments"].items() if "mode" in v}


def touch(flow: Flow, clientdata: str | None = None, *, modified_on: str | None = None) -> None:
    """Change a flow the way Dataverse records a write: new version, new modifiedon."""
    if clientdata is not None:
        flow.clientdata = clientdata
    flow.modified_on = modified_on or utc_now_iso()
    flow.version += 1


def mutate(tenant, rng: random.Random) -> tuple[dict[str, int], set[str]]:
    """Random changes, additions, deletions and state switches in every environment.

    Returns the counts and the ids of the flows a night must fetch again (touched, still there).
    """
    counts = {"changed": 0, "added": 0, "deleted": 0, "switched": 0}
    touched: set[str] = set()
    for env in tenant.environments:
        flows = cloud(env)
        if not env.has_dataverse or len(flows) < 4:
            continue
        for flow in rng.sample(flows, rng.randint(1, 3)):
            touch(flow, rng.choice(flows).clientdata)
            touched.add(flow.id)
            counts["changed"] += 1
        victim = rng.choice(flows)
        env.flows.remove(victim)
        touched.discard(victim.id)
        counts["deleted"] += 1
        switch = rng.choice(cloud(env))
        switch.state, switch.status = (0, 1) if switch.state == 1 else (1, 2)
        touch(switch)
        touched.add(switch.id)
        counts["switched"] += 1
        donor = rng.choice(cloud(env))
        new = Flow(
            id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            name=f"{donor.name} (new)",
            clientdata=donor.clientdata,
            owner_id=donor.owner_id,
            created_on=utc_now_iso(),
            modified_on=utc_now_iso(),
            version=1,
        )
        env.flows.append(new)
        touched.add(new.id)
        counts["added"] += 1
    return counts, touched


@pytest.fixture
def tenant():
    return generate_tenant(seed=23, environments=4, flows_per_environment=24)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_incremental_night_equals_a_full_read(start_simulator, secret_env, tmp_path, tenant, seed):
    sim = start_simulator(tenant)
    runs = tmp_path / "runs"
    first, _ = night(sim, runs)
    assert set(modes(first).values()) == {"full"}
    counts, touched = mutate(tenant, random.Random(seed))
    second, requests = night(sim, runs)
    full, _ = night(sim, runs, full=True)
    assert set(modes(second).values()) == {"incremental"}
    assert set(modes(full).values()) == {"full"}
    assert_same_tables(second, full)
    meta = second.metadata["environments"]
    readable = [e for e in tenant.environments if e.has_dataverse and e.readable]
    assert sum(meta[e.id]["flows_deleted"] for e in readable) == counts["deleted"]
    assert sum(meta[e.id]["flows_fetched"] for e in readable) == len(touched)
    # One id listing and one fetch of the changed flows per environment: no request per flow.
    workflows = [r for r in requests if r.table == "workflows"]
    assert len(workflows) == 2 * len(readable)
    assert all(r.method == "GET" for r in requests)


def test_second_night_moves_a_fraction_of_the_bytes(start_simulator, secret_env, tmp_path):
    tenant = generate_tenant(
        seed=5, environments=2, flows_per_environment=60, clientdata_size="realistic"
    )
    sim = start_simulator(tenant)
    runs = tmp_path / "runs"
    first, first_requests = night(sim, runs)
    env = tenant.environments[0]
    touch(cloud(env)[0], cloud(env)[1].clientdata)
    second, requests = night(sim, runs)
    full, _ = night(sim, runs, full=True)
    assert_same_tables(second, full)
    flow_bytes = sum(r.bytes_sent for r in first_requests if r.table == "workflows")
    again = sum(r.bytes_sent for r in requests if r.table == "workflows")
    assert again < flow_bytes / 10
    info = second.metadata["environments"]
    assert info[env.id]["flows_fetched"] == 1
    assert info[tenant.environments[1].id]["flows_fetched"] == 0
    # The unchanged environment costs its id listing only: no fetch at all.
    other = [
        r
        for r in requests
        if r.table == "workflows" and r.environment_id == tenant.environments[1].id
    ]
    assert len(other) == 1 and "clientdata" not in unquote(other[0].query)


def test_change_in_the_same_second_as_the_watermark_is_caught(
    start_simulator, secret_env, tmp_path, tenant
):
    # 'modifiedon gt <watermark>' cannot see a write in the watermark's own second; the ETag can.
    sim = start_simulator(tenant)
    runs = tmp_path / "runs"
    first, _ = night(sim, runs)
    env = tenant.environments[0]
    flows = cloud(env)
    watermark = max(f.modified_on for f in flows)
    victim = min(flows, key=lambda f: f.modified_on)
    touch(victim, flows[-1].clientdata, modified_on=watermark)
    second, requests = night(sim, runs)
    full, _ = night(sim, runs, full=True)
    assert_same_tables(second, full)
    by_id = [r for r in requests if r.table == "workflows" and "workflowid eq" in unquote(r.query)]
    assert len(by_id) == 1


def test_flow_whose_stored_row_is_missing_is_read_again(
    start_simulator, secret_env, tmp_path, tenant
):
    sim = start_simulator(tenant)
    runs = tmp_path / "runs"
    first, _ = night(sim, runs)
    folder = sorted(runs.iterdir())[-1] / "snapshot"
    flows = pd.read_parquet(folder / "flows.parquet")
    lost = flows.iloc[3]
    flows.drop(index=3).to_parquet(folder / "flows.parquet", index=False)
    second, _ = night(sim, runs)
    full, _ = night(sim, runs, full=True)
    assert_same_tables(second, full)
    assert second.metadata["environments"][lost["environment_id"]]["flows_fetched"] == 1


def test_incomplete_previous_snapshot_means_a_full_read(
    start_simulator, secret_env, tmp_path, tenant
):
    sim = start_simulator(tenant)
    runs = tmp_path / "runs"
    victim = tenant.environments[1]
    rule = FaultRule(service="dataverse", environment_id=victim.id, path="/teams$", status=403)
    sim.faults.rules.append(rule)
    first, _ = night(sim, runs)
    assert first.environments.set_index("environment_id").at[victim.id, "status"] == "incomplete"
    sim.faults.rules.clear()
    second, _ = night(sim, runs)
    info = second.metadata["environments"][victim.id]
    assert info["mode"] == "full" and "incomplete" in info["full_reason"]
    others = {k: v for k, v in modes(second).items() if k != victim.id}
    assert set(others.values()) == {"incremental"}


def test_full_refresh_every_n_nights_and_on_demand(start_simulator, secret_env, tmp_path, tenant):
    sim = start_simulator(tenant)
    runs = tmp_path / "runs"
    every3 = SnapshotSettings(full_refresh_every=3)
    seen = []
    for _ in range(5):
        snapshot, _ = night(sim, runs, snapshot_settings=every3)
        seen.append(set(modes(snapshot).values()))
    assert seen == [{"full"}, {"incremental"}, {"incremental"}, {"full"}, {"incremental"}]
    forced, _ = night(sim, runs, full=True, snapshot_settings=every3)
    assert {v["full_reason"] for v in forced.metadata["environments"].values() if "mode" in v} == {
        "full read requested"
    }
    off, _ = night(sim, runs, snapshot_settings=SnapshotSettings(incremental=False))
    assert set(modes(off).values()) == {"full"}


def test_other_tool_version_means_a_full_read(start_simulator, secret_env, tmp_path, tenant):
    sim = start_simulator(tenant)
    runs = tmp_path / "runs"
    night(sim, runs)
    meta_path = sorted(runs.iterdir())[-1] / "snapshot" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["tool_version"] = "0.0.1"
    meta_path.write_text(json.dumps(meta))
    second, _ = night(sim, runs)
    reasons = {
        v.get("full_reason") for v in second.metadata["environments"].values() if "mode" in v
    }
    assert reasons == {"its last snapshot was taken by version 0.0.1"}


def test_environment_that_lost_every_flow(start_simulator, secret_env, tmp_path, tenant):
    sim = start_simulator(tenant)
    runs = tmp_path / "runs"
    night(sim, runs)
    env = tenant.environments[0]
    env.flows = [f for f in env.flows if not (f.category == 5 and f.type == 1)]
    second, _ = night(sim, runs)
    full, _ = night(sim, runs, full=True)
    assert_same_tables(second, full)
    assert second.metadata["environments"][env.id]["flows_deleted"] == 24
    assert (second.flows["environment_id"] == env.id).sum() == 0


def test_saved_incremental_snapshot_loads_like_a_full_one(
    start_simulator, secret_env, tmp_path, tenant
):
    sim = start_simulator(tenant)
    runs = tmp_path / "runs"
    night(sim, runs)
    mutate(tenant, random.Random(9))
    second, _ = night(sim, runs)
    loaded = load_snapshot(sorted(runs.iterdir())[-1])
    assert_same_tables(second, loaded)


def test_settings_are_validated():
    with pytest.raises(ConfigError, match="full_refresh_every"):
        SnapshotSettings(full_refresh_every=0)


@pytest.mark.parametrize(
    ("total", "recent", "old", "page", "cheaper"),
    [
        (500, 5, 0, 5000, False),  # one delta page against one full page: same count, fewer bytes
        (500, 0, 120, 5000, True),  # three id chunks against one full page
        (20000, 10, 40, 5000, False),
        (20000, 10, 400, 5000, True),
    ],
)
def test_full_read_is_chosen_when_it_costs_fewer_requests(total, recent, old, page, cheaper):
    assert _full_read_is_cheaper(total, recent, old, page) is cheaper
