"""Builders for the report tests: a small hand-made run with hostile names in it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import pandas as pd
import pytest

from cleanup import schemas
from cleanup.consolidate import Proposals
from cleanup.report import ReportHistory, ReportInput
from cleanup.snapshot.model import Snapshot

RUN_ID = "20240501T020000Z"
PROD, HOSTILE, BROKEN, SKIPPED = "env-prod", "env-hostile", "env-broken", "env-skipped"
SCRIPT = "<script>alert(1)</script>"
TITLE_SCRIPT = "<script>document.title='pwned'</script>"
HOSTILE_ENV_NAME = f"Sales {SCRIPT} 🚀"
HOSTILE_REF_NAME = "<img src=x onerror=alert(2)> \"quoted\" & 'single' 🎉"
HOSTILE_FLOW_NAME = f"{TITLE_SCRIPT} Flow ✨"
HOSTILE_OWNER = '"><svg onload=alert(3)>'
CONNECTOR_ID = "/providers/Microsoft.PowerApps/apis/shared_commondataserviceforapps"
DV = "shared_commondataserviceforapps"
SP = "shared_sharepointonline"


def _frame(rows: list[dict[str, Any]], table: str) -> pd.DataFrame:
    return schemas.frame_from_rows(rows, schemas.SNAPSHOT_TABLES[table])


def environments() -> list[dict[str, Any]]:
    return [
        env(PROD, "Contoso Production", "Production"),
        env(HOSTILE, HOSTILE_ENV_NAME, "Sandbox"),
        env(BROKEN, "Finance Dev", "Developer", "incomplete", "HTTP 403 reading workflows"),
        env(SKIPPED, "Teams Sandbox", "Teams", "skipped", "excluded by configuration"),
    ]


def env(env_id: str, name: str, sku: str, status: str = "complete", reason: str | None = None):
    return {
        "environment_id": env_id,
        "display_name": name,
        "sku": sku,
        "is_default": False,
        "has_dataverse": True,
        "status": status,
        "status_reason": reason,
        "requests": 12,
        "seconds": 1.5,
    }


def ref(env_id: str, ref_id: str, logical: str, name: str, **extra: Any) -> dict[str, Any]:
    row = {
        "environment_id": env_id,
        "reference_id": ref_id,
        "logical_name": logical,
        "display_name": name,
        "connector": DV,
        "connector_id": CONNECTOR_ID,
        "connection_id": "conn-1",
        "is_managed": False,
        "etag": f'W/"{ref_id}"',
        "modified_on": "2024-04-01T00:00:00Z",
        "created_on": "2024-01-01T00:00:00Z",
    }
    return {**row, **extra}


def references() -> list[dict[str, Any]]:
    return [
        ref(PROD, "r1", "new_sharedcommondataserviceforapps_4f2a1", "Dataverse"),
        ref(PROD, "r2", "contoso_AbsenceDataverseSP", "Absence – Dataverse – Service Principal"),
        ref(
            PROD,
            "r3",
            "contoso_SharePoint",
            "Absence – SharePoint – User",
            connector=SP,
            connector_id="/providers/Microsoft.PowerApps/apis/shared_sharepointonline",
            connection_id=None,
        ),
        ref(HOSTILE, "r4", "evil_ref", HOSTILE_REF_NAME, connection_id="conn-evil"),
        ref(BROKEN, "r5", "fin_ref", "Finance – Dataverse – User"),
    ]


def flow(env_id: str, flow_id: str, name: str, state: int) -> dict[str, Any]:
    return {
        "environment_id": env_id,
        "flow_id": flow_id,
        "name": name,
        "state": state,
        "is_managed": False,
        "parse_status": "ok",
        "etag": f'W/"{flow_id}"',
        "modified_on": "2024-04-01T00:00:00Z",
        "clientdata_sha256": "0" * 64,
    }


def flows() -> list[dict[str, Any]]:
    return [
        flow(PROD, "f1", "Approve absence", 1),
        flow(PROD, "f2", "Nightly sync", 0),
        flow(HOSTILE, "f3", HOSTILE_FLOW_NAME, 1),
    ]


def use(env_id: str, flow_id: str, key: str, logical: str | None) -> dict[str, Any]:
    return {
        "environment_id": env_id,
        "flow_id": flow_id,
        "key": key,
        "logical_name": logical,
        "connector": DV,
        "action_count": 2,
    }


def usages() -> list[dict[str, Any]]:
    return [
        use(PROD, "f1", DV, "new_sharedcommondataserviceforapps_4f2a1"),
        use(PROD, "f2", f"{DV}_1", "CONTOSO_AbsenceDataverseSP"),  # case differs on purpose
        use(HOSTILE, "f3", "evil_key", "evil_ref"),
        use(HOSTILE, "f3", "gone_key", "contoso_gone"),
    ]


def make_snapshot() -> Snapshot:
    """A small snapshot: one clean, one hostile, one incomplete and one skipped environment."""
    tables = {
        "environments": _frame(environments(), "environments"),
        "references": _frame(references(), "references"),
        "flows": _frame(flows(), "flows"),
        "usages": _frame(usages(), "usages"),
    }
    metadata = {
        "tool_version": "0.1.0",
        "config_fingerprint": "abc123def4567890",
        "run_id": RUN_ID,
        "started_at": "2024-05-01T02:00:00+00:00",
        "finished_at": "2024-05-01T02:00:09+00:00",
        "seconds": 9.2,
        "requests": {
            "total": 48,
            "by_environment": {PROD: 20, HOSTILE: 16, BROKEN: 12},
            "by_table": {"connectionreferences": 6, "workflows": 9},
            "throttled": 1,
        },
        "bytes": 123456,
    }
    return Snapshot.from_tables(tables, metadata)


def finding(rule: str, severity: str, env_id: str, env_name: str, obj: str, **extra: Any):
    row = {
        "rule": rule,
        "severity": severity,
        "environment_id": env_id,
        "environment_name": env_name,
        "object_type": "reference",
        "object_id": obj,
        "logical_name": extra.pop("logical_name", obj),
        "display_name": extra.pop("display_name", obj),
        "owner_name": "Ada Admin",
        "detail": "reason for a person",
    }
    return {**row, **extra}


def make_findings() -> pd.DataFrame:
    """Findings of several rules and severities, including hostile text."""
    rows = [
        finding("duplicate", "medium", PROD, "Contoso Production", "r1", group_id="g1"),
        finding("duplicate", "medium", PROD, "Contoso Production", "r2", group_id="g1"),
        finding("unused", "low", PROD, "Contoso Production", "r3", suggested_fix="Delete it"),
        finding(
            "bad-name",
            "low",
            PROD,
            "Contoso Production",
            "r1",
            suggested_fix="Rename to Absence – Dataverse – Service Principal",
        ),
        finding(
            "personal-connection",
            "high",
            HOSTILE,
            HOSTILE_ENV_NAME,
            "r4",
            display_name=HOSTILE_REF_NAME,
            owner_name=HOSTILE_OWNER,
            detail=f"bound to {SCRIPT}'s own connection",
        ),
    ]
    return schemas.frame_from_rows(rows, schemas.FINDINGS)


def make_proposals() -> Proposals:
    """The consolidation of group g1: keep r2, move f1's key, delete r1."""
    survivors = pd.DataFrame(
        [
            {
                "group_id": "g1",
                "environment_id": PROD,
                "survivor_id": "r2",
                "reason": "compliant name and service principal connection",
            }
        ]
    )
    moves = pd.DataFrame(
        [
            {
                "environment_id": PROD,
                "group_id": "g1",
                "flow_id": "f1",
                "key": DV,
                "from_reference_id": "r1",
                "from_logical_name": "new_sharedcommondataserviceforapps_4f2a1",
                "to_reference_id": "r2",
                "to_logical_name": "contoso_AbsenceDataverseSP",
                "blocked": False,
                "why_blocked": None,
            }
        ]
    )
    leftovers = pd.DataFrame(
        [
            {
                "environment_id": PROD,
                "group_id": "g1",
                "reference_id": "r1",
                "logical_name": "new_sharedcommondataserviceforapps_4f2a1",
                "deletable": True,
                "why_not": None,
            }
        ]
    )
    return Proposals(survivors=survivors, moves=moves, leftovers=leftovers)


