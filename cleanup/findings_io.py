"""Findings on disk: ``findings.parquet`` (for history), ``findings.json``, ``findings.csv``.

The CSV is meant to be opened in a spreadsheet, and names come from makers, so every cell that
a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, tab or carriage
return) is prefixed with a quote. The JSON keeps ``extra`` as a nested object.
"""

from __future__ import annotations

import codecs
import json
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from cleanup import schemas
from cleanup.errors import SnapshotError
from cleanup.frames import text_scalar

FINDINGS_FILE = "findings.parquet"
JSON_FILE = "findings.json"
CSV_FILE = "findings.csv"
EXCLUDED_FILE = "findings-excluded.parquet"
EXCLUDED_CSV_FILE = "findings-excluded.csv"
FORMULA_STARTS = pa.array(["=", "+", "-", "@", "\t", "\r"], pa.large_string())
JSON_CHUNK_ROWS = 50_000
LINE_SEPARATOR = ",\n  "  # between findings in findings.json
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
    with ThreadPoolExecutor(max_workers=2) as pool:
        # Arrow writes Parquet and CSV without holding the GIL: beside the JSON, not after it,
        # and the CSV (the larger) beside the Parquet.
        columnar = {
            key: pool.submit(_atomic, folder / name, partial(write, frame))
            for key, name, write, frame in _columnar_files(findings, excluded)
        }
        json_path = _atomic(folder / JSON_FILE, lambda p: write_json(findings, excluded, p))
        paths = {key: future.result() for key, future in columnar.items()}
    paths["json"] = json_path
    return paths


def _columnar_files(
    findings: pd.DataFrame, excluded: pd.DataFrame | None
) -> Iterator[tuple[str, str, Callable[[pd.DataFrame, Path], None], pd.DataFrame]]:
    """Yield each Parquet and CSV file to write: its key, file name, writer and frame."""
    for (parquet_file, csv_file, parquet_key, csv_key), frame in zip(
        COLUMNAR_FILES, (findings, excluded), strict=True
    ):
        if frame is not None:
            yield parquet_key, parquet_file, _write_parquet, frame
            yield csv_key, csv_file, write_csv, frame


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
        risky = _starts_formula(cells)
        # Prefixing copies every text of the column: only worth it when a cell needs it.
        out[col] = cells.mask(risky, "'" + cells) if risky.any() else cells
    return out


def _starts_formula(cells: pd.Series) -> np.ndarray:
    """Whether each text starts with a character that makes a spreadsheet formula."""
    # The first character looked up in a set: a few times faster than the anchored regex.
    first = pc.utf8_slice_codeunits(pa.array(cells.array), 0, 1)
    return pc.is_in(first, value_set=FORMULA_STARTS).to_numpy(zero_copy_only=False)


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
    with path.open("wb") as out:
        out.write(f'{{"count": {len(findings)},\n "findings": ['.encode())
        _write_records(out, findings)
        if excluded is not None:
            out.write(b'],\n "excluded": [')
            _write_records(out, excluded)
        out.write(b"]}\n")


def _write_records(out: BinaryIO, frame: pd.DataFrame) -> None:
    # Chunks keep memory flat: a million findings are never held as text all at once. Each
    # line is built with its separator in front; the first line's comma is left out. A chunk
    # is written while the next is built: the kernel often makes a large write wait.
    lines = _JsonLines(frame, lead=LINE_SEPARATOR)
    written: Future[None] | None = None
    with ThreadPoolExecutor(max_workers=1) as writer:
        for start in range(0, len(frame), JSON_CHUNK_ROWS):
            texts = _chunks(lines.texts(start, start + JSON_CHUNK_ROWS))
            pieces = [_utf8_bytes(chunk) for chunk in texts if len(chunk)]
            if start == 0 and pieces:
                pieces[0] = pieces[0][1:]
            if written is not None:
                written.result()  # one chunk in flight at most
            written = writer.submit(out.writelines, pieces)
        if written is not None:
            written.result()
    if len(frame):
        out.write(b"\n ")


def json_lines(frame: pd.DataFrame) -> list[str]:
    """Return each row as one JSON object text, with ``extra`` embedded as an object."""
    return _JsonLines(frame).texts(0, len(frame)).to_pylist()


class _JsonLines:
    """The rows of a frame as JSON object texts, built column-wise by Arrow."""

    def __init__(self, frame: pd.DataFrame, lead: str = "") -> None:
        # Each column is encoded as JSON value texts and the keys are literal texts between
        # them: Arrow joins them in C without holding the GIL, beside the Parquet and CSV.
        keys = [json.dumps(str(col)) for col in frame.columns]
        self.literals = [f"{lead}{{{keys[0]}:"] if keys else []
        self.literals += [f",{key}:" for key in keys[1:]]
        self.columns = [_json_column(frame[col], raw_json=col == "extra") for col in frame.columns]
        self.rows = len(frame)

    def texts(self, start: int, stop: int) -> pa.Array | pa.ChunkedArray:
        """Return rows ``start:stop`` as JSON object texts (Arrow large strings)."""
        stop = min(stop, self.rows)
        if not self.columns:  # no cells, no lines (as ``zip`` of no columns)
            return pa.array([], pa.large_string())
        parts: list[Any] = []
        quote = ""  # a column of bare texts is quoted by the literals around it
        for literal, column in zip(self.literals, self.columns, strict=True):
            cells, next_quote = column(start, stop)
            parts += [text_scalar(quote + literal + next_quote), cells]
            quote = next_quote
        lines = pc.binary_join_element_wise(*parts, text_scalar(quote + "}"), text_scalar(""))
        # Only when every column is missing throughout are all the parts (and lines) scalars.
        return pa.repeat(lines, stop - start) if isinstance(lines, pa.Scalar) else lines


