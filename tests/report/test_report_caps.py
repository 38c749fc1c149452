"""The report caps its long lists: exact totals, the capped rows, a note on what is left out.

The generated run below is just larger than every cap in ``cleanup.report.context``, so each list
is cut; the numbers are derived from the caps, so the tests follow them when they change.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from cleanup import schemas
from cleanup.consolidate import Proposals
from cleanup.report import ReportHistory, build_context, render_report
from cleanup.report import context as caps
from cleanup.snapshot.model import Snapshot
from tests.report.conftest import env, finding, flow, make_input, ref, use
from tests.report.test_report_render import section

ENVIRONMENTS = caps.ENVIRONMENT_ROWS_SHOWN + 5
BIG_RULE = caps.RULE_FINDINGS_SHOWN + 7  # low "unused" findings, all in the first environment
SMALL_ENVS = caps.ENVIRONMENTS_DETAILED + 3  # environments with one medium finding each
FINDINGS = BIG_RULE + 1 + SMALL_ENVS  # plus one high finding in the first environment
GROUPS = caps.DUPLICATE_GROUPS_SHOWN + 4
BIG_GROUP = caps.GROUP_ROWS_SHOWN + 3  # leftovers and moves of the largest group
PLAN_LINES = caps.PLAN_LINES_SHOWN + 12
NEW = caps.CHANGES_SHOWN + 9
USED = caps.ENTITY_REFERENCES_SHOWN + 4  # used references of the largest environment
UNUSED = caps.ENTITY_REFERENCES_SHOWN + 6
MISSING = caps.ENTITY_REFERENCES_SHOWN + 5  # names that flows use but the environment lacks
FLOWS = caps.REFERENCE_FLOWS_SHOWN + 3  # flows of the first used reference
REF_ENVS = caps.ENTITY_ENVIRONMENTS_SHOWN + 2  # environments with one reference each

FIRST, LAST = "env-000", f"env-{ENVIRONMENTS - 1:03d}"


def env_id(i: int) -> str:
    return f"env-{i:03d}"


def env_name(i: int) -> str:
    return f"Env {i:03d}"


def _frame(rows: list[dict[str, Any]], table: str) -> pd.DataFrame:
    return schemas.frame_from_rows(rows, schemas.SNAPSHOT_TABLES[table])


def make_snapshot() -> Snapshot:
    envs = [env(env_id(i), env_name(i), "Production") for i in range(ENVIRONMENTS)]
    refs, flows, uses = [], [], []

    def used_by(env: str, logical: str, count: int) -> None:
        for _ in range(count):
            flow_id = f"f{len(flows):05d}"
            flows.append(flow(env, flow_id, f"Flow {len(flows):05d}", 1))
            uses.append(use(env, flow_id, "shared_key", logical))

    for i in range(1, REF_ENVS + 1):  # one used reference each
        refs.append(ref(env_id(i), f"r-{i}", f"small_{i}", f"Small {i}"))
        used_by(env_id(i), f"small_{i}", 1)
    for i in range(USED):  # the largest environment, listed last by name
        refs.append(ref(LAST, f"used-{i}", f"big_used_{i:03d}", f"Ref {i:03d}"))
        used_by(LAST, f"big_used_{i:03d}", FLOWS if i == 0 else 1)
    for i in range(UNUSED):
        refs.append(ref(LAST, f"unused-{i}", f"big_unused_{i:03d}", f"Unused {i:03d}"))
    for i in range(MISSING):
        used_by(LAST, f"gone_{i:03d}", 1)
    tables = {
        "environments": _frame(envs, "environments"),
        "references": _frame(refs, "references"),
        "flows": _frame(flows, "flows"),
        "usages": _frame(uses, "usages"),
    }
    requests = {
        "total": ENVIRONMENTS,
        "by_table": {"workflows": ENVIRONMENTS},
        "by_environment": {env_id(i): 1 for i in range(ENVIRONMENTS)},
    }
    return Snapshot.from_tables(tables, {"requests": requests})


def make_findings() -> pd.DataFrame:
    rows = [
        finding("unused", "low", FIRST, env_name(0), f"u-{i:03d}", display_name=f"Unused {i:03d}")
        for i in range(BIG_RULE)
    ]
    # Last in the table, first in the report: the most severe come first.
    rows.append(finding("personal-connection", "high", FIRST, env_name(0), "p-1"))
    rows += [
        finding("bad-name", "medium", env_id(i), env_name(i), f"b-{i}")
        for i in range(1, SMALL_ENVS + 1)
    ]
    return schemas.frame_from_rows(rows, schemas.FINDINGS)


def make_proposals() -> Proposals:
    survivors = [
        {"group_id": f"g-{i:03d}", "environment_id": env_id(1), "survivor_id": f"s-{i}"}
        for i in range(GROUPS - 1)
    ]
    leftovers = [
        {
            "environment_id": env_id(1),
            "group_id": f"g-{i:03d}",
            "reference_id": f"l-{i}",
            "logical_name": f"left_{i}",
            "deletable": True,
            "why_not": None,
        }
        for i in range(GROUPS - 1)
    ]
    # The largest group sorts last (environment and group id), yet it is listed.
    survivors.append({"group_id": "zz-big", "environment_id": LAST, "survivor_id": "s-big"})
    leftovers += [
        {
            "environment_id": LAST,
            "group_id": "zz-big",
            "reference_id": f"big-left-{i}",
            "logical_name": f"big_left_{i}",
            "deletable": True,
            "why_not": None,
        }
        for i in range(BIG_GROUP)
    ]
    moves = [
        {
            "environment_id": LAST,
            "group_id": "zz-big",
            "flow_id": f"f-move-{i}",
            "key": f"key_{i}",
            "from_logical_name": f"big_left_{i}",
            "to_logical_name": "big_survivor",
            "blocked": False,
            "why_blocked": None,
        }
        for i in range(BIG_GROUP)
    ]
    return Proposals(
        survivors=pd.DataFrame(survivors),
        moves=pd.DataFrame(moves),
        leftovers=pd.DataFrame(leftovers),
    )


def make_capped_input():
    findings = make_findings()
    history = ReportHistory(new=findings.iloc[:NEW], resolved=findings.iloc[:3], trend=[])
    return make_input(
        snapshot=make_snapshot(),
        findings=findings,
        proposals=make_proposals(),
        plan_lines=[f"  {i}. Would do step {i}" for i in range(PLAN_LINES)],
        history=history,
    )


@pytest.fixture(scope="module")
def capped() -> tuple[dict[str, Any], str]:
    inp = make_capped_input()
    return build_context(inp), render_report(inp)


def counts_of(view: dict, name: str) -> tuple[int, int, int]:
    """A capped list's (total, rows shown, rows hidden)."""
    return view[f"{name}_total"], len(view[name]), view[f"{name}_hidden"]


