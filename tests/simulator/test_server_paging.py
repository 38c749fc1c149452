"""Property tests of the simulator's keyset paging and $filter evaluation (no HTTP)."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from cleanup.simulator.odata import parse_query
from cleanup.simulator.odata_paging import fingerprint_of, paginate

COLUMNS = {"id": "guid", "name": "string", "n": "int"}

rows_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "id": st.uuids().map(str),
            "name": st.one_of(st.none(), st.sampled_from(["a", "B", "b", "c"])),
            "n": st.integers(0, 3),
        }
    ),
    max_size=30,
    unique_by=lambda r: r["id"],
)


@settings(max_examples=150, deadline=None)
@given(
    rows=rows_strategy,
    page_size=st.integers(1, 7),
    orderby=st.sampled_from(["", "name", "name desc", "n desc,name", "n,name desc"]),
    filter_=st.sampled_from(["", "n ge 1", "name eq 'b' or name eq null", "not (n eq 2)"]),
)
def test_following_skiptokens_yields_every_matching_row_once(
    rows: list[dict], page_size: int, orderby: str, filter_: str
) -> None:
    params = {k: v for k, v in {"$orderby": orderby, "$filter": filter_}.items() if v}
    query = parse_query(params, COLUMNS, "thing")
    everything = paginate(rows, query, "id", 5000, None, fingerprint_of(params)).rows
    collected: list[dict] = []
    token = None
    for _ in range(len(rows) + 2):
        page = paginate(rows, query, "id", page_size, token, fingerprint_of(params))
        collected += page.rows
        token = page.next_token
        if token is None:
            break
    assert token is None
    assert [r["id"] for r in collected] == [r["id"] for r in everything]
    if query.predicate is not None:
        assert {r["id"] for r in collected} == {r["id"] for r in rows if query.predicate(r)}
    else:
        assert len(collected) == len(rows)


def test_rows_inserted_between_pages_do_not_repeat_earlier_rows() -> None:
    rows = [{"id": str(uuid.UUID(int=i)), "name": f"r{i}", "n": i} for i in range(1, 7)]
    query = parse_query({}, COLUMNS, "thing")
    first = paginate(rows, query, "id", 3, None, fingerprint_of({}))
    rows.insert(0, {"id": str(uuid.UUID(int=0)), "name": "new", "n": 0})
    second = paginate(rows, query, "id", 3, first.next_token, fingerprint_of({}))
    assert {r["id"] for r in first.rows}.isdisjoint(r["id"] for r in second.rows)
    assert [r["n"] for r in second.rows] == [4, 5, 6]
