"""Build the report's template context from the run's DataFrames (pure: no I/O).

Every value handed to the templates is plain Python (str, int, bool, None, lists, dicts) or a
``Markup`` chart built in ``charts``; remote text stays text and the templates escape it.
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from cleanup.report.charts import SEVERITIES, findings_bar_chart, trend_chart
from cleanup.report.entities import duplicate_groups, entity_view
from cleanup.report.rows import finding_rows, fold, part, records, severity_counts
from cleanup.report.settings_json import settings_file_name
from cleanup.snapshot.model import Snapshot

TREND_RUNS = 30  # nights in the trend chart
RULE_FINDINGS_SHOWN = 200  # per rule; the full list is under #by-environment and in findings.csv


@dataclass(frozen=True)
class ReportInput:
    """Everything one report is rendered from; the optional parts may be None."""

    snapshot: Snapshot
    findings: pd.DataFrame
    run_id: str
    generated_at: datetime
    tool_version: str
    proposals: Any = None  # cleanup.consolidate.Proposals: survivors, moves, leftovers
    plan: Any = None  # cleanup.plan.Plan: actions, skipped
    plan_lines: Sequence[str] | None = None  # describe(plan); computed from plan when None
    history: Any = None  # ReportHistory, or any object/dict with new, resolved and trend
    rule_descriptions: Mapping[str, str] | None = None  # rule -> one line; registry when None


@dataclass(frozen=True)
class ReportHistory:
    """What changed since the last run: new and resolved findings, and counts per run."""

    new: pd.DataFrame | None = None  # None: taken from the findings' ``change`` column
    resolved: pd.DataFrame | None = None
    trend: Sequence[tuple[str, Mapping[str, Any]]] = ()  # oldest first; counts by severity


def build_context(inp: ReportInput) -> dict[str, Any]:
    """Return the template context of the report."""
    snap = inp.snapshot
    env_names = environment_names(snap, inp.findings)
    findings = finding_rows(inp.findings)
    duplicates = duplicate_groups(snap, inp.findings, inp.proposals, env_names)
    return {
        "run_id": inp.run_id,
        "generated_at": format_time(inp.generated_at),
        "tool_version": inp.tool_version,
        "severities": list(SEVERITIES),
        "incomplete": incomplete_environments(snap, env_names),
        "summary": summary(inp, findings, len(duplicates)),
        "by_environment": by_environment(snap, findings, env_names),
        "by_rule": by_rule(findings, rule_descriptions(inp.rule_descriptions)),
        "duplicates": duplicates,
        "plan": plan_section(inp),
        "changes": changes(inp.history, inp.findings, findings, inp.run_id),
        "entities": entity_view(snap, env_names),
        "about": about(inp, env_names),
    }


def environment_names(snapshot: Snapshot, findings: pd.DataFrame) -> dict[str, str]:
    """Map environment id to display name (the id when the name is missing)."""
    names: dict[str, str] = {}
    for row in records(findings, ["environment_id", "environment_name"]):
        if row["environment_id"] is not None:
            names[row["environment_id"]] = row["environment_name"] or row["environment_id"]
    for row in records(snapshot.environments, ["environment_id", "display_name"]):
        names[row["environment_id"]] = row["display_name"] or row["environment_id"]
    return names


def format_time(value: datetime | str | None) -> str:
    """Format a timestamp for people: ISO date and minutes, with its zone."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return value.strftime("%Y-%m-%d %H:%M %Z").strip()


def incomplete_environments(snapshot: Snapshot, env_names: Mapping[str, str]) -> dict[str, Any]:
    """Return the environments that were not read completely, with the reasons."""
    envs = snapshot.environments
    rows = records(
        envs[envs["status"].fillna("unknown") != "complete"],
        ["environment_id", "sku", "status", "status_reason"],
    )
    for row in rows:
        row["name"] = env_names.get(row["environment_id"], row["environment_id"])
        row["status"] = row["status"] or "unknown"
    rows.sort(key=lambda r: (r["status"] == "skipped", fold(r["name"])))
    return {
        "rows": rows,
        "unread": [r for r in rows if r["status"] != "skipped"],
        "skipped": [r for r in rows if r["status"] == "skipped"],
        "total": len(envs),
    }


