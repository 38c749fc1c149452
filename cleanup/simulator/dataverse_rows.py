"""Rows of the simulated Dataverse tables, built from the tenant model on every read."""

from __future__ import annotations

import uuid
from typing import Any

from cleanup.simulator.odata import Row
from cleanup.simulator.tenant import (
    DEFAULT_SOLUTION_ID,
    WORKFLOW_COMPONENT_TYPE,
    ConnectionReference,
    Environment,
    Flow,
    Publisher,
    Solution,
)

_NS = uuid.UUID("0b6f3f4e-59a8-4f0e-8f0c-3c1f3a4d2b71")
FIXED_VERSION = 1000  # versionnumber of rows the simulator never writes
UNMANAGED_OVERWRITE = "1900-01-01T00:00:00Z"


def stable_id(*parts: str) -> str:
    """A deterministic GUID for derived rows (solution components, dependencies...)."""
    return str(uuid.uuid5(_NS, ":".join(parts)))


def _none_if_empty(value: str | None) -> str | None:
    # Dataverse stores no empty strings: an empty text column reads back as null.
    return value if value else None


def _managed_property(value: bool, is_managed: bool) -> dict[str, Any]:
    return {
        "Value": value,
        "CanBeChanged": not is_managed,
        "ManagedPropertyLogicalName": "iscustomizableanddeletable",
    }


def reference_row(ref: ConnectionReference) -> Row:
    """The connectionreference row of a model reference."""
    return {
        "connectionreferenceid": ref.id,
        "connectionreferencelogicalname": ref.logical_name,
        "connectionreferencedisplayname": _none_if_empty(ref.display_name),
        "connectorid": ref.connector_id,
        "connectionid": _none_if_empty(ref.connection_id),
        "description": _none_if_empty(ref.description),
        "ismanaged": ref.is_managed,
        "iscustomizable": _managed_property(ref.is_customizable, ref.is_managed),
        "_ownerid_value": _none_if_empty(ref.owner_id),
        "createdon": ref.created_on,
        "modifiedon": ref.modified_on,
        "solutionid": ref.solution_id,
        "statecode": ref.statecode,
        "statuscode": ref.statuscode,
        "versionnumber": ref.version,
        "_customconnectorid_value": _none_if_empty(ref.custom_connector_id),
        "componentstate": 0,
        "componentidunique": stable_id("componentidunique", ref.id),
        "overwritetime": ref.created_on if ref.is_managed else UNMANAGED_OVERWRITE,
        "__lookup": {"_ownerid_value": ref.owner_type, "_customconnectorid_value": "connector"},
    }


def flow_row(flow: Flow) -> Row:
    """The workflow row of a model flow."""
    return {
        "workflowid": flow.id,
        "workflowidunique": flow.unique_id or stable_id("workflowidunique", flow.id),
        "name": flow.name,
        "category": flow.category,
        "type": flow.type,
        "statecode": flow.state,
        "statuscode": flow.status,
        "ismanaged": flow.is_managed,
        "iscustomizable": _managed_property(True, flow.is_managed),
        "_ownerid_value": _none_if_empty(flow.owner_id),
        "createdon": flow.created_on,
        "modifiedon": flow.modified_on,
        "solutionid": flow.solution_id,
        "clientdata": flow.clientdata,
        "description": _none_if_empty(flow.description),
        "modernflowtype": flow.modern_flow_type,
        "primaryentity": "none",
        "versionnumber": flow.version,
        "componentstate": 0,
        "overwritetime": flow.created_on if flow.is_managed else UNMANAGED_OVERWRITE,
        "__lookup": {"_ownerid_value": flow.owner_type},
    }


def _default_publisher(env: Environment) -> Publisher:
    org = env.org_name or "org"
    return Publisher(
        id=stable_id("default-publisher", env.id),
        unique_name=f"DefaultPublisher{org}",
        friendly_name=f"Default Publisher for {org}",
        prefix="new",
    )


