"""Open the tenant a run talks to: the real one, or the built-in simulator in-process.

The simulator is imported only here and only when ``[simulator] enabled = true``: the
pipeline itself never knows whether it talks to Microsoft or to the fake.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from cleanup.clients.platform import PlatformClients, build_clients
from cleanup.config import EndpointSettings, Settings
from cleanup.errors import ConfigError

if TYPE_CHECKING:
    from cleanup.simulator.tenant import Tenant


@contextmanager
def open_tenant(settings: Settings) -> Iterator[PlatformClients]:
    """Yield clients for the configured tenant, starting the simulator when asked to."""
    if not settings.simulator.enabled:
        yield build_clients(settings)
        return
    from cleanup.simulator.server import Simulator

    tenant = simulated_tenant(settings.simulator.tenant)
    secret = secrets.token_urlsafe(24)  # a fresh one per run: nothing to leak or configure
    with Simulator(tenant, client_secret=secret, latency_ms=settings.simulator.latency_ms) as sim:
        yield build_clients(point_at_simulator(settings, sim.endpoints(), tenant), secret=secret)


def point_at_simulator(settings: Settings, endpoints: dict[str, str], tenant: Tenant) -> Settings:
    """Return settings whose tenant and endpoints are the simulator's."""
    tenant_settings = dataclasses.replace(
        settings.tenant,
        tenant_id=tenant.tenant_id,
        client_id=tenant.client_id,
        auth="client-secret",
    )
    return dataclasses.replace(
        settings, tenant=tenant_settings, endpoints=EndpointSettings(**endpoints)
    )


def simulated_tenant(spec: str) -> Tenant:
    """Build the tenant named by ``spec``: ``demo``, ``generated:SEED[:ENVS[:FLOWS]]`` or a file."""
    if spec == "demo":
        from cleanup.simulator.demo import demo_tenant

        return demo_tenant()
    if spec.startswith("generated"):
        from cleanup.simulator.generator import generate_tenant

        parts = spec.split(":")[1:]
        try:
            numbers = [int(p) for p in parts]
        except ValueError:
            raise ConfigError(
                f"simulator.tenant {spec!r}: expected generated:SEED[:ENVIRONMENTS[:FLOWS]]."
            ) from None
        names = ("seed", "environments", "flows_per_environment")
        return generate_tenant(**dict(zip(names, numbers, strict=False)))
    from cleanup.simulator.tenant import load_tenant

    path = Path(spec)
    if not path.is_file():
        raise ConfigError(
            f"simulator.tenant {spec!r} is neither 'demo', 'generated:SEED' nor a tenant file."
        )
    try:
        return load_tenant(path)
    except ValueError as exc:
        raise ConfigError(f"Tenant file {path} is invalid: {exc}") from None
