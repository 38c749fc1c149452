"""``unused`` and ``usage-unknown``: never call a reference unused where usage is not known."""

from __future__ import annotations

import json

from cleanup.rules import run_rules, unused_candidates


def test_reference_no_flow_uses_and_no_dependents_is_unused(build) -> None:
    snap = build.snapshot(
        references=[build.ref("r1", "new_orphan", "Orphan")],
        flows=[build.flow("f1")],
        dependency_checks=[build.dep("r1", 0)],
    )
    found = run_rules(snap)
    unused = build.of_rule(found, "unused")
    assert list(unused["object_id"]) == ["r1"]
    assert "No flow in this environment uses it" in unused.at[0, "detail"]
    extra = json.loads(unused.at[0, "extra"])
    assert extra["grace_passed"] is False
    assert extra["unused_since"].startswith("2025-03-01")


def test_draft_and_turned_off_flows_count_as_usage(build) -> None:
    snap = build.snapshot(
        references=[build.ref("r1", "new_draftonly")],
        flows=[build.flow("f1", state=0)],
        usages=[build.use("f1", "new_draftonly")],
    )
    assert unused_candidates(snap).empty
    assert build.ids(run_rules(snap), "unused") == set()


def test_logical_names_match_case_insensitively(build) -> None:
    snap = build.snapshot(
        references=[build.ref("r1", "admin_CoECoreHTTPAzureAD")],
        flows=[build.flow("f1")],
        usages=[build.use("f1", "admin_CoECoreHTTPAZUREAD")],
        dependency_checks=[build.dep("r1", 0)],
    )
    assert unused_candidates(snap).empty
    assert build.ids(run_rules(snap), "unused") == set()


def test_usage_in_another_environment_does_not_count(build) -> None:
    snap = build.snapshot(
        environments=[build.env("env1"), build.env("env2")],
        references=[build.ref("r1", "new_shared")],
        flows=[build.flow("f1", env="env2")],
        usages=[build.use("f1", "new_shared", env="env2")],
        dependency_checks=[build.dep("r1", 0)],
    )
    assert build.ids(run_rules(snap), "unused") == {"r1"}


def test_incomplete_environment_reports_unknown_not_unused(build) -> None:
    snap = build.snapshot(
        environments=[build.env(status="incomplete", status_reason="flows: HTTP 429")],
        references=[build.ref("r1", "new_orphan")],
        dependency_checks=[build.dep("r1", 0)],
    )
    found = run_rules(snap)
    assert unused_candidates(snap).empty
    assert build.ids(found, "unused") == set()
    unknown = build.of_rule(found, "usage-unknown")
    assert list(unknown["object_type"]) == ["environment"]
    assert "HTTP 429" in unknown.at[0, "detail"]
    assert unknown.at[0, "severity"] == "info"


def test_one_unparseable_flow_makes_the_whole_environment_unknown(build) -> None:
    snap = build.snapshot(
        references=[build.ref("r1", "new_a"), build.ref("r2", "new_b")],
        flows=[build.flow("f1"), build.flow("f2", name="Broken", parse_status="invalid-json")],
        usages=[build.use("f1", "new_a")],
        dependency_checks=[build.dep("r2", 0)],
    )
    found = run_rules(snap)
    assert build.ids(found, "unused") == set()
    unknown = build.of_rule(found, "usage-unknown")
    assert list(unknown["object_id"]) == ["env1"]
    assert "'Broken': invalid-json" in unknown.at[0, "detail"]


def test_empty_clientdata_is_unknown_usage_too(build) -> None:
    snap = build.snapshot(
        references=[build.ref("r1", "new_a")],
        flows=[build.flow("f1", parse_status="empty")],
        dependency_checks=[build.dep("r1", 0)],
    )
    assert build.ids(run_rules(snap), "unused") == set()
    assert build.ids(run_rules(snap), "usage-unknown") == {"env1"}


def test_canvas_app_dependent_keeps_it_from_being_unused(build) -> None:
    snap = build.snapshot(
        references=[build.ref("r1", "new_appsonly")],
        dependency_checks=[build.dep("r1", 1, dependents="300:app-1")],
    )
    assert list(unused_candidates(snap)["reference_id"]) == ["r1"]
    found = run_rules(snap)
    assert build.ids(found, "unused") == set()
    assert build.ids(found, "usage-unknown") == set()


def test_failed_or_missing_dependency_check_is_unknown(build) -> None:
    snap = build.snapshot(
        references=[build.ref("r1", "new_a"), build.ref("r2", "new_b")],
        dependency_checks=[build.dep("r1", None, checked=False, error="HTTP 500")],
    )
    found = run_rules(snap)
    assert build.ids(found, "unused") == set()
    unknown = build.of_rule(found, "usage-unknown").set_index("object_id")
    assert set(unknown.index) == {"r1", "r2"}
    assert "HTTP 500" in unknown.at["r1", "detail"]
    assert "not run" in unknown.at["r2", "detail"]


def test_skipped_environments_are_not_reported(build) -> None:
    snap = build.snapshot(environments=[build.env(status="skipped", status_reason="no Dataverse")])
    assert run_rules(snap).empty


def test_managed_unused_reference_is_fixed_in_its_source(build) -> None:
    snap = build.snapshot(
        references=[build.ref("r1", "admin_kit", is_managed=True)],
        dependency_checks=[build.dep("r1", 0)],
    )
    unused = build.of_rule(run_rules(snap), "unused")
    assert "source environment" in unused.at[0, "suggested_fix"]
    assert "do not delete it here" in unused.at[0, "suggested_fix"]


def test_zero_grace_days_passes_at_once(build) -> None:
    from types import SimpleNamespace

    from cleanup.rules.settings import HistorySettings

    snap = build.snapshot(
        references=[build.ref("r1", "new_a")], dependency_checks=[build.dep("r1", 0)]
    )
    found = run_rules(snap, SimpleNamespace(history=HistorySettings(grace_days=0)))
    extra = json.loads(build.of_rule(found, "unused").at[0, "extra"])
    assert extra["grace_passed"] is True
    assert extra["grace_days"] == 0
