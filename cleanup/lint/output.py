"""Render lint results: text for a person, JSON for a pipeline.

JSON (``format_version`` 1; keys are only ever added, never renamed or removed)::

    {"format_version": 1,
     "solution": "<path as given>", "solution_name": "<unique name>" | null,
     "summary": {"customizations_file": ..., "declared": n, "flows_read": n,
                 "settings_files": [...]},
     "findings": [{"check", "severity", "logical_name", "file", "detail", "suggested_fix",
                   "related_files": [...]}, ...],
     "counts": {"total": n, "problems": n, "by_severity": {...}, "by_check": {...}}}

An input that cannot be read gives ``{"format_version": 1, "solution": ..., "error": "..."}``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from itertools import groupby

from cleanup.lint.checks import CHECKS, INFO, SEVERITIES, LintFinding, LintResult

FORMAT_VERSION = 1
_INDENT = "    "


def render_json(result: LintResult) -> str:
    """Return the result as stable JSON for pipelines."""
    doc = {
        "format_version": FORMAT_VERSION,
        "solution": result.solution,
        "solution_name": result.solution_name,
        "summary": {
            "customizations_file": result.customizations_file,
            "declared": result.declared,
            "flows_read": result.flows_read,
            "settings_files": list(result.settings_files),
        },
        "findings": [_finding_dict(f) for f in result.findings],
        "counts": result.counts(),
    }
    return json.dumps(doc, indent=2, ensure_ascii=False)


def render_json_error(solution: str, message: str) -> str:
    """Return the JSON written when the input cannot be read."""
    doc = {"format_version": FORMAT_VERSION, "solution": solution, "error": message}
    return json.dumps(doc, indent=2, ensure_ascii=False)


def _finding_dict(finding: LintFinding) -> dict:
    out = asdict(finding)
    out["related_files"] = list(finding.related_files)
    return out


def render_text(result: LintResult) -> str:
    """Return the result for a person: a headline, then findings grouped by check."""
    lines = [_headline(result), _tally(result)]
    order = list(CHECKS)
    by_check = sorted(result.findings, key=lambda f: order.index(f.check))
    groups = [(check, list(items)) for check, items in groupby(by_check, key=lambda f: f.check)]
    # Worst groups first; within a severity, the fixed reading order of CHECKS.
    groups.sort(key=lambda g: (min(SEVERITIES.index(f.severity) for f in g[1]), order.index(g[0])))
    for check, items in groups:
        lines += ["", f"{CHECKS[check]} ({check}, {len(items)}):"]
        # One fix shared by the whole group is said once, not once per finding.
        shared = {f.suggested_fix for f in items}
        shared_fix = shared.pop() if len(shared) == 1 and len(items) > 1 else None
        for finding in items:
            lines += _finding_lines(finding, with_fix=shared_fix is None)
        if shared_fix is not None:
            lines.append(f"  fix for all of these: {shared_fix}")
    return "\n".join(lines) + "\n"


def _headline(result: LintResult) -> str:
    name = f" ({result.solution_name})" if result.solution_name else ""
    settings = f", {len(result.settings_files)} settings file(s)" if result.settings_files else ""
    return (
        f"Solution {result.solution}{name}: {result.declared} connection reference(s) declared "
        f"in {result.customizations_file}, {result.flows_read} cloud flow(s) read{settings}."
    )


def _tally(result: LintResult) -> str:
    counts = result.counts()["by_severity"]
    problems = [f"{counts[s]} {s}" for s in SEVERITIES if s != INFO and counts[s]]
    notes = f" and {counts[INFO]} note(s)" if counts[INFO] else ""
    if not problems:
        return f"No problems found{notes}."
    return f"{len(result.problems)} problem(s) ({', '.join(problems)}){notes}."


def _finding_lines(finding: LintFinding, *, with_fix: bool = True) -> list[str]:
    subject = finding.logical_name or finding.file
    lines = [f"  [{finding.severity}] {subject}"]
    lines.append(f"{_INDENT}file:   {finding.file}")
    others = [f for f in finding.related_files if f != finding.file]
    if others:
        lines.append(f"{_INDENT}also:   {', '.join(others)}")
    lines.append(f"{_INDENT}detail: {finding.detail}")
    if with_fix:
        lines.append(f"{_INDENT}fix:    {finding.suggested_fix}")
    return lines
