"""Connections of an environment through the Power Apps admin API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from cleanup.clients.http import HttpClient
from cleanup.config import EndpointSettings

POWERAPPS_API_VERSION = "2016-11-01"


def list_connections(
    http: HttpClient, endpoints: EndpointSettings, environment_id: str
) -> Iterator[dict[str, Any]]:
    """Yield every connection in one environment (all connectors, all creators)."""
    url = (
        f"{endpoints.powerapps.rstrip('/')}/providers/Microsoft.PowerApps/scopes/admin/"
        f"environments/{quote(environment_id, safe='')}/connections"
    )
    params = {"api-version": POWERAPPS_API_VERSION, "$top": "250"}
    for page in http.arm_pages(
        url, scope=endpoints.powerapps_scope, params=params, tag=environment_id, table="connections"
    ):
        yield from page