def solutions_of(env: Environment) -> tuple[list[Solution], list[Publisher]]:
    """The environment's solutions and publishers, plus the built-in Default Solution."""
    solutions, publishers = list(env.solutions), list(env.publishers)
    if not any(s.id == DEFAULT_SOLUTION_ID for s in solutions):
        publisher = _default_publisher(env)
        publishers.append(publisher)
        default = Solution(
            id=DEFAULT_SOLUTION_ID,
            unique_name="Default",
            friendly_name="Default Solution",
            publisher_id=publisher.id,
            is_visible=False,
        )
        solutions.append(default)
    return solutions, publishers


def solution_rows(env: Environment) -> list[Row]:
    """Rows of ``solutions`` (with the built-in Default Solution)."""
    return [
        {
            "solutionid": s.id,
            "uniquename": s.unique_name,
            "friendlyname": s.friendly_name,
            "ismanaged": s.is_managed,
            "version": s.version,
            "_publisherid_value": _none_if_empty(s.publisher_id),
            "isvisible": s.is_visible,
            "versionnumber": FIXED_VERSION,
            "__lookup": {"_publisherid_value": "publisher"},
        }
        for s in solutions_of(env)[0]
    ]


def publisher_rows(env: Environment) -> list[Row]:
    """Rows of ``publishers``."""
    return [
        {
            "publisherid": p.id,
            "uniquename": p.unique_name,
            "friendlyname": p.friendly_name,
            "customizationprefix": p.prefix,
            "versionnumber": FIXED_VERSION,
        }
        for p in solutions_of(env)[1]
    ]


def component_rows(env: Environment) -> list[Row]:
    """Rows of ``solutioncomponents``: each flow and reference in each of its solutions."""
    rows: list[Row] = []
    members: list[tuple[Flow | ConnectionReference, int]] = [
        (f, WORKFLOW_COMPONENT_TYPE) for f in env.flows
    ] + [(r, env.reference_component_type) for r in env.references]
    for obj, component_type in members:
        for solution_id in dict.fromkeys([obj.solution_id, *obj.solution_ids]):
            rows.append(
                {
                    "solutioncomponentid": stable_id("solutioncomponent", solution_id, obj.id),
                    "_solutionid_value": solution_id,
                    "objectid": obj.id,
                    "componenttype": component_type,
                    "rootcomponentbehavior": 0,
                    "ismetadata": False,
                    "createdon": obj.created_on,
                    "modifiedon": obj.created_on,
                    "versionnumber": FIXED_VERSION,
                    "__lookup": {"_solutionid_value": "solution"},
                }
            )
    return rows


def definition_rows(env: Environment) -> list[Row]:
    """The ``solutioncomponentdefinitions`` row that gives references their type code."""
    return [
        {
            "solutioncomponentdefinitionid": stable_id("definition", env.id, "connectionreference"),
            "name": "connectionreference",
            "primaryentityname": "connectionreference",
            "solutioncomponenttype": env.reference_component_type,
            "versionnumber": FIXED_VERSION,
        }
    ]


def user_rows(env: Environment) -> list[Row]:
    """Rows of ``systemusers``."""
    return [
        {
            "systemuserid": u.id,
            "fullname": u.full_name,
            "internalemailaddress": _none_if_empty(u.email),
            "domainname": _none_if_empty(u.domain_name),
            "azureactivedirectoryobjectid": _none_if_empty(u.aad_object_id),
            "applicationid": _none_if_empty(u.application_id),
            "isdisabled": u.is_disabled,
            "accessmode": u.access_mode,
            "versionnumber": FIXED_VERSION,
        }
        for u in env.users
    ]


def team_rows(env: Environment) -> list[Row]:
    """Rows of ``teams``."""
    return [
        {
            "teamid": t.id,
            "name": t.name,
            "emailaddress": _none_if_empty(t.email),
            "azureactivedirectoryobjectid": _none_if_empty(t.aad_object_id),
            "teamtype": t.team_type,
            "versionnumber": FIXED_VERSION,
        }
        for t in env.teams
    ]
