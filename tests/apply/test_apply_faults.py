"""Throttling, server errors, timeouts and dropped connections on writes: each change once."""

from __future__ import annotations

import time
from typing import Any

import pytest

from cleanup.apply.journal import fold, read_journal
from cleanup.simulator.faults import FaultRule
from tests.apply.conftest import Demo, flows_on, writes

SYNC = "Absence: sync calendar"  # one key, on: off -> patch -> on
LEFTOVER_4F = "hr_sharedcommondataserviceforapps_4f2a1"


def flow_path(demo: Demo, name: str = SYNC) -> str:
    return rf"workflows\({demo.flow(name).id}\)$"


def ref_path(demo: Demo, logical_name: str = LEFTOVER_4F) -> str:
    ref = next(r for r in demo.hr.references if r.logical_name == logical_name)
    return rf"connectionreferences\({ref.id}\)$"


def on_nth_patch(demo: Demo, n: int, **fault: Any) -> None:
    """Inject ``fault`` on the n-th PATCH of the sync flow (1 off, 2 clientdata, 3 on)."""
    path = flow_path(demo)
    if n > 1:
        demo.sim.faults.rules.append(FaultRule(method="PATCH", path=path, times=n - 1))
    demo.sim.faults.rules.append(FaultRule(method="PATCH", path=path, times=1, **fault))


def statuses(demo: Demo, path_part: str, method: str = "PATCH") -> list[int]:
    return [r.status for r in writes(demo.sim) if r.method == method and path_part in r.path]


def steps_done(result: Any, object_id: str) -> list[str]:
    records = read_journal(result.folder / "journal.jsonl")
    trail = next(t for t in fold(records).objects.values() if t.key.endswith(object_id.lower()))
    return [s["step"] for s in trail.steps]


def assert_all_done(demo: Demo, result: Any) -> None:
    assert {o.status for o in result.outcomes} == {"done"}, result.to_dict()
    assert flows_on(demo.sim.tenant) >= {f.id for f in demo.hr.flows if f.state == 1}
    assert demo.flow(SYNC).state == 1
    assert demo.sim.internal_errors == []


def wait_for_log(demo: Demo, count: int, path_part: str, timeout: float = 6.0) -> None:
    """Requests held back by a fault delay are logged when they end: wait for them."""
    deadline = time.monotonic() + timeout
    while len(statuses(demo, path_part)) < count and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.parametrize("status", [429, 503])
def test_throttled_or_unavailable_patch_is_retried_with_the_same_etag(
    demo: Demo, status: int
) -> None:
    on_nth_patch(demo, 2, status=status, retry_after=0)
    result = demo.apply()
    assert_all_done(demo, result)
    flow_id = demo.flow(SYNC).id
    assert statuses(demo, flow_id) == [200, status, 200, 200]
    assert steps_done(result, flow_id) == ["turn-off", "patch-clientdata", "turn-on"]


def test_a_500_after_the_server_applied_the_patch_is_confirmed_not_repeated(demo: Demo) -> None:
    on_nth_patch(demo, 1, status=500, after_processing=True)
    result = demo.apply()
    assert_all_done(demo, result)
    flow_id = demo.flow(SYNC).id
    # the retry carried the same If-Match, so the server refused it: applied exactly once
    assert statuses(demo, flow_id) == [500, 412, 200, 200]
    records = read_journal(result.folder / "journal.jsonl")
    done = [r for r in records if r["event"] == "done" and r.get("object_id") == flow_id]
    assert done[0]["step"] == "turn-off" and done[0]["how"].startswith("confirmed by re-reading")


def test_a_timeout_after_the_server_applied_the_patch_changes_it_once(demo: Demo) -> None:
    on_nth_patch(demo, 2, after_processing=True, delay_seconds=3.0)  # client gives up at 2 s
    result = demo.apply()
    assert_all_done(demo, result)
    flow_id = demo.flow(SYNC).id
    wait_for_log(demo, 3, flow_id)
    assert statuses(demo, flow_id) == [200, 200, 200]  # no second clientdata PATCH
    assert steps_done(result, flow_id) == ["turn-off", "patch-clientdata", "turn-on"]
    assert LEFTOVER_4F not in (demo.flow(SYNC).clientdata or "")


def test_a_dropped_connection_after_the_patch_landed_is_confirmed(demo: Demo) -> None:
    on_nth_patch(demo, 2, after_processing=True, drop_connection=True)
    result = demo.apply()
    assert_all_done(demo, result)
    assert statuses(demo, demo.flow(SYNC).id) == [200, 0, 200]


def test_a_dropped_connection_before_the_patch_landed_is_sent_once_more(demo: Demo) -> None:
    on_nth_patch(demo, 2, drop_connection=True)
    result = demo.apply()
    assert_all_done(demo, result)
    flow_id = demo.flow(SYNC).id
    assert statuses(demo, flow_id) == [200, 0, 200, 200]
    assert steps_done(result, flow_id) == ["turn-off", "patch-clientdata", "turn-on"]


def test_server_errors_beyond_the_retries_turn_the_flow_back_on(demo: Demo) -> None:
    retries = demo.settings.http.max_retries
    on_nth_patch(demo, 2, status=503)
    demo.sim.faults.rules[-1].times = retries + 1
    original = demo.flow(SYNC).clientdata
    result = demo.apply()
    outcome = next(o for o in result.outcomes if o.object_id == demo.flow(SYNC).id)
    assert outcome.status == "failed" and "turned back on" in outcome.reason
    assert demo.flow(SYNC).state == 1 and demo.flow(SYNC).clientdata == original
    assert any(r.logical_name == LEFTOVER_4F for r in demo.hr.references)
    assert result.exit_code == 1


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (dict(status=429, retry_after=0), [429, 204]),
        (dict(status=503), [503, 204]),
        (dict(status=500, after_processing=True), [500, 404]),  # the retry finds it gone
        (dict(drop_connection=True, after_processing=True), [0]),  # re-read: gone, done
        (dict(drop_connection=True), [0, 204]),  # re-read: still there, same ETag: once more
    ],
    ids=["429", "503", "500-after-delete", "dropped-after-delete", "dropped-before-delete"],
)
def test_faults_on_delete_still_delete_exactly_once(
    demo: Demo, fault: dict, expected: list[int]
) -> None:
    path = ref_path(demo)
    ref_id = path.split("(")[1][:36]
    demo.sim.faults.rules.append(FaultRule(method="DELETE", path=path, times=1, **fault))
    result = demo.apply()
    assert {o.status for o in result.outcomes} == {"done"}, result.to_dict()
    assert not any(r.logical_name == LEFTOVER_4F for r in demo.hr.references)
    assert statuses(demo, ref_id, "DELETE") == expected
    assert demo.sim.internal_errors == []
