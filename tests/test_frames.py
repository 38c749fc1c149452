"""``frames.isin`` answers as ``Series.isin`` does, on Arrow strings and on anything else."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cleanup.frames import isin

TEXT = st.one_of(st.none(), st.text(max_size=3))


@given(values=st.lists(TEXT, max_size=30), members=st.lists(TEXT, max_size=10))
def test_arrow_strings_answer_like_pandas(values, members):
    series = pd.Series(values, dtype="string[pyarrow]")
    expected = series.isin([m for m in members if m is not None]).to_numpy(dtype=bool)
    assert isin(series, members).tolist() == expected.tolist()
    assert isin(pd.Index(series), pd.Index(members, dtype="string[pyarrow]")).tolist() == (
        expected.tolist()
    )


@pytest.mark.parametrize(
    ("values", "members", "expected"),
    [
        (pd.Series([1, 2, 3]), [2, 5], [False, True, False]),
        (pd.Series(["a", None], dtype=object), ["a", None], [True, False]),
        (pd.Series(["a", "b"], dtype="string[pyarrow]"), [1, "b"], [False, True]),
        (pd.Series([], dtype="string[pyarrow]"), ["a"], []),
    ],
)
def test_other_values_and_members(values, members, expected):
    result = isin(values, members)
    assert result.dtype == np.bool_ and result.tolist() == expected