def test_the_run_is_larger_than_every_cap():
    assert FINDINGS > caps.RULE_FINDINGS_SHOWN and NEW > caps.CHANGES_SHOWN
    assert max(caps.ENVIRONMENT_ROWS_SHOWN, caps.ABOUT_ROWS_SHOWN) < ENVIRONMENTS
    assert BIG_RULE + 1 > caps.ENVIRONMENT_FINDINGS_SHOWN


def test_summary_counts_stay_exact(capped):
    ctx, html = capped
    summary = ctx["summary"]
    assert summary["findings"] == FINDINGS
    assert summary["by_severity"] == {"high": 1, "medium": SMALL_ENVS, "low": BIG_RULE, "info": 0}
    assert summary["duplicate_groups"] == GROUPS
    assert summary["environments"] == ENVIRONMENTS
    assert f"{FINDINGS:,} findings" in html


def test_environment_table_is_capped(capped):
    ctx, html = capped
    rows = ctx["by_environment"]
    assert len(rows) == caps.ENVIRONMENT_ROWS_SHOWN
    assert ctx["environments_hidden"] == ENVIRONMENTS - caps.ENVIRONMENT_ROWS_SHOWN == 5
    assert rows[0]["environment_id"] == FIRST  # the one with a high finding
    assert rows[0]["counts"] == {"high": 1, "medium": 0, "low": BIG_RULE, "info": 0}
    assert rows[0]["total"] == BIG_RULE + 1
    part = section(html, "by-environment")
    assert part.count('<tr><td><a href="#env-') == caps.ENVIRONMENTS_DETAILED
    assert "5 more environments with fewer findings are not listed: see findings.csv." in part


