"""Shared fixtures for the apply tests: the demo tenant planned, and ways to look at the server.

``Demo`` holds a running simulator with the demo tenant, settings whose fingerprint the plan
carries, the plan written by the real pipeline, and ``[apply]`` limits that allow it. Server
state is compared as plain dicts keyed by object id (list order is not state).
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cleanup.apply import ApplyResult, ApplySettings, apply_plan, restore_run, resume_run
from cleanup.apply.journal import set_crash_point
from cleanup.config import Settings
from cleanup.pipeline import run_once
from cleanup.plan import DeleteReference, Plan, RewireFlowKey, load_plan
from cleanup.simulator.demo import ENV_HR
from cleanup.simulator.demo import demo_tenant as build_demo_tenant
from cleanup.simulator.server import Simulator
from cleanup.simulator.tenant import Environment, Flow, Tenant
from cleanup.snapshot.store import new_run_folder
from tests.conftest import SECRET, SECRET_ENV, settings_for
from tests.notify.conftest import start_smtp  # noqa: F401 - the local SMTP server fixture

VOLATILE = ("version", "modified_on")
HR_LIMITS = ApplySettings(allow_delete=True, environments=("Contoso HR",), concurrency=1)


@dataclass
class Demo:
    """A planned demo tenant, ready to apply."""

    sim: Simulator
    settings: Settings
    run_folder: Path
    limits: ApplySettings = HR_LIMITS
    before: dict[str, Any] = field(default_factory=dict)

    @property
    def plan(self) -> Plan:
        """The plan the pipeline wrote."""
        return load_plan(self.run_folder / "plan.json")

    @property
    def hr(self) -> Environment:
        """The live HR environment (where the demo plan changes things)."""
        return self.sim.tenant.environment(ENV_HR)

    def apply(self, **kwargs: Any) -> ApplyResult:
        """Apply the plan with --yes and the demo limits (overridable)."""
        kwargs.setdefault("assume_yes", True)
        kwargs.setdefault("apply_settings", self.limits)
        return apply_plan(self.run_folder, self.settings, **kwargs)

    def resume(self, folder: Path | None = None, **kwargs: Any) -> ApplyResult:
        """Resume the latest apply of the plan."""
        kwargs.setdefault("apply_settings", self.limits)
        return resume_run(folder or self.run_folder, self.settings, **kwargs)

    def restore(self, folder: Path | None = None, **kwargs: Any) -> ApplyResult:
        """Restore the latest apply of the plan."""
        kwargs.setdefault("assume_yes", True)
        kwargs.setdefault("apply_settings", self.limits)
        return restore_run(folder or self.run_folder, self.settings, **kwargs)

    def flow(self, name: str) -> Flow:
        """A live flow of the HR environment by name."""
        return next(f for f in self.hr.flows if f.name == name)

    def planned_flows(self) -> set[str]:
        """Ids of the flows the plan rewires."""
        return {a.flow_id for a in self.plan.actions if isinstance(a, RewireFlowKey)}

    def planned_deletes(self) -> set[str]:
        """Ids of the references the plan deletes."""
        return {a.reference_id for a in self.plan.actions if isinstance(a, DeleteReference)}


@pytest.fixture(autouse=True)
def _no_crash_point() -> Iterator[None]:
    yield
    set_crash_point(None)


@pytest.fixture(scope="session")
def _planned_demo(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Simulator, Settings, Path]]:
    """One simulator and one pipeline run for the session; each test gets a fresh copy."""
    with pytest.MonkeyPatch.context() as patch, Simulator(build_demo_tenant(), SECRET) as sim:
        patch.setenv(SECRET_ENV, SECRET)
        runs = tmp_path_factory.mktemp("apply") / "runs"
        # Short timeout and backoff: fault tests time out on purpose and retry 5xx quickly.
        settings = settings_for(sim, runs, timeout_seconds=2.0, backoff_base_seconds=0.01)
        template = run_once(settings, send_mail=False).folder
        yield sim, settings, template


@pytest.fixture
def demo(_planned_demo: tuple[Simulator, Settings, Path], secret_env: str) -> Demo:
    """The demo tenant (fresh) in a running simulator, and a copy of the pipeline's plan."""
    sim, settings, template = _planned_demo
    with sim._data_lock:  # the demo tenant is deterministic: the plan fits every fresh copy
        sim.tenant.environments[:] = build_demo_tenant().environments
    sim.faults.rules.clear()
    sim.unmanaged_layers.clear()
    sim.internal_errors.clear()
    sim.reset_log()
    folder = new_run_folder(settings.run.runs_dir)
    shutil.copytree(template, folder, dirs_exist_ok=True)
    return Demo(sim, settings, folder, before=server_state(sim.tenant))


def server_state(tenant: Tenant) -> dict[str, Any]:
    """The tenant as comparable data: per environment, flows and references keyed by id."""
    out: dict[str, Any] = {}
    for env in tenant.environments:
        data = dataclasses.asdict(env)
        data["flows"] = {f["id"]: f for f in data["flows"]}
        data["references"] = {r["id"]: r for r in data["references"]}
        out[env.id] = data
    return copy.deepcopy(out)


def without(row: dict[str, Any], *names: str) -> dict[str, Any]:
    """A copy of a row without some fields."""
    return {k: v for k, v in row.items() if k not in names}


def writes(sim: Simulator) -> list[Any]:
    """Every Dataverse request that changed (or tried to change) something."""
    return [r for r in sim.request_log if r.service == "dataverse" and r.method != "GET"]


def successful_writes(sim: Simulator, object_id: str | None = None) -> list[Any]:
    """Dataverse writes the server answered with success (for one object, if given)."""
    return [
        r
        for r in writes(sim)
        if r.status < 300 and (object_id is None or object_id.lower() in r.path.lower())
    ]


def flows_on(tenant: Tenant) -> set[str]:
    """Ids of every flow that is on."""
    return {f.id for e in tenant.environments for f in e.flows if f.state == 1}
