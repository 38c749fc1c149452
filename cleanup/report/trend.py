"""Read the findings counts of the last nights for the report's trend chart."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from cleanup.findings_io import FINDINGS_FILE
from cleanup.history import list_runs
from cleanup.report.context import TREND_RUNS


def load_trend(
    runs_dir: str | Path, current_run_id: str | None = None, limit: int = TREND_RUNS
) -> list[tuple[str, dict[str, int]]]:
    """Return (run_id, findings by severity) of the earlier runs, oldest first."""
    runs = list_runs(runs_dir, current_run_id).tail(limit)
    points = []
    for run in runs.itertuples(index=False):
        try:
            severities = pd.read_parquet(Path(run.folder) / FINDINGS_FILE, columns=["severity"])
        except (OSError, ValueError, KeyError):
            continue  # a damaged night is left out of the chart, not fatal to the report
        counts = Counter(str(s).lower() for s in severities["severity"].fillna("info"))
        points.append((str(run.run_id), dict(counts)))
    return points
