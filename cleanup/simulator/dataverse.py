"""Dataverse Web API v9.2 per environment: routing, queries, functions.

URL layout: ``{base}/dv/{org}/api/data/v9.2/{resource}``; the token audience is the instance
URL without its trailing slash. Writes live in ``dataverse_writes``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from cleanup.simulator import dataverse_rules as rules
from cleanup.simulator.dataverse_rows import stable_id
from cleanup.simulator.dataverse_tables import ENTITY_SETS, EntitySet, serialize
from cleanup.simulator.dataverse_writes import Writer
from cleanup.simulator.faults import Faults
from cleanup.simulator.identity import TokenInfo
from cleanup.simulator.messages import (
    ODATA_JSON_TYPE,
    Call,
    HttpError,
    Request,
    Response,
    error_response,
    fail,
    json_response,
    next_link,
)
from cleanup.simulator.odata import MAX_PAGE_SIZE, ODataError, parse_query, parse_select
from cleanup.simulator.odata_paging import fingerprint_of, page_number_of, paginate, parse_prefer
from cleanup.simulator.tenant import Environment, Tenant

_PATH = re.compile(r"^/dv/(?P<org>[^/]+)/api/data/v9\.\d/(?P<resource>.*)$")
_CALL = re.compile(r"^(?P<name>[A-Za-z_$][A-Za-z0-9_]*)(?:\((?P<args>.*)\))?$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
DEPENDENCY_FUNCTIONS = {
    "RetrieveDependenciesForDelete": rules.dependents_of,
    "RetrieveDependentComponents": rules.dependents_of,
    "RetrieveRequiredComponents": rules.required_by,
}
FUNCTIONS = {*DEPENDENCY_FUNCTIONS, "WhoAmI"}
_METADATA = {
    "connectionreference": ("connectionreferences", "connectionreferenceid", None),
    "workflow": ("workflows", "workflowid", 4703),
}


def org_name(env: Environment) -> str:
    """The Dataverse domain name of an environment (derived from its id when not set)."""
    if env.org_name:
        return env.org_name
    return "org" + hashlib.sha1(env.id.encode()).hexdigest()[:8]


def instance_url(env: Environment, base_url: str) -> str:
    """The instance URL, with trailing slash, as BAP reports it."""
    return f"{base_url}/dv/{org_name(env)}/"


def _not_found_segment(segment: str) -> HttpError:
    return fail(404, "0x8006088a", f"Resource not found for the segment '{segment}'.")


class Dataverse:
    """Serves every environment's Dataverse Web API from the live tenant."""

    def __init__(
        self, tenant: Tenant, faults: Callable[[], Faults], unmanaged_layers: set[str]
    ) -> None:
        self.tenant = tenant
        self.writer = Writer(faults, unmanaged_layers)

    def environment_for(self, org: str) -> Environment | None:
        """The Dataverse-enabled environment served under ``/dv/{org}``."""
        for env in self.tenant.environments:
            if env.has_dataverse and org_name(env).lower() == org.lower():
                return env
        return None

    # -- routing -------------------------------------------------------------------------
    def resolve(self, req: Request) -> Call:
        """Decide who serves a ``/dv/...`` request (404 for unknown orgs, no token needed)."""
        match = _PATH.match(req.path)
        env = self.environment_for(match.group("org")) if match else None
        if match is None or env is None:
            return Call("dataverse", lambda r, i: _missing_org(r))
        resource = match.group("resource")
        audience = instance_url(env, req.base_url).rstrip("/")
        call = _CALL.match(resource)
        name = call.group("name") if call else resource
        page = None
        if call and call.group("args") is None and name in ENTITY_SETS and req.method == "GET":
            page = page_number_of(req.params.get("$skiptoken"))

        def handler(r: Request, info: TokenInfo) -> Response:
            return self._serve(r, env, resource, info)

        return Call("dataverse", handler, audience, env.id, name, page, limited=True)

    def _serve(self, req: Request, env: Environment, resource: str, info: TokenInfo) -> Response:
        headers = {"OData-Version": "4.0"}
        if not env.readable:
            message = "The user is not a member of the organization."
            return error_response(403, "0x80072560", message, headers)
        try:
            response = self._dispatch(req, env, resource, info)
        except ODataError as err:
            response = error_response(400, "0x80060888", str(err))
        except HttpError as err:
            response = err.response
        response.headers.setdefault("OData-Version", "4.0")
        return response

    def _dispatch(self, req: Request, env: Environment, resource: str, info: TokenInfo) -> Response:
        call = _CALL.match(resource)
        if call is None:
            raise _not_found_segment(resource)
        name, args = call.group("name"), call.group("args")
        api = f"{instance_url(env, req.base_url)}api/data/v9.2/"
        if name in FUNCTIONS:
            if req.method != "GET":
                raise fail(
                    404,
                    "0x8006088a",
                    f"No HTTP resource was found that matches the request URI '{api}{resource}'.",
                )
            return self._function(req, env, name, args, info, api)
        if name == "EntityDefinitions" and args is not None and req.method == "GET":
            return _entity_definition(req, env, args, api)
        entity_set = ENTITY_SETS.get(name)
        if entity_set is None:
            raise _not_found_segment(name)
        if args is None:
            if req.method == "GET":
                return self._collection(req, env, entity_set, api)
            if req.method == "POST":
                return self.writer.create(req, env, entity_set, api, self.caller_id(env, info))
            raise fail(405, "0x80060888", f"The HTTP method {req.method} is not allowed here.")
        key = _key(args, entity_set)
        if req.method == "GET":
            return self._by_key(req, env, entity_set, key, api)
        if req.method == "PATCH":
            return self.writer.patch(req, env, entity_set, key, api, info.subject)
        if req.method == "DELETE":
            return self.writer.delete(req, env, entity_set, key)
        raise fail(405, "0x80060888", f"The HTTP method {req.method} is not allowed here.")

    # -- reads -----------------------------------------------------------------------------
    def _collection(self, req: Request, env: Environment, es: EntitySet, api: str) -> Response:
        params = req.params
        query = parse_query(params, es.columns, es.entity)
        prefs = parse_prefer(req.header("prefer"))
        applied: list[str] = []
        page_size: int | None = MAX_PAGE_SIZE
        requested = prefs.get("odata.maxpagesize", "")
        if requested.isdigit() and 0 < int(requested) <= MAX_PAGE_SIZE:
            page_size = int(requested)  # $top is ignored together with maxpagesize (API notes §7)
            applied.append(f"odata.maxpagesize={page_size}")
        elif query.top is not None:
            page_size = None
        annotations = prefs.get("odata.include-annotations")
        if annotations:
            applied.insert(0, f'odata.include-annotations="{annotations}"')
        token = params.get("$skiptoken")
        page = paginate(es.build(env), query, es.pk, page_size, token, fingerprint_of(params))
        context = f"{api}$metadata#{es.name}"
        if query.select:
            context += f"({','.join(query.select)})"
        body: dict[str, Any] = {"@odata.context": context}
        if query.count:
            body["@odata.count"] = page.total
        body["value"] = [serialize(r, es, query.select, annotations) for r in page.rows]
        if page.next_token is not None:
            body["@odata.nextLink"] = next_link(req, page.next_token)
        headers = {"Preference-Applied": ",".join(applied)} if applied else {}
        return json_response(200, body, headers, ODATA_JSON_TYPE)

    def _by_key(
        self, req: Request, env: Environment, es: EntitySet, key: str, api: str
    ) -> Response:
        params = req.params
        for name in params:
            if name.startswith("$") and name != "$select":
                raise ODataError(f"The query option '{name}' is not supported by this service.")
        select = parse_select(params.get("$select"), es.columns, es.entity)
        row = next((r for r in es.build(env) if str(r[es.pk]).lower() == key), None)
        if row is None:
            raise fail(404, "0x80040217", f"{es.entity} With Id = {key} Does Not Exist")
        annotations = parse_prefer(req.header("prefer")).get("odata.include-annotations")
        context = f"{api}$metadata#{es.name}"
        context += f"({','.join(select)})/$entity" if select else "/$entity"
        body = {"@odata.context": context, **serialize(row, es, select, annotations)}
        return json_response(200, body, {}, ODATA_JSON_TYPE)

    # -- functions ---------------------------------------------------------------------------
    def caller_id(self, env: Environment, info: TokenInfo) -> str:
        """The systemuserid of the token's principal in this environment."""
        for user in env.users:
            if info.is_app and (user.application_id or "").lower() == info.client_id.lower():
                return user.id
            if not info.is_app and user.aad_object_id.lower() == info.subject.lower():
                return user.id
        return stable_id("caller", env.id, info.subject)

    def _function(
        self, req: Request, env: Environment, name: str, args: str | None, info: TokenInfo, api: str
    ) -> Response:
        if name == "WhoAmI":
            body = {
                "@odata.context": f"{api}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                "BusinessUnitId": stable_id("businessunit", env.id),
                "UserId": self.caller_id(env, info),
                "OrganizationId": stable_id("organization", env.id),
            }
            return json_response(200, body, {}, ODATA_JSON_TYPE)
        values = _function_args(args or "", req.params)
        object_id, component_type = values.get("ObjectId"), values.get("ComponentType")
        if object_id is None or component_type is None:
            missing = "ObjectId" if object_id is None else "ComponentType"
            raise ODataError(f"The function '{name}' requires the parameter '{missing}'.")
        if not _GUID.match(object_id):
            raise ODataError(f"The value '{object_id}' of parameter 'ObjectId' is not an Edm.Guid.")
        if not component_type.lstrip("-").isdigit():
            raise ODataError(
                f"The value '{component_type}' of parameter 'ComponentType' is not an Edm.Int32."
            )
        rows = DEPENDENCY_FUNCTIONS[name](env, object_id, int(component_type))
        body = {"@odata.context": f"{api}$metadata#dependencies", "value": rows}
        return json_response(200, body, {}, ODATA_JSON_TYPE)


