"""The bundle of clients one run uses, built from the settings."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cleanup.clients.auth import TokenProvider
from cleanup.clients.connections import list_connections
from cleanup.clients.dataverse import DataverseClient
from cleanup.clients.environments import list_environments
from cleanup.clients.http import HttpClient
from cleanup.config import Settings


@dataclass
class PlatformClients:
    """Everything that talks to the tenant, sharing one HTTP client and one token cache."""

    settings: Settings
    http: HttpClient

    def environments(self) -> Iterator[dict[str, Any]]:
        """Yield the tenant's environments (BAP admin API)."""
        return list_environments(self.http, self.settings.endpoints)

    def connections(self, environment_id: str) -> Iterator[dict[str, Any]]:
        """Yield one environment's connections (Power Apps admin API)."""
        return list_connections(self.http, self.settings.endpoints, environment_id)

    def dataverse(self, instance_url: str, environment_id: str) -> DataverseClient:
        """Return a Dataverse client for one environment."""
        return DataverseClient(self.http, instance_url, environment_id)


def build_clients(settings: Settings, *, secret: str | None = None) -> PlatformClients:
    """Create the clients for a run; ``secret`` overrides the configured secret source."""
    tokens = TokenProvider(
        settings.tenant,
        settings.endpoints,
        secret=secret,
        timeout=settings.http.timeout_seconds,
    )
    http = HttpClient(settings.http, tokens, ca_bundle=settings.endpoints.ca_bundle)
    return PlatformClients(settings=settings, http=http)
