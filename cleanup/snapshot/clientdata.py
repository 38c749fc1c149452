"""Parse a cloud flow's ``clientdata`` JSON into the connection references it declares and uses.

Pure and total: :func:`parse_clientdata` never raises, whatever it is given, because one odd flow
must not stop the snapshot of a whole environment. A flow that cannot be read gets a status other
than ``"ok"``, and the rules treat its usage as unknown, never as "unused".

Shapes handled (all seen in ``shared/corpus``, see its ``SUMMARY.md`` §3 and §7):

* solution flows ``{"properties": {"connectionReferences", "definition"}, "schemaVersion"}`` and
  legacy export packages ``{"name", "id", "type", "properties": {"apiId", "definition",
  "connectionReferences", ...}}``: both keep what we need under ``properties``;
* reference entries ``{api, connection, runtimeSource[, impersonation][, source]}`` with or without
  ``connection.connectionReferenceLogicalName``, and legacy ``{connectionName, source, id, tier
  [, apiName]}``;
* actions and triggers naming a key as ``inputs.host.connectionName``, as
  ``inputs.host.connection.name`` holding an expression such as
  ``@parameters('$connections')['<key>']['connectionId']`` (or the ``X-MS-APIM-Tokens`` invoker
  form), or as a plain string ``inputs.host.connection``;
* nesting through ``actions``, ``else.actions``, ``cases.*.actions`` and ``default.actions``.

Key matching: an action's key is looked up exactly first; if that fails, case-insensitively, but
only when exactly one declared key has that spelling folded (custom-connector keys differ only in
``-5F``/``-5f``). Anything else is a dangling key, reported as such rather than guessed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from cleanup import json_text

__all__ = ["ParsedFlow", "ReferenceUse", "decode_flow_file", "parse_clientdata"]

STATUS_OK = "ok"
STATUS_EMPTY = "empty"
STATUS_INVALID_JSON = "invalid-json"
STATUS_NOT_A_CLOUD_FLOW = "not-a-cloud-flow"

# Both "@parameters('$connections')['key']" and "...['$connections']['key']" (X-MS-APIM-Tokens):
# the key is the first bracketed string after the '$connections' literal, either quote style.
_CONNECTIONS_KEY_RE = re.compile(r"""\$connections['"]\s*[)\]]\s*\[\s*(['"])([^'"]*)\1\s*\]""")

_BOMS: tuple[tuple[bytes, str], ...] = (
    (b"\xef\xbb\xbf", "utf-8"),
    # UTF-32 BOMs before UTF-16 ones: FF FE 00 00 also starts with the UTF-16 LE BOM.
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


@dataclass(frozen=True, slots=True)
class ReferenceUse:
    """One ``connectionReferences`` entry of a flow and how many actions/triggers use its key."""

    key: str
    logical_name: str | None
    connector: str | None
    runtime_source: str | None
    connection_name: str | None
    action_count: int


@dataclass(frozen=True, slots=True)
class ParsedFlow:
    """What a flow's clientdata says about connections, or why it could not be read."""

    status: str
    error: str | None
    references: tuple[ReferenceUse, ...]
    action_count: int
    dangling_keys: tuple[str, ...]
    total_actions: int
    max_depth: int


def decode_flow_file(raw: bytes) -> str:
    """Decode a flow file: UTF-8 (BOM optional) or UTF-16/32 with a BOM; raise ValueError if not."""
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise ValueError(f"expected bytes, got {type(raw).__name__}")
    data = bytes(raw)
    encoding, skipped = "utf-8", 0
    for bom, name in _BOMS:
        if data.startswith(bom):
            data, encoding, skipped = data[len(bom) :], name, len(bom)
            break
    else:
        if len(data) >= 4:
            # JSON starts with ASCII, so NUL bytes in the first four mean UTF-16/32 without a BOM.
            encoding = json.detect_encoding(data)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"not valid {encoding.upper()} at byte {exc.start + skipped}: {exc.reason}"
        ) from None


def parse_clientdata(text: str | None) -> ParsedFlow:
    """Parse clientdata JSON text into references and usage counts; never raises."""
    try:
        return _parse(text)
    except RecursionError:
        return _failed(STATUS_INVALID_JSON, "JSON is nested too deeply to parse")
    except Exception as exc:  # the contract is "never raises": say what happened instead
        return _failed(STATUS_INVALID_JSON, f"unexpected {type(exc).__name__}: {exc}")


def _failed(status: str, error: str | None) -> ParsedFlow:
    return ParsedFlow(status, error, (), 0, (), 0, 0)


def _parse(text: str | None) -> ParsedFlow:
    if text is None:
        return _failed(STATUS_EMPTY, "clientdata is null")
    if not isinstance(text, str):
        return _failed(STATUS_INVALID_JSON, f"clientdata is {type(text).__name__}, not text")
    if text[:1] == "\ufeff":
        # A leftover BOM is an encoding artefact, not a content problem.
        text = text[1:]
    if not text or text.isspace():
        return _failed(STATUS_EMPTY, "clientdata is empty")
    try:
        doc = json_text.loads(text)
    except json.JSONDecodeError as exc:
        return _failed(
            STATUS_INVALID_JSON, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        )
    except ValueError as exc:  # e.g. an integer literal beyond int_max_str_digits
        return _failed(STATUS_INVALID_JSON, f"invalid JSON: {exc}")
    return _parse_document(doc)


