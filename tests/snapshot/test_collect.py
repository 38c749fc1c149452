"""The real clients against the simulator over HTTPS with real msal tokens."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cleanup.clients.platform import build_clients
from cleanup.errors import ReadOnlyViolation
from cleanup.pipeline import EXIT_PARTIAL, run_snapshot
from cleanup.simulator.demo import demo_tenant
from cleanup.simulator.faults import FaultRule
from cleanup.simulator.generator import generate_tenant
from cleanup.snapshot import collect
from cleanup.snapshot.collect import InOrder, take_snapshot
from cleanup.snapshot.model import Snapshot
from cleanup.snapshot.store import load_snapshot
from tests.conftest import settings_for

VOLATILE = {"requests", "seconds"}


def cloud_flows(env):
    return [f for f in env.flows if f.category == 5 and f.type == 1]


def comparable(snapshot: Snapshot) -> dict[str, pd.DataFrame]:
    """Tables without the columns that legitimately differ between two runs."""
    out = {}
    for name, frame in snapshot.tables().items():
        keep = [c for c in frame.columns if c not in VOLATILE]
        out[name] = frame[keep].sort_values(keep[:3]).reset_index(drop=True)
    return out


def assert_same_tables(one: Snapshot, two: Snapshot) -> None:
    a, b = comparable(one), comparable(two)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], obj=name)


def snap(sim, tmp_path: Path, **http) -> Snapshot:
    clients = build_clients(settings_for(sim, tmp_path, **http))
    return take_snapshot(clients, run_id="test")


@pytest.fixture
def small_tenant():
    return generate_tenant(seed=7, environments=3, flows_per_environment=12)


def test_snapshot_matches_the_tenant(start_simulator, secret_env, tmp_path, small_tenant):
    sim = start_simulator(small_tenant)
    snapshot = snap(sim, tmp_path)
    for env in small_tenant.environments:
        row = snapshot.environments.set_index("environment_id").loc[env.id]
        if not env.has_dataverse:
            assert row["status"] == "skipped"
            continue
        if not env.readable:
            assert row["status"] == "incomplete"
            continue
        assert row["status"] == "complete", row["status_reason"]
        refs = snapshot.references[snapshot.references["environment_id"] == env.id]
        flows = snapshot.flows[snapshot.flows["environment_id"] == env.id]
        conns = snapshot.connections[snapshot.connections["environment_id"] == env.id]
        assert set(refs["reference_id"]) == {r.id for r in env.references}
        assert set(flows["flow_id"]) == {f.id for f in cloud_flows(env)}
        assert set(conns["connection_id"]) == {c.name for c in env.connections}
        owners = snapshot.owners[snapshot.owners["environment_id"] == env.id]
        assert set(owners["owner_id"]) == {u.id for u in env.users} | {t.id for t in env.teams}
    assert snapshot.metadata["requests"]["total"] == len(
        [r for r in sim.request_log if r.service != "identity"]
    )


def test_tiny_pages_give_the_same_snapshot(start_simulator, secret_env, tmp_path, small_tenant):
    sim = start_simulator(small_tenant)
    big = snap(sim, tmp_path)
    sim.reset_log()
    tiny = snap(sim, tmp_path, page_size=2)
    assert_same_tables(big, tiny)
    flow_pages = [r for r in sim.request_log if r.table == "workflows"]
    expected = sum(
        max(1, -(-len(cloud_flows(e)) // 2))
        for e in small_tenant.environments
        if e.has_dataverse and e.readable
    )
    assert len(flow_pages) == expected  # exactly one request per page: the paging lower bound


def test_429_storm_slows_down_but_loses_nothing(
    start_simulator, secret_env, tmp_path, small_tenant
):
    sim = start_simulator(small_tenant)
    clean = snap(sim, tmp_path)
    sim.faults.rules.append(FaultRule(service="dataverse", status=429, retry_after=0.01, times=40))
    stormy = snap(sim, tmp_path)
    assert_same_tables(clean, stormy)
    assert stormy.metadata["requests"]["throttled"] == 40
    assert stormy.metadata["complete"] is True


def test_transient_5xx_on_page_3_is_invisible(start_simulator, secret_env, tmp_path, small_tenant):
    sim = start_simulator(small_tenant)
    clean = snap(sim, tmp_path, page_size=2)
    sim.faults.rules.append(FaultRule(service="dataverse", path="/workflows$", page=3, status=503))
    sim.faults.rules[-1].times = 1
    faulty = snap(sim, tmp_path, page_size=2)
    assert sim.faults.rules[-1].hits == 1
    assert_same_tables(clean, faulty)


def test_persistent_5xx_marks_only_that_environment_incomplete(
    start_simulator, secret_env, tmp_path, small_tenant
):
    sim = start_simulator(small_tenant)
    victim = next(e for e in small_tenant.environments if e.has_dataverse and e.readable)
    sim.faults.rules.append(
        FaultRule(service="dataverse", environment_id=victim.id, path="/workflows$", status=500)
    )
    snapshot = snap(sim, tmp_path, max_retries=2, backoff_base_seconds=0.01)
    status = snapshot.environments.set_index("environment_id")["status"]
    assert status[victim.id] == "incomplete"
    reason = snapshot.environments.set_index("environment_id").at[victim.id, "status_reason"]
    assert "flows:" in reason and "HTTP 500" in reason
    others = [e for e in small_tenant.environments if e.id != victim.id and e.readable]
    assert all(status[e.id] in ("complete", "skipped") for e in others)
    assert snapshot.metadata["complete"] is False


def test_page_that_is_not_json_makes_the_environment_incomplete(
    start_simulator, secret_env, tmp_path, small_tenant
):
    sim = start_simulator(small_tenant)
    victim = next(e for e in small_tenant.environments if e.has_dataverse and e.readable)
    sim.faults.rules.append(
        FaultRule(
            service="dataverse",
            environment_id=victim.id,
            path="/connectionreferences$",
            status=200,
            body="{not json",
        )
    )
    snapshot = snap(sim, tmp_path)
    row = snapshot.environments.set_index("environment_id").loc[victim.id]
    assert row["status"] == "incomplete"
    assert "not valid JSON" in row["status_reason"]


def test_token_expiry_mid_run_is_survived(start_simulator, secret_env, tmp_path, small_tenant):
    sim = start_simulator(small_tenant, latency_ms=5)
    clean = snap(sim, tmp_path, page_size=2)
    sim.reset_log()
    stop = threading.Event()

    def expire_when_busy() -> None:
        while not stop.is_set():
            if sum(1 for r in sim.request_log if r.service == "dataverse") >= 10:
                sim.expire_all_tokens()
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=expire_when_busy)
    watcher.start()
    try:
        again = snap(sim, tmp_path, page_size=2)
    finally:
        stop.set()
        watcher.join()
    assert any(r.status == 401 for r in sim.request_log), "the token was never rejected"
    assert_same_tables(clean, again)


def test_demo_snapshot_run_folder(start_simulator, secret_env, tmp_path):
    tenant = demo_tenant()
    sim = start_simulator(tenant)
    result = run_snapshot(settings_for(sim, tmp_path / "runs"))
    envs = result.snapshot.environments.set_index("environment_id")
    no_dv = [e for e in tenant.environments if not e.has_dataverse]
    unreadable = [e for e in tenant.environments if not e.readable and e.has_dataverse]
    assert no_dv and unreadable, "the demo tenant must show both cases"
    for env in no_dv:
        assert envs.at[env.id, "status"] == "skipped"
        assert "no Dataverse" in envs.at[env.id, "status_reason"]
    for env in unreadable:
        assert envs.at[env.id, "status"] == "incomplete"
        assert "access denied (HTTP 403" in envs.at[env.id, "status_reason"]
    assert result.exit_code == EXIT_PARTIAL
    loaded = load_snapshot(result.folder)
    assert_same_tables(result.snapshot, loaded)
    meta = json.loads((result.folder / "snapshot" / "metadata.json").read_text())
    assert meta["config_fingerprint"] and meta["tool_version"]
    assert set(meta["environments"]) == {e.id for e in tenant.environments}


def test_read_only_run_sends_no_write(start_simulator, secret_env, tmp_path, small_tenant):
    sim = start_simulator(small_tenant)
    clients = build_clients(settings_for(sim, tmp_path))
    take_snapshot(clients, run_id="test")
    methods = {r.method for r in sim.request_log if r.service != "identity"}
    assert methods == {"GET"}
    before = len(sim.request_log)
    env = next(e for e in small_tenant.environments if e.has_dataverse and e.readable)
    dv = clients.dataverse(sim.instance_url(env), env.id)
    with pytest.raises(ReadOnlyViolation, match="read-only"):
        dv.http.send(
            "DELETE", dv.api + f"connectionreferences({env.references[0].id})", scope=dv.scope
        )
    assert len(sim.request_log) == before  # refused before anything left the process


def test_canary_secret_never_appears(start_simulator, monkeypatch, tmp_path, caplog, capfd):
    canary = "CANARY-7c1f0e-never-log-me"
    monkeypatch.setenv("CONNREF_TEST_SECRET", canary)
    tenant = demo_tenant()
    sim = start_simulator(tenant, client_secret=canary)
    caplog.set_level(logging.DEBUG)
    result = run_snapshot(settings_for(sim, tmp_path / "runs"))
    assert result.snapshot.metadata["requests"]["total"] > 0
    out, err = capfd.readouterr()
    assert canary not in out + err
    assert canary not in caplog.text
    for path in result.folder.rglob("*"):
        if path.is_file():
            assert canary.encode() not in path.read_bytes(), path


@given(
    order=st.permutations(range(12)),
    weights=st.lists(st.integers(0, 5), min_size=12, max_size=12),
    limit=st.integers(0, 70),
)
def test_in_order_hands_on_every_item_once_and_in_order_when_it_can(order, weights, limit):
    buffer = InOrder(limit, weight=lambda item: weights[item])
    out = []
    for index in order:
        out.extend(buffer.add(index, index))
        held = sum(weights[i] for i in buffer._held)
        assert held <= limit, "a slow item must not hold back more than the limit"
    assert sorted(out) == list(range(12))
    if limit >= sum(weights):  # room for everything that can come early: the order is exact
        assert out == list(range(12))


def test_rows_arrive_in_environment_order_without_sorting(
    start_simulator, secret_env, tmp_path, small_tenant, monkeypatch
):
    arrived_sorted = []
    real = collect._in_order

    def recording(frame, order):
        if not frame.empty:
            arrived_sorted.append(frame["environment_id"].map(order).is_monotonic_increasing)
        return real(frame, order)

    monkeypatch.setattr(collect, "_in_order", recording)
    sim = start_simulator(small_tenant)
    first = next(e for e in small_tenant.environments if e.has_dataverse and e.readable)
    # The first environment finishes last: its rows must still come first.
    delay = FaultRule(service="dataverse", environment_id=first.id, path="/workflows$")
    sim.faults.rules.append(dataclasses.replace(delay, delay_seconds=0.5))
    snap(sim, tmp_path)
    assert arrived_sorted and all(arrived_sorted), "no table needed a reordering take"
