"""BAP admin environment discovery (ARM-style, ``nextLink`` paging), API notes §6.1."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from cleanup.simulator.dataverse import instance_url, org_name
from cleanup.simulator.faults import Faults
from cleanup.simulator.identity import POWERAPPS_RESOURCE
from cleanup.simulator.messages import (
    Call,
    Request,
    Response,
    decode_offset_token,
    encode_offset_token,
    error_response,
    json_response,
    next_link,
)
from cleanup.simulator.tenant import Environment, Tenant

_ROOT = "/bap/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments"
_PATH = re.compile(rf"^{_ROOT}(?:/(?P<name>[^/]+))?/?$", re.IGNORECASE)
_NS = uuid.UUID("5b0e5c3c-8f8a-4f55-9a63-1f5d2c0f4e21")


def missing_api_version() -> Response:
    """ARM's refusal of a request without ``api-version``."""
    return error_response(
        400,
        "MissingApiVersionParameter",
        "The api-version query parameter (?api-version=) is required for all requests.",
    )


class Bap:
    """Lists the tenant's environments in the admin scope."""

    def __init__(self, tenant: Tenant, faults: Callable[[], Faults]) -> None:
        self.tenant = tenant
        self._faults = faults

    def resolve(self, req: Request) -> Call | None:
        """A Call for a ``/bap/...`` request, or None when no route matches."""
        match = _PATH.match(req.path)
        if match is None or req.method != "GET":
            return None
        name = match.group("name")
        page = None
        if name is None:
            token = req.params.get("$skiptoken")
            decoded = decode_offset_token(token) if token else (0, 1)
            page = decoded[1] if decoded else 0

        def handler(r: Request, _info: Any) -> Response:
            if "api-version" not in r.params:
                return missing_api_version()
            return self._list(r) if name is None else self._one(r, name)

        return Call("bap", handler, POWERAPPS_RESOURCE, name, "environments", page)

    def _list(self, req: Request) -> Response:
        token = req.params.get("$skiptoken")
        position = decode_offset_token(token) if token else (0, 1)
        if position is None:
            return error_response(400, "InvalidSkipToken", "The $skiptoken is not valid.")
        offset, page = position
        size = max(1, self._faults().bap_page_size)
        chunk = self.tenant.environments[offset : offset + size]
        body: dict[str, Any] = {"value": [self.item(e, req.base_url) for e in chunk]}
        if offset + size < len(self.tenant.environments):
            body["nextLink"] = next_link(req, encode_offset_token(offset + size, page + 1))
        return json_response(200, body)

    def _one(self, req: Request, name: str) -> Response:
        for env in self.tenant.environments:
            if env.id.lower() == name.lower():
                return json_response(200, self.item(env, req.base_url))
        return error_response(
            404,
            "EnvironmentNotFound",
            f"The environment '{name}' could not be found in the tenant '{self.tenant.tenant_id}'.",
        )

    def item(self, env: Environment, base_url: str) -> dict[str, Any]:
        """One environment in the list-environments shape."""
        properties: dict[str, Any] = {
            "tenantId": self.tenant.tenant_id,
            "azureRegion": "westus",
            "displayName": env.display_name,
            "description": "",
            "createdTime": env.created_time,
            "createdBy": {
                "id": str(uuid.uuid5(_NS, "creator")),
                "displayName": "SYSTEM",
                "type": "NotSpecified",
            },
            "lastModifiedTime": env.created_time,
            "provisioningState": "Succeeded",
            "creationType": "DefaultTenant" if env.is_default else "User",
            "environmentSku": env.sku,
            "isDefault": env.is_default,
            "clientUris": {
                "admin": f"https://admin.powerplatform.microsoft.com/environments/{env.id}/hub",
                "maker": f"https://make.powerapps.com/environments/{env.id}/home",
            },
            "runtimeEndpoints": {
                "microsoft.BusinessAppPlatform": f"{base_url}/bap",
                "microsoft.PowerApps": f"{base_url}/powerapps",
                "microsoft.Flow": f"{base_url}/flow",
            },
            "databaseType": "CommonDataService" if env.has_dataverse else "None",
            "states": {"management": {"id": "Ready"}, "runtime": {"id": "Enabled"}},
            "retentionPeriod": "P7D",
            "updateCadence": {"id": "Frequent"},
            "protectionStatus": {"keyManagedBy": "Microsoft"},
        }
        if env.has_dataverse:
            properties["linkedEnvironmentMetadata"] = self._linked(env, base_url)
        return {
            "id": f"/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments/{env.id}",
            "type": "Microsoft.BusinessAppPlatform/scopes/environments",
            "location": env.location,
            "name": env.id,
            "properties": properties,
        }

    @staticmethod
    def _linked(env: Environment, base_url: str) -> dict[str, Any]:
        url = instance_url(env, base_url)
        return {
            "resourceId": str(uuid.uuid5(_NS, f"resource:{env.id}")),
            "friendlyName": env.display_name,
            "uniqueName": uuid.uuid5(_NS, f"unique:{env.id}").hex[:30],
            "domainName": org_name(env),
            "version": "9.2.24044.00204",
            "instanceUrl": url,
            "instanceApiUrl": url.rstrip("/"),
            "baseLanguage": 1033,
            "instanceState": "Ready",
            "createdTime": env.created_time,
            "backgroundOperationsState": "Enabled",
            "platformSku": "Standard",
        }
