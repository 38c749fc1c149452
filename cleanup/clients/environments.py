"""Environment discovery through the BAP admin API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cleanup.clients.http import HttpClient
from cleanup.config import EndpointSettings

BAP_API_VERSION = "2020-10-01"


def list_environments(http: HttpClient, endpoints: EndpointSettings) -> Iterator[dict[str, Any]]:
    """Yield every environment of the tenant as the admin API returns it."""
    url = (
        f"{endpoints.bap.rstrip('/')}/providers/Microsoft.BusinessAppPlatform/scopes/admin/"
        "environments"
    )
    params = {"api-version": BAP_API_VERSION}
    for page in http.arm_pages(
        url, scope=endpoints.powerapps_scope, params=params, tag="(tenant)", table="environments"
    ):
        yield from page
