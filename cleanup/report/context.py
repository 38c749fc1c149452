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
from itertools import islice
from typing import Any

import pandas as pd

from cleanup.report.charts import SEVERITIES, findings_bar_chart, trend_chart
from cleanup.report.entities import duplicate_groups, entity_view
from cleanup.report.rows import (
    ENV_KEY,
    RULE_KEY,
    counts_by,
    finding_records,
    finding_rows,
    fold,
    part,
    records,
    sorted_findings,
)
from cleanup.report.settings_json import settings_file_name
from cleanup.snapshot.model import Snapshot

TREND_RUNS = 30  # nights in the trend chart

# The report lists at most this many rows of each long list, so its size and rendering time do
# not grow with the tenant; counts and totals are always exact, and every capped list says how
# many rows it leaves out and where the full data is (findings.csv, plan.json, the snapshot).
RULE_FINDINGS_SHOWN = 200  # findings per rule, most severe first
ENVIRONMENT_ROWS_SHOWN = 200  # rows of the findings-by-environment table, most urgent first
ENVIRONMENTS_DETAILED = 20  # environments whose findings are listed, most urgent first
ENVIRONMENT_FINDINGS_SHOWN = 50  # findings listed per environment, most severe first
DUPLICATE_GROUPS_SHOWN = 50  # duplicate groups, most references (then moves) first
GROUP_ROWS_SHOWN = 20  # members, flow-key moves and leftovers listed per duplicate group
PLAN_LINES_SHOWN = 1_000  # lines of the plan in words, from the top
CHANGES_SHOWN = 200  # new findings, and resolved findings, most severe first
ENTITY_ENVIRONMENTS_SHOWN = 20  # environments in the flows-and-references view, largest first
ENTITY_REFERENCES_SHOWN = 50  # used, missing and unused references listed per environment
REFERENCE_FLOWS_SHOWN = 10  # flows listed per reference
ABOUT_ROWS_SHOWN = 200  # requests by environment, deployment settings files


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
    """Return the template context of the report.

    Long lists are capped (the ``*_SHOWN`` constants); every count stays exact, and each capped
    list says how many rows it leaves out and where they are.
    """
    snap = inp.snapshot
    env_names = environment_names(snap, inp.findings)
    findings = sorted_findings(inp.findings)  # the sort order and keys, not the rows
    rule_counts = counts_by(findings, RULE_KEY)
    duplicates = duplicate_groups(
        snap,
        inp.findings,
        inp.proposals,
        env_names,
        shown=DUPLICATE_GROUPS_SHOWN,
        rows_shown=GROUP_ROWS_SHOWN,
    )
    environments = by_environment(snap, inp.findings, findings, env_names)
    entities = entity_view(
        snap,
        env_names,
        environments_shown=ENTITY_ENVIRONMENTS_SHOWN,
        references_shown=ENTITY_REFERENCES_SHOWN,
        flows_shown=REFERENCE_FLOWS_SHOWN,
    )
    return {
        "run_id": inp.run_id,
        "generated_at": format_time(inp.generated_at),
        "tool_version": inp.tool_version,
        "severities": list(SEVERITIES),
        "incomplete": incomplete_environments(snap, env_names),
        "summary": summary(inp, findings, rule_counts, duplicates["total"]),
        "by_environment": environments["rows"],
        "environments_hidden": environments["hidden"],
        "environment_details": environments["details"],
        "by_rule": by_rule(
            inp.findings, findings, rule_counts, rule_descriptions(inp.rule_descriptions)
        ),
        "duplicates": duplicates["groups"],
        "duplicates_total": duplicates["total"],
        "duplicates_hidden": duplicates["total"] - len(duplicates["groups"]),
        "plan": plan_section(inp),
        "changes": changes(inp.history, inp.findings, findings, inp.run_id),
        "entities": entities["environments"],
        "entities_total": entities["total"],
        "entities_hidden": entities["total"] - len(entities["environments"]),
        "about": about(inp, env_names),
    }


def environment_names(snapshot: Snapshot, findings: pd.DataFrame) -> dict[str, str]:
    """Map environment id to display name (the id when the name is missing)."""
    names: dict[str, str] = {}
    if not findings.empty and "environment_id" in findings.columns:
        ids = findings["environment_id"]
        given = findings.get("environment_name", pd.Series(pd.NA, index=findings.index))
        pairs = pd.DataFrame({"id": ids, "name": given})[ids.notna()]
        last = pairs.drop_duplicates("id", keep="last")  # the last row wins, as in a loop
        for row in records(last, ["id", "name"]):
            names[row["id"]] = row["name"] or row["id"]
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
    inp: ReportInput,
    findings: pd.DataFrame,
    rule_counts: Mapping[str, Mapping[str, int]],
    duplicate_count: int,
) -> dict[str, Any]:
    """Return the headline figures and the findings chart (``findings``: sorted_findings)."""
    snap = inp.snapshot
    status = Counter(str(s) for s in snap.environments["status"].fillna("unknown"))
    ordered = dict(sorted(rule_counts.items(), key=lambda kv: (-sum(kv[1].values()), kv[0])))
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
        "by_severity": _severity_totals(findings),
        "duplicate_groups": duplicate_count,
        "plan_actions": None if actions is None else len(actions),
        "chart": findings_bar_chart(ordered),
    }


