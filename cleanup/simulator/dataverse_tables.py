"""Dataverse table definitions: entity sets, column types, labels, and row serialization."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cleanup.simulator.dataverse_rows import (
    component_rows,
    definition_rows,
    flow_row,
    publisher_rows,
    reference_row,
    solution_rows,
    team_rows,
    user_rows,
)
from cleanup.simulator.odata import Row
from cleanup.simulator.odata_paging import annotation_wanted
from cleanup.simulator.tenant import Environment

LOOKUP_ANNOTATION = "Microsoft.Dynamics.CRM.lookuplogicalname"
NAV_ANNOTATION = "Microsoft.Dynamics.CRM.associatednavigationproperty"
FORMATTED = "OData.Community.Display.V1.FormattedValue"


@dataclass
class EntitySet:
    """One entity set: its logical name, key, column types and row builder."""

    name: str
    entity: str
    pk: str
    columns: dict[str, str]
    build: Callable[[Environment], list[Row]]
    lookups: dict[str, str] = field(default_factory=dict)  # column -> navigation property
    labels: dict[str, dict[Any, str]] = field(default_factory=dict)  # formatted values


_STATE_CR = {0: "Active", 1: "Inactive"}
_STATUS_CR = {1: "Active", 2: "Inactive"}
_MANAGED = {True: "Managed", False: "Unmanaged"}
_COMMON = {"versionnumber": "bigint"}

ENTITY_SETS: dict[str, EntitySet] = {
    s.name: s
    for s in [
        EntitySet(
            "connectionreferences",
            "connectionreference",
            "connectionreferenceid",
            {
                "connectionreferenceid": "guid",
                "connectionreferencelogicalname": "string",
                "connectionreferencedisplayname": "string",
                "connectorid": "string",
                "connectionid": "string",
                "description": "string",
                "ismanaged": "bool",
                "iscustomizable": "managed",
                "_ownerid_value": "guid",
                "createdon": "datetime",
                "modifiedon": "datetime",
                "solutionid": "guid",
                "statecode": "int",
                "statuscode": "int",
                "_customconnectorid_value": "guid",
                "componentstate": "int",
                "componentidunique": "guid",
                "overwritetime": "datetime",
                **_COMMON,
            },
            lambda env: [reference_row(r) for r in env.references],
            {"_ownerid_value": "ownerid", "_customconnectorid_value": "customconnectorid"},
            {"statecode": _STATE_CR, "statuscode": _STATUS_CR, "ismanaged": _MANAGED},
        ),
        EntitySet(
            "workflows",
            "workflow",
            "workflowid",
            {
                "workflowid": "guid",
                "workflowidunique": "guid",
                "name": "string",
                "category": "int",
                "type": "int",
                "statecode": "int",
                "statuscode": "int",
                "ismanaged": "bool",
                "iscustomizable": "managed",
                "_ownerid_value": "guid",
                "createdon": "datetime",
                "modifiedon": "datetime",
                "solutionid": "guid",
                "clientdata": "string",
                "description": "string",
                "modernflowtype": "int",
                "primaryentity": "string",
                "componentstate": "int",
                "overwritetime": "datetime",
                **_COMMON,
            },
            lambda env: [flow_row(f) for f in env.flows],
            {"_ownerid_value": "ownerid"},
            {
                "statecode": {0: "Draft", 1: "Activated", 2: "Suspended"},
                "statuscode": {1: "Draft", 2: "Activated", 3: "CompanyDLPViolation"},
                "category": {
                    0: "Workflow",
                    1: "Dialog",
                    2: "Business Rule",
                    3: "Action",
                    4: "Business Process Flow",
                    5: "Modern Flow",
                    6: "Desktop Flow",
                    7: "AI Flow",
                },
                "type": {1: "Definition", 2: "Activation", 3: "Template"},
                "ismanaged": _MANAGED,
            },
        ),
        EntitySet(
            "solutions",
            "solution",
            "solutionid",
            {
                "solutionid": "guid",
                "uniquename": "string",
                "friendlyname": "string",
                "ismanaged": "bool",
                "version": "string",
                "_publisherid_value": "guid",
                "isvisible": "bool",
                **_COMMON,
            },
            solution_rows,
            {"_publisherid_value": "publisherid"},
            {"ismanaged": _MANAGED},
        ),
        EntitySet(
            "publishers",
            "publisher",
            "publisherid",
            {
                "publisherid": "guid",
                "uniquename": "string",
                "friendlyname": "string",
                "customizationprefix": "string",
                **_COMMON,
            },
            publisher_rows,
        ),
        EntitySet(
            "solutioncomponents",
            "solutioncomponent",
            "solutioncomponentid",
            {
                "solutioncomponentid": "guid",
                "_solutionid_value": "guid",
                "objectid": "guid",
                "componenttype": "int",
                "rootcomponentbehavior": "int",
                "ismetadata": "bool",
                "createdon": "datetime",
                "modifiedon": "datetime",
                **_COMMON,
            },
            component_rows,
            {"_solutionid_value": "solutionid"},
        ),
        EntitySet(
            "solutioncomponentdefinitions",
            "solutioncomponentdefinition",
            "solutioncomponentdefinitionid",
            {
                "solutioncomponentdefinitionid": "guid",
                "name": "string",
                "primaryentityname": "string",
                "solutioncomponenttype": "int",
                **_COMMON,
            },
            definition_rows,
        ),
        EntitySet(
            "systemusers",
            "systemuser",
            "systemuserid",
            {
                "systemuserid": "guid",
                "fullname": "string",
                "internalemailaddress": "string",
                "domainname": "string",
                "azureactivedirectoryobjectid": "guid",
                "applicationid": "guid",
                "isdisabled": "bool",
                "accessmode": "int",
                **_COMMON,
            },
            user_rows,
        ),
        EntitySet(
            "teams",
            "team",
            "teamid",
            {
                "teamid": "guid",
                "name": "string",
                "emailaddress": "string",
                "azureactivedirectoryobjectid": "guid",
                "teamtype": "int",
                **_COMMON,
            },
            team_rows,
        ),
    ]
}


def serialize(
    row: Row, entity_set: EntitySet, select: list[str] | None, annotations: str | None
) -> dict[str, Any]:
    """A row as the Web API returns it: etag, selected columns (+ key), requested annotations."""
    out: dict[str, Any] = {"@odata.etag": f'W/"{row["versionnumber"]}"'}
    names = list(entity_set.columns) if select is None else [*select, entity_set.pk]
    lookup_names: dict[str, str] = row.get("__lookup", {})
    for name in dict.fromkeys(names):
        value = row.get(name)
        labels = entity_set.labels.get(name)
        if labels and value in labels and annotation_wanted(annotations, FORMATTED):
            out[f"{name}@{FORMATTED}"] = labels[value]
        if name in entity_set.lookups and value is not None:
            if annotation_wanted(annotations, NAV_ANNOTATION):
                out[f"{name}@{NAV_ANNOTATION}"] = entity_set.lookups[name]
            if annotation_wanted(annotations, LOOKUP_ANNOTATION):
                out[f"{name}@{LOOKUP_ANNOTATION}"] = lookup_names.get(name, "")
        out[name] = value
    return out
