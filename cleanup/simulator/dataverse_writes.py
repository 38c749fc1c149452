"""Dataverse writes: PATCH and DELETE with If-Match, and creating connection references.

Every write bumps the row's versionnumber (environment-wide counter, like a SQL rowversion)
and its modifiedon. A change to a managed row is allowed but remembered in
``unmanaged_layers``: in reality it creates an unmanaged layer on top of the managed one.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from cleanup.simulator import dataverse_rules as rules
from cleanup.simulator.dataverse_rows import flow_row, reference_row
from cleanup.simulator.dataverse_tables import EntitySet, serialize
from cleanup.simulator.faults import Faults
from cleanup.simulator.messages import (
    ODATA_JSON_TYPE,
    Request,
    Response,
    fail,
    json_response,
    utc_now_iso,
)
from cleanup.simulator.odata import parse_select
from cleanup.simulator.odata_paging import parse_prefer
from cleanup.simulator.tenant import (
    DEFAULT_SOLUTION_ID,
    ConnectionReference,
    Environment,
    Flow,
)

_BIND = re.compile(r"(?:^|/)(systemusers|teams)\(([0-9a-fA-F-]{36})\)$")
_REFERENCE_TEXT = {
    "connectionreferencedisplayname": 200,
    "connectionid": 1000,
    "description": 2000,
}
_FLOW_TEXT = {"name": 100, "description": 100000}
_CREATE_TEXT = {"connectionreferencelogicalname": 200, "connectorid": 1000, **_REFERENCE_TEXT}
PRECONDITION_MESSAGE = (
    "The version of the existing record doesn't match the RowVersion property provided."
)


def _payload_error(entity_set: str, detail: str) -> Exception:
    return fail(
        400,
        "0x80048d19",
        f"Error identified in Payload provided by the user for Entity :'{entity_set}'. {detail}",
    )


def _check_if_match(req: Request, version: int) -> None:
    value = req.header("if-match").strip()
    if not value or value == "*":
        return
    for tag in value.split(","):
        tag = tag.strip()
        tag = tag[2:] if tag.startswith("W/") else tag
        if tag.strip('"') == str(version):
            return
    raise fail(412, "0x80060882", PRECONDITION_MESSAGE)


def _text(es: EntitySet, name: str, value: Any, limit: int) -> str | None:
    if value is not None and not isinstance(value, str):
        raise _payload_error(
            es.name, f"Cannot convert the literal '{value}' to 'Edm.String' for '{name}'."
        )
    if value is not None and len(value) > limit:
        raise fail(
            400,
            "0x80044331",
            f"A validation error occurred.  The length of the '{name}' attribute of the "
            f"'{es.entity}' entity exceeded the maximum allowed length of '{limit}'.",
        )
    return value or None


def _body(req: Request, es: EntitySet) -> dict[str, Any]:
    try:
        body = req.json()
    except (ValueError, UnicodeError):
        raise _payload_error(es.name, "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise _payload_error(es.name, "The request body must be a JSON object.")
    return {k: v for k, v in body.items() if not k.startswith("@")}


def _check_keys(es: EntitySet, body: dict[str, Any], writable: set[str]) -> None:
    for key in body:
        if key == "ownerid@odata.bind":
            continue
        if key not in es.columns:
            raise fail(
                400,
                "0x80060888",
                f"The property '{key}' does not exist on type "
                f"'Microsoft.Dynamics.CRM.{es.entity}'. Make sure to only use property names "
                "that are defined by the type.",
            )
        if key not in writable:
            raise fail(
                400,
                "0x80060888",
                f"The property '{key}' of '{es.entity}' is read-only in this service; writable: "
                f"{', '.join(sorted(writable))}, ownerid@odata.bind.",
            )


class Writer:
    """Applies validated writes to the live tenant."""

    def __init__(self, faults: Callable[[], Faults], unmanaged_layers: set[str]) -> None:
        self._faults = faults
        self.unmanaged_layers = unmanaged_layers

    @staticmethod
    def _next_version(env: Environment) -> int:
        versions = [r.version for r in env.references] + [f.version for f in env.flows]
        return max(versions, default=1000) + 1

    def _touch(self, env: Environment, obj: Flow | ConnectionReference) -> None:
        obj.version = self._next_version(env)
        obj.modified_on = utc_now_iso()
        if obj.is_managed:
            self.unmanaged_layers.add(obj.id)

    @staticmethod
    def _owner(env: Environment, value: Any) -> tuple[str, str]:
        match = _BIND.search(value) if isinstance(value, str) else None
        if match is None:
            raise fail(400, "0x80060888", f"Invalid ownerid@odata.bind value '{value}'.")
        kind, owner_id = match.group(1), match.group(2).lower()
        pool = env.users if kind == "systemusers" else env.teams
        if not any(o.id.lower() == owner_id for o in pool):
            entity = "systemuser" if kind == "systemusers" else "team"
            raise fail(404, "0x80040217", f"{entity} With Id = {owner_id} Does Not Exist")
        return owner_id, "systemuser" if kind == "systemusers" else "team"

    def _written(self, req: Request, es: EntitySet, row: dict[str, Any], api: str) -> Response:
        entity_id = f"{api}{es.name}({row[es.pk]})"
        if parse_prefer(req.header("prefer")).get("return") == "representation":
            select = parse_select(req.params.get("$select"), es.columns, es.entity)
            body = {"@odata.context": f"{api}$metadata#{es.name}/$entity"}
            body.update(serialize(row, es, select, None))
            status = 201 if req.method == "POST" else 200
            return json_response(status, body, {"OData-EntityId": entity_id}, ODATA_JSON_TYPE)
        return Response(204, b"", {"OData-EntityId": entity_id})

    # -- PATCH -------------------------------------------------------------------------------
    def patch(
        self, req: Request, env: Environment, es: EntitySet, key: str, api: str, caller_oid: str
    ) -> Response:
        """Update a connection reference or a flow."""
        if es.name == "connectionreferences":
            ref = _find(env.references, key, es)
            _check_if_match(req, ref.version)
            self._patch_reference(env, es, ref, _body(req, es))
            return self._written(req, es, reference_row(ref), api)
        if es.name == "workflows":
            flow = _find(env.flows, key, es)
            _check_if_match(req, flow.version)
            self._patch_flow(env, es, flow, _body(req, es), caller_oid)
            return self._written(req, es, flow_row(flow), api)
        raise fail(405, "0x80060888", f"This service does not support updating '{es.name}'.")

    def _patch_reference(
        self, env: Environment, es: EntitySet, ref: ConnectionReference, body: dict[str, Any]
    ) -> None:
        _check_keys(es, body, set(_REFERENCE_TEXT))
        values = {
            k: _text(es, k, v, _REFERENCE_TEXT[k]) for k, v in body.items() if k in _REFERENCE_TEXT
        }
        owner = (
            self._owner(env, body["ownerid@odata.bind"]) if "ownerid@odata.bind" in body else None
        )
        if not ref.is_customizable:
            # UNCONFIRMED text: the notes only say the update is refused.
            raise fail(
                400,
                "0x8004f037",
                f"The connectionreference({ref.id}) component cannot be updated because its "
                "managed property iscustomizable is false.",
            )
        if values.get("connectionid"):
            rules.check_connection_exists(env, ref.connector_id, values["connectionid"])
        if "connectionreferencedisplayname" in values:
            ref.display_name = values["connectionreferencedisplayname"] or ""
        if "connectionid" in values:
            ref.connection_id = values["connectionid"]
        if "description" in values:
            ref.description = values["description"]
        if owner:
            ref.owner_id, ref.owner_type = owner
        self._touch(env, ref)

    def _patch_flow(
        self, env: Environment, es: EntitySet, flow: Flow, body: dict[str, Any], caller_oid: str
    ) -> None:
        _check_keys(es, body, {*_FLOW_TEXT, "clientdata", "statecode", "statuscode"})
        texts = {k: _text(es, k, v, _FLOW_TEXT[k]) for k, v in body.items() if k in _FLOW_TEXT}
        owner = (
            self._owner(env, body["ownerid@odata.bind"]) if "ownerid@odata.bind" in body else None
        )
        clientdata = rules.check_clientdata(body["clientdata"]) if "clientdata" in body else None
        for name in ("statecode", "statuscode"):
            if name in body and (type(body[name]) is not int):
                raise _payload_error(
                    es.name, f"Cannot convert '{body[name]}' to Edm.Int32 for '{name}'."
                )
        state, status = rules.resolve_state(flow, body.get("statecode"), body.get("statuscode"))
        editing_live = clientdata is not None and flow.state == 1 and state == 1
        if editing_live and self._faults().reject_clientdata_patch_when_on:
            # UNCONFIRMED for cloud flows (documented for classic workflows only).
            raise fail(400, "0x80045002", "Cannot update a published workflow definition.")
        effective = clientdata if clientdata is not None else flow.clientdata
        if state == 1 and (
            flow.state != 1 or (clientdata is not None and clientdata != flow.clientdata)
        ):
            rules.check_activation(env, effective, caller_oid)
        if "name" in texts:
            if not texts["name"]:
                raise fail(400, "0x80044331", "A validation error occurred.  'name' is required.")
            flow.name = texts["name"]
        if "description" in texts:
            flow.description = texts["description"]
        if clientdata is not None:
            flow.clientdata = clientdata
        flow.state, flow.status = state, status
        if owner:
            flow.owner_id, flow.owner_type = owner
        self._touch(env, flow)

    # -- DELETE ------------------------------------------------------------------------------
    def delete(self, req: Request, env: Environment, es: EntitySet, key: str) -> Response:
        """Delete a connection reference or a flow, enforcing the platform's refusals."""
        if es.name == "connectionreferences":
            ref = _find(env.references, key, es)
            _check_if_match(req, ref.version)
            rules.check_delete_managed(es.entity, ref.id, ref.is_managed)
            rules.check_delete_reference(env, ref)
            env.references.remove(ref)
            return Response(204)
        if es.name == "workflows":
            flow = _find(env.flows, key, es)
            _check_if_match(req, flow.version)
            rules.check_delete_managed(es.entity, flow.id, flow.is_managed)
            rules.check_delete_flow(flow)
            env.flows.remove(flow)
            return Response(204)
        raise fail(405, "0x80060888", f"This service does not support deleting '{es.name}'.")

    # -- POST --------------------------------------------------------------------------------
    def create(
        self, req: Request, env: Environment, es: EntitySet, api: str, caller_id: str
    ) -> Response:
        """Create a connection reference (optionally inside ``MSCRM.SolutionUniqueName``)."""
        if es.name != "connectionreferences":
            raise fail(405, "0x80060888", f"This service does not support creating '{es.name}'.")
        body = _body(req, es)
        _check_keys(es, body, {*_CREATE_TEXT, "connectionreferenceid"})
        values = {k: _text(es, k, v, _CREATE_TEXT[k]) for k, v in body.items() if k in _CREATE_TEXT}
        for required in ("connectionreferencelogicalname", "connectorid"):
            if not values.get(required):
                raise fail(
                    400, "0x80040203", f"'{required}' is required to create a connectionreference."
                )
        new_id = str(body.get("connectionreferenceid") or uuid.uuid4()).lower()
        name = values["connectionreferencelogicalname"] or ""
        if rules.find_reference(env, name) or any(r.id.lower() == new_id for r in env.references):
            raise fail(400, "0x80040237", "A record with matching key values already exists.")
        solution_ids = self._solution_membership(env, req.header("mscrm.solutionuniquename"))
        if values.get("connectionid"):
            rules.check_connection_exists(env, values["connectorid"] or "", values["connectionid"])
        owner_id, owner_type = caller_id, "systemuser"
        if "ownerid@odata.bind" in body:
            owner_id, owner_type = self._owner(env, body["ownerid@odata.bind"])
        now = utc_now_iso()
        ref = ConnectionReference(
            id=new_id,
            logical_name=name,
            display_name=values.get("connectionreferencedisplayname") or "",
            connector_id=values["connectorid"] or "",
            connection_id=values.get("connectionid"),
            description=values.get("description"),
            owner_id=owner_id,
            owner_type=owner_type,
            created_on=now,
            modified_on=now,
            version=self._next_version(env),
            solution_ids=solution_ids,
        )
        env.references.append(ref)
        return self._written(req, es, reference_row(ref), api)

    @staticmethod
    def _solution_membership(env: Environment, unique_name: str) -> list[str]:
        if not unique_name:
            return []
        for solution in env.solutions:
            if solution.unique_name.lower() == unique_name.lower():
                return [] if solution.id == DEFAULT_SOLUTION_ID else [solution.id]
        if unique_name.lower() == "default":
            return []
        # UNCONFIRMED text for an unknown MSCRM.SolutionUniqueName.
        raise fail(404, "0x80040217", f"solution With Name = {unique_name} Does Not Exist")


def _find(rows: list[Any], key: str, es: EntitySet) -> Any:
    for row in rows:
        if row.id.lower() == key:
            return row
    raise fail(404, "0x80040217", f"{es.entity} With Id = {key} Does Not Exist")
