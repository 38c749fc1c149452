"""Turn API rows into snapshot table rows (pure: no I/O).

A row that lacks what the job cannot do without (a primary key) raises ``BadAnswer``, so the
environment is marked incomplete with the reason instead of being silently misread.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from cleanup.errors import ApiError
from cleanup.snapshot.clientdata import parse_clientdata

LOOKUP_TYPE = "@Microsoft.Dynamics.CRM.lookuplogicalname"
SERVICE_PRINCIPAL_WORDS = ("serviceprincipal", "oauthsp", "clientcertificate", "clientsecret")
HASH_PIECE_BYTES = 2047  # below hashlib's 2,048-byte threshold for releasing the GIL


class BadAnswer(ApiError):
    """An API answer that does not have the documented shape."""


def connector_name(api_id: str | None) -> str | None:
    """Return the connector's API name from an id like ``/providers/.../apis/shared_x``."""
    if not api_id:
        return None
    marker = "/apis/"
    index = api_id.lower().rfind(marker)
    tail = api_id[index + len(marker) :] if index >= 0 else api_id
    return tail.strip("/").split("/")[0] or None


def environment_row(item: dict[str, Any]) -> dict[str, Any]:
    """Map one BAP environment to an ``environments`` row (status filled in later)."""
    name = _required(item, "name", "environment")
    props = item.get("properties") or {}
    linked = props.get("linkedEnvironmentMetadata") or {}
    instance_url = linked.get("instanceUrl") or None
    if instance_url and not instance_url.endswith("/"):
        instance_url += "/"
    return {
        "environment_id": name,
        "display_name": props.get("displayName") or name,
        "sku": props.get("environmentSku"),
        "is_default": bool(props.get("isDefault", False)),
        "has_dataverse": bool(instance_url),
        "instance_url": instance_url,
    }


def connection_row(environment_id: str, item: dict[str, Any]) -> dict[str, Any]:
    """Map one Power Apps admin connection to a ``connections`` row."""
    name = _required(item, "name", "connection")
    props = item.get("properties") or {}
    creator = props.get("createdBy") or {}
    statuses = [s for s in props.get("statuses") or [] if isinstance(s, dict)]
    first = statuses[0] if statuses else {}
    status = first.get("status") or "Unknown"
    error = first.get("error") or {}
    return {
        "environment_id": environment_id,
        "connection_id": name,
        "connector": connector_name(props.get("apiId") or item.get("id")),
        "display_name": props.get("displayName"),
        "status": status,
        "is_connected": status == "Connected",
        "error": (error.get("message") or error.get("code")) if isinstance(error, dict) else None,
        "created_by_id": creator.get("id"),
        "created_by_name": creator.get("displayName"),
        "created_by_email": creator.get("email") or creator.get("userPrincipalName"),
        "created_by_type": creator.get("type"),
        "identity": connection_identity(props),
        "created_on": props.get("createdTime"),
    }


def connection_identity(props: dict[str, Any]) -> str:
    """Say whether a connection signs in as a service principal or as a user."""
    parameter_set = props.get("connectionParametersSet") or {}
    set_name = str(parameter_set.get("name", "")) if isinstance(parameter_set, dict) else ""
    grant = str((props.get("connectionParameters") or {}).get("token:grantType", ""))
    creator_type = str((props.get("createdBy") or {}).get("type", ""))
    # The parameter set is the connection's own identity; the creator may be a person who set
    # up a service-principal connection, so it only decides when no parameter set says more.
    for word in (set_name, grant):
        if word and any(w in word.lower() for w in SERVICE_PRINCIPAL_WORDS):
            return "service-principal"
    if creator_type.lower() == "serviceprincipal":
        return "service-principal"
    if creator_type.lower() == "user":
        return "user"
    return "unknown"


def reference_row(environment_id: str, row: dict[str, Any]) -> dict[str, Any]:
    """Map one ``connectionreferences`` row."""
    customizable = row.get("iscustomizable")
    if isinstance(customizable, dict):
        customizable = customizable.get("Value")
    return {
        "environment_id": environment_id,
        "reference_id": _required(row, "connectionreferenceid", "connection reference"),
        "logical_name": _required(row, "connectionreferencelogicalname", "connection reference"),
        "display_name": row.get("connectionreferencedisplayname"),
        "connector": connector_name(row.get("connectorid")),
        "connector_id": row.get("connectorid"),
        "connection_id": row.get("connectionid") or None,
        "custom_connector_id": row.get("_customconnectorid_value"),
        "description": row.get("description"),
        "is_managed": row.get("ismanaged"),
        "is_customizable": customizable,
        "owner_id": row.get("_ownerid_value"),
        "owner_type": row.get("_ownerid_value" + LOOKUP_TYPE),
        "created_on": row.get("createdon"),
        "modified_on": row.get("modifiedon"),
        "etag": row.get("@odata.etag"),
        "solution_id": row.get("solutionid"),
    }


def clientdata_bytes(text: str) -> bytes:
    """Clientdata as the bytes its hash and size are taken of (UTF-8, lone surrogates kept)."""
    # A lone surrogate (a JSON "\ud800" escape) is hashed as it came, in snapshot and apply.
    return text.encode("utf-8", "surrogatepass")


