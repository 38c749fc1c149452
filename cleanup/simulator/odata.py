"""The OData subset the simulated Dataverse accepts: $filter, $select, $orderby, $top, paging.

The $filter grammar is deliberately narrow (comparisons of a column with a literal, ``and``,
``or``, ``not``, parentheses). Anything else is refused with a 400, never silently ignored, so
a client that relies on more fails here rather than against a stricter implementation.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

Row = dict[str, Any]
Predicate = Callable[[Row], bool]

EDM = {
    "string": "Edm.String",
    "int": "Edm.Int32",
    "bigint": "Edm.Int64",
    "bool": "Edm.Boolean",
    "guid": "Edm.Guid",
    "datetime": "Edm.DateTimeOffset",
    "managed": "Microsoft.Dynamics.CRM.BooleanManagedProperty",
}
_LITERAL_FOR = {
    "string": "string",
    "int": "number",
    "bigint": "number",
    "bool": "bool",
    "guid": "guid",
    "datetime": "datetime",
}
_OPS = {
    "eq": "Equal",
    "ne": "NotEqual",
    "gt": "GreaterThan",
    "ge": "GreaterThanOrEqual",
    "lt": "LessThan",
    "le": "LessThanOrEqual",
}
_TOKEN = re.compile(
    r"""(?P<ws>\s+)
    |(?P<string>'(?:[^']|'')*')
    |(?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2}))
    |(?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b)
    |(?P<number>-?\d+(?:\.\d+)?\b)
    |(?P<punct>[(),])
    |(?P<name>[A-Za-z_@$][A-Za-z0-9_./@$]*)""",
    re.VERBOSE,
)
_SUPPORTED_OPTIONS = {"$select", "$filter", "$top", "$orderby", "$count", "$skiptoken"}
MAX_PAGE_SIZE = 5000


class ODataError(ValueError):
    """A query option the simulator refuses; answered as Dataverse 400 0x80060888."""


@dataclass
class Query:
    """Parsed query options of one collection request."""

    select: list[str] | None
    predicate: Predicate | None
    orderby: list[tuple[str, bool]]  # (column, descending)
    top: int | None
    count: bool


@dataclass
class _Tok:
    kind: str
    text: str
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ODataError(f"Syntax error at position {pos} in '{text}'.")
        if match.lastgroup != "ws":
            tokens.append(_Tok(match.lastgroup or "", match.group(), pos))
        pos = match.end()
    return tokens


class _FilterParser:
    """Recursive-descent parser producing a predicate over row dicts."""

    def __init__(self, text: str, columns: dict[str, str], entity: str) -> None:
        self.text, self.columns, self.entity = text, columns, entity
        self.tokens = _tokenize(text)
        self.i = 0

    def parse(self) -> Predicate:
        """The predicate of the whole expression (ODataError on anything unsupported)."""
        if not self.tokens:
            raise ODataError("The $filter expression is empty.")
        predicate = self._or()
        if self.i < len(self.tokens):
            tok = self.tokens[self.i]
            raise ODataError(f"Syntax error at position {tok.pos} in '{self.text}'.")
        return predicate

    def _peek(self) -> _Tok | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _next(self) -> _Tok:
        tok = self._peek()
        if tok is None:
            raise ODataError(f"Syntax error at position {len(self.text)} in '{self.text}'.")
        self.i += 1
        return tok

    def _keyword(self, word: str) -> bool:
        tok = self._peek()
        if tok is not None and tok.kind == "name" and tok.text == word:
            self.i += 1
            return True
        return False

    def _or(self) -> Predicate:
        parts = [self._and()]
        while self._keyword("or"):
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else lambda row: any(p(row) for p in parts)

    def _and(self) -> Predicate:
        parts = [self._unary()]
        while self._keyword("and"):
            parts.append(self._unary())
        return parts[0] if len(parts) == 1 else lambda row: all(p(row) for p in parts)

    def _unary(self) -> Predicate:
        if self._keyword("not"):
            inner = self._unary()
            return lambda row: not inner(row)
        tok = self._peek()
        if tok is not None and tok.text == "(":
            self.i += 1
            inner = self._or()
            closing = self._next()
            if closing.text != ")":
                raise ODataError(f"Syntax error at position {closing.pos} in '{self.text}'.")
            return inner
        return self._comparison()

    def _comparison(self) -> Predicate:
        left = self._operand()
        op_tok = self._next()
        if op_tok.kind != "name" or op_tok.text not in _OPS:
            raise ODataError(
                f"The operator '{op_tok.text}' at position {op_tok.pos} is not supported; "
                "use eq, ne, gt, ge, lt or le between a column and a literal."
            )
        right = self._operand()
        if left[0] == "literal" and right[0] == "column":
            left, right = right, left
            op = {"gt": "lt", "lt": "gt", "ge": "le", "le": "ge"}.get(op_tok.text, op_tok.text)
        else:
            op = op_tok.text
        if left[0] != "column" or right[0] != "literal":
            raise ODataError(
                f"Comparisons must be between a column and a literal (operator '{op_tok.text}' "
                f"at position {op_tok.pos})."
            )
        return self._compile(left[1], op, right[1], right[2])

    def _operand(self) -> tuple[str, Any, str]:
        tok = self._next()
        if tok.kind == "name":
            follow = self._peek()
            if follow is not None and follow.text == "(":
                raise ODataError(f"An unknown function with name '{tok.text}' was found.")
            if tok.text in ("true", "false"):
                return ("literal", tok.text == "true", "bool")
            if tok.text == "null":
                return ("literal", None, "null")
            if "/" in tok.text or tok.text in ("add", "sub", "mul", "div", "mod", "has", "in"):
                raise ODataError(f"'{tok.text}' at position {tok.pos} is not supported in $filter.")
            if tok.text not in self.columns:
                raise ODataError(_unknown_property(tok.text, self.entity))
            return ("column", tok.text, self.columns[tok.text])
        return _literal(tok)

    def _compile(self, column: str, op: str, value: Any, kind: str) -> Predicate:
        ctype = self.columns[column]
        if kind != "null" and _LITERAL_FOR.get(ctype) != kind:
            literal_edm = {"number": "Edm.Int32", "datetime": "Edm.DateTimeOffset"}.get(
                kind, f"Edm.{kind.capitalize()}"
            )
            raise ODataError(
                "A binary operator with incompatible types was detected. Found operand types "
                f"'{EDM[ctype]}' and '{literal_edm}' for operator kind '{_OPS[op]}'."
            )
        if kind == "null":
            if op not in ("eq", "ne"):
                return lambda row: False
            return (
                (lambda row: row.get(column) is None)
                if op == "eq"
                else (lambda row: row.get(column) is not None)
            )
        target = _normalise(ctype, value)
        compare = _COMPARATORS[op]

        def predicate(row: Row) -> bool:
            current = row.get(column)
            # SQL semantics: a null column never satisfies a comparison with a non-null literal,
            # 'ne' included (Dataverse translates $filter to SQL).
            return current is not None and compare(_normalise(ctype, current), target)

        return predicate


_COMPARATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}


def _literal(tok: _Tok) -> tuple[str, Any, str]:
    if tok.kind == "string":
        return ("literal", tok.text[1:-1].replace("''", "'"), "string")
    if tok.kind == "number":
        return ("literal", float(tok.text) if "." in tok.text else int(tok.text), "number")
    if tok.kind == "guid":
        return ("literal", tok.text.lower(), "guid")
    if tok.kind == "datetime":
        return ("literal", tok.text, "datetime")
    raise ODataError(f"Syntax error at position {tok.pos}: unexpected '{tok.text}'.")


def _normalise(ctype: str, value: Any) -> Any:
    if ctype == "string":
        return str(value).casefold()  # Dataverse collations are case-insensitive
    if ctype == "guid":
        return str(value).lower()
    if ctype == "datetime":
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return value


def _unknown_property(name: str, entity: str) -> str:
    return f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{entity}'."


def parse_filter(text: str, columns: dict[str, str], entity: str) -> Predicate:
    """Compile a $filter expression; ``columns`` maps column name to type."""
    return _FilterParser(text, columns, entity).parse()


def parse_query(params: dict[str, str], columns: dict[str, str], entity: str) -> Query:
    """Parse the system query options of a collection request (400 on anything unsupported)."""
    for name in params:
        if name.startswith("$") and name not in _SUPPORTED_OPTIONS:
            raise ODataError(f"The query option '{name}' is not supported by this service.")
    select = parse_select(params.get("$select"), columns, entity)
    predicate = parse_filter(params["$filter"], columns, entity) if "$filter" in params else None
    orderby = _parse_orderby(params.get("$orderby"), columns, entity)
    top = None
    if "$top" in params:
        if not params["$top"].isdigit():
            raise ODataError(f"Invalid value '{params['$top']}' for $top; expected an integer.")
        top = int(params["$top"])
    count = params.get("$count", "false").lower() == "true"
    return Query(select, predicate, orderby, top, count)


def parse_select(text: str | None, columns: dict[str, str], entity: str) -> list[str] | None:
    """The $select column list (None = all columns)."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",")]
    if names == ["*"]:
        return None
    for name in names:
        if name not in columns:
            raise ODataError(_unknown_property(name, entity))
    return names


def _parse_orderby(
    text: str | None, columns: dict[str, str], entity: str
) -> list[tuple[str, bool]]:
    if not text:
        return []
    result = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1] not in ("asc", "desc")):
            raise ODataError(f"Syntax error in $orderby '{text}'.")
        if words[0] not in columns or columns[words[0]] == "managed":
            raise ODataError(_unknown_property(words[0], entity))
        result.append((words[0], len(words) == 2 and words[1] == "desc"))
    return result
