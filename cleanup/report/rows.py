"""Turn DataFrames into plain rows for templates: no pandas objects reach Jinja."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from cleanup.report.charts import SEVERITIES

FINDING_FIELDS: tuple[str, ...] = (
    "rule",
    "severity",
    "environment_id",
    "environment_name",
    "object_type",
    "object_id",
    "logical_name",
    "display_name",
    "owner_name",
    "detail",
    "suggested_fix",
    "group_id",
)
FLOW_STATES: Mapping[int, str] = {0: "Off", 1: "On", 2: "Suspended"}


def part(obj: Any, name: str) -> Any:
    """Return ``obj[name]`` or ``obj.name`` (None when absent): optional parts vary in shape."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def records(frame: pd.DataFrame | None, columns: Sequence[str]) -> list[dict[str, Any]]:
    """Return rows as dicts with exactly ``columns``; missing columns and <NA> become None."""
    if frame is None or frame.empty:
        return []
    data = {}
    for col in columns:
        if col in frame.columns:
            series = frame[col].astype(object)
            data[col] = series.where(series.notna(), None)
        else:
            data[col] = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    return pd.DataFrame(data, index=frame.index).to_dict("records")


def severity_rank(severity: Any) -> int:
    """Return the sort rank of a severity (most severe first; unknown ones last)."""
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


def finding_rows(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    """Return findings as rows, most severe first, then by environment, rule and name."""
    rows = records(frame, FINDING_FIELDS)
    for row in rows:
        row["severity"] = str(row["severity"] or "info").lower()
    rows.sort(
        key=lambda r: (
            severity_rank(r["severity"]),
            fold(r["environment_name"] or r["environment_id"]),
            fold(r["rule"]),
            fold(r["display_name"] or r["logical_name"]),
        )
    )
    return rows


def severity_counts(severities: Iterable[Any]) -> dict[str, int]:
    """Count severities, always listing the four known ones (extra ones are kept too)."""
    counts = dict.fromkeys(SEVERITIES, 0)
    for severity in severities:
        key = str(severity or "info").lower()
        counts[key] = counts.get(key, 0) + 1
    return counts


def flow_state(state: Any) -> str:
    """Return a person's word for a workflow state code."""
    if state is None:
        return "Unknown"
    return FLOW_STATES.get(int(state), f"State {int(state)}")


def fold(value: Any) -> str:
    """Return a case-insensitive sort key for a possibly missing text."""
    return "" if value is None else str(value).casefold()
