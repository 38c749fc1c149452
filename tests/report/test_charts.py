"""Inline SVG charts: well-formed, escaped, and empty when there is nothing to draw."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from markupsafe import Markup

from cleanup.report.charts import PALETTE, findings_bar_chart, run_label, trend_chart

HOSTILE = "<script>alert(1)</script>\"'&🚀"


def test_bar_chart_escapes_labels_and_is_well_formed():
    svg = findings_bar_chart({HOSTILE: {"high": 2, "low": 1}, "unused": {"medium": 4}})
    assert isinstance(svg, Markup)
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    root = ET.fromstring(str(svg))  # well-formed: no label could open or close a tag
    texts = "".join(root.itertext())
    assert "<script>alert(1)" in texts
    assert root.tag == "svg" and not root.findall(".//script")


def test_bar_chart_draws_one_bar_per_rule_and_severity():
    svg = findings_bar_chart({"duplicate": {"high": 1, "medium": 2}, "unused": {"low": 3}})
    root = ET.fromstring(str(svg))
    tips = [t.text for t in root.iter("title")]
    assert "duplicate: 1 high" in tips and "duplicate: 2 medium" in tips
    assert "unused: 3 low" in tips


def test_empty_charts_are_empty():
    assert findings_bar_chart({}) == ""
    assert trend_chart([], ["high"]) == ""


def test_trend_chart_escapes_run_ids_and_colours_rules():
    points = [(HOSTILE, {"unused": 2, "bad-name": 1}), ("20240501T020000Z", {"unused": 1})]
    svg = trend_chart(points, ["bad-name", "unused"])
    assert "<script>" not in svg
    root = ET.fromstring(str(svg))
    fills = {r.get("fill") for r in root.iter("rect")}
    assert PALETTE[0] in fills and PALETTE[1] in fills


def test_run_labels():
    assert run_label("20240501T020000Z") == ("May 01", "02:00")
    assert run_label("20240501T020000Z-2") == ("May 01", "02:00")
    assert run_label("manual-run-x") == ("manual-ru…", "")