@dataclass(frozen=True)
class FakeDelete:
    """Stands in for cleanup.plan.DeleteReference: the fields the report reads."""

    kind: ClassVar[str] = "delete-reference"
    environment_id: str
    reference_id: str


@dataclass(frozen=True)
class FakeRewire:
    kind: ClassVar[str] = "rewire-flow-key"
    environment_id: str
    flow_id: str


@dataclass(frozen=True)
class FakePlan:
    actions: tuple[Any, ...] = (FakeRewire(PROD, "f1"), FakeDelete(PROD, "r1"))
    skipped: tuple[Any, ...] = field(default_factory=tuple)


PLAN_LINES = [
    "Contoso Production:",
    "  1. Rewire flow 'Approve absence' key shared_commondataserviceforapps → contoso_Absence",
    f"  2. Delete reference new_sharedcommondataserviceforapps_4f2a1 ({SCRIPT})",
]


def make_history() -> ReportHistory:
    """One new finding, one resolved, and three earlier nights."""
    findings = make_findings()
    resolved = findings.iloc[[2]].assign(display_name="Old unused reference", object_id="r9")
    return ReportHistory(
        new=findings.iloc[[4]],
        resolved=resolved,
        trend=[
            ("20240428T020000Z", {"high": 2, "medium": 3, "low": 4}),
            ("20240429T020000Z", {"high": 1, "medium": 3, "low": 2}),
            ("20240430T020000Z", {"high": 1, "medium": 2, "low": 3, "info": 1}),
        ],
    )


