"""The report over the real stages (rules, consolidation, plan): the contracts line up."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from cleanup import consolidate
from cleanup import plan as plan_module
from cleanup.report import build_context, deployment_settings, render_report
from cleanup.report import context as report_context
from cleanup.rules import run_rules
from tests.report.conftest import make_input, make_snapshot
from tests.report.test_report_render import SECTIONS, parse, section


def real_run():
    snapshot = make_snapshot()
    findings = run_rules(snapshot)
    proposals = consolidate.propose(snapshot, consolidate.duplicate_groups(snapshot))
    plan = plan_module.build_plan(
        snapshot,
        proposals,
        findings,
        plan_module.PlanSettings(),
        run_id="20240501T020000Z",
        config_fingerprint="abc123def4567890",
        now=datetime(2024, 5, 1, 2, 1, tzinfo=UTC),
    )
    return snapshot, findings, proposals, plan


def test_report_of_the_real_stages():
    snapshot, findings, proposals, plan = real_run()
    inp = make_input(
        snapshot=snapshot,
        findings=findings,
        proposals=proposals,
        plan=plan,
        plan_lines=None,  # taken from cleanup.plan.describe
        rule_descriptions=None,  # taken from the rules registry
    )
    html = render_report(inp)
    assert [a["id"] for t, a in parse(html).tags if t == "section"] == SECTIONS
    groups = build_context(inp)["duplicates"]
    assert len(groups) == len(proposals.survivors) >= 1
    survivor = groups[0]["survivor"]
    assert survivor is not None and survivor["role"] == "survivor"
    assert groups[0]["survivor_reason"]
    plan_html = section(html, "plan")
    assert "No plan was made" not in plan_html
    assert plan_module.describe(plan)[0].split(",")[0].replace("'", "&#39;") in plan_html


def test_a_report_writes_only_the_plan_lines_it_shows(monkeypatch):
    snapshot, findings, proposals, plan = real_run()
    monkeypatch.setattr(report_context, "PLAN_LINES_SHOWN", 2)
    inp = make_input(snapshot=snapshot, findings=findings, proposals=proposals, plan=plan)
    shown = report_context.plan_section(dataclasses.replace(inp, plan_lines=None))
    lines = plan_module.describe(plan)
    assert len(lines) > 2
    assert shown["lines"] == lines[:2]
    assert (shown["lines_total"], shown["lines_hidden"]) == (len(lines), len(lines) - 2)


def test_settings_follow_the_real_plan():
    snapshot, _, proposals, plan = real_run()
    deleted = {
        (a.environment_id, a.reference_id)
        for a in plan.actions
        if isinstance(a, plan_module.DeleteReference)
    }
    assert deleted == {("env-prod", "r1")}
    out = deployment_settings(snapshot, proposals, plan)
    refs = snapshot.references.set_index(["environment_id", "reference_id"])["logical_name"]
    for (env_id, ref_id), logical in refs.items():
        if env_id not in out:
            continue
        listed = [r["LogicalName"] for r in out[env_id]["ConnectionReferences"]]
        assert (logical in listed) == ((env_id, ref_id) not in deleted)


def test_delete_action_contract():
    # settings_json recognises deletes by a "delete" kind with environment and reference ids.
    fields = {f.name for f in dataclasses.fields(plan_module.DeleteReference)}
    assert {"environment_id", "reference_id"} <= fields
    assert "delete" in plan_module.DeleteReference.kind
    assert all(
        "delete" not in cls.kind for cls in (plan_module.RewireFlowKey, plan_module.RenameReference)
    )
