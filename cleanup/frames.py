"""Small helpers for Arrow-backed columns, where pandas is slow or Arrow needs a hand."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def isin(values: pd.Series | pd.Index, members: Iterable[Any]) -> np.ndarray:
    """Which of ``values`` are among ``members``, as a boolean array (a missing value matches
    nothing).

    Arrow-backed strings are looked up by Arrow: pandas would box every member in a Python
    object first (~2 µs each, under the GIL: seconds for a night of environments).
    """
    wanted = [v for v in members if not _missing(v)]
    if isinstance(values.dtype, pd.StringDtype) and values.dtype.storage == "pyarrow":
        try:
            array = pa.array(values.array)
            members_array = pa.array(wanted, type=array.type)
            found = pc.is_in(array, value_set=members_array, skip_nulls=True)
            return np.asarray(pc.fill_null(found, False).to_numpy(zero_copy_only=False), bool)
        except (pa.ArrowException, TypeError, ValueError):
            pass  # members that are not strings: pandas below
    objects = pd.Series(np.asarray(values.to_numpy(dtype=object)), dtype=object)
    return objects.isin(pd.Series(wanted, dtype=object)).to_numpy(dtype=bool)


def text_scalar(value: str) -> pa.Scalar:
    """An Arrow large-string scalar: a literal between columns in ``binary_join_element_wise``."""
    return pa.scalar(value, pa.large_string())


def _missing(value: Any) -> bool:
    # Cheaper than pd.isna per member, and members can be many (every flow of a tenant).
    return value is None or value is pd.NA or value is pd.NaT or value != value
