"""findings.parquet / .json / .csv: round trip, and CSV cells that cannot run as formulas."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleanup import findings_io, schemas
from cleanup.errors import SnapshotError
from cleanup.findings_io import (
    CSV_FILE,
    EXCLUDED_CSV_FILE,
    FINDINGS_FILE,
    JSON_FILE,
    json_lines,
    neutralise,
    read_findings,
    write_findings,
)

HOSTILE = ['=HYPERLINK("http://x","y")', "+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "plain"]


def findings(names: list[str | None]) -> pd.DataFrame:
    """Findings rows whose display names are ``names``."""
    rows = [
        {
            "rule": "bad-name",
            "severity": "low",
            "environment_id": "env1",
            "object_type": "reference",
            "object_id": f"r{i}",
            "display_name": name,
            "detail": "<script>alert(1)</script> 🔌",
            "suggested_fix": "Rename it.",
            "extra": json.dumps({"proposed_name": "HR – Dataverse – User", "n": i}),
            "first_seen": "2025-03-01T02:00:00Z",
        }
        for i, name in enumerate(names)
    ]
    return schemas.frame_from_rows(rows, schemas.FINDINGS)


def test_round_trip_through_parquet(tmp_path: Path) -> None:
    frame = findings(["a", None, "ü 🔌"])
    write_findings(tmp_path, frame)
    pd.testing.assert_frame_equal(read_findings(tmp_path), frame)


def test_json_has_extra_as_an_object(tmp_path: Path) -> None:
    write_findings(tmp_path, findings(["a"]))
    doc = json.loads((tmp_path / JSON_FILE).read_text(encoding="utf-8"))
    assert doc["count"] == 1
    assert doc["findings"][0]["extra"] == {"proposed_name": "HR – Dataverse – User", "n": 0}
    assert doc["findings"][0]["first_seen"].startswith("2025-03-01T02:00:00")


def test_csv_cells_cannot_start_a_formula(tmp_path: Path) -> None:
    write_findings(tmp_path, findings(HOSTILE))
    with (tmp_path / CSV_FILE).open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    names = [r["display_name"] for r in rows]
    assert names[:-1] == ["'" + h for h in HOSTILE[:-1]]
    assert names[-1] == "plain"
    for row in rows:
        for cell in row.values():
            assert not cell or cell[0] not in "=+-@\t\r"


def test_neutralise_leaves_other_columns_and_missing_cells_alone() -> None:
    frame = pd.DataFrame({"text": pd.array(["=1", None], dtype="string"), "count": [-1, 2]})
    out = neutralise(frame)
    assert out["text"].tolist()[0] == "'=1"
    assert pd.isna(out["text"].tolist()[1])
    assert out["count"].tolist() == [-1, 2]


def test_excluded_findings_are_written_beside(tmp_path: Path) -> None:
    excluded = findings(["=bad"]).assign(exclusion_reason="vendor kit")
    paths = write_findings(tmp_path, findings([]), excluded)
    assert (tmp_path / EXCLUDED_CSV_FILE).read_text(encoding="utf-8-sig").count("'=bad") == 1
    doc = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert doc["excluded"][0]["exclusion_reason"] == "vendor kit"
    assert not list(tmp_path.glob(".*.tmp"))


def test_older_runs_without_new_columns_still_read(tmp_path: Path) -> None:
    findings(["a"]).drop(columns=["first_seen", "change"]).to_parquet(tmp_path / FINDINGS_FILE)
    back = read_findings(tmp_path)
    assert list(back.columns) == list(schemas.FINDINGS)
    assert back["first_seen"].isna().all()


def test_unreadable_findings_are_a_snapshot_error(tmp_path: Path) -> None:
    (tmp_path / FINDINGS_FILE).write_text("not parquet")
    with pytest.raises(SnapshotError, match="Cannot read the findings"):
        read_findings(tmp_path)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text()), min_size=1, max_size=6))
def test_json_lines_read_back_as_the_same_cells(texts: list[str | None]) -> None:
    frame = findings(texts).assign(detail=texts)
    for line, name in zip(json_lines(frame), texts, strict=True):
        record = json.loads(line)
        assert record["display_name"] == name
        assert record["detail"] == name
        assert record["extra"]["proposed_name"] == "HR – Dataverse – User"


def test_json_lines_keep_an_extra_that_is_not_an_object() -> None:
    frame = findings(["a", "b", "c"]).assign(extra=pd.array(['"x"', None, "{}"], dtype="string"))
    extras = [json.loads(line)["extra"] for line in json_lines(frame)]
    assert extras == [{"value": '"x"'}, {}, {}]


def test_json_file_lays_out_one_finding_per_line_across_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Lines are built chunk by chunk with their separator in front: the file must not show it.
    monkeypatch.setattr(findings_io, "JSON_CHUNK_ROWS", 2)
    frame = findings(["a", None, 'q"\\\x01\n\t', "ü 🔌 \u2028", "e"])
    excluded = findings(["x"]).assign(exclusion_reason="vendor kit")
    path = tmp_path / JSON_FILE
    findings_io.write_json(frame, excluded, path)
    expected = (
        '{"count": 5,\n "findings": [\n  '
        + ",\n  ".join(json_lines(frame))
        + '\n ],\n "excluded": [\n  '
        + ",\n  ".join(json_lines(excluded))
        + "\n ]}\n"
    )
    assert path.read_text(encoding="utf-8") == expected
    findings_io.write_json(frame.iloc[0:0], None, path)
    assert path.read_text(encoding="utf-8") == '{"count": 0,\n "findings": []}\n'


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text()), min_size=1, max_size=6))
def test_json_lines_write_each_cell_as_json_dumps(texts: list[str | None]) -> None:
    frame = findings(texts).assign(detail=texts, change=None)
    for line, name in zip(json_lines(frame), texts, strict=True):
        assert f'"detail":{json.dumps(name, ensure_ascii=False)},' in line
        assert line.endswith(',"change":null}')


def test_json_lines_of_columns_that_are_not_text() -> None:
    frame = pd.DataFrame(
        {
            "n": pd.array([1, None, -3], dtype="Int64"),
            "flag": pd.array([True, None, False], dtype="boolean"),
            "x": pd.Series([0.5, None, 2.0]),
            "extra": pd.Series([5, None, "{}"], dtype=object),
            "all_missing": pd.array([None] * 3, dtype="string"),
        }
    )
    assert json_lines(frame) == [
        '{"n":1,"flag":true,"x":0.5,"extra":{"value": 5},"all_missing":null}',
        '{"n":null,"flag":null,"x":null,"extra":{},"all_missing":null}',
        '{"n":-3,"flag":false,"x":2.0,"extra":{},"all_missing":null}',
    ]
