"""Shared fixtures: a running simulator and settings that point the real clients at it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cleanup.config import EndpointSettings, HttpSettings, RunSettings, Settings, TenantSettings
from cleanup.simulator.server import Simulator
from cleanup.simulator.tenant import Tenant

SECRET_ENV = "CONNREF_TEST_SECRET"
SECRET = "test-secret-value"


@pytest.fixture
def start_simulator() -> Iterator[Callable[..., Simulator]]:
    """Start simulators for a test and stop them afterwards."""
    running: list[Simulator] = []

    def start(tenant: Tenant, **kwargs: Any) -> Simulator:
        kwargs.setdefault("client_secret", SECRET)
        sim = Simulator(tenant, **kwargs)
        sim.start()
        running.append(sim)
        return sim

    yield start
    for sim in running:
        sim.stop()


def settings_for(sim: Simulator, runs_dir: Path, **http: Any) -> Settings:
    """Settings for a 'real' tenant that happens to be the simulator (secret from the env)."""
    tenant = TenantSettings(
        tenant_id=sim.tenant.tenant_id,
        client_id=sim.tenant.client_id,
        auth="client-secret",
        client_secret_env=SECRET_ENV,
    )
    http_settings = dataclasses.replace(HttpSettings(), **http)
    return Settings(
        tenant=tenant,
        endpoints=EndpointSettings(**sim.endpoints()),
        http=http_settings,
        run=RunSettings(str(runs_dir)),
    )


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> str:
    """Put the simulator's client secret where the config says it lives."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    return SECRET
