"""The trend of the last nights, read back from earlier run folders."""

from __future__ import annotations

from cleanup.findings_io import write_findings
from cleanup.report import load_trend
from tests.report.conftest import make_findings


def test_trend_counts_earlier_runs_oldest_first(tmp_path):
    findings = make_findings()
    write_findings(tmp_path / "20240429T020000Z", findings)
    write_findings(tmp_path / "20240430T020000Z", findings.iloc[:2])
    write_findings(tmp_path / "20240501T020000Z", findings)  # the current run: left out
    (tmp_path / "20240428T020000Z").mkdir()  # no findings: not a run to count
    trend = load_trend(tmp_path, "20240501T020000Z")
    assert trend == [
        ("20240429T020000Z", {"medium": 2, "low": 2, "high": 1}),
        ("20240430T020000Z", {"medium": 2}),
    ]
    assert load_trend(tmp_path, "20240501T020000Z", limit=1) == [trend[-1]]


def test_a_damaged_night_is_left_out(tmp_path):
    write_findings(tmp_path / "20240429T020000Z", make_findings())
    (tmp_path / "20240430T020000Z").mkdir()
    (tmp_path / "20240430T020000Z" / "findings.parquet").write_bytes(b"not parquet")
    assert [run for run, _ in load_trend(tmp_path)] == ["20240429T020000Z"]