def _parse_document(doc: Any) -> ParsedFlow:
    problem = _shape_problem(doc)
    if problem is not None:
        return _failed(STATUS_NOT_A_CLOUD_FLOW, problem)
    props = doc["properties"]
    definition = props["definition"]
    refs = props.get("connectionReferences") or {}
    counts, total, depth = _walk(definition, refs)
    references = tuple(_reference(key, entry, counts.pop(key, 0)) for key, entry in refs.items())
    used = sum(r.action_count for r in references) + sum(counts.values())
    return ParsedFlow(STATUS_OK, None, references, used, tuple(sorted(counts)), total, depth)


def _shape_problem(doc: Any) -> str | None:
    """Why ``doc`` is not a cloud flow we can read, or None if it is one."""
    if not isinstance(doc, dict):
        return f"top level is {_json_type(doc)}, not an object"
    props = doc.get("properties")
    if not isinstance(props, dict):
        return f"'properties' is {_json_type(props)}, not an object"
    definition = props.get("definition")
    if not isinstance(definition, dict):
        return f"'properties.definition' is {_json_type(definition)}, not an object"
    if "triggers" not in definition and "actions" not in definition:
        if "package" in definition:
            return "desktop flow (properties.definition.package), not a cloud flow"
        return "'properties.definition' has neither 'triggers' nor 'actions'"
    refs = props.get("connectionReferences")
    if refs is not None and not isinstance(refs, dict):
        # Unknown usage must not read as "uses nothing", so refuse instead of guessing.
        return f"'properties.connectionReferences' is {_json_type(refs)}, not an object"
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "missing or null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    return "a number"


def _walk(definition: dict, refs: dict) -> tuple[dict[str, int], int, int]:
    """Count actions+triggers per declared key (or dangling key), all actions, and max depth."""
    folded = _folded_keys(refs)
    counts: dict[str, int] = {}
    total = max_depth = 0
    # A stack of (container of actions, depth) keeps deep flows off the Python call stack.
    stack: list[tuple[Any, int]] = [(definition.get("triggers"), 1), (definition.get("actions"), 1)]
    while stack:
        container, depth = stack.pop()
        if not isinstance(container, dict):
            continue
        for action in container.values():
            if not isinstance(action, dict):
                continue
            total += 1
            if depth > max_depth:
                max_depth = depth
            key = _host_key(action.get("inputs"))
            if key is not None:
                key = _resolve_key(key, refs, folded)
                counts[key] = counts.get(key, 0) + 1
            _push_children(action, depth + 1, stack)
    return counts, total, max_depth


def _push_children(action: dict, depth: int, stack: list[tuple[Any, int]]) -> None:
    """Push the nested action containers of Scope/If/Switch/Foreach/Until."""
    if "actions" in action:
        stack.append((action["actions"], depth))
    branch = action.get("else")
    if isinstance(branch, dict):
        stack.append((branch.get("actions"), depth))
    branch = action.get("default")
    if isinstance(branch, dict):
        stack.append((branch.get("actions"), depth))
    cases = action.get("cases")
    if isinstance(cases, dict):
        for case in cases.values():
            if isinstance(case, dict):
                stack.append((case.get("actions"), depth))


def _host_key(inputs: Any) -> str | None:
    """The connectionReferences key an action's ``inputs.host`` names, if any."""
    if not isinstance(inputs, dict):
        return None
    host = inputs.get("host")
    if not isinstance(host, dict):
        return None
    name = host.get("connectionName")
    if isinstance(name, str) and name:
        return name
    connection = host.get("connection")
    if isinstance(connection, dict):
        connection = connection.get("name")
    if not isinstance(connection, str) or not connection:
        return None
    if "$connections" in connection:
        match = _CONNECTIONS_KEY_RE.search(connection)
        return match.group(2) if match and match.group(2) else None
    # An expression we cannot read names no key we could vouch for.
    return None if connection.startswith("@") else connection


def _folded_keys(refs: dict) -> dict[str, str | None]:
    """Case-folded key -> declared key, or None where two declared keys fold alike."""
    folded: dict[str, str | None] = {}
    for key in refs:
        low = key.casefold()
        folded[low] = None if low in folded else key
    return folded


def _resolve_key(key: str, refs: dict, folded: dict[str, str | None]) -> str:
    if key in refs:
        return key
    return folded.get(key.casefold()) or key


def _reference(key: str, entry: Any, action_count: int) -> ReferenceUse:
    if not isinstance(entry, dict):
        return ReferenceUse(key, None, None, None, None, action_count)
    connection = entry.get("connection")
    if not isinstance(connection, dict):
        connection = {}
    return ReferenceUse(
        key=key,
        logical_name=_text(connection.get("connectionReferenceLogicalName")),
        connector=_connector(entry),
        runtime_source=_runtime_source(entry),
        connection_name=_text(entry.get("connectionName")) or _text(connection.get("name")),
        action_count=action_count,
    )


def _connector(entry: dict) -> str | None:
    """The connector's API name from ``api.name``, else an ``id`` path, else legacy ``apiName``."""
    api = entry.get("api")
    if isinstance(api, dict):
        name = _text(api.get("name")) or _last_segment(api.get("id"))
        if name:
            return name
    name = _last_segment(entry.get("id"))
    if name:
        return name
    name = _text(entry.get("apiName"))
    # Legacy apiName drops the prefix ("office365"); the API name is "shared_office365".
    if name and not name.startswith("shared_"):
        return "shared_" + name
    return name


def _runtime_source(entry: dict) -> str | None:
    value = _text(entry.get("runtimeSource")) or _text(entry.get("source"))
    return value.lower() if value else None


def _last_segment(value: Any) -> str | None:
    text = _text(value)
    if text is None:
        return None
    return _text(text.rstrip("/").rpartition("/")[2])


def _text(value: Any) -> str | None:
    """A non-blank string as is; anything else (wrong type, empty) as None."""
    return value if isinstance(value, str) and value.strip() else None
