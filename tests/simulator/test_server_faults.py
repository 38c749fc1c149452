"""Fault injection, service protection limits and the request log."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import requests
from test_server_support import ENV_A, SECRET, build_tenant, dv_session, flow_id, ref_id

from cleanup.simulator.faults import FaultRule
from cleanup.simulator.server import Simulator


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(build_tenant(), client_secret=SECRET) as running:
        yield running
        assert running.internal_errors == []


def test_429_with_retry_after_then_success(sim: Simulator) -> None:
    session, api = dv_session(sim)
    sim.faults.rules.append(
        FaultRule(service="dataverse", path=r"/workflows$", status=429, retry_after=2, times=1)
    )
    throttled = session.get(f"{api}workflows", timeout=10)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "2"
    assert throttled.json()["error"]["code"] == "0x80072322"
    assert session.get(f"{api}workflows", timeout=10).status_code == 200
    assert [r.status for r in sim.request_log if r.table == "workflows"] == [429, 200]


def test_page_three_fails_once_and_the_same_next_link_then_works(sim: Simulator) -> None:
    session, api = dv_session(sim)
    sim.faults.rules.append(
        FaultRule(service="dataverse", environment_id=ENV_A, page=3, status=503, times=1)
    )
    prefer = {"Prefer": "odata.maxpagesize=2"}
    url: str | None = f"{api}connectionreferences"
    seen: list[str] = []
    failures = 0
    while url:
        response = session.get(url, headers=prefer, timeout=10)
        if response.status_code == 503:
            failures += 1
            continue  # retry the same nextLink unchanged
        seen += [r["connectionreferenceid"] for r in response.json()["value"]]
        url = response.json().get("@odata.nextLink")
    assert failures == 1 and len(seen) == len(set(seen)) == 6


def test_damaged_body_with_200(sim: Simulator) -> None:
    session, api = dv_session(sim)
    sim.faults.rules.append(
        FaultRule(service="dataverse", path="workflows", status=200, body="{not json", times=1)
    )
    response = session.get(f"{api}workflows", timeout=10)
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()


def test_after_processing_applies_the_write_then_fails(sim: Simulator) -> None:
    session, api = dv_session(sim)
    sim.faults.rules.append(
        FaultRule(service="dataverse", method="PATCH", status=500, after_processing=True, times=1)
    )
    url = f"{api}connectionreferences({ref_id(6)})"
    response = session.patch(url, json={"description": "applied"}, timeout=10)
    assert response.status_code == 500
    assert session.get(url, timeout=10).json()["description"] == "applied"


def test_delay_provokes_a_client_timeout(sim: Simulator) -> None:
    session, api = dv_session(sim)
    sim.faults.rules.append(FaultRule(service="dataverse", delay_seconds=0.5, times=1))
    with pytest.raises(requests.exceptions.ReadTimeout):
        session.get(f"{api}WhoAmI", timeout=0.2)
    assert session.get(f"{api}WhoAmI", timeout=10).status_code == 200


def test_dropped_connection(sim: Simulator) -> None:
    session, api = dv_session(sim)
    sim.faults.rules.append(FaultRule(service="dataverse", drop_connection=True, times=1))
    with pytest.raises(requests.exceptions.ConnectionError):
        session.get(f"{api}WhoAmI", timeout=10)
    assert session.get(f"{api}WhoAmI", timeout=10).status_code == 200
    assert [r.status for r in sim.request_log if r.table == "WhoAmI"] == [0, 200]


def test_identity_faults_use_the_entra_error_shape(sim: Simulator) -> None:
    sim.faults.rules.append(
        FaultRule(service="identity", path=r"/token$", status=503, retry_after=1, times=1)
    )
    with pytest.raises(requests.HTTPError):
        dv_session(sim)
    session, api = dv_session(sim)
    assert session.get(f"{api}WhoAmI", timeout=10).ok


def test_concurrency_limit_answers_0x80072326(sim: Simulator) -> None:
    session, api = dv_session(sim)
    sim.faults.enforce_limits = True
    sim.faults.max_concurrent = 2
    sim.latency_ms = 300
    results: list[requests.Response] = []
    lock = threading.Lock()

    def call() -> None:
        response = requests.get(
            f"{api}WhoAmI", headers=dict(session.headers), verify=sim.ca_bundle_path, timeout=10
        )
        with lock:
            results.append(response)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    throttled = [r for r in results if r.status_code == 429]
    assert throttled and len(throttled) <= 4
    assert throttled[0].json()["error"] == {
        "code": "0x80072326",
        "message": "Number of concurrent requests exceeded the limit of 2.",
    }
    assert "Retry-After" in throttled[0].headers
    assert sim.peak_concurrency(ENV_A) == 2


def test_request_window_limit_answers_0x80072322(sim: Simulator) -> None:
    session, api = dv_session(sim)
    sim.faults.enforce_limits = True
    sim.faults.requests_per_window = 3
    statuses = [session.get(f"{api}WhoAmI", timeout=10).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    last = session.get(f"{api}WhoAmI", timeout=10)
    assert last.json()["error"]["code"] == "0x80072322"
    assert int(last.headers["Retry-After"]) >= 1


def test_request_log_records_every_request(sim: Simulator) -> None:
    session, api = dv_session(sim)
    sim.reset_log()
    session.get(f"{api}workflows?$select=name", timeout=10)
    session.patch(f"{api}workflows({flow_id(2)})", json={"description": "d"}, timeout=10)
    first, second = sim.request_log
    assert (first.method, first.service, first.environment_id, first.table, first.status) == (
        "GET",
        "dataverse",
        ENV_A,
        "workflows",
        200,
    )
    assert first.query == "$select=name" and first.bytes_sent > 0 and first.duration_ms >= 0
    assert first.path == "/dv/orga/api/data/v9.2/workflows"
    assert (second.method, second.status, second.bytes_sent) == ("PATCH", 204, 0)