def test_findings_per_environment_are_capped_most_severe_first(capped):
    ctx, html = capped
    first = ctx["by_environment"][0]
    assert len(first["findings"]) == caps.ENVIRONMENT_FINDINGS_SHOWN
    assert first["hidden"] == BIG_RULE + 1 - caps.ENVIRONMENT_FINDINGS_SHOWN
    assert first["findings"][0]["severity"] == "high"
    assert [f["display_name"] for f in first["findings"][1:3]] == ["Unused 000", "Unused 001"]
    detailed = [e for e in ctx["by_environment"] if e["detailed"]]
    assert len(detailed) == caps.ENVIRONMENTS_DETAILED
    assert ctx["environment_details"]["hidden"] == 1 + SMALL_ENVS - caps.ENVIRONMENTS_DETAILED
    part = section(html, "by-environment")
    hidden = BIG_RULE + 1 - caps.ENVIRONMENT_FINDINGS_SHOWN
    assert (
        f"The {caps.ENVIRONMENT_FINDINGS_SHOWN} most severe are listed; "
        f"{hidden:,} more: see findings.csv." in part
    )
    assert "those of the other 4 environments with findings are in findings.csv" in part
    assert part.count("<details") == caps.ENVIRONMENTS_DETAILED


def test_findings_per_rule_are_capped(capped):
    ctx, html = capped
    unused = next(r for r in ctx["by_rule"] if r["rule"] == "unused")
    assert unused["total"] == BIG_RULE
    assert len(unused["findings"]) == caps.RULE_FINDINGS_SHOWN
    assert unused["hidden"] == 7
    note = f"The {caps.RULE_FINDINGS_SHOWN} most severe are listed; 7 more: see findings.csv."
    assert note in section(html, "by-rule")


def test_duplicate_groups_are_capped_largest_first(capped):
    ctx, html = capped
    groups = ctx["duplicates"]
    assert len(groups) == caps.DUPLICATE_GROUPS_SHOWN
    assert ctx["duplicates_total"] == GROUPS and ctx["duplicates_hidden"] == 4
    big = next(g for g in groups if g["group_id"] == "zz-big")
    assert groups[-1] is big  # listed in the usual order: it sorts last
    assert big["members_total"] == BIG_GROUP + 1
    assert len(big["members"]) == caps.GROUP_ROWS_SHOWN
    assert big["members"][0]["role"] == "survivor"
    assert big["members_hidden"] == BIG_GROUP + 1 - caps.GROUP_ROWS_SHOWN == 4
    assert counts_of(big, "moves") == (
        BIG_GROUP,
        caps.GROUP_ROWS_SHOWN,
        3,
    )
    assert counts_of(big, "leftovers") == (
        BIG_GROUP,
        caps.GROUP_ROWS_SHOWN,
        3,
    )
    part = section(html, "duplicates")
    assert f"{GROUPS} groups</span>" in part
    assert f"The {caps.DUPLICATE_GROUPS_SHOWN} largest groups are listed; 4 more groups:" in part
    assert f"{BIG_GROUP + 1} references · group <code>zz-big</code>" in part
    assert "4 more references: see findings.csv (group <code>zz-big</code>)." in part
    assert "3 more flow keys: see the plan (plan.json" in part
    assert "3 more leftovers: see the plan (plan.json" in part
    assert part.count("<details") == caps.DUPLICATE_GROUPS_SHOWN


def test_plan_lines_are_capped(capped):
    ctx, html = capped
    plan = ctx["plan"]
    assert len(plan["lines"]) == caps.PLAN_LINES_SHOWN
    assert (plan["lines_total"], plan["lines_hidden"]) == (PLAN_LINES, 12)
    part = section(html, "plan")
    assert part.count("<div>") == caps.PLAN_LINES_SHOWN
    assert (
        f"The first {caps.PLAN_LINES_SHOWN:,} of {PLAN_LINES:,} lines are shown; 12 more:" in part
    )
    assert "connref-cleanup plan show &lt;run folder&gt;</code> prints the whole plan" in part