def _severity_totals(findings: pd.DataFrame) -> dict[str, int]:
    counts = dict.fromkeys(SEVERITIES, 0)
    for severity, n in findings["severity"].value_counts(sort=False).items():
        if n:
            counts[str(severity)] = int(n)
    return counts


def by_environment(
    snapshot: Snapshot,
    frame: pd.DataFrame,
    findings: pd.DataFrame,
    env_names: Mapping[str, str],
) -> dict[str, Any]:
    """Return each environment with its counts by severity, most urgent first.

    ``rows`` holds the first ENVIRONMENT_ROWS_SHOWN environments (``hidden`` more); the first
    ENVIRONMENTS_DETAILED of them with findings list their ENVIRONMENT_FINDINGS_SHOWN most
    severe findings (``detailed``), and ``details`` says how many environments are not listed.
    """
    counts = counts_by(findings, ENV_KEY)
    envs = {
        r["environment_id"]: r
        for r in records(snapshot.environments, ["environment_id", "sku", "status"])
    }
    ids = list(envs) + [env_id for env_id in counts if env_id not in envs]
    out = []
    for env_id in ids:
        env = envs.get(env_id, {})
        env_counts = counts.get(env_id, dict.fromkeys(SEVERITIES, 0))
        out.append(
            {
                "environment_id": env_id,
                "name": env_names.get(env_id, env_id),
                "sku": env.get("sku"),
                "status": env.get("status") or "unknown",
                "counts": env_counts,
                "total": sum(env_counts.values()),
                "detailed": False,
                "findings": [],
                "hidden": 0,
            }
        )
    out.sort(key=lambda e: (_urgency(e["counts"]), fold(e["name"])))
    for index, env in enumerate(out, start=1):
        env["anchor"] = f"env-{index}"  # never built from remote text
    with_findings = [e for e in out if e["total"]]
    detailed = {e["environment_id"]: e for e in with_findings[:ENVIRONMENTS_DETAILED]}
    shown = findings[findings[ENV_KEY].isin(list(detailed))]
    shown = shown.groupby(ENV_KEY, sort=False, observed=True).head(ENVIRONMENT_FINDINGS_SHOWN)
    for env_id, row in zip(shown[ENV_KEY], finding_records(frame, shown), strict=True):
        detailed[str(env_id)]["findings"].append(row)
    for env in detailed.values():
        env["detailed"] = True
        env["hidden"] = env["total"] - len(env["findings"])
    return {
        "rows": out[:ENVIRONMENT_ROWS_SHOWN],
        "hidden": max(0, len(out) - ENVIRONMENT_ROWS_SHOWN),
        "details": {
            "shown": len(detailed),
            "hidden": len(with_findings) - len(detailed),
            "per_environment": ENVIRONMENT_FINDINGS_SHOWN,
            # Every finding is listed under its environment: the by-rule lists may say so.
            "complete": len(detailed) == len(with_findings)
            and not any(e["hidden"] for e in detailed.values()),
        },
    }


def _urgency(counts: Mapping[str, int]) -> tuple[int, ...]:
    # What needs attention first: one high outweighs any number of mediums.
    return tuple(-counts.get(s, 0) for s in SEVERITIES)


def by_rule(
    frame: pd.DataFrame,
    findings: pd.DataFrame,
    rule_counts: Mapping[str, Mapping[str, int]],
    descriptions: Mapping[str, str],
) -> list[dict[str, Any]]:
    """Return each rule with its description, counts and (a capped list of) findings."""
    names = list(dict.fromkeys([*descriptions, *rule_counts]))
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    shown = findings.groupby(RULE_KEY, sort=False, observed=True).head(RULE_FINDINGS_SHOWN)
    for rule, row in zip(shown[RULE_KEY], finding_records(frame, shown), strict=True):
        rows[str(rule)].append(row)
    out = []
    for name in names:
        counts = dict(rule_counts.get(name, dict.fromkeys(SEVERITIES, 0)))
        total = sum(counts.values())
        out.append(
            {
                "rule": name,
                "description": descriptions.get(name),
                "counts": counts,
                "total": total,
                "findings": rows[name],
                "hidden": total - len(rows[name]),
            }
        )
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
    """Return the plan in words (its first PLAN_LINES_SHOWN lines), or say that there is none."""
    if inp.plan_lines is not None:
        lines = [str(line) for line in inp.plan_lines]
        shown, total = lines[:PLAN_LINES_SHOWN], len(lines)
    else:
        shown, total = _describe_head(inp.plan, PLAN_LINES_SHOWN)
    actions = part(inp.plan, "actions")
    skipped = part(inp.plan, "skipped")
    return {
        "available": inp.plan is not None or inp.plan_lines is not None,
        "lines": shown,
        "lines_total": total,
        "lines_hidden": max(0, total - PLAN_LINES_SHOWN),
        "actions": None if actions is None else len(actions),
        "skipped": None if skipped is None else len(skipped),
    }


