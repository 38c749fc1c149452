"""A naive reference client, written the way common admin scripts read a tenant.

Environments one after another; each table listed without ``Prefer: odata.maxpagesize`` (the
service's default page size) and without ``$select``; the flow list without clientdata, then one
GET per flow for its clientdata; the dependency check of each candidate after that. It uses
``requests`` with a keep-alive session and a bearer token like the real job, and parses every
flow with the same parser, so both clients do the same work and only the access pattern differs.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests

from cleanup.clients.auth import TokenProvider
from cleanup.config import EndpointSettings, TenantSettings
from cleanup.snapshot.clientdata import parse_clientdata

CLOUD_FLOWS = "category eq 5 and type eq 1"


@dataclass
class NaiveResult:
    """What the naive client spent and found."""

    environments: int = 0
    seconds: float = 0.0
    requests: Counter[str] = field(default_factory=Counter)
    bytes: int = 0
    flows: int = 0
    usages: int = 0

    @property
    def total_requests(self) -> int:
        """Every request sent."""
        return sum(self.requests.values())


class NaiveClient:
    """Reads environments one by one with the obvious loops."""

    def __init__(self, tenant: TenantSettings, endpoints: EndpointSettings, *, secret: str) -> None:
        self.endpoints = endpoints
        self.tokens = TokenProvider(tenant, endpoints, secret=secret)
        self.session = requests.Session()
        self.verify: str | bool = endpoints.ca_bundle or True
        self.result = NaiveResult()

    def get(self, url: str, scope: str, table: str) -> Any:
        """One GET with a bearer token; no retries, like most scripts."""
        headers = {"Authorization": f"Bearer {self.tokens.token(scope)}"}
        # verify per request: a session-level CA would lose to REQUESTS_CA_BUNDLE
        response = self.session.get(url, headers=headers, timeout=120, verify=self.verify)
        response.raise_for_status()
        self.result.requests[table] += 1
        self.result.bytes += len(response.content)
        return response.json()

    def pages(self, url: str, scope: str, table: str, next_key: str) -> Iterator[dict[str, Any]]:
        """Every row of a collection, following its next links."""
        next_url: str | None = url
        while next_url:
            body = self.get(next_url, scope, table)
            yield from body.get("value", [])
            next_url = body.get(next_key)

    def environments(self) -> list[dict[str, Any]]:
        """The tenant's environments from the admin API."""
        url = (
            f"{self.endpoints.bap}/providers/Microsoft.BusinessAppPlatform/scopes/admin/"
            "environments?api-version=2020-10-01"
        )
        return list(self.pages(url, self.endpoints.powerapps_scope, "environments", "nextLink"))

    def read_environment(self, env: dict[str, Any], candidates: Iterable[str] = ()) -> None:
        """Read one environment's tables, each flow's clientdata, then the candidates' deps."""
        instance = env["properties"]["linkedEnvironmentMetadata"]["instanceUrl"].rstrip("/")
        scope, api = f"{instance}/.default", f"{instance}/api/data/v9.2/"

        def table(name: str, query: str = "") -> list[dict[str, Any]]:
            url = api + name + (f"?{query}" if query else "")
            return list(self.pages(url, scope, name, "@odata.nextLink"))

        table("connectionreferences")
        flows = table("workflows", f"$filter={quote(CLOUD_FLOWS)}&$select=workflowid,name")
        for flow in flows:
            row = self.get(f"{api}workflows({flow['workflowid']})", scope, "workflows(id)")
            parsed = parse_clientdata(row.get("clientdata"))
            self.result.flows += 1
            self.result.usages += len(parsed.references)
        table("solutions")
        table("publishers")
        definitions = table(
            "solutioncomponentdefinitions",
            "$filter=" + quote("primaryentityname eq 'connectionreference'"),
        )
        ref_type = definitions[0]["solutioncomponenttype"]
        table(
            "solutioncomponents",
            "$filter=" + quote(f"componenttype eq 29 or componenttype eq {ref_type}"),
        )
        table("systemusers")
        table("teams")
        connections = (
            f"{self.endpoints.powerapps}/providers/Microsoft.PowerApps/scopes/admin/environments/"
            f"{env['name']}/connections?api-version=2016-11-01"
        )
        list(self.pages(connections, self.endpoints.powerapps_scope, "connections", "nextLink"))
        for reference_id in candidates:
            self.get(
                f"{api}RetrieveDependenciesForDelete(ObjectId=@p1,ComponentType=@p2)"
                f"?@p1={reference_id}&@p2={ref_type}",
                scope,
                "RetrieveDependenciesForDelete",
            )
        self.result.environments += 1


def run_naive(
    tenant: TenantSettings,
    endpoints: EndpointSettings,
    *,
    secret: str,
    limit: int | None = None,
    candidates: dict[str, list[str]] | None = None,
) -> NaiveResult:
    """Read the first ``limit`` Dataverse environments (all when None) the naive way."""
    client = NaiveClient(tenant, endpoints, secret=secret)
    started = time.perf_counter()
    envs = [
        e
        for e in client.environments()
        if (e.get("properties") or {}).get("linkedEnvironmentMetadata")
    ]
    for env in envs[:limit] if limit else envs:
        client.read_environment(env, (candidates or {}).get(env["name"], []))
    client.result.seconds = time.perf_counter() - started
    return client.result
