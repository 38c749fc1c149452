"""Findings on disk: ``findings.parquet`` (for history), ``findings.json``, ``findings.csv``.

The CSV is meant to be opened in a spreadsheet, and names come from makers, so every cell that
a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, tab or carriage
return) is prefixed with a quote. The JSON keeps ``extra`` as a nested object.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from cleanup import schemas
from cleanup.errors import SnapshotError

FINDINGS_FILE = "findings.parquet"
JSON_FILE = "findings.json"
CSV_FILE = "findings.csv"
EXCLUDED_FILE = "findings-excluded.parquet"
EXCLUDED_CSV_FILE = "findings-excluded.csv"
FORMULA_START = r"^[=+\-@\t\r]"
JSON_CHUNK_ROWS = 5000


def write_findings(
    run_folder: str | Path, findings: pd.DataFrame, excluded: pd.DataFrame | None = None
) -> dict[str, Path]:
    """Write the findings (and what exclusions set aside) into a run folder; return the paths."""
    folder = Path(run_folder)
    folder.mkdir(parents=True, exist_ok=True)
    findings = schemas.conform(findings, schemas.FINDINGS, name="findings")
    paths = {
        "parquet": _atomic(folder / FINDINGS_FILE, lambda p: findings.to_parquet(p, index=False)),
        "csv": _atomic(folder / CSV_FILE, lambda p: write_csv(findings, p)),
    }
    if excluded is not None:
        paths["excluded"] = _atomic(
            folder / EXCLUDED_FILE, lambda p: excluded.to_parquet(p, index=False)
        )
        paths["excluded_csv"] = _atomic(
            folder / EXCLUDED_CSV_FILE, lambda p: write_csv(excluded, p)
        )
    paths["json"] = _atomic(folder / JSON_FILE, lambda p: write_json(findings, excluded, p))
    return paths


def read_findings(run_folder: str | Path) -> pd.DataFrame:
    """Read ``findings.parquet`` from a run folder, conformed to ``schemas.FINDINGS``."""
    path = Path(run_folder) / FINDINGS_FILE
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"Cannot read the findings in {path}: {exc}") from None
    # Runs written before a column was added simply lack it: it is unknown there.
    for col, dtype in schemas.FINDINGS.items():
        if col not in frame:
            frame[col] = pd.Series(pd.NA, index=frame.index).astype(dtype)
    return schemas.conform(frame, schemas.FINDINGS, name=str(path))


def neutralise(frame: pd.DataFrame) -> pd.DataFrame:
    """Return a copy whose text cells cannot start a spreadsheet formula."""
    out = frame.copy()
    for col in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[col]):
            out[col] = out[col].dt.strftime("%Y-%m-%dT%H:%M:%SZ").astype("string")
        elif not (pd.api.types.is_string_dtype(out[col]) or out[col].dtype == object):
            continue
        cells = out[col].astype("string")
        risky = cells.str.contains(FORMULA_START, regex=True).fillna(False)
        out[col] = cells.mask(risky, "'" + cells)
    return out


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    """Write ``frame`` as CSV safe to open in a spreadsheet (UTF-8 with BOM, for Excel)."""
    # CRLF line ends (RFC 4180) also make the writer quote cells holding a bare CR.
    neutralise(frame).to_csv(path, index=False, encoding="utf-8-sig", lineterminator="\r\n")


def write_json(findings: pd.DataFrame, excluded: pd.DataFrame | None, path: Path) -> None:
    """Write ``{"count", "findings", "excluded"}`` one finding per line, a chunk at a time."""
    with path.open("w", encoding="utf-8") as out:
        out.write(f'{{"count": {len(findings)},\n "findings": [')
        _write_records(out, findings)
        if excluded is not None:
            out.write('],\n "excluded": [')
            _write_records(out, excluded)
        out.write("]}\n")


def _write_records(out: TextIO, frame: pd.DataFrame) -> None:
    # Chunks keep memory flat: a million findings never become a million dicts at once.
    separator = "\n  "
    for start in range(0, len(frame), JSON_CHUNK_ROWS):
        for record in json_records(frame.iloc[start : start + JSON_CHUNK_ROWS]):
            out.write(separator + json.dumps(record, ensure_ascii=False))
            separator = ",\n  "
    if len(frame):
        out.write("\n ")


def json_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Return the rows as JSON-ready dicts, with ``extra`` parsed into an object."""
    records = json.loads(frame.to_json(orient="records", date_format="iso", force_ascii=False))
    for record in records:
        raw = record.get("extra")
        record["extra"] = json.loads(raw) if raw else {}
    return records


def _atomic(path: Path, write: Any) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)
    return path
