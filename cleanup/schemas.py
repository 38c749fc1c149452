"""DataFrame contracts: the columns and dtypes of every table passed between stages.

Each table is declared once here; ``empty_frame`` builds a conforming empty table and
``conform`` casts a frame built from API rows to the declared dtypes, failing loudly on a
missing column instead of letting a typo travel down the pipeline.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from cleanup.errors import SnapshotError

STR = "string"
BOOL = "boolean"
INT = "Int64"
TIME = "datetime64[ns, UTC]"

Schema = Mapping[str, str]

ENVIRONMENTS: Schema = {
    "environment_id": STR,  # BAP name, e.g. "Default-<tenant>" or a GUID
    "display_name": STR,
    "sku": STR,  # Production, Sandbox, Developer, Default, Trial, Teams
    "is_default": BOOL,
    "has_dataverse": BOOL,
    "instance_url": STR,  # linkedEnvironmentMetadata.instanceUrl, with trailing slash
    "status": STR,  # complete | incomplete | skipped
    "status_reason": STR,  # why incomplete or skipped, for a person
    "reference_component_type": INT,  # the environment's component type for connectionreference
    "requests": INT,  # HTTP requests this environment cost
    "seconds": "float64",
}

CONNECTIONS: Schema = {
    "environment_id": STR,
    "connection_id": STR,  # the connection "name" (what connectionreference.connectionid holds)
    "connector": STR,  # API name, e.g. shared_commondataserviceforapps
    "display_name": STR,
    "status": STR,  # Connected, Error, Unauthenticated, ...
    "is_connected": BOOL,
    "error": STR,
    "created_by_id": STR,  # Entra object id
    "created_by_name": STR,
    "created_by_email": STR,
    "created_by_type": STR,  # User, ServicePrincipal, ...
    "identity": STR,  # user | service-principal | unknown
    "created_on": TIME,
}

REFERENCES: Schema = {
    "environment_id": STR,
    "reference_id": STR,
    "logical_name": STR,
    "display_name": STR,
    "connector": STR,  # API name taken from connectorid
    "connector_id": STR,  # /providers/Microsoft.PowerApps/apis/<connector>
    "connection_id": STR,  # <NA> when unbound
    "custom_connector_id": STR,
    "description": STR,
    "is_managed": BOOL,
    "is_customizable": BOOL,
    "owner_id": STR,
    "owner_type": STR,  # systemuser | team
    "created_on": TIME,
    "modified_on": TIME,
    "etag": STR,
    "solution_id": STR,  # owning (base) solution; membership is in solution_components
}

FLOWS: Schema = {
    "environment_id": STR,
    "flow_id": STR,  # workflowid
    "flow_unique_id": STR,  # workflowidunique
    "name": STR,
    "state": INT,  # 0 Draft/Off, 1 Activated/On, 2 Suspended
    "status_code": INT,
    "is_managed": BOOL,
    "owner_id": STR,
    "owner_type": STR,
    "created_on": TIME,
    "modified_on": TIME,
    "etag": STR,
    "solution_id": STR,
    "parse_status": STR,  # ok | empty | invalid-json | not-a-cloud-flow
    "parse_error": STR,
    "reference_count": INT,  # entries in properties.connectionReferences
    "action_count": INT,  # actions and triggers that name a connection key
    "clientdata_sha256": STR,
    "clientdata_bytes": INT,
}

USAGES: Schema = {
    "environment_id": STR,
    "flow_id": STR,
    "key": STR,  # the connectionReferences key actions use
    "logical_name": STR,  # connection reference logical name; <NA> for legacy/non-solution entries
    "connector": STR,
    "runtime_source": STR,  # embedded | invoker | <NA>
    "connection_name": STR,  # legacy connectionName or connection.name, when present
    "action_count": INT,  # actions and triggers using this key
}

SOLUTIONS: Schema = {
    "environment_id": STR,
    "solution_id": STR,
    "unique_name": STR,
    "friendly_name": STR,
    "is_managed": BOOL,
    "version": STR,
    "publisher_prefix": STR,
    "publisher_name": STR,
}

SOLUTION_COMPONENTS: Schema = {
    "environment_id": STR,
    "solution_id": STR,
    "object_id": STR,  # reference_id or flow_id
    "component_type": INT,  # 29 = workflow; the environment's connection reference type
    "object_type": STR,  # flow | reference
}

OWNERS: Schema = {
    "environment_id": STR,
    "owner_id": STR,
    "owner_type": STR,  # systemuser | team
    "name": STR,
    "email": STR,
    "domain_name": STR,
    "aad_object_id": STR,
    "is_application_user": BOOL,
    "is_disabled": BOOL,
    "can_receive_mail": BOOL,
}

DEPENDENCY_CHECKS: Schema = {
    "environment_id": STR,
    "reference_id": STR,
    "checked": BOOL,  # False: the dependency call failed, so usage stays unknown
    "dependent_count": INT,
    "dependents": STR,  # "componenttype:objectid" pairs, semicolon separated
    "error": STR,
}

FINDINGS: Schema = {
    "rule": STR,
    "severity": STR,  # info | low | medium | high
    "environment_id": STR,
    "environment_name": STR,
    "object_type": STR,  # reference | flow | environment | group
    "object_id": STR,
    "logical_name": STR,
    "display_name": STR,
    "owner_id": STR,
    "owner_name": STR,
    "detail": STR,  # the reason, for a person
    "suggested_fix": STR,
    "group_id": STR,  # duplicate group, when the finding belongs to one
    "extra": STR,  # JSON object with rule-specific facts
    "first_seen": TIME,  # start of the finding's current streak over the environment's runs
    "change": STR,  # new | open, against the environment's last complete run; <NA> if none
}

SNAPSHOT_TABLES: dict[str, Schema] = {
    "environments": ENVIRONMENTS,
    "connections": CONNECTIONS,
    "references": REFERENCES,
    "flows": FLOWS,
    "usages": USAGES,
    "solutions": SOLUTIONS,
    "solution_components": SOLUTION_COMPONENTS,
    "owners": OWNERS,
    "dependency_checks": DEPENDENCY_CHECKS,
}


def empty_frame(schema: Schema) -> pd.DataFrame:
    """Return an empty table with the declared columns and dtypes."""
    return pd.DataFrame({col: pd.Series(dtype=dtype) for col, dtype in schema.items()})


def frame_from_rows(rows: Iterable[Mapping[str, Any]], schema: Schema) -> pd.DataFrame:
    """Build a conforming table from dict rows (missing keys become <NA>)."""
    rows = list(rows)
    if not rows:
        return empty_frame(schema)
    data = {col: [row.get(col) for row in rows] for col in schema}
    return conform(pd.DataFrame(data), schema)


def conform(frame: pd.DataFrame, schema: Schema, *, name: str = "table") -> pd.DataFrame:
    """Cast ``frame`` to ``schema`` (column order and dtypes); raise on missing columns."""
    missing = [col for col in schema if col not in frame.columns]
    if missing:
        raise SnapshotError(
            f"{name} is missing column(s) {', '.join(missing)}; "
            "the snapshot was written by an incompatible version: take a new snapshot."
        )
    out = {}
    for col, dtype in schema.items():
        series = frame[col]
        if dtype == TIME:
            out[col] = pd.to_datetime(series, utc=True, errors="coerce").astype(TIME)
        elif str(series.dtype) != dtype:
            out[col] = series.astype(dtype)
        else:
            out[col] = series
    return pd.DataFrame(out, index=frame.index)
