"""Text for people, stable JSON for pipelines, and the exit codes of ``main_lint``."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from cleanup.lint import main_lint
from cleanup.lint.checks import CHECKS, SEVERITIES

SPO = "shared_sharepointonline"
GOOD = "HR – SharePoint – User"


@pytest.fixture
def messy(make_solution: Callable[..., Path], flow_for: Callable[..., str]) -> Path:
    """A solution with one high, two medium, some low findings and an info note."""
    refs = [
        {"logical": "hr_SpoA", "display": GOOD, "connector": SPO},
        {"logical": "hr_SpoB", "display": "SharePoint", "connector": SPO},
    ]
    flows = {
        "Uses-1.json": flow_for({"a": (SPO, "hr_SpoA"), "b": (SPO, "other_Spo")}),
        "Direct-2.json": flow_for({"c": ("shared_office365", None)}),
    }
    return make_solution(refs, flows)


def _run(path: Path, fmt: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main_lint(path, (), fmt, None, out=out, err=err)
    assert err.getvalue() == ""
    return code, out.getvalue()


def test_json_is_stable_for_pipelines(messy: Path) -> None:
    code, out = _run(messy, "json")
    doc = json.loads(out)

    assert code == 1
    assert list(doc) == [
        "format_version",
        "solution",
        "solution_name",
        "summary",
        "findings",
        "counts",
    ]
    assert doc["format_version"] == 1
    assert doc["solution"] == str(messy)
    assert doc["summary"] == {
        "customizations_file": "Other/Customizations.xml",
        "declared": 2,
        "flows_read": 2,
        "settings_files": [],
    }
    keys = {"check", "severity", "logical_name", "file", "detail", "suggested_fix", "related_files"}
    assert all(set(f) == keys for f in doc["findings"])
    counts = doc["counts"]
    assert list(counts["by_severity"]) == list(SEVERITIES)
    assert list(counts["by_check"]) == list(CHECKS)
    assert counts["total"] == len(doc["findings"])
    assert counts["problems"] == counts["total"] - counts["by_severity"]["info"]
    assert counts["by_check"]["undeclared"] == 1
    assert counts["by_check"]["direct-connection"] == 1
    # Most severe first.
    order = [SEVERITIES.index(f["severity"]) for f in doc["findings"]]
    assert order == sorted(order)


def test_text_groups_by_check_with_file_and_fix(messy: Path) -> None:
    code, out = _run(messy, "text")

    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith(f"Solution {messy}: 2 connection reference(s) declared")
    assert "problem(s) (1 high, 2 medium, 2 low) and 1 note(s)." in lines[1]
    headers = [line for line in lines if line and not line.startswith(" ")][2:]
    assert headers[0] == f"{CHECKS['undeclared']} (undeclared, 1):"
    assert headers[-1] == f"{CHECKS['direct-connection']} (direct-connection, 1):"
    assert "    file:   Workflows/Uses-1.json" in lines
    assert any(
        line.startswith("    fix:    Add the existing connection reference") for line in lines
    )
    # The duplicate pair shares one fix, printed once for the group.
    assert sum(line.startswith("  fix for all of these:") for line in lines) == 1


def test_clean_solution_exits_0_and_says_so(
    make_solution: Callable[..., Path], flow_for: Callable[..., str]
) -> None:
    root = make_solution(
        [{"logical": "hr_Spo", "display": GOOD, "connector": SPO}],
        {"F-1.json": flow_for({"a": (SPO, "hr_Spo")}), "D-2.json": flow_for({"c": (SPO, None)})},
    )
    code, out = _run(root, "text")
    assert code == 0
    assert out.splitlines()[1] == "No problems found and 1 note(s)."


def test_unknown_format_is_a_programming_error(messy: Path) -> None:
    with pytest.raises(ValueError, match="fmt"):
        main_lint(messy, (), "yaml", None)