def _missing_org(req: Request) -> Response:
    return error_response(404, "OrganizationNotFound", f"No Dataverse organization at {req.path}.")


def _key(args: str, es: EntitySet) -> str:
    key = args.strip()
    if not _GUID.match(key):
        raise ODataError(
            f"The key '{args}' of '{es.name}' is not supported; address rows by their "
            f"{es.pk} GUID, e.g. {es.name}(00000000-0000-0000-0000-000000000000)."
        )
    return key.lower()


def _function_args(args: str, params: dict[str, str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in args.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise ODataError(f"Syntax error in function parameters '{args}'.")
        value = value.strip()
        if value.startswith("@"):
            if value not in params:
                raise ODataError(f"The parameter alias '{value}' has no value in the query.")
            value = params[value]
        values[name.strip()] = unquote(value).strip()
    return values


def _entity_definition(req: Request, env: Environment, args: str, api: str) -> Response:
    match = re.fullmatch(r"\s*LogicalName\s*=\s*'([^']*)'\s*", args)
    if match is None or match.group(1) not in _METADATA:
        raise fail(404, "0x80040217", f"Could not find an entity with {args}.")
    logical = match.group(1)
    entity_set, pk, type_code = _METADATA[logical]
    full = {
        "MetadataId": stable_id("metadata", logical),
        "LogicalName": logical,
        "EntitySetName": entity_set,
        "PrimaryIdAttribute": pk,
        "ObjectTypeCode": type_code or env.reference_component_type,
        "IsOptimisticConcurrencyEnabled": True,
    }
    select = req.params.get("$select")
    wanted = [s.strip() for s in select.split(",")] if select else list(full)
    body: dict[str, Any] = {"@odata.context": f"{api}$metadata#EntityDefinitions/$entity"}
    body.update({k: full[k] for k in wanted if k in full})
    body["MetadataId"] = full["MetadataId"]
    return json_response(200, body, {}, ODATA_JSON_TYPE)