def sha256_hex(raw: bytes) -> str:
    """The SHA-256 of ``raw`` in hex, computed without letting go of the GIL."""
    # hashlib hands the GIL over for inputs of 2,048 bytes or more. For one flow's clientdata
    # (~15 KB) that is a loss: getting the GIL back from the dozens of reading threads costs
    # more than the hash (the large benchmark's snapshot: 25.8 s -> 22.8 s fed in pieces).
    digest = hashlib.sha256()
    view = memoryview(raw)
    for start in range(0, len(view), HASH_PIECE_BYTES):
        digest.update(view[start : start + HASH_PIECE_BYTES])
    return digest.hexdigest()


def flow_rows(
    environment_id: str, row: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Map one ``workflows`` row to a ``flows`` row and its ``usages`` rows."""
    flow_id = _required(row, "workflowid", "cloud flow")
    clientdata = row.get("clientdata")
    parsed = parse_clientdata(clientdata)  # an odd type is reported as invalid, never a crash
    raw = clientdata_bytes(clientdata) if isinstance(clientdata, str) else b""
    flow = {
        "environment_id": environment_id,
        "flow_id": flow_id,
        "flow_unique_id": row.get("workflowidunique"),
        "name": row.get("name"),
        "state": row.get("statecode"),
        "status_code": row.get("statuscode"),
        "is_managed": row.get("ismanaged"),
        "owner_id": row.get("_ownerid_value"),
        "owner_type": row.get("_ownerid_value" + LOOKUP_TYPE),
        "created_on": row.get("createdon"),
        "modified_on": row.get("modifiedon"),
        "etag": row.get("@odata.etag"),
        "solution_id": row.get("solutionid"),
        "parse_status": parsed.status,
        "parse_error": parsed.error,
        "reference_count": len(parsed.references),
        "action_count": parsed.action_count,
        "clientdata_sha256": sha256_hex(raw) if raw else None,
        "clientdata_bytes": len(raw),
    }
    usages = [
        {
            "environment_id": environment_id,
            "flow_id": flow_id,
            "key": use.key,
            "logical_name": use.logical_name,
            "connector": use.connector,
            "runtime_source": use.runtime_source,
            "connection_name": use.connection_name,
            "action_count": use.action_count,
        }
        for use in parsed.references
    ]
    return flow, usages


def solution_rows(
    environment_id: str, solutions: Iterable[dict[str, Any]], publishers: Iterable[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Map solutions, joined with their publisher's prefix and name."""
    by_id = {p.get("publisherid"): p for p in publishers}
    rows = []
    for sol in solutions:
        pub = by_id.get(sol.get("_publisherid_value")) or {}
        rows.append(
            {
                "environment_id": environment_id,
                "solution_id": _required(sol, "solutionid", "solution"),
                "unique_name": sol.get("uniquename"),
                "friendly_name": sol.get("friendlyname"),
                "is_managed": sol.get("ismanaged"),
                "version": sol.get("version"),
                "publisher_prefix": pub.get("customizationprefix"),
                "publisher_name": pub.get("friendlyname") or pub.get("uniquename"),
            }
        )
    return rows


def component_rows(
    environment_id: str, rows: Iterable[dict[str, Any]], reference_type: int | None
) -> list[dict[str, Any]]:
    """Map solution components to membership rows naming the object's kind."""
    kinds = {29: "flow"}
    if reference_type is not None:
        kinds[reference_type] = "reference"
    return [
        {
            "environment_id": environment_id,
            "solution_id": row.get("_solutionid_value"),
            "object_id": row.get("objectid"),
            "component_type": row.get("componenttype"),
            "object_type": kinds.get(row.get("componenttype"), "other"),
        }
        for row in rows
    ]


def owner_rows(
    environment_id: str, users: Iterable[dict[str, Any]], teams: Iterable[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Map system users and teams to ``owners`` rows, deciding who can receive mail."""
    rows = []
    for user in users:
        email = user.get("internalemailaddress") or None
        is_app = bool(user.get("applicationid"))
        disabled = bool(user.get("isdisabled"))
        rows.append(
            {
                "environment_id": environment_id,
                "owner_id": _required(user, "systemuserid", "system user"),
                "owner_type": "systemuser",
                "name": user.get("fullname"),
                "email": email,
                "domain_name": user.get("domainname"),
                "aad_object_id": user.get("azureactivedirectoryobjectid"),
                "is_application_user": is_app,
                "is_disabled": disabled,
                # Access mode 4 is "non-interactive": application and system accounts.
                "can_receive_mail": bool(email)
                and not is_app
                and not disabled
                and user.get("accessmode") != 4,
            }
        )
    for team in teams:
        email = team.get("emailaddress") or None
        rows.append(
            {
                "environment_id": environment_id,
                "owner_id": _required(team, "teamid", "team"),
                "owner_type": "team",
                "name": team.get("name"),
                "email": email,
                "domain_name": None,
                "aad_object_id": team.get("azureactivedirectoryobjectid"),
                "is_application_user": False,
                "is_disabled": False,
                "can_receive_mail": bool(email),
            }
        )
    return rows


def _required(row: Any, key: str, what: str) -> str:
    if not isinstance(row, dict):
        raise BadAnswer(f"A {what} row is not a JSON object")
    value = row.get(key)
    if not isinstance(value, str) or not value:
        raise BadAnswer(f"A {what} row has no '{key}'")
    return value
