"""json_text.loads answers exactly as json.loads does, for what orjson takes and what it refuses."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleanup.json_text import loads

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),  # NaN and Infinity: orjson refuses
    st.text(),  # lone surrogates included: orjson refuses
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner), st.dictionaries(st.text(), inner)),
    max_leaves=20,
)


def same(a: object, b: object) -> bool:
    """Equal, with NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@settings(max_examples=300, deadline=None)
@given(VALUES, st.booleans())
def test_valid_text_reads_as_json_loads_reads_it(value: object, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert same(loads(text), json.loads(text))
    if ascii_only:  # lone surrogates cannot be UTF-8 bytes, but escaped they can
        assert same(loads(text.encode()), json.loads(text))


@pytest.mark.parametrize("text", ['{"a": 1', "", "[1,]", "{'a': 1}", '"\x01"', "nul"])
def test_invalid_text_fails_with_json_loads_error(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as ours:
        loads(text)
    with pytest.raises(json.JSONDecodeError) as theirs:
        json.loads(text)
    assert (ours.value.msg, ours.value.pos) == (theirs.value.msg, theirs.value.pos)


def test_an_integer_beyond_64_bits_is_the_one_difference() -> None:
    """Documented in json_text: such an integer comes back as the float nearest to it."""
    assert loads("[18446744073709551616]") == [float(2**64)]
    assert loads('{"n": -9223372036854775809}') == {"n": float(-(2**63) - 1)}