Cells = tuple["pa.Array | pa.ChunkedArray | pa.Scalar", str]  # JSON texts, or bare ones and '"'
JsonColumn = Callable[[int, int], Cells]  # the cells of rows start:stop


def _json_column(column: pd.Series, *, raw_json: bool) -> JsonColumn:
    """Return a function giving the JSON text of the column's cells ``start:stop``."""
    if pd.api.types.is_datetime64_any_dtype(column):
        column = _timestamp_text(column)
    if isinstance(column.dtype, pd.StringDtype):
        strings = _large_strings(column)
        if raw_json:
            return lambda start, stop: _object_texts(strings.slice(start, stop - start))
        return lambda start, stop: _string_texts(strings.slice(start, stop - start))
    return _distinct_texts(column, raw_json=raw_json)


def _large_strings(column: pd.Series) -> pa.ChunkedArray:
    strings = pa.array(column.array)
    if isinstance(strings, pa.Array):
        strings = pa.chunked_array([strings])
    return strings.cast(pa.large_string())


def _may_need_escape(strings: pa.ChunkedArray) -> bool:
    """Whether any cell may hold a quote, a backslash or a control character (a byte scan)."""
    # Names and ids almost never need escaping: a few numpy passes over the bytes of a chunk
    # spare a per-cell regex; a chunk that may need it is checked cell by cell.
    for chunk in strings.chunks:
        octets = np.frombuffer(_utf8_bytes(chunk), dtype=np.uint8)
        if not len(octets):
            continue
        if octets.min() < 0x20 or (octets == ord('"')).any() or (octets == ord("\\")).any():
            return True
    return False


ESCAPED = r'[\x00-\x1f"\\]'  # what json.dumps escapes when ensure_ascii=False


def _string_texts(strings: pa.ChunkedArray) -> Cells:
    """Return each text as a JSON string (``json.dumps``), a missing one as ``null``."""
    escape = None
    if _may_need_escape(strings):
        escape = pc.match_substring_regex(strings, ESCAPED).fill_null(False)
        escape = escape if pc.any(escape).as_py() else None
    if strings.null_count == len(strings):
        return text_scalar("null"), ""
    if strings.null_count == 0 and escape is None:
        return strings, '"'  # the common case: no copy, the line quotes them
    quoted = pc.binary_join_element_wise(
        text_scalar('"'), strings, text_scalar('"'), text_scalar("")
    )
    if escape is not None:
        escaped = [encode_basestring(s) for s in strings.filter(escape).to_pylist()]
        quoted = _replace(quoted, escape, escaped)
    return quoted.fill_null(text_scalar("null")), ""


def _object_texts(strings: pa.ChunkedArray) -> Cells:
    """Return each text as a JSON object: as it is when it is one, else as ``_object_text``."""
    whole = pc.and_(pc.starts_with(strings, "{"), pc.ends_with(strings, "}"))
    other = pc.invert(whole).fill_null(False)
    if pc.any(other).as_py():
        texts = [_object_text(s) for s in strings.filter(other).to_pylist()]
        strings = _replace(strings, other, texts)
    return (strings.fill_null(text_scalar("{}")) if strings.null_count else strings), ""


def _replace(strings: pa.ChunkedArray, mask: pa.ChunkedArray, texts: list[str]) -> pa.Array:
    replacements = pa.array(texts, pa.large_string())
    return pc.replace_with_mask(strings.combine_chunks(), mask.combine_chunks(), replacements)


def _distinct_texts(column: pd.Series, *, raw_json: bool) -> JsonColumn:
    """Encode each distinct value of a chunk once (any dtype); rows take their value's text."""

    # Per chunk, as before: factorize merges equal values such as 0.0 and -0.0, and the text
    # of the first one seen in the chunk is the one written.
    def cells(start: int, stop: int) -> Cells:
        codes, uniques = pd.factorize(column.iloc[start:stop])
        encode = _object_text if raw_json else _json_value
        # factorize marks a missing cell with -1: shifted by one, it picks the leading "null".
        texts = ["{}" if raw_json else "null", *(encode(value) for value in uniques.tolist())]
        return pa.array(texts, pa.large_string()).take(codes + 1), ""

    return cells


def _json_value(value: Any) -> str:
    return json.dumps(value.item() if isinstance(value, np.generic) else value, ensure_ascii=False)


def _object_text(value: Any) -> str:
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return value
    return json.dumps({"value": value} if value else {}, ensure_ascii=False, default=str)


def _chunks(texts: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    return texts.chunks if isinstance(texts, pa.ChunkedArray) else [texts]


def _utf8_bytes(texts: pa.Array) -> memoryview:
    """Return the UTF-8 of all the (non-missing) texts of a large-string array, back to back."""
    _, offsets, data = texts.buffers()
    if data is None or not len(texts):
        return memoryview(b"")
    ends = np.frombuffer(offsets, dtype=np.int64)[texts.offset : texts.offset + len(texts) + 1]
    return memoryview(data)[ends[0] : ends[-1]]


def _atomic(path: Path, write: Any) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)
    return path
