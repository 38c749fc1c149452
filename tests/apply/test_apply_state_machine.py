"""A Hypothesis state machine: random duplicate groups, plans, faults, crashes and resumes.

Invariants, checked after every step:

* no reference is deleted while a flow uses it (or while a canvas app depends on it);
* no flow is lost, and every flow whose definition changed has a before-image on disk;
* once an apply or resume ran to its end, every flow that was on is on.

Crashes are in-process (``set_crash_point`` raises ``SimulatedCrash``, which nothing in apply
catches, so no clean-up code runs, as after a kill); faults are one-shot simulator rules.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from cleanup.apply import ApplySettings, apply_plan, resume_run
from cleanup.apply.journal import SimulatedCrash, set_crash_point
from cleanup.apply.session import apply_folders
from cleanup.pipeline import run_once
from cleanup.simulator.faults import FaultRule
from cleanup.simulator.flowshapes import Use, build_clientdata
from cleanup.simulator.server import Simulator
from cleanup.simulator.tenant import (
    CANVAS_APP_COMPONENT_TYPE,
    Connection,
    ConnectionReference,
    Creator,
    Dependent,
    Environment,
    Flow,
    Tenant,
    User,
)
from tests.conftest import settings_for

DATAVERSE = "shared_commondataserviceforapps"
CONNECTOR_ID = f"/providers/Microsoft.PowerApps/apis/{DATAVERSE}"
TENANT_ID = "7c1d9f0e-1111-4a2b-9c3d-000000000001"
CLIENT_ID = "7c1d9f0e-2222-4a2b-9c3d-000000000002"
ENV_ID = "7c1d9f0e-3333-4a2b-9c3d-000000000003"
LIMITS = ApplySettings(allow_delete=True, allow_all_environments=True, concurrency=1)
CRASH_POINTS = [
    None,
    "backup:flow",
    "done:turn-off",
    "sent:patch-clientdata",
    "intent:turn-on",
    "sent:turn-on",
    "phase:deletes",
    "backup:reference",
    "sent:delete",
    "done:patch-clientdata#2",
]
TURN_ON_FAILS = json.dumps({"error": {"code": "0x80060467", "message": "Flow client error."}})
FAULTS: dict[str, Callable[[], FaultRule]] = {
    "429-patch": lambda: FaultRule(method="PATCH", status=429, retry_after=0, times=1),
    "503-patch": lambda: FaultRule(method="PATCH", status=503, times=1),
    "500-after-patch": lambda: FaultRule(
        method="PATCH", status=500, after_processing=True, times=1
    ),
    "dropped-after-patch": lambda: FaultRule(
        method="PATCH", drop_connection=True, after_processing=True, times=1
    ),
    "dropped-before-patch": lambda: FaultRule(method="PATCH", drop_connection=True, times=1),
    "400-patch": lambda: FaultRule(method="PATCH", status=400, body=TURN_ON_FAILS, times=1),
    "503-delete": lambda: FaultRule(method="DELETE", status=503, times=1),
    "500-after-delete": lambda: FaultRule(
        method="DELETE", status=500, after_processing=True, times=1
    ),
    "dropped-after-delete": lambda: FaultRule(
        method="DELETE", drop_connection=True, after_processing=True, times=1
    ),
}


def guid(n: int) -> str:
    return f"7c1d9f0e-4444-4a2b-9c3d-{n:012d}"


def environment(
    leftovers: int, flows: list[tuple[list[int], bool]], canvas: int | None
) -> Environment:
    """One environment: a survivor (ref 0) and leftovers on one connection, and the flows."""
    creator = Creator(guid(900), "Automation SP", "ServicePrincipal")
    connection = Connection("c0ffee" + "0" * 26, DATAVERSE, "SP", creator, parameter_set="oauthSP")
    names = ["app_AppDataverseSP"] + [
        f"new_sharedcommondataserviceforapps_{i:05x}" for i in range(1, leftovers + 1)
    ]
    displays = ["App – Dataverse – Service Principal"] + [
        f"Dataverse {i}" for i in range(leftovers)
    ]
    refs = [
        ConnectionReference(guid(100 + i), name, display, CONNECTOR_ID, connection.name)
        for i, (name, display) in enumerate(zip(names, displays, strict=True))
    ]
    flow_rows = []
    for n, (uses, on) in enumerate(flows):
        keys = [DATAVERSE if i == 0 else f"{DATAVERSE}_{i}" for i in range(len(uses))]
        use = [Use(k, names[u], DATAVERSE) for k, u in zip(keys, uses, strict=True)]
        data = build_clientdata(use, random.Random(n))
        flow_rows.append(Flow(guid(200 + n), f"Flow {n}", data, state=int(on), status=int(on) + 1))
    dependents = []
    if canvas is not None:
        dependents.append(Dependent(names[canvas], CANVAS_APP_COMPONENT_TYPE, guid(300), "App"))
    app_user = User(guid(901), "# connref-cleanup", application_id=CLIENT_ID, access_mode=4)
    return Environment(
        ENV_ID,
        "State machine",
        org_name="statemachine",
        users=[app_user],
        connections=[connection],
        references=refs,
        flows=flow_rows,
        dependents=dependents,
    )


tenants = st.integers(1, 3).flatmap(
    lambda leftovers: st.tuples(
        st.just(leftovers),
        st.lists(
            st.tuples(
                st.lists(st.integers(0, leftovers), min_size=1, max_size=2, unique=True),
                st.booleans(),
            ),
            min_size=1,
            max_size=4,
        ),
        st.one_of(st.none(), st.integers(1, leftovers)),
    )
)


class ApplyMachine(RuleBasedStateMachine):
    """Random plans, faults, external edits, crashes and resumes against one simulator."""

    sim: Simulator
    root: Path
    examples = 0

    @initialize(shape=tenants)
    def plan(self, shape: tuple[int, list[tuple[list[int], bool]], int | None]) -> None:
        """A fresh environment with duplicates, and the plan the pipeline makes for it."""
        type(self).examples += 1
        env = environment(*shape)
        with self.sim._data_lock:
            self.sim.tenant.environments[:] = [env]
        self.sim.faults.rules.clear()
        self.settings = settings_for(
            self.sim,
            self.root / f"example-{self.examples}",
            timeout_seconds=2.0,
            backoff_base_seconds=0.001,
        )
        self.run = run_once(self.settings, send_mail=False).folder
        self.initial = {f.id: (f.clientdata, f.state) for f in env.flows}
        self.initial_refs = {r.id: r.logical_name for r in env.references}
        self.canvas = {d.reference_logical_name.casefold() for d in env.dependents}
        self.started = False
        self.unfinished = False

    @property
    def env(self) -> Environment:
        return self.sim.tenant.environments[0]

    @rule(kind=st.sampled_from(sorted(FAULTS)))
    def inject_fault(self, kind: str) -> None:
        """The next matching request fails once."""
        self.sim.faults.rules.append(FAULTS[kind]())

    @rule(index=st.integers(0, 3))
    def someone_edits_a_flow(self, index: int) -> None:
        """A maker saves a flow (not its definition): its ETag changes."""
        flows = [f for f in self.env.flows if f.id in self.initial]
        flow = flows[index % len(flows)]
        with self.sim._data_lock:
            flow.description = f"edited {flow.version}"
            flow.version += 100

    @rule(which=st.integers(1, 3))
    def someone_uses_a_leftover(self, which: int) -> None:
        """A new (draft) flow starts using a reference the plan may delete."""
        refs = [r for r in self.env.references if r.id != guid(100)]
        if not refs:
            return
        ref = refs[which % len(refs)]
        data = build_clientdata([Use(DATAVERSE, ref.logical_name, DATAVERSE)], random.Random(9))
        with self.sim._data_lock:
            self.env.flows.append(Flow(guid(400 + len(self.env.flows)), "Newcomer", data))

    @precondition(lambda self: not self.started)
    @rule(crash=st.sampled_from(CRASH_POINTS))
    def apply(self, crash: str | None) -> None:
        """Apply the plan, maybe dying at a crash point."""
        self.started = True
        self._run(
            lambda: apply_plan(self.run, self.settings, assume_yes=True, apply_settings=LIMITS),
            crash,
        )

    @precondition(lambda self: self.started)
    @rule(crash=st.sampled_from(CRASH_POINTS))
    def resume(self, crash: str | None) -> None:
        """Resume the apply, maybe dying again."""
        self._run(lambda: resume_run(self.run, self.settings, apply_settings=LIMITS), crash)

    def _run(self, action: Callable[[], Any], crash: str | None) -> None:
        set_crash_point(crash)
        try:
            action()
            self.unfinished = False
        except SimulatedCrash:
            self.unfinished = True
        finally:
            set_crash_point(None)

    @invariant()
    def no_reference_deleted_while_used(self) -> None:
        present = {r.id for r in self.env.references}
        used = {name.casefold() for f in self.env.flows for name in _logical_names(f.clientdata)}
        for ref_id, name in self.initial_refs.items():
            if ref_id not in present:
                assert name.casefold() not in used, f"{name} deleted while a flow uses it"
                assert name.casefold() not in self.canvas, f"{name} deleted under a canvas app"

    @invariant()
    def no_flow_lost_and_every_change_backed_up(self) -> None:
        flows = {f.id: f for f in self.env.flows}
        assert set(self.initial) <= set(flows)
        backups = _flow_backups(self.run)
        for flow_id, (clientdata, _state) in self.initial.items():
            if flows[flow_id].clientdata != clientdata:
                assert backups.get(flow_id) == clientdata, "changed without a before-image"

    @invariant()
    def no_flow_left_off(self) -> None:
        if not self.started or self.unfinished:
            return
        for flow in self.env.flows:
            if flow.id in self.initial and self.initial[flow.id][1] == 1:
                assert flow.state == 1, f"{flow.name} was on and is off"

    def teardown(self) -> None:
        """End as an operator would: apply if nobody did, resume if it died; then check all."""
        if not hasattr(self, "run"):
            return
        self.sim.faults.rules.clear()
        if not self.started:
            self.apply(None)
        elif self.unfinished:
            self.resume(None)
        self.no_reference_deleted_while_used()
        self.no_flow_lost_and_every_change_backed_up()
        self.no_flow_left_off()


def _logical_names(clientdata: str | None) -> list[str]:
    try:
        refs = json.loads(clientdata or "{}")["properties"]["connectionReferences"]
    except (ValueError, KeyError, TypeError):
        return []
    return [
        e["connection"]["connectionReferenceLogicalName"]
        for e in refs.values()
        if isinstance(e.get("connection"), dict)
        and "connectionReferenceLogicalName" in e["connection"]
    ]


def _flow_backups(run: Path) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for folder in apply_folders(run):
        for path in (folder / "backups").rglob("flow-*.json"):
            data = json.loads(path.read_text())
            out.setdefault(data["flow_id"], data["clientdata"])
    return out


def test_apply_invariants_hold_under_faults_and_crashes(
    start_simulator: Callable[..., Simulator], secret_env: str, tmp_path: Path
) -> None:
    sim = start_simulator(Tenant(TENANT_ID, CLIENT_ID, [environment(1, [([1], True)], None)]))
    machine = type("Machine", (ApplyMachine,), {"sim": sim, "root": tmp_path})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=25,
            stateful_step_count=8,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    assert sim.internal_errors == []


def test_a_leftover_a_canvas_app_uses_is_kept_even_when_the_plan_deletes_it(
    start_simulator: Callable[..., Simulator], secret_env: str, tmp_path: Path
) -> None:
    env = environment(1, [([1], True)], canvas=1)
    sim = start_simulator(Tenant(TENANT_ID, CLIENT_ID, [env]))
    config = settings_for(sim, tmp_path / "runs")
    run = run_once(config, send_mail=False).folder
    from cleanup.plan import load_plan

    assert any(a.kind == "delete-reference" for a in load_plan(run / "plan.json").actions)
    result = apply_plan(run, config, assume_yes=True, apply_settings=LIMITS)
    delete = next(o for o in result.outcomes if o.kind == "delete-reference")
    assert delete.status == "skipped" and "dependent component" in delete.reason
    assert len(env.references) == 2 and env.flows[0].state == 1


@pytest.mark.parametrize("crash", ["sent:patch-clientdata", "sent:delete"])
def test_in_process_crash_then_resume(
    start_simulator: Callable[..., Simulator], secret_env: str, tmp_path: Path, crash: str
) -> None:
    env = environment(2, [([1], True), ([2, 0], False)], None)
    sim = start_simulator(Tenant(TENANT_ID, CLIENT_ID, [env]))
    config = settings_for(sim, tmp_path / "runs")
    run = run_once(config, send_mail=False).folder
    set_crash_point(crash)
    with pytest.raises(SimulatedCrash):
        apply_plan(run, config, assume_yes=True, apply_settings=LIMITS)
    set_crash_point(None)
    result = resume_run(run, config, apply_settings=LIMITS)
    assert result.exit_code == 0, result.to_dict()
    assert [r.logical_name for r in env.references] == ["app_AppDataverseSP"]
    assert env.flows[0].state == 1 and env.flows[1].state == 0
