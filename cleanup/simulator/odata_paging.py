"""OData paging for the simulated Dataverse: keyset paging cookies, Prefer header, annotations.

A ``$skiptoken`` carries the last key of the previous page and a hash of the query it belongs
to; a client that edits ``@odata.nextLink`` gets a 400 instead of silently wrong pages.
"""

from __future__ import annotations

import base64
import bisect
import functools
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from cleanup.simulator.odata import MAX_PAGE_SIZE, ODataError, Query, Row


def _sort_key(row: Row, orderby: list[tuple[str, bool]], pk: str) -> list[Any]:
    return [row.get(col) for col, _ in orderby] + [row.get(pk)]


def _cmp_keys(a: list[Any], b: list[Any], descending: list[bool]) -> int:
    for left, right, desc in zip(a, b, descending, strict=True):
        if left == right:
            continue
        if left is None or right is None:
            result = -1 if left is None else 1  # SQL Server sorts NULL first ascending
        else:
            lk = left.casefold() if isinstance(left, str) else left
            rk = right.casefold() if isinstance(right, str) else right
            result = (lk > rk) - (lk < rk) or (left > right) - (left < right)
        return -result if desc else result
    return 0


@dataclass
class Page:
    """One page of a collection and the token of the next, if any."""

    rows: list[Row]
    next_token: str | None
    total: int


def paginate(
    rows: list[Row],
    query: Query,
    pk: str,
    page_size: int | None,
    skiptoken: str | None,
    fingerprint: str,
) -> Page:
    """Filter, order and cut one page; keyset paging on (orderby columns, primary key)."""
    matching = [r for r in rows if query.predicate is None or query.predicate(r)]
    descending = [d for _, d in query.orderby] + [False]
    key_class = functools.cmp_to_key(lambda a, b: _cmp_keys(a, b, descending))
    matching.sort(key=lambda r: key_class(_sort_key(r, query.orderby, pk)))
    start, page_number = 0, 1
    if skiptoken is not None:
        last, page_number = decode_skiptoken(skiptoken, fingerprint)
        start = bisect.bisect_right(
            matching, key_class(last), key=lambda r: key_class(_sort_key(r, query.orderby, pk))
        )
    if page_size is None:
        limit = min(query.top if query.top is not None else MAX_PAGE_SIZE, MAX_PAGE_SIZE)
        return Page(matching[:limit], None, len(matching))
    chunk = matching[start : start + page_size]
    next_token = None
    if start + page_size < len(matching) and chunk:
        last_key = _sort_key(chunk[-1], query.orderby, pk)
        next_token = encode_skiptoken(last_key, page_number + 1, fingerprint)
    return Page(chunk, next_token, len(matching))


def fingerprint_of(params: dict[str, str]) -> str:
    """A short hash of every query option but $skiptoken: a token only fits its own query."""
    canonical = json.dumps(sorted((k, v) for k, v in params.items() if k != "$skiptoken"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode_skiptoken(last_key: list[Any], page_number: int, fingerprint: str) -> str:
    """A Dataverse-looking paging cookie carrying the last key of the previous page."""
    cookie = base64.urlsafe_b64encode(
        json.dumps({"k": last_key, "q": fingerprint}, separators=(",", ":")).encode()
    ).decode()
    return f'<cookie pagenumber="{page_number}" pagingcookie="{cookie}" istracking="False" />'


_COOKIE = re.compile(r'^<cookie pagenumber="(\d+)" pagingcookie="([A-Za-z0-9_=-]+)"')


def page_number_of(skiptoken: str | None) -> int:
    """The page a request would return (1 without a token; 0 if the token is unreadable)."""
    if skiptoken is None:
        return 1
    match = _COOKIE.match(skiptoken)
    return int(match.group(1)) if match else 0


def decode_skiptoken(skiptoken: str, fingerprint: str) -> tuple[list[Any], int]:
    """The last key and page number a token carries; ODataError if it is damaged or foreign."""
    match = _COOKIE.match(skiptoken)
    try:
        if match is None:
            raise ValueError
        data = json.loads(base64.urlsafe_b64decode(match.group(2).encode()))
        last, query = data["k"], data["q"]
    except (ValueError, KeyError, TypeError):
        raise ODataError("The $skiptoken is invalid. Follow @odata.nextLink unchanged.") from None
    if query != fingerprint:
        raise ODataError(
            "The $skiptoken does not belong to this query: follow @odata.nextLink unchanged, "
            "without adding or changing query options."
        )
    return list(last), int(match.group(1))


def parse_prefer(header: str) -> dict[str, str]:
    """The preferences of a Prefer header (``odata.maxpagesize``, ``odata.include-annotations``)."""
    prefs: dict[str, str] = {}
    for part in re.findall(r'(?:[^,"]|"[^"]*")+', header):
        name, _, value = part.strip().partition("=")
        if name:
            prefs[name.strip().lower()] = value.strip().strip('"')
    return prefs


def annotation_wanted(pattern_list: str | None, annotation: str) -> bool:
    """Whether ``odata.include-annotations`` asks for this annotation (``*``, ``NS.*``, exact)."""
    if not pattern_list:
        return False
    for pattern in (p.strip() for p in pattern_list.split(",")):
        if pattern.startswith("-"):
            continue
        if pattern == "*" or pattern == annotation:
            return True
        if pattern.endswith(".*") and annotation.startswith(pattern[:-1]):
            return True
    return False
