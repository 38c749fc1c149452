"""Against the demo tenant, every rule fires exactly where ``cleanup/simulator/demo.py`` says.

The expected table below is the demo docstring's case table, object by object; any finding
the rules add or drop shows up as a set difference naming the rule, environment and object.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from cleanup.config import RunSettings, Settings, SimulatorSettings
from cleanup.connect import open_tenant
from cleanup.rules import evaluate_rules, unused_candidates
from cleanup.simulator.demo import ENV_DEFAULT, ENV_FINANCE, ENV_HR, ENV_LEGAL, ENV_SANDBOX
from cleanup.snapshot.collect import take_snapshot
from cleanup.snapshot.dependencies import check_dependencies

HR, FIN, SBX, DEF, LEGAL = ENV_HR, ENV_FINANCE, ENV_SANDBOX, ENV_DEFAULT, ENV_LEGAL
DEF_REFS = [
    "new_sharedoffice365_3b7c2",
    "new_sharedsharepointonline_5d2e8",
    "new_sharedcommondataserviceforapps_c0d9a",  # "🔌 Dataverse"
    "new_sharedcommondataserviceforapps_8e1f4",  # "<script>alert(1)</script>"
]
HR_DUPLICATES = [
    "hr_AbsenceDataverseSP",
    "hr_sharedcommondataserviceforapps_4f2a1",
    "hr_sharedcommondataserviceforapps_9c3e7",
]
FIN_DUPLICATES = [
    "fin_sharedcommondataserviceforapps_a1b2c",
    "fin_sharedcommondataserviceforapps_d3e4f",
]
SBX_APPROVALS = ["mk_sharedapprovals_0c4d1", "mk_sharedapprovals_e7a95"]
SBX_GENERATED = [
    *SBX_APPROVALS,
    "mk_sharedsharepointonline_2b9d0",
    "mk_sharedcommondataserviceforapps_77f3e",
    "mk_sharedoffice365_6a0f3",
    "mk_sharedmk5fpayroll20api5ff45f88827bdd9b_4c8a2",
]

EXPECTED: dict[str, set[tuple[str, str]]] = {
    "duplicate": {(HR, n) for n in HR_DUPLICATES}
    | {(FIN, n) for n in FIN_DUPLICATES}
    | {(SBX, n) for n in SBX_APPROVALS},
    "unused": {(SBX, "mk_sharedsharepointonline_2b9d0")},
    "usage-unknown": {(DEF, DEF), (LEGAL, LEGAL)},  # environment-level: object id = env id
    "personal-connection": {(HR, "hr_AbsenceOutlookUser"), (HR, "hr_NotifyTeamsSP")}
    | {(DEF, n) for n in DEF_REFS}
    | {
        (SBX, n)
        for n in (
            "mk_sharedoffice365_6a0f3",
            "mk_sharedsharepointonline_2b9d0",
            "mk_ExpenseDataverseUser",
        )
    },
    "unbound": {(HR, "hr_LeaveApprovalsSP")} | {(SBX, n) for n in SBX_APPROVALS},
    "broken-connection": {
        (HR, "hr_DirectoryUsersSP"),
        (SBX, "mk_sharedcommondataserviceforapps_77f3e"),
    },
    "bad-name": {(DEF, n) for n in DEF_REFS}
    | {(HR, n) for n in HR_DUPLICATES[1:]}
    | {(HR, "hr_PayrollSQL"), (HR, "hr_NotifyTeamsSP")}
    | {(FIN, n) for n in FIN_DUPLICATES}
    | {(SBX, n) for n in SBX_GENERATED},
    "cross-solution": set(),
    "expired-exclusion": set(),
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, object]:
    """Snapshot the demo tenant (with dependency checks) and run every rule over it."""
    runs: Path = tmp_path_factory.mktemp("runs")
    settings = Settings(
        simulator=SimulatorSettings(enabled=True, tenant="demo"), run=RunSettings(str(runs))
    )
    # One session: the simulator's addresses only live as long as the clients.
    with open_tenant(settings) as clients:
        snapshot = take_snapshot(clients, run_id="demo")
        checks = check_dependencies(clients, snapshot, unused_candidates(snapshot))
    snapshot = dataclasses.replace(snapshot, dependency_checks=checks)
    return evaluate_rules(snapshot, settings).findings, snapshot


def _found(findings: pd.DataFrame, rule: str) -> set[tuple[str, str]]:
    rows = findings.loc[findings["rule"].eq(rule)]
    name = rows["logical_name"].fillna(rows["object_id"])
    return set(zip(rows["environment_id"], name, strict=True))


@pytest.mark.parametrize("rule", sorted(EXPECTED))
def test_rule_fires_exactly_where_the_demo_says(demo, rule: str) -> None:
    findings, _ = demo
    assert _found(findings, rule) == EXPECTED[rule]


def test_every_registered_rule_is_covered() -> None:
    from cleanup.rules import REGISTRY

    assert set(REGISTRY) == set(EXPECTED)


def test_severities_follow_the_environment_and_usage(demo) -> None:
    findings, _ = demo
    personal = findings.loc[findings["rule"].eq("personal-connection")]
    assert set(personal.loc[personal["environment_id"].eq(HR), "severity"]) == {"high"}
    assert set(personal.loc[~personal["environment_id"].eq(HR), "severity"]) == {"medium"}
    lies = findings.loc[findings["rule"].eq("bad-name") & findings["severity"].eq("medium")]
    assert set(lies["logical_name"]) == {"hr_NotifyTeamsSP"}


def test_demo_details_explain_themselves(demo) -> None:
    findings, _ = demo
    legal = findings.loc[findings["environment_id"].eq(LEGAL)].iloc[0]
    assert "HTTP 403" in legal["detail"]
    default = findings.loc[findings["rule"].eq("usage-unknown") & findings["object_id"].eq(DEF)]
    assert "'Broken export': invalid-json" in default.iloc[0]["detail"]
    survivor = findings.loc[
        findings["rule"].eq("duplicate") & findings["logical_name"].eq(HR_DUPLICATES[1])
    ].iloc[0]
    assert json.loads(survivor["extra"])["survivor_logical_name"] == "hr_AbsenceDataverseSP"
