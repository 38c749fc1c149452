"""Findings on disk: ``findings.parquet`` (for history), ``findings.json``, ``findings.csv``.

The CSV is meant to be opened in a spreadsheet, and names come from makers, so every cell that
a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, tab or carriage
return) is prefixed with a quote. The JSON keeps ``extra`` as a nested object.
"""

from __future__ import annotations

import codecs
import json
import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from cleanup import schemas
from cleanup.errors import SnapshotError

FINDINGS_FILE = "findings.parquet"
JSON_FILE = "findings.json"
CSV_FILE = "findings.csv"
EXCLUDED_FILE = "findings-excluded.parquet"
EXCLUDED_CSV_FILE = "findings-excluded.csv"
FORMULA_START = r"^[=+\-@\t\r]"
JSON_CHUNK_ROWS = 50_000
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
COLUMNAR_FILES = (  # Parquet file, CSV file and their keys in write_findings' answer
    (FINDINGS_FILE, CSV_FILE, "parquet", "csv"),
    (EXCLUDED_FILE, EXCLUDED_CSV_FILE, "excluded", "excluded_csv"),
)


def write_findings(
    run_folder: str | Path, findings: pd.DataFrame, excluded: pd.DataFrame | None = None
) -> dict[str, Path]:
    """Write the findings (and what exclusions set aside) into a run folder; return the paths."""
    folder = Path(run_folder)
    folder.mkdir(parents=True, exist_ok=True)
    findings = schemas.conform(findings, schemas.FINDINGS, name="findings")
    with ThreadPoolExecutor(max_workers=1) as pool:
        # Arrow writes Parquet and CSV without holding the GIL: beside the JSON, not after it.
        columnar = pool.submit(_write_columnar, folder, (findings, excluded))
        json_path = _atomic(folder / JSON_FILE, lambda p: write_json(findings, excluded, p))
        paths = columnar.result()
    paths["json"] = json_path
    return paths


def _write_columnar(
    folder: Path, frames: tuple[pd.DataFrame, pd.DataFrame | None]
) -> dict[str, Path]:
    """Write findings and excluded as Parquet and as spreadsheet-safe CSV; return the paths."""
    paths = {}
    for (parquet_file, csv_file, parquet_key, csv_key), frame in zip(
        COLUMNAR_FILES, frames, strict=True
    ):
        if frame is None:
            continue
        paths[parquet_key] = _atomic(folder / parquet_file, partial(_write_parquet, frame))
        paths[csv_key] = _atomic(folder / csv_file, partial(write_csv, frame))
    return paths


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    frame.to_parquet(path, index=False)


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
            out[col] = _timestamp_text(out[col])
        elif not (pd.api.types.is_string_dtype(out[col]) or out[col].dtype == object):
            continue
        cells = out[col].astype("string")
        risky = cells.str.contains(FORMULA_START, regex=True).fillna(False)
        out[col] = cells.mask(risky, "'" + cells)
    return out


def _timestamp_text(column: pd.Series) -> pd.Series:
    """ISO 8601 text of a timestamp column (UTC), formatting each distinct time once."""
    # A run stamps thousands of findings with the same first_seen: strftime is slow per row.
    codes, uniques = pd.factorize(column)
    texts = pd.Series(uniques).dt.strftime(TIMESTAMP_FORMAT).astype("string")
    return pd.Series(texts.array.take(codes, allow_fill=True), index=column.index)


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    """Write ``frame`` as CSV safe to open in a spreadsheet (UTF-8 with BOM, for Excel)."""
    # Arrow quotes every text cell, so a bare CR or a comma in a name cannot split a row, and
    # writes a million rows several times faster than pandas; CRLF line ends as in RFC 4180.
    table = pa.Table.from_pandas(neutralise(frame), preserve_index=False)
    with open(path, "wb") as out:
        out.write(codecs.BOM_UTF8)
        pa_csv.write_csv(table, out, pa_csv.WriteOptions(eol="\r\n"))


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
    # Chunks keep memory flat: a million findings are never held as text all at once.
    separator = "\n  "
    for start in range(0, len(frame), JSON_CHUNK_ROWS):
        out.write(separator + ",\n  ".join(json_lines(frame.iloc[start : start + JSON_CHUNK_ROWS])))
        separator = ",\n  "
    if len(frame):
        out.write("\n ")


def json_lines(frame: pd.DataFrame) -> list[str]:
    """Return each row as one JSON object text, with ``extra`` embedded as an object."""
    # Each distinct cell value is encoded once and rows are joined from the encoded columns:
    # findings repeat their rule, environment and owner, so this is ~10x faster than
    # ``to_json`` at a million rows. ``extra`` is already JSON object text from the rules.
    template = "{" + ",".join(f"{json.dumps(str(col))}:%s" for col in frame.columns) + "}"
    columns = [_encoded_column(frame[col], raw_json=col == "extra") for col in frame.columns]
    return [template % cells for cells in zip(*columns, strict=True)]


def _encoded_column(column: pd.Series, *, raw_json: bool) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(column):
        column = _timestamp_text(column)
    codes, uniques = pd.factorize(column)
    encode = _object_text if raw_json else _json_value
    texts = [encode(value) for value in uniques.tolist()]
    # factorize marks a missing cell with -1, which picks the trailing "null".
    return np.array([*texts, "{}" if raw_json else "null"], dtype=object)[codes]


def _json_value(value: Any) -> str:
    return json.dumps(value.item() if isinstance(value, np.generic) else value, ensure_ascii=False)


def _object_text(value: Any) -> str:
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return value
    return json.dumps({"value": value} if value else {}, ensure_ascii=False, default=str)


def _atomic(path: Path, write: Any) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)
    return path
