"""Rewriting clientdata: only the planned field changes; the rest round-trips."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleanup.apply.flows import FlowImage, flow_drift, is_rewired, rewire_clientdata
from cleanup.clients.http import dumps_compact
from cleanup.plan import FlowPreconditions

KEY = "shared_commondataserviceforapps"


def flow_json(**entries: Any) -> dict[str, Any]:
    refs = {
        key: {
            "runtimeSource": "embedded",
            "connection": {"connectionReferenceLogicalName": name},
            "api": {"name": KEY},
        }
        for key, name in entries.items()
    }
    return {"properties": {"connectionReferences": refs, "definition": {"actions": {}}}}


def test_only_the_logical_name_of_the_planned_key_changes() -> None:
    raw = dumps_compact(flow_json(**{KEY: "old_ref", "other": "keep_ref"}))
    new = rewire_clientdata(raw, [(KEY, "old_ref", "new_ref")])
    assert new == raw.replace('"old_ref"', '"new_ref"')  # byte for byte, apart from the name


def test_logical_names_match_case_insensitively() -> None:
    raw = dumps_compact(flow_json(**{KEY: "Old_Ref"}))
    assert "new_ref" in rewire_clientdata(raw, [(KEY, "old_ref", "new_ref")])


def test_an_already_rewired_flow_is_returned_unchanged_even_if_not_compact() -> None:
    raw = json.dumps(flow_json(**{KEY: "new_ref"}), indent=2)
    assert rewire_clientdata(raw, [(KEY, "old_ref", "new_ref")]) is raw
    assert is_rewired(raw, [(KEY, "old_ref", "new_ref")])
    assert not is_rewired(dumps_compact(flow_json(**{KEY: "old_ref"})), [(KEY, "x", "new_ref")])


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (dumps_compact(flow_json(**{KEY: "someone_else"})), "now uses someone_else"),
        (dumps_compact(flow_json(other="old_ref")), "no longer names"),
        ('{"properties": {}}', "not a flow definition"),
        ("not json", "not a flow definition"),
        (None, "no clientdata"),
    ],
)
def test_a_flow_that_no_longer_matches_the_plan_is_refused(raw: Any, message: str) -> None:
    from cleanup.apply.flows import RewireProblem

    with pytest.raises(RewireProblem, match=message):
        rewire_clientdata(raw, [(KEY, "old_ref", "new_ref")])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=60, deadline=None)
@given(extra=st.dictionaries(st.text(max_size=6), json_values, max_size=4), entry=json_values)
def test_everything_else_round_trips(extra: dict[str, Any], entry: Any) -> None:
    document = flow_json(**{KEY: "old_ref"})
    document["properties"].update({f"x{k}": v for k, v in extra.items()})
    document["properties"]["connectionReferences"][KEY]["connection"]["extra"] = entry
    raw = dumps_compact(document)
    new = json.loads(rewire_clientdata(raw, [(KEY, "old_ref", "new_ref")]))
    document["properties"]["connectionReferences"][KEY]["connection"][
        "connectionReferenceLogicalName"
    ] = "new_ref"
    assert new == document


def image(**changes: Any) -> FlowImage:
    base = dict(
        etag='W/"7"',
        state=1,
        status=2,
        clientdata="{}",
        modified_on="2024-06-01T08:00:00Z",
        is_managed=False,
        name="f",
    )
    return FlowImage(**{**base, **changes})


def test_drift_names_what_changed() -> None:
    pre = FlowPreconditions('W/"7"', "2024-06-01T08:00:00+00:00", image().sha or "", "on")
    assert flow_drift(pre, image()) is None
    assert "ETag" in (flow_drift(pre, image(etag='W/"8"')) or "")
    assert "modified" in (flow_drift(pre, image(modified_on="2025-01-01T00:00:00Z")) or "")
    assert "definition" in (flow_drift(pre, image(clientdata='{"a":1}')) or "")
    assert "on when planned and is off" in (flow_drift(pre, image(state=0)) or "")