def test_new_findings_are_capped(capped):
    ctx, html = capped
    changes = ctx["changes"]
    assert len(changes["new"]) == caps.CHANGES_SHOWN
    assert (changes["new_total"], changes["new_hidden"]) == (NEW, 9)
    assert changes["new"][0]["severity"] == "high"  # the most severe of the new ones first
    assert (changes["resolved_total"], changes["resolved_hidden"]) == (3, 0)
    part = section(html, "changes")
    assert f"New findings ({NEW})" in part
    assert f"The {caps.CHANGES_SHOWN} most severe are listed; 9 more: see findings.csv" in part


def test_entity_view_is_capped(capped):
    ctx, html = capped
    shown = ctx["entities"]
    assert len(shown) == caps.ENTITY_ENVIRONMENTS_SHOWN
    assert ctx["entities_total"] == ENVIRONMENTS  # every environment was read completely
    assert ctx["entities_hidden"] == ENVIRONMENTS - caps.ENTITY_ENVIRONMENTS_SHOWN
    assert [e["name"] for e in shown] == sorted(e["name"] for e in shown)
    big = next(e for e in shown if e["environment_id"] == LAST)  # the most references
    assert counts_of(big, "used") == (
        USED,
        caps.ENTITY_REFERENCES_SHOWN,
        4,
    )
    assert counts_of(big, "unused") == (
        UNUSED,
        caps.ENTITY_REFERENCES_SHOWN,
        6,
    )
    assert counts_of(big, "missing") == (
        MISSING,
        caps.ENTITY_REFERENCES_SHOWN,
        5,
    )
    first = big["used"][0]
    assert first["display_name"] == "Ref 000"
    assert counts_of(first, "flows") == (
        FLOWS,
        caps.REFERENCE_FLOWS_SHOWN,
        3,
    )
    assert big["flow_count"] == FLOWS + USED - 1  # exact, though not every flow is listed
    assert big["missing"][0]["logical_name"] == "gone_000"
    part = section(html, "entities")
    hidden = ENVIRONMENTS - caps.ENTITY_ENVIRONMENTS_SHOWN
    assert f"{ENVIRONMENTS} environments</span>" in part
    assert f"{hidden} more environments: every reference and flow use" in part
    assert f"· {USED + UNUSED} references · {USED} used by {FLOWS + USED - 1} flows" in part
    assert "4 more used references" in part and "6 more unused references" in part
    assert (
        "5 more missing names" in part
        and '<li class="muted">3 more flows: see <code>snapshot/usages.parquet</code></li>' in part
    )


def test_about_lists_are_capped(capped):
    ctx, html = capped
    about = ctx["about"]
    assert len(about["requests_by_environment"]) == caps.ABOUT_ROWS_SHOWN
    assert about["requests_by_environment_hidden"] == 5
    assert len(about["settings_files"]) == caps.ABOUT_ROWS_SHOWN
    assert about["settings_files_hidden"] == 5
    part = section(html, "about")
    assert (
        "5 more environments with fewer requests: see <code>snapshot/metadata.json</code>." in part
    )
    assert "5 more files: see <code>deployment-settings/index.json</code>." in part


def test_a_small_run_hides_nothing(report_input):
    ctx = build_context(report_input)
    assert ctx["environments_hidden"] == ctx["duplicates_hidden"] == ctx["entities_hidden"] == 0
    assert ctx["environment_details"]["hidden"] == 0
    assert all(e["hidden"] == 0 for e in ctx["by_environment"])
    assert all(r["hidden"] == 0 for r in ctx["by_rule"])
    assert ctx["plan"]["lines_hidden"] == 0
    assert ctx["changes"]["new_hidden"] == ctx["changes"]["resolved_hidden"] == 0
    for e in ctx["entities"]:
        assert e["used_hidden"] == e["unused_hidden"] == e["missing_hidden"] == 0
        assert all(r["flows_hidden"] == 0 for r in e["used"] + e["missing"])
    for g in ctx["duplicates"]:
        assert g["members_hidden"] == g["moves_hidden"] == g["leftovers_hidden"] == 0
    html = render_report(report_input)
    assert " more: " not in html and "more flow" not in html and "listed;" not in html
