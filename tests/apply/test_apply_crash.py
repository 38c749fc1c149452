"""Kill a real apply process at known points, then ``resume``: nothing lost, nothing twice.

The simulator runs in the test process; the apply runs in a child process (``python -c``)
that is killed either by the documented test hook (``CONNREF_APPLY_CRASH_AT``, which calls
``os._exit(137)`` at a named journal step, like SIGKILL) or by a real SIGKILL while the
server holds one of its requests.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cleanup.apply import ApplyRefused
from cleanup.apply.journal import CRASH_ENV, CRASH_EXIT_CODE, fold, read_journal
from cleanup.apply.session import apply_folders
from cleanup.lock import LockHeld
from cleanup.plan import RewireFlowKey
from cleanup.simulator.faults import FaultRule
from tests.apply.conftest import Demo, flows_on, server_state, successful_writes, without
from tests.conftest import SECRET, SECRET_ENV

REPO = Path(__file__).resolve().parents[2]
CHILD = """
import pickle, sys
from cleanup.apply import apply_plan
settings, limits, plan = pickle.load(open(sys.argv[1], "rb"))
sys.exit(apply_plan(plan, settings, assume_yes=True, apply_settings=limits).exit_code)
"""


_RUNNING: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _kill_children() -> Any:
    yield
    while _RUNNING:
        process = _RUNNING.pop()
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def child(demo: Demo, crash_at: str | None = None) -> subprocess.Popen[bytes]:
    """Start ``apply`` of the demo plan in another process."""
    args = demo.run_folder.parent / "child-args.pkl"
    args.write_bytes(pickle.dumps((demo.settings, demo.limits, str(demo.run_folder))))
    env = {**os.environ, SECRET_ENV: SECRET, "PYTHONPATH": str(REPO)}
    env.pop(CRASH_ENV, None)
    if crash_at:
        env[CRASH_ENV] = crash_at
    command = [sys.executable, "-c", CHILD, str(args)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _RUNNING.append(process)
    return process


def finish(process: subprocess.Popen[bytes], timeout: float = 60) -> int:
    _out, err = process.communicate(timeout=timeout)
    if process.returncode not in (0, 3, CRASH_EXIT_CODE, -signal.SIGKILL):
        pytest.fail(f"apply process failed ({process.returncode}):\n{err.decode()}")
    return process.returncode


def assert_applied(demo: Demo) -> None:
    """The server is exactly as a clean apply leaves it; every write happened once."""
    hr = demo.hr
    assert flows_on(demo.sim.tenant) == {
        i for e in demo.before.values() for i, f in e["flows"].items() if f["state"] == 1
    }
    assert {r.id for r in hr.references} == set(demo.before[hr.id]["references"]) - set(
        demo.planned_deletes()
    )
    for action in demo.plan.actions:
        if isinstance(action, RewireFlowKey):
            flow = next(f for f in hr.flows if f.id == action.flow_id)
            assert action.from_logical_name not in (flow.clientdata or "")
            assert action.to_logical_name in (flow.clientdata or "")
    for flow_id in demo.planned_flows():  # off, patch, on: each exactly once overall
        assert len(successful_writes(demo.sim, flow_id)) == 3, flow_id
    for ref_id in demo.planned_deletes():
        assert [r.status for r in successful_writes(demo.sim, ref_id)] == [204]
    assert demo.sim.internal_errors == []


def first_flow(demo: Demo) -> Any:
    first = next(a for a in demo.plan.actions if isinstance(a, RewireFlowKey))
    return next(f for f in demo.hr.flows if f.id == first.flow_id)


@pytest.mark.parametrize(
    ("crash_at", "state_at_crash"),
    [
        ("backup:flow", "untouched"),
        ("done:turn-off", "first flow off"),
        ("sent:patch-clientdata", "first flow off and rewired, not journalled"),
        ("intent:turn-on", "first flow off and rewired"),
        ("phase:deletes", "flows done, no delete"),
        ("sent:delete", "first reference deleted, not journalled"),
    ],
)
def test_killed_apply_is_finished_by_resume(demo: Demo, crash_at: str, state_at_crash: str) -> None:
    assert finish(child(demo, crash_at)) == CRASH_EXIT_CODE
    flow = first_flow(demo)
    if "first flow off" in state_at_crash:
        assert flow.state == 0  # left off by the crash: resume must turn it back on
    if state_at_crash == "untouched":
        assert server_state(demo.sim.tenant) == demo.before
    (folder,) = apply_folders(demo.run_folder)
    assert not fold(read_journal(folder / "journal.jsonl")).finished
    with pytest.raises(ApplyRefused, match="resume"):
        demo.apply()  # a new apply would see drift everywhere: finish this one first

    result = demo.resume()

    assert result.exit_code == 0, result.to_dict()
    assert result.folder == folder and len(result.outcomes) == len(demo.plan.actions)
    assert_applied(demo)
    assert fold(read_journal(folder / "journal.jsonl")).finished


def test_resume_twice_writes_nothing_more(demo: Demo) -> None:
    finish(child(demo, "done:patch-clientdata"))
    demo.resume()
    count = len(successful_writes(demo.sim))
    again = demo.resume()
    assert len(successful_writes(demo.sim)) == count
    assert again.exit_code == 0


def test_restore_after_a_crashed_and_resumed_apply_gives_the_state_before(demo: Demo) -> None:
    finish(child(demo, "phase:deletes"))
    with pytest.raises(ApplyRefused, match="resume"):
        demo.restore()  # the journal is unfinished: finish it first
    demo.resume()
    assert demo.restore().exit_code == 0
    touched = demo.planned_flows() | demo.planned_deletes()
    after = server_state(demo.sim.tenant)
    for env_id, env in demo.before.items():
        for table in ("flows", "references"):
            assert set(after[env_id][table]) == set(env[table])
            for row_id, row in env[table].items():
                drop = ("version", "modified_on", "created_on") if row_id in touched else ()
                assert without(after[env_id][table][row_id], *drop) == without(row, *drop)


def test_sigkill_while_the_server_holds_an_applied_patch(demo: Demo) -> None:
    flow = first_flow(demo)
    path = rf"workflows\({flow.id}\)$"
    demo.sim.faults.rules += [
        FaultRule(method="PATCH", path=path, times=1),
        FaultRule(method="PATCH", path=path, times=1, after_processing=True, delay_seconds=4),
    ]
    original = flow.clientdata
    process = child(demo)
    deadline = time.monotonic() + 30
    while flow.clientdata == original and time.monotonic() < deadline:
        time.sleep(0.02)  # the server applied the PATCH and is holding the answer back
    assert flow.clientdata != original and flow.state == 0
    process.send_signal(signal.SIGKILL)
    assert finish(process) == -signal.SIGKILL

    result = demo.resume()

    assert result.exit_code == 0
    records = read_journal(result.folder / "journal.jsonl")
    found = [r for r in records if r["event"] == "done" and r.get("how") == "found"]
    assert [r["step"] for r in found] == ["patch-clientdata"]
    time.sleep(4.5)  # let the held request end so it is logged
    assert_applied(demo)


def test_two_applies_at_once_one_refuses(demo: Demo) -> None:
    flow = first_flow(demo)
    demo.sim.faults.rules.append(
        FaultRule(method="PATCH", path=rf"workflows\({flow.id}\)$", times=1, delay_seconds=3)
    )
    process = child(demo)
    deadline = time.monotonic() + 30
    journal = None
    while time.monotonic() < deadline:
        folders = apply_folders(demo.run_folder)
        journal = folders[0] / "journal.jsonl" if folders else None
        if journal and journal.is_file() and b'"intent"' in journal.read_bytes():
            break
        time.sleep(0.02)
    with pytest.raises(LockHeld):
        demo.apply()
    with pytest.raises(LockHeld):
        demo.resume()
    assert finish(process) == 0
    assert len(apply_folders(demo.run_folder)) == 1
    assert_applied(demo)
    report = json.loads((apply_folders(demo.run_folder)[0] / "apply-report.json").read_text())
    assert report["exit_code"] == 0


def test_sigterm_finishes_the_flow_in_progress_and_stops(demo: Demo) -> None:
    flow = first_flow(demo)
    demo.sim.faults.rules.append(
        FaultRule(method="PATCH", path=rf"workflows\({flow.id}\)$", times=1, delay_seconds=2)
    )
    process = child(demo)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        folders = apply_folders(demo.run_folder)
        journal = folders[0] / "journal.jsonl" if folders else None
        if journal and journal.is_file() and b'"intent"' in journal.read_bytes():
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    assert finish(process) == 3  # partial: interrupted
    (folder,) = apply_folders(demo.run_folder)
    records = read_journal(folder / "journal.jsonl")
    assert records[-1]["event"] == "interrupted"
    assert flow.state == 1 and len(successful_writes(demo.sim, flow.id)) == 3  # finished
    others = demo.planned_flows() - {flow.id}
    assert all(not successful_writes(demo.sim, f) for f in others)  # not started

    result = demo.resume()

    assert result.exit_code == 0
    assert_applied(demo)
