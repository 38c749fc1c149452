"""Turn DataFrames into plain rows for templates: no pandas objects reach Jinja.

The report lists only a capped part of each long table, so the work over a whole table is done
column-wise (sort keys, counts); only the rows that are shown become Python dicts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
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
ENV_KEY = "_env"  # environment_id, "" when missing (sorted_findings)
RULE_KEY = "_rule"  # rule, "?" when missing or empty (sorted_findings)


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


def finding_rows(frame: pd.DataFrame | None, limit: int | None = None) -> list[dict[str, Any]]:
    """Return findings as rows, most severe first, then by environment, rule and name.

    With ``limit``, only the first ``limit`` rows are built.
    """
    keys = sorted_findings(frame)
    return finding_records(frame, keys if limit is None else keys.head(limit))


def sorted_findings(frame: pd.DataFrame | None) -> pd.DataFrame:
    """Return the sort order of the findings and the keys the report groups them by.

    One row per finding, in the order of ``finding_rows`` (a stable sort), indexed by the
    finding's position in ``frame``, with the normalised ``severity``, ``ENV_KEY`` (the
    environment id, "" when missing) and ``RULE_KEY`` (the rule, "?" when missing or empty), as
    categoricals. Only these keys are sorted: ``finding_records`` builds the rows shown.
    """
    if frame is None or frame.empty:
        empty = pd.Categorical([], categories=[])
        return pd.DataFrame({"severity": empty, ENV_KEY: empty, RULE_KEY: empty})
    column = _column_getter(frame)
    codes, uniques = pd.factorize(column("severity"), use_na_sentinel=True)
    severity = _categories([_severity_name(v) for v in uniques] + ["info"], codes)
    rank = [_SEVERITY_RANK.get(name, len(SEVERITIES)) for name in severity.categories]
    env_codes, env_ids = pd.factorize(column("environment_id"), use_na_sentinel=True)
    rule_codes, rules = pd.factorize(column("rule"), use_na_sentinel=True)
    order = np.lexsort(
        (
            fold_key(_either(column("display_name"), column("logical_name"))),
            fold_key(column("rule")),
            fold_key(_either(column("environment_name"), column("environment_id"))),
            np.asarray(rank, dtype=np.int64)[severity.codes],
        )
    )
    keys = pd.DataFrame(
        {
            "severity": severity,
            ENV_KEY: _categories([_text(v) for v in env_ids] + [""], env_codes),
            RULE_KEY: _categories([_text(v) or "?" for v in rules] + ["?"], rule_codes),
        }
    )
    return keys.iloc[order]


def finding_records(frame: pd.DataFrame | None, keys: pd.DataFrame) -> list[dict[str, Any]]:
    """Return the findings at ``keys`` (rows of ``sorted_findings(frame)``) as template rows."""
    if frame is None or keys.empty:
        return []
    present = [col for col in FINDING_FIELDS if col in frame.columns]
    rows = records(frame[present].iloc[keys.index.to_numpy()], FINDING_FIELDS)
    for row, severity in zip(rows, keys["severity"], strict=True):
        row["severity"] = str(severity)
    return rows


_SEVERITY_RANK = {severity: rank for rank, severity in enumerate(SEVERITIES)}


def _severity_name(value: Any) -> str:
    return str(value or "info").lower()


def _text(value: Any) -> str:
    return "" if value is None or value is pd.NA else str(value)


def _column_getter(frame: pd.DataFrame) -> Any:
    def column(name: str) -> pd.Series:
        if name in frame.columns:
            return frame[name]
        return pd.Series([None] * len(frame), index=frame.index, dtype=object)

    return column


def _categories(labels: list[str], codes: np.ndarray) -> pd.Categorical:
    """Return a categorical of ``labels[code]`` (code -1: the last label), equal labels merged."""
    categories, inverse = np.unique(np.array(labels, dtype=object), return_inverse=True)
    return pd.Categorical.from_codes(inverse.reshape(-1)[codes], categories=categories)


def text(series: pd.Series) -> pd.Series:
    """Return ``series`` as strings, missing values as "" (``str(value)`` like ``fold``)."""
    return series.astype("string").fillna("")


def _either(first: pd.Series, second: pd.Series) -> pd.Series:
    # Vectorised `first or second`: an empty or missing first value falls back to the second.
    a = text(first)
    return a.where(a != "", text(second))


def fold_key(series: pd.Series) -> np.ndarray:
    """Return an integer sort key per value that orders like ``fold(value)`` (ties stay ties).

    Only the distinct values are folded and compared, so a column of a million rows with a few
    thousand names costs a few thousand ``casefold`` calls.
    """
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    folded = np.array([fold(v) for v in uniques] + [""], dtype=object)
    _, ranks = np.unique(folded, return_inverse=True)
    return ranks.reshape(-1)[codes]  # code -1 (missing) takes the last slot: ""


def fold_text(series: pd.Series) -> pd.Series:
    """Return ``fold(value)`` of each value, computed once per distinct value."""
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    folded = np.array([fold(v) for v in uniques] + [""], dtype=object)
    return pd.Series(folded[codes], index=series.index, dtype=object)


def counts_by(keys: pd.DataFrame, key: str) -> dict[str, dict[str, int]]:
    """Count the severities of ``sorted_findings`` rows per value of ``key``, in order seen."""
    out: dict[str, dict[str, int]] = {}
    if keys.empty:
        return out
    sizes = keys.groupby([key, "severity"], sort=False, observed=True).size()
    for (name, severity), n in sizes.items():
        out.setdefault(str(name), dict.fromkeys(SEVERITIES, 0))[str(severity)] = int(n)
    return out


def flow_state(state: Any) -> str:
    """Return a person's word for a workflow state code."""
    if state is None:
        return "Unknown"
    return FLOW_STATES.get(int(state), f"State {int(state)}")


def fold(value: Any) -> str:
    """Return a case-insensitive sort key for a possibly missing text."""
    return "" if value is None or value is pd.NA else str(value).casefold()
