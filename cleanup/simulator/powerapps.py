"""Power Apps admin connections API (``api.powerapps.com`` admin scope), API notes §5.1-5.2."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from cleanup.simulator.bap import missing_api_version
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
from cleanup.simulator.tenant import Connection, Environment, Tenant

_ADMIN = "/providers/Microsoft.PowerApps/scopes/admin/environments"
_PATH = re.compile(
    rf"^/powerapps{_ADMIN}/(?P<env>[^/]+)"
    r"(?:/apis/(?P<connector>[^/]+))?/connections(?:/(?P<name>[^/]+))?/?$",
    re.IGNORECASE,
)
DEFAULT_PAGE_SIZE = 250


class PowerApps:
    """Lists connections per environment (optionally per connector), paged by ``nextLink``."""

    def __init__(self, tenant: Tenant, faults: Callable[[], Faults]) -> None:
        self.tenant = tenant
        self._faults = faults

    def resolve(self, req: Request) -> Call | None:
        """A Call for a ``/powerapps/...`` request, or None when no route matches."""
        match = _PATH.match(req.path)
        if match is None or req.method != "GET":
            return None
        env_name, connector, name = match.group("env", "connector", "name")
        page = None
        if name is None:
            token = req.params.get("$skiptoken")
            decoded = decode_offset_token(token) if token else (0, 1)
            page = decoded[1] if decoded else 0

        def handler(r: Request, _info: Any) -> Response:
            return self._serve(r, env_name, connector, name)

        return Call("powerapps", handler, POWERAPPS_RESOURCE, env_name, "connections", page)

    def _serve(
        self, req: Request, env_name: str, connector: str | None, name: str | None
    ) -> Response:
        if "api-version" not in req.params:
            return missing_api_version()
        env = next((e for e in self.tenant.environments if e.id.lower() == env_name.lower()), None)
        if env is None:
            return error_response(
                404,
                "EnvironmentNotFound",
                f"The environment '{env_name}' could not be found in the tenant "
                f"'{self.tenant.tenant_id}'.",
            )
        connections = [c for c in env.connections if connector is None or c.connector == connector]
        if name is not None:
            found = next((c for c in connections if c.name.lower() == name.lower()), None)
            if found is None:
                return error_response(
                    404,
                    "ConnectionNotFound",
                    f"Could not find connection '{name}' for API '{connector}'.",
                )
            return json_response(200, self.item(env, found))
        return self._page(req, env, connections)

    def _page_size(self, req: Request) -> int | Response:
        configured = self._faults().connections_page_size
        if configured:
            return configured
        top = req.params.get("$top")
        if top is None:
            return DEFAULT_PAGE_SIZE
        if not top.isdigit() or int(top) == 0:
            return error_response(400, "InvalidQueryParameter", f"Invalid $top value '{top}'.")
        return min(int(top), DEFAULT_PAGE_SIZE)

    def _page(self, req: Request, env: Environment, connections: list[Connection]) -> Response:
        size = self._page_size(req)
        if isinstance(size, Response):
            return size
        token = req.params.get("$skiptoken")
        position = decode_offset_token(token) if token else (0, 1)
        if position is None:
            return error_response(400, "InvalidSkipToken", "The $skiptoken is not valid.")
        offset, page = position
        body: dict[str, Any] = {
            "value": [self.item(env, c) for c in connections[offset : offset + size]]
        }
        if offset + size < len(connections):
            body["nextLink"] = next_link(req, encode_offset_token(offset + size, page + 1))
        return json_response(200, body)

    def item(self, env: Environment, conn: Connection) -> dict[str, Any]:
        """One connection in the admin-scope shape."""
        api_id = f"{_ADMIN}/{env.id}/apis/{conn.connector}"
        creator: dict[str, Any] = {
            "id": conn.created_by.id,
            "displayName": conn.created_by.display_name,
            "type": conn.created_by.type,
            "tenantId": self.tenant.tenant_id,
        }
        # Service principals carry no mailbox: Entra omits what it does not have.
        if conn.created_by.email:
            creator["email"] = conn.created_by.email
        if conn.created_by.user_principal_name:
            creator["userPrincipalName"] = conn.created_by.user_principal_name
        properties: dict[str, Any] = {
            "apiId": api_id,
            "displayName": conn.display_name,
            "iconUri": f"https://connectoricons-prod.azureedge.net/{conn.connector}/icon.png",
            "statuses": _statuses(conn),
            "createdBy": creator,
            "createdTime": conn.created_time,
            "lastModifiedTime": conn.last_modified_time,
            "environment": {
                "id": f"/providers/Microsoft.PowerApps/environments/{env.id}",
                "name": env.id,
            },
            "allowSharing": False,
        }
        account = conn.created_by.user_principal_name or conn.created_by.email
        if account:
            properties["accountName"] = account
        if conn.parameter_set:
            properties["connectionParametersSet"] = {"name": conn.parameter_set, "values": {}}
        else:
            properties["connectionParameters"] = {}
        return {
            "name": conn.name,
            "id": f"{api_id}/connections/{conn.name}",
            "type": "Microsoft.PowerApps/scopes/apis/connections",
            "properties": properties,
        }


def _statuses(conn: Connection) -> list[dict[str, Any]]:
    if conn.status == "Connected":
        return [{"status": "Connected"}]
    error = {
        "code": conn.error_code or "Unauthorized",
        "message": conn.error_message or "The connection's credentials are no longer valid.",
    }
    return [{"status": conn.status, "target": "token", "error": error}]
