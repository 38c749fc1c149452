"""The rendered report: sections, escaping, self-containment and the optional parts."""

from __future__ import annotations

import re
import time
from html.parser import HTMLParser

import pytest
from markupsafe import escape

from cleanup.report import build_context, render_report, write_report
from cleanup.report.context import rule_descriptions
from tests.report.conftest import (
    HOSTILE_ENV_NAME,
    HOSTILE_FLOW_NAME,
    HOSTILE_OWNER,
    HOSTILE_REF_NAME,
    SCRIPT,
    TITLE_SCRIPT,
    make_big_input,
    make_input,
)

SECTIONS = [
    "incomplete",
    "summary",
    "by-environment",
    "by-rule",
    "duplicates",
    "plan",
    "changes",
    "entities",
    "about",
]


class Tags(HTMLParser):
    """Collect every start tag with its attributes, and the text, as a browser would parse it."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Tags:
    parser = Tags()
    parser.feed(html)
    return parser


def section(html: str, section_id: str) -> str:
    """Return the HTML of one section (up to the next section)."""
    start = html.index(f'<section class="card" id="{section_id}">')
    end = html.find('<section class="card"', start + 1)
    return html[start : end if end != -1 else len(html)]


def test_every_section_is_present_in_order(report_input):
    html = render_report(report_input)
    ids = [attrs["id"] for tag, attrs in parse(html).tags if tag == "section"]
    assert ids == SECTIONS


def test_sections_render_without_the_optional_parts(bare_input):
    html = render_report(bare_input)
    assert [a["id"] for t, a in parse(html).tags if t == "section"] == SECTIONS
    assert "No plan was made in this run." in section(html, "plan")
    assert "No earlier run to compare with." in section(html, "changes")
    assert "No consolidation was proposed in this run." in section(html, "duplicates")


@pytest.mark.parametrize(
    "hostile", [SCRIPT, TITLE_SCRIPT, HOSTILE_ENV_NAME, HOSTILE_REF_NAME, HOSTILE_FLOW_NAME]
)
def test_hostile_names_are_escaped(report_input, hostile):
    html = render_report(report_input)
    assert hostile not in html
    text = "".join(parse(html).text)
    assert hostile in text  # the browser shows the characters, it does not run them


def test_hostile_text_creates_no_tags_or_handlers(report_input):
    html = render_report(report_input)
    tags = parse(html).tags
    assert not [t for t, _ in tags if t in ("script", "img", "iframe", "object", "embed")]
    handlers = [k for _, attrs in tags for k in attrs if k.startswith("on")]
    assert handlers == []
    assert str(escape(HOSTILE_OWNER)) in html


def test_no_external_urls_or_assets(report_input):
    html = render_report(report_input)
    for tag, attrs in parse(html).tags:
        assert tag not in ("link", "script", "iframe", "base"), tag
        for name in ("src", "href", "action", "srcset", "poster", "data"):
            value = attrs.get(name)
            if value is not None:
                assert value.startswith(("#", "mailto:")), (tag, name, value)
    assert not re.search(r"https?://", html)
    assert "@import" not in html and "url(" not in html and "@font-face" not in html


def test_content_security_policy_forbids_scripts_and_fetches(report_input):
    html = render_report(report_input)
    meta = [a for t, a in parse(html).tags if t == "meta" and a.get("http-equiv")]
    assert meta and "default-src 'none'" in (meta[0]["content"] or "")
    assert "script-src" not in (meta[0]["content"] or "")  # default-src 'none' covers scripts


def test_incomplete_environments_come_first_with_a_warning(report_input):
    html = render_report(report_input)
    top = section(html, "incomplete")
    assert html.index('id="incomplete"') < html.index('id="summary"')
    assert "Finance Dev" in top and "HTTP 403 reading workflows" in top
    assert "nothing there was judged" in top
    assert "Teams Sandbox" in top and "excluded by configuration" in top


def test_all_complete_says_so():
    inp = make_input()
    envs = inp.snapshot.environments.assign(status="complete", status_reason=None)
    snap = type(inp.snapshot)(**{**inp.snapshot.tables(), "environments": envs}, metadata={})
    html = render_report(make_input(snapshot=snap))
    assert "All 4 environments were read completely." in section(html, "incomplete")


def test_summary_figures(report_input):
    ctx = build_context(report_input)["summary"]
    assert (ctx["environments"], ctx["complete"], ctx["incomplete"], ctx["skipped"]) == (4, 2, 1, 1)
    assert (ctx["references"], ctx["flows"], ctx["findings"]) == (5, 3, 5)
    assert ctx["by_severity"] == {"high": 1, "medium": 2, "low": 2, "info": 0}
    assert ctx["duplicate_groups"] == 1 and ctx["plan_actions"] == 2
    assert "<svg" in section(render_report(report_input), "summary")


def test_by_environment_most_urgent_first(report_input):
    envs = build_context(report_input)["by_environment"]
    assert [e["environment_id"] for e in envs[:2]] == ["env-hostile", "env-prod"]
    assert envs[1]["counts"] == {"high": 0, "medium": 2, "low": 2, "info": 0}
    html = section(render_report(report_input), "by-environment")
    assert 'href="#env-1"' in html and 'id="env-1"' in html


def test_by_rule_shows_descriptions_and_rules_without_findings(report_input):
    html = section(render_report(report_input), "by-rule")
    assert "Several references share one connector and connection." in html
    assert "<code>unbound</code>" in html  # registered, no findings: still listed


def test_duplicates_show_survivor_moves_and_leftovers(report_input):
    html = section(render_report(report_input), "duplicates")
    assert "Absence – Dataverse – Service Principal" in html
    assert "compliant name and service principal connection" in html
    assert "Approve absence" in html and "Flow keys that move" in html
    assert "Leftovers" in html and 'class="badge st-yes">yes<' in html
    group = build_context(report_input)["duplicates"][0]
    roles = {m["reference_id"]: m["role"] for m in group["members"]}
    assert roles == {"r1": "leftover", "r2": "survivor"}


def test_plan_lines_are_text(report_input):
    html = section(render_report(report_input), "plan")
    assert "Rewire flow &#39;Approve absence&#39;" in html
    assert "2 actions." in html


def test_plan_without_actions():
    html = render_report(make_input(plan_lines=[]))
    assert "The plan has no actions" in section(html, "plan")


def test_changes_show_new_resolved_and_trend(report_input):
    html = section(render_report(report_input), "changes")
    assert "New findings (1)" in html and "Resolved findings (1)" in html
    assert "Old unused reference" in html
    assert "<svg" in html and "Apr 28" in html  # earlier nights plus this run


def test_new_findings_come_from_the_change_column_when_not_given(report_input):
    findings = report_input.findings.assign(change=["open", "open", "new", "open", "open"])
    history = {"resolved": None, "trend": []}
    ctx = build_context(make_input(findings=findings, history=history))["changes"]
    assert [r["object_id"] for r in ctx["new"]] == ["r3"]
    assert ctx["resolved"] == []


def test_entity_view_maps_references_to_flows(report_input):
    entities = {e["environment_id"]: e for e in build_context(report_input)["entities"]}
    prod = entities["env-prod"]
    used = {
        r["reference_id"]: [(f["name"], f["state"], f["key"]) for f in r["flows"]]
        for r in prod["used"]
    }
    assert used == {
        "r1": [("Approve absence", "On", "shared_commondataserviceforapps")],
        "r2": [("Nightly sync", "Off", "shared_commondataserviceforapps_1")],  # case-insensitive
    }
    assert [r["reference_id"] for r in prod["unused"]] == ["r3"]
    assert [m["logical_name"] for m in entities["env-hostile"]["missing"]] == ["contoso_gone"]
    assert "env-skipped" not in entities  # nothing was read there


def test_entity_view_warns_where_usage_is_unknown(report_input):
    html = section(render_report(report_input), "entities")
    assert "usage is unknown" in html
    assert "Used by no flow seen" in html


def test_about_shows_run_facts(report_input):
    html = section(render_report(report_input), "about")
    for text in ("20240501T020000Z", "0.1.0", "abc123def4567890", "48", "connectionreferences"):
        assert text in html
    assert re.search(r"Contoso-Production-[0-9a-f]{10}\.json", html)


def test_write_report_is_atomic(tmp_path, report_input):
    path = write_report(report_input, tmp_path)
    assert path == tmp_path / "report.html"
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_render_is_pure(report_input):
    assert render_report(report_input) == render_report(report_input)


def test_thousands_of_rows_render_quickly():
    inp = make_big_input(environments=20, flows=250)
    started = time.perf_counter()
    html = render_report(inp)
    assert time.perf_counter() - started < 20
    assert html.count("<details") >= 20


def test_rule_descriptions_come_from_the_registry_when_not_given():
    descriptions = rule_descriptions(None)
    assert descriptions, "the rules registry should describe its rules"
    assert all(isinstance(v, str) and "\n" not in v for v in descriptions.values())
    html = section(render_report(make_input(rule_descriptions=None)), "by-rule")
    assert str(escape(descriptions["unused"])) in html


def test_unreadable_flows_make_usage_unknown():
    inp = make_input()
    flows = inp.snapshot.flows.copy()
    flows.loc[flows["flow_id"] == "f2", "parse_status"] = "invalid-json"
    snap = type(inp.snapshot)(**{**inp.snapshot.tables(), "flows": flows}, metadata={})
    prod = next(
        e
        for e in build_context(make_input(snapshot=snap))["entities"]
        if e["environment_id"] == "env-prod"
    )
    assert prod["unreadable_flows"] == 1 and prod["usage_known"] is False
