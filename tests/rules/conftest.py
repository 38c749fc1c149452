"""Small hand-built snapshots for rule tests: a few dict rows in, a conforming ``Snapshot`` out.

Each helper returns one row with sensible defaults (environment ``env1``, complete; Dataverse
connector; flows parsed and on), so a test states only what matters to it.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from cleanup import schemas
from cleanup.snapshot.model import Snapshot

DATAVERSE = "shared_commondataserviceforapps"
SHAREPOINT = "shared_sharepointonline"
NOW = pd.Timestamp("2025-03-01T02:00:00Z").to_pydatetime()


def env(environment_id: str = "env1", **kw: Any) -> dict[str, Any]:
    """An environment row, complete unless told otherwise."""
    return {
        "environment_id": environment_id,
        "display_name": kw.pop("display_name", environment_id.upper()),
        "sku": kw.pop("sku", "Sandbox"),
        "status": kw.pop("status", "complete"),
        "has_dataverse": True,
        **kw,
    }


def conn(connection_id: str, identity: str = "service-principal", **kw: Any) -> dict[str, Any]:
    """A connection row; Connected unless ``status`` says otherwise."""
    status = kw.pop("status", "Connected")
    return {
        "environment_id": kw.pop("env", "env1"),
        "connection_id": connection_id,
        "connector": kw.pop("connector", DATAVERSE),
        "display_name": kw.pop("display_name", f"conn {connection_id}"),
        "status": status,
        "is_connected": status == "Connected",
        "identity": identity,
        "created_by_name": kw.pop("created_by_name", "Ada Maker"),
        **kw,
    }


def ref(reference_id: str, logical_name: str, display_name: str | None = None, **kw: Any) -> dict:
    """A connection reference row (unbound unless ``connection_id`` is given)."""
    return {
        "environment_id": kw.pop("env", "env1"),
        "reference_id": reference_id,
        "logical_name": logical_name,
        "display_name": display_name,
        "connector": kw.pop("connector", DATAVERSE),
        "connection_id": kw.pop("connection_id", None),
        "is_managed": kw.pop("is_managed", False),
        "owner_id": kw.pop("owner_id", "u1"),
        "created_on": kw.pop("created_on", "2024-01-01T00:00:00Z"),
        **kw,
    }


def flow(flow_id: str, **kw: Any) -> dict[str, Any]:
    """A cloud flow row, parsed fine and turned on unless told otherwise."""
    return {
        "environment_id": kw.pop("env", "env1"),
        "flow_id": flow_id,
        "name": kw.pop("name", f"Flow {flow_id}"),
        "state": kw.pop("state", 1),
        "is_managed": kw.pop("is_managed", False),
        "parse_status": kw.pop("parse_status", "ok"),
        **kw,
    }


def use(flow_id: str, logical_name: str, **kw: Any) -> dict[str, Any]:
    """A usage row: flow ``flow_id`` names ``logical_name`` in its connectionReferences."""
    return {
        "environment_id": kw.pop("env", "env1"),
        "flow_id": flow_id,
        "key": kw.pop("key", logical_name),
        "logical_name": logical_name,
        "connector": kw.pop("connector", DATAVERSE),
        "action_count": kw.pop("action_count", 1),
        **kw,
    }


def solution(solution_id: str, unique_name: str, **kw: Any) -> dict[str, Any]:
    """A solution row with its publisher."""
    return {
        "environment_id": kw.pop("env", "env1"),
        "solution_id": solution_id,
        "unique_name": unique_name,
        "friendly_name": kw.pop("friendly_name", unique_name),
        "is_managed": kw.pop("is_managed", False),
        "publisher_prefix": kw.pop("publisher_prefix", "new"),
        "publisher_name": kw.pop("publisher_name", "Contoso"),
        **kw,
    }


def member(solution_id: str, object_id: str, object_type: str = "reference", **kw: Any) -> dict:
    """A solution membership row."""
    return {
        "environment_id": kw.pop("env", "env1"),
        "solution_id": solution_id,
        "object_id": object_id,
        "object_type": object_type,
        "component_type": 29 if object_type == "flow" else 10091,
    }


def owner(owner_id: str = "u1", name: str = "Ada Maker", **kw: Any) -> dict[str, Any]:
    """An owner (system user) row."""
    return {
        "environment_id": kw.pop("env", "env1"),
        "owner_id": owner_id,
        "owner_type": "systemuser",
        "name": name,
        **kw,
    }


def dep(
    reference_id: str, dependent_count: int | None = 0, checked: bool = True, **kw: Any
) -> dict:
    """A dependency check answer for a candidate."""
    return {
        "environment_id": kw.pop("env", "env1"),
        "reference_id": reference_id,
        "checked": checked,
        "dependent_count": dependent_count,
        **kw,
    }


def make_snapshot(
    *,
    environments: Iterable[dict[str, Any]] | None = None,
    metadata: dict[str, Any] | None = None,
    **tables: Iterable[dict[str, Any]],
) -> Snapshot:
    """Build a conforming snapshot; ``environments`` defaults to one complete ``env1``."""
    rows = {"environments": list(environments) if environments is not None else [env()]}
    rows.update({name: list(value) for name, value in tables.items()})
    unknown = set(rows) - set(schemas.SNAPSHOT_TABLES)
    assert not unknown, f"unknown snapshot tables {unknown}"
    frames = {
        name: schemas.frame_from_rows(data, schemas.SNAPSHOT_TABLES[name])
        for name, data in rows.items()
    }
    return Snapshot.from_tables(frames, metadata or {"started_at": NOW.isoformat()})


def of_rule(findings: pd.DataFrame, rule: str) -> pd.DataFrame:
    """The findings of one rule."""
    return findings.loc[findings["rule"].eq(rule)].reset_index(drop=True)


def ids(findings: pd.DataFrame, rule: str) -> set[str]:
    """The object ids one rule reported."""
    return set(of_rule(findings, rule)["object_id"])


BUILD = SimpleNamespace(
    env=env,
    conn=conn,
    ref=ref,
    flow=flow,
    use=use,
    solution=solution,
    member=member,
    owner=owner,
    dep=dep,
    snapshot=make_snapshot,
    of_rule=of_rule,
    ids=ids,
    NOW=NOW,
    DATAVERSE=DATAVERSE,
    SHAREPOINT=SHAREPOINT,
)


@pytest.fixture(scope="session")
def build() -> SimpleNamespace:
    """The row builders and ``snapshot`` (``make_snapshot``), as one namespace."""
    return BUILD