def _describe_head(plan: Any, limit: int) -> tuple[list[str], int]:
    """The first ``limit`` lines of the plan in words and how many there are in all."""
    if plan is None:
        return [], 0
    try:
        explain = importlib.import_module("cleanup.plan_explain")
    except ImportError:
        return [], 0
    # A plan of a large tenant has a line per action: write only the lines the report shows.
    head = [str(line) for line in islice(explain.iter_describe(plan), limit)]
    return head, explain.line_count(plan)


def changes(
    history: Any, findings: pd.DataFrame, ordered: pd.DataFrame, run_id: str
) -> dict[str, Any]:
    """Return new and resolved findings since the last run and the trend chart.

    ``ordered`` is ``sorted_findings(findings)``; each list holds its CHANGES_SHOWN first rows.
    """
    if history is None:
        return {"available": False}
    new = _frame(part(history, "new"))
    if new is None and "change" in findings.columns:
        new = findings[findings["change"].eq("new").fillna(False)]
    resolved = _frame(part(history, "resolved"))
    points = _trend_points(part(history, "trend") or [], findings, ordered, run_id)
    new_total = 0 if new is None else len(new)
    resolved_total = 0 if resolved is None else len(resolved)
    new_rows = finding_rows(new, CHANGES_SHOWN)
    resolved_rows = finding_rows(resolved, CHANGES_SHOWN)
    return {
        "available": True,
        "new": new_rows,
        "new_total": new_total,
        "new_hidden": new_total - len(new_rows),
        "resolved": resolved_rows,
        "resolved_total": resolved_total,
        "resolved_hidden": resolved_total - len(resolved_rows),
        "runs": len(points),
        "chart": trend_chart(points, _trend_series(points)),
    }


def _frame(value: Any) -> pd.DataFrame | None:
    return value if isinstance(value, pd.DataFrame) else None


def _trend_points(
    trend: Sequence[Any], frame: pd.DataFrame, findings: pd.DataFrame, run_id: str
) -> list[tuple[str, dict[str, int]]]:
    points = [(str(run), _flat_counts(counts)) for run, counts in trend]
    by_severity = all(set(c) <= set(SEVERITIES) for _, c in points)
    if run_id not in {run for run, _ in points}:
        if by_severity:
            counts = _text_counts(findings["severity"])
        else:
            counts = _text_counts(frame["rule"]) if "rule" in frame.columns else {}
        points.append((run_id, counts))
    return points[-TREND_RUNS:]


def _text_counts(series: pd.Series) -> dict[str, int]:
    # Counter(str(value)) over the rows, a missing value counted as "None".
    out: Counter[str] = Counter()
    for value, n in series.value_counts(dropna=False, sort=False).items():
        if n:
            out["None" if value is None or pd.isna(value) else str(value)] += int(n)
    return dict(out)


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
    """Return how this run was made: versions, fingerprint, timings, request counts.

    The two per-environment lists hold their ABOUT_ROWS_SHOWN first rows.
    """
    meta = inp.snapshot.metadata or {}
    requests = meta.get("requests") or {}
    complete = sorted(inp.snapshot.complete_environments(), key=lambda e: fold(env_names.get(e)))
    by_environment = sorted(
        ((env_names.get(e, e), n) for e, n in (requests.get("by_environment") or {}).items()),
        key=lambda kv: (-int(kv[1] or 0), fold(kv[0])),
    )
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
        "requests_by_environment": by_environment[:ABOUT_ROWS_SHOWN],
        "requests_by_environment_hidden": max(0, len(by_environment) - ABOUT_ROWS_SHOWN),
        "settings_files": [
            (env_names.get(e, e), settings_file_name(env_names.get(e, e), e))
            for e in complete[:ABOUT_ROWS_SHOWN]
        ],
        "settings_files_hidden": max(0, len(complete) - ABOUT_ROWS_SHOWN),
    }