def summary(
    inp: ReportInput, findings: list[dict[str, Any]], duplicate_count: int
) -> dict[str, Any]:
    """Return the headline figures and the findings chart."""
    snap = inp.snapshot
    status = Counter(str(s) for s in snap.environments["status"].fillna("unknown"))
    by_rule: dict[str, Counter[str]] = {}
    for row in findings:
        by_rule.setdefault(row["rule"] or "?", Counter())[row["severity"]] += 1
    ordered = dict(sorted(by_rule.items(), key=lambda kv: (-sum(kv[1].values()), kv[0])))
    actions = part(inp.plan, "actions")
    return {
        "environments": len(snap.environments),
        "complete": status.get("complete", 0),
        "incomplete": sum(n for s, n in status.items() if s not in ("complete", "skipped")),
        "skipped": status.get("skipped", 0),
        "references": len(snap.references),
        "flows": len(snap.flows),
        "usages": len(snap.usages),
        "findings": len(findings),
        "by_severity": severity_counts(r["severity"] for r in findings),
        "duplicate_groups": duplicate_count,
        "plan_actions": None if actions is None else len(actions),
        "chart": findings_bar_chart(ordered),
    }


def by_environment(
    snapshot: Snapshot, findings: list[dict[str, Any]], env_names: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Return each environment with its findings and counts by severity."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in findings:
        grouped.setdefault(row["environment_id"] or "", []).append(row)
    envs = {
        r["environment_id"]: r
        for r in records(snapshot.environments, ["environment_id", "sku", "status"])
    }
    ids = list(envs) + [env_id for env_id in grouped if env_id not in envs]
    out = []
    for env_id in ids:
        rows = grouped.get(env_id, [])
        env = envs.get(env_id, {})
        out.append(
            {
                "environment_id": env_id,
                "name": env_names.get(env_id, env_id),
                "sku": env.get("sku"),
                "status": env.get("status") or "unknown",
                "counts": severity_counts(r["severity"] for r in rows),
                "total": len(rows),
                "findings": rows,
            }
        )
    out.sort(key=lambda e: (_urgency(e["counts"]), fold(e["name"])))
    for index, env in enumerate(out, start=1):
        env["anchor"] = f"env-{index}"  # never built from remote text
    return out


def _urgency(counts: Mapping[str, int]) -> tuple[int, ...]:
    # What needs attention first: one high outweighs any number of mediums.
    return tuple(-counts.get(s, 0) for s in SEVERITIES)


def by_rule(
    findings: list[dict[str, Any]], descriptions: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Return each rule with its description, counts and (a capped list of) findings."""
    grouped: dict[str, list[dict[str, Any]]] = {name: [] for name in descriptions}
    for row in findings:
        grouped.setdefault(row["rule"] or "?", []).append(row)
    out = [
        {
            "rule": name,
            "description": descriptions.get(name),
            "counts": severity_counts(r["severity"] for r in rows),
            "total": len(rows),
            "findings": rows[:RULE_FINDINGS_SHOWN],
            "hidden": max(0, len(rows) - RULE_FINDINGS_SHOWN),
        }
        for name, rows in grouped.items()
    ]
    return sorted(out, key=lambda r: (-r["total"], r["rule"]))


def rule_descriptions(given: Mapping[str, str] | None) -> dict[str, str]:
    """Return rule one-liners: the given ones, else the rules registry's summaries."""
    if given is not None:
        return dict(given)
    try:
        summaries = importlib.import_module("cleanup.rules").rule_summaries
    except (ImportError, AttributeError):
        return {}
    return {str(name): str(text) for name, text in summaries().items()}


def plan_section(inp: ReportInput) -> dict[str, Any]:
    """Return the plan in words, or say that there is none."""
    lines = list(inp.plan_lines) if inp.plan_lines is not None else _describe(inp.plan)
    actions = part(inp.plan, "actions")
    skipped = part(inp.plan, "skipped")
    return {
        "available": inp.plan is not None or inp.plan_lines is not None,
        "lines": [str(line) for line in lines or []],
        "actions": None if actions is None else len(actions),
        "skipped": None if skipped is None else len(skipped),
    }


def _describe(plan: Any) -> list[str] | None:
    if plan is None:
        return None
    try:
        describe = importlib.import_module("cleanup.plan").describe
    except (ImportError, AttributeError):
        return None
    return list(describe(plan))


def changes(
    history: Any, findings: pd.DataFrame, rows: list[dict[str, Any]], run_id: str
) -> dict[str, Any]:
    """Return new and resolved findings since the last run and the trend chart."""
    if history is None:
        return {"available": False}
    new = _frame(part(history, "new"))
    if new is None and "change" in findings.columns:
        new = findings[findings["change"].eq("new").fillna(False)]
    points = _trend_points(part(history, "trend") or [], rows, run_id)
    return {
        "available": True,
        "new": finding_rows(new),
        "resolved": finding_rows(_frame(part(history, "resolved"))),
        "runs": len(points),
        "chart": trend_chart(points, _trend_series(points)),
    }


def _frame(value: Any) -> pd.DataFrame | None:
    return value if isinstance(value, pd.DataFrame) else None


def _trend_points(
    trend: Sequence[Any], findings: list[dict[str, Any]], run_id: str
) -> list[tuple[str, dict[str, int]]]:
    points = [(str(run), _flat_counts(counts)) for run, counts in trend]
    by_severity = all(set(c) <= set(SEVERITIES) for _, c in points)
    if run_id not in {run for run, _ in points}:
        field = "severity" if by_severity else "rule"
        points.append((run_id, dict(Counter(str(r[field]) for r in findings))))
    return points[-TREND_RUNS:]


def _flat_counts(counts: Any) -> dict[str, int]:
    # The trend may carry counts by severity and by rule together; severities read best.
    if isinstance(counts, Mapping):
        for key in ("by_severity", "severity", "severities"):
            if isinstance(counts.get(key), Mapping):
                return {str(k): int(v) for k, v in counts[key].items()}
        return {str(k): int(v) for k, v in counts.items() if not isinstance(v, Mapping)}
    return {}


def _trend_series(points: Sequence[tuple[str, Mapping[str, int]]]) -> list[str]:
    names = {name for _, counts in points for name in counts}
    if names <= set(SEVERITIES):
        return list(SEVERITIES)
    return sorted(names)


def about(inp: ReportInput, env_names: Mapping[str, str]) -> dict[str, Any]:
    """Return how this run was made: versions, fingerprint, timings, request counts."""
    meta = inp.snapshot.metadata or {}
    requests = meta.get("requests") or {}
    complete = sorted(inp.snapshot.complete_environments(), key=lambda e: fold(env_names.get(e)))
    return {
        "run_id": inp.run_id,
        "tool_version": inp.tool_version,
        "snapshot_tool_version": meta.get("tool_version"),
        "config_fingerprint": meta.get("config_fingerprint"),
        "generated_at": format_time(inp.generated_at),
        "started_at": meta.get("started_at"),
        "finished_at": meta.get("finished_at"),
        "seconds": meta.get("seconds"),
        "bytes": meta.get("bytes"),
        "requests_total": requests.get("total"),
        "throttled": requests.get("throttled"),
        "requests_by_table": sorted((requests.get("by_table") or {}).items()),
        "requests_by_environment": sorted(
            ((env_names.get(e, e), n) for e, n in (requests.get("by_environment") or {}).items()),
            key=lambda kv: (-int(kv[1] or 0), fold(kv[0])),
        ),
        "settings_files": [
            (env_names.get(e, e), settings_file_name(env_names.get(e, e), e)) for e in complete
        ],
    }