def make_input(**overrides: Any) -> ReportInput:
    """A full report input; pass ``proposals=None`` etc. to leave optional parts out."""
    values: dict[str, Any] = {
        "snapshot": make_snapshot(),
        "findings": make_findings(),
        "run_id": RUN_ID,
        "generated_at": datetime(2024, 5, 1, 2, 1, tzinfo=UTC),
        "tool_version": "0.1.0",
        "proposals": make_proposals(),
        "plan": FakePlan(),
        "plan_lines": PLAN_LINES,
        "history": make_history(),
        "rule_descriptions": {
            "duplicate": "Several references share one connector and connection.",
            "unused": "No flow or other component uses the reference.",
            "bad-name": "The display name breaks the naming convention.",
            "personal-connection": "Bound to a user's connection, not a service principal.",
            "unbound": "The reference has no connection.",
        },
    }
    values.update(overrides)
    return ReportInput(**values)


def make_big_input(environments: int, flows: int) -> ReportInput:
    """A generated run: ``flows`` flows per environment, one reference per five flows."""
    envs, refs, flow_rows, uses, found = [], [], [], [], []
    for e in range(environments):
        env_id = f"env-{e:04d}"
        envs.append(env(env_id, f"Environment {e}", "Production"))
        for r in range(flows // 5 + 3):
            logical = f"pfx_ref_{e}_{r}"
            refs.append(ref(env_id, f"r-{e}-{r}", logical, f"Area {r} – Dataverse – User"))
            if r % 3 == 0:
                found.append(finding("unused", "low", env_id, f"Environment {e}", f"r-{e}-{r}"))
        for f in range(flows):
            flow_rows.append(flow(env_id, f"f-{e}-{f}", f"Flow {f}", f % 2))
            uses.append(use(env_id, f"f-{e}-{f}", DV, f"pfx_ref_{e}_{f // 5}"))
    tables = {
        "environments": _frame(envs, "environments"),
        "references": _frame(refs, "references"),
        "flows": _frame(flow_rows, "flows"),
        "usages": _frame(uses, "usages"),
    }
    snapshot = Snapshot.from_tables(tables, {})
    findings = schemas.frame_from_rows(found, schemas.FINDINGS)
    return make_input(
        snapshot=snapshot,
        findings=findings,
        proposals=None,
        plan=None,
        plan_lines=None,
        history=None,
    )


@pytest.fixture
def report_input() -> ReportInput:
    """The full hand-built run."""
    return make_input()


@pytest.fixture
def bare_input() -> ReportInput:
    """The same run without proposals, plan, plan lines or history."""
    return make_input(proposals=None, plan=None, plan_lines=None, history=None)
