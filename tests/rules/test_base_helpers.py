"""The shared helpers of ``cleanup.rules.base`` against their plain pandas definitions."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cleanup.rules.base import group_lists, join_positions, shared_codes, to_json_objects

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
WORDS = st.sampled_from(["a", "B", "b", "é", "x/y", 'say "hi"', "line\nbreak", "tab\t", "", "☃"])
TEXT = st.one_of(st.none(), WORDS, st.text(max_size=6))


def plain_json(frame: pd.DataFrame) -> list[str]:
    """What ``to_json_objects`` promises: ``to_json`` records, one string per row."""
    text = frame.to_json(orient="records", lines=True, force_ascii=False, date_format="iso")
    return text.rstrip("\n").split("\n")


@st.composite
def extras(draw: st.DrawFn) -> pd.DataFrame:
    """A frame like a rule's ``extra``: text, lists of text, numbers, flags and times."""
    n = draw(st.integers(1, 8))

    def column(values: st.SearchStrategy) -> list:
        return [draw(values) for _ in range(n)]

    times = st.sampled_from([pd.NaT, pd.Timestamp("2025-03-01T02:00:00Z")])
    return pd.DataFrame(
        {
            "text": pd.array(column(TEXT), dtype="string"),
            "names": pd.Series(column(st.lists(WORDS, max_size=3)), dtype=object),
            "mixed": pd.Series(column(st.one_of(TEXT, st.integers(0, 2))), dtype=object),
            "count": pd.array(column(st.one_of(st.none(), st.integers(0, 3))), dtype="Int64"),
            "ratio": column(st.sampled_from([0.0, -0.0, 0.5, float("nan"), 1e-12])),
            "flag": column(st.booleans()),
            "maybe": pd.array(column(st.one_of(st.none(), st.booleans())), dtype="boolean"),
            "since": pd.Series(column(times), dtype="datetime64[ns, UTC]"),
        },
        index=draw(st.permutations(range(10, 10 + n))),
    )


@SETTINGS
@given(frame=extras(), columns=st.lists(st.integers(0, 7), min_size=1, max_size=8, unique=True))
def test_json_objects_are_to_json_records(frame: pd.DataFrame, columns: list[int]) -> None:
    frame = frame.iloc[:, columns]
    out = to_json_objects(frame)
    assert out.dtype == "string" and out.index.equals(frame.index)
    assert out.tolist() == plain_json(frame)


def test_json_objects_of_odd_column_names_and_no_columns() -> None:
    frame = pd.DataFrame({"a b": ["x", "x"], "ü": [1, 1]})
    assert to_json_objects(frame).tolist() == plain_json(frame)
    assert to_json_objects(pd.DataFrame(index=[3, 4])).tolist() == ["{}", "{}"]


def plain_lists(frame: pd.DataFrame, keys: list[str], column: str, limit: int | None) -> dict:
    """Per key, the sorted distinct non-missing values (the first ``limit`` of them)."""
    out: dict = {}
    for row in frame.itertuples(index=False):
        value = getattr(row, column)
        if pd.isna(value):
            continue
        key = tuple(None if pd.isna(getattr(row, k)) else getattr(row, k) for k in keys)
        out.setdefault(key, set()).add(value)
    return {k: sorted(v)[:limit] for k, v in out.items()}


@SETTINGS
@given(
    rows=st.lists(st.tuples(TEXT, TEXT, TEXT), max_size=25),
    keys=st.sampled_from([["e"], ["e", "r"], ["r", "e"]]),
    limit=st.sampled_from([None, 1, 2]),
)
def test_group_lists_are_sorted_distinct_values_per_key(rows, keys, limit) -> None:
    frame = pd.DataFrame(rows, columns=["e", "r", "v"], dtype="string")
    out = group_lists(frame, keys, "v", name="values", limit=limit)
    assert list(out.columns) == [*keys, "values"]
    got = {
        tuple(None if pd.isna(v) else v for v in key): values
        for *key, values in out.itertuples(index=False)
    }
    assert got == plain_lists(frame, keys, "v", limit)
    # Keys in sorted order, missing keys last, as sort_values orders them.
    expected = out[keys].sort_values(keys, kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(out[keys], expected)


@SETTINGS
@given(st.lists(TEXT, max_size=20), st.lists(TEXT, max_size=20))
def test_shared_codes_are_equal_exactly_for_equal_values(left, right) -> None:
    """Values (missing ones too) share a code across columns exactly when they are equal."""
    a, b = pd.Series(left, dtype="string"), pd.Series(right, dtype="string")
    codes = shared_codes(a, b)
    values = [*a.fillna("\0NA").tolist(), *b.fillna("\0NA").tolist()]
    both = [*codes[0].tolist(), *codes[1].tolist()]
    for i in range(len(values)):
        for j in range(len(values)):
            assert (both[i] == both[j]) == (values[i] == values[j])


@SETTINGS
@given(
    st.lists(st.integers(0, 4), max_size=8),
    st.lists(st.integers(0, 4), max_size=8),
    st.booleans(),
)
def test_join_positions_pair_rows_as_a_merge_does(left, right, keep_unmatched) -> None:
    """Unique or repeated right keys, matched or not: the pairs, in the order of a merge."""
    how = "left" if keep_unmatched else "inner"
    merged = pd.DataFrame({"key": left, "left": range(len(left))}).merge(
        pd.DataFrame({"key": right, "right": range(len(right))}), on="key", how=how
    )
    at, found = join_positions(
        np.array(left, dtype=np.int64),
        np.array(right, dtype=np.int64),
        keep_unmatched=keep_unmatched,
    )
    assert at.tolist() == merged["left"].tolist()
    assert found.tolist() == merged["right"].fillna(-1).astype(int).tolist()
