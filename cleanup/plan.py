"""The plan: an immutable, ordered list of actions, each with what it was planned against.

``build_plan`` is pure (snapshot, proposals and findings in, a ``Plan`` value out). Printing a
plan (``cleanup.plan_explain.describe``) and applying it are two consumers of the same value.
``save_plan`` writes ``plan.json`` with a content hash over everything; ``load_plan`` refuses a
file that is not a plan, has another format version, misses a field, names an unknown action
type, or was altered after it was written.

Safety rules enforced here, and re-checked on the finished plan (a violation is a bug and
raises ``PlanError`` rather than producing a plan):

* no action on a managed flow or reference (that would create an unmanaged layer);
* no delete in an environment whose snapshot is incomplete or holds a flow whose clientdata
  could not be read (usage unknown);
* no delete of a reference that any flow (draft flows included) would still use after the
  planned rewires, matched by logical name case-insensitively;
* no rewire to a reference that is not bound to a connection;
* protected references (glob on the logical name) are never deleted or renamed, and flows keep
  using them.

Scale: a tenant of a million flow keys plans hundreds of thousands of actions, so the hot paths
work on whole columns (snapshot tables are read once, as lists), and each action's canonical JSON
is rendered by a small template that gives exactly what ``_canonical`` gives (tests hold the two
together). That text is both what the action id hashes and, with the id in front, the action's
line in ``plan.json`` and its part of the content hash, so ``save_plan`` streams the file and the
hash in one pass and ``load_plan`` reads it back line by line.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import typing
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property, lru_cache
from itertools import chain, islice, repeat
from json.encoder import encode_basestring
from operator import attrgetter
from pathlib import Path
from typing import IO, Any, ClassVar, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cleanup import __version__
from cleanup.consolidate import BLOCK_MANAGED_FLOW, Proposals, other_dependents
from cleanup.errors import ConfigError, PlanError
from cleanup.frames import isin
from cleanup.interpreter import gc_paused
from cleanup.snapshot.model import Snapshot

PLAN_FORMAT = "connref-cleanup-plan"
PLAN_FORMAT_VERSION = 1
USAGE_KNOWN_PARSE_STATUSES = frozenset({"ok"})
REFERENCE_HASH_FIELDS = (
    "reference_id",
    "logical_name",
    "display_name",
    "connector_id",
    "connection_id",
    "custom_connector_id",
    "description",
    "is_managed",
    "owner_id",
    "modified_on",
)
FLOW_STATES = {0: "off", 1: "on", 2: "suspended"}
SET_ASIDE = (
    "set aside: no active duplicate finding (an exclusion covers it, or the rule is off); "
    "its flows keep using it"
)
ALTERED = "the plan was altered after it was written; re-run the job to get a new plan"


@dataclass(frozen=True)
class PlanSettings:
    """What the plan may propose: renames, protected names and a per-environment cap."""

    propose_renames: bool = False
    protected_patterns: tuple[str, ...] = ()
    max_actions_per_environment: int = 500

    def __post_init__(self) -> None:
        if self.max_actions_per_environment < 1:
            raise ConfigError("'plan.max_actions_per_environment' must be at least 1.")

    def is_protected(self, logical_name: str | None) -> bool:
        """Tell whether a logical name matches a protected pattern (case-insensitive glob)."""
        name = (logical_name or "").lower()
        return any(fnmatch.fnmatchcase(name, p.lower()) for p in self.protected_patterns)


# ---------------------------------------------------------------------------------------------
# Actions


@dataclass(frozen=True, slots=True)
class FlowPreconditions:
    """The flow as it was planned against; apply refuses the action if any of it changed."""

    etag: str | None
    modified_on: str | None
    clientdata_sha256: str
    state: str  # on | off | suspended | unknown


@dataclass(frozen=True, slots=True)
class ReferencePreconditions:
    """The connection reference as it was planned against; a change means drift."""

    etag: str | None
    modified_on: str | None
    content_sha256: str


class _Action:
    """Shared behaviour of the action dataclasses: a type tag and a content-derived id."""

    # The id and canonical body, once computed (not fields: they follow from them). The body is
    # kept so that writing plan.json does not render every action a second time.
    __slots__ = ("_id", "_body")
    kind: ClassVar[str]
    id_prefix: ClassVar[str]

    @property
    def action_id(self) -> str:
        """A stable id: a hash of the action's type and content."""
        try:
            return self._id  # type: ignore[no-any-return]
        except AttributeError:
            return _keep_id(self, self.canonical_body())

    def canonical_body(self) -> str:
        """The canonical JSON of the action's type and fields: what its id hashes."""
        try:
            return self._body  # type: ignore[no-any-return]
        except AttributeError:
            pass
        try:
            return self._render()
        except TypeError:  # a field holds something the template does not know: ask json
            return _canonical({"type": self.kind, **_as_json(self)})

    def _render(self) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form of the action."""
        return {"type": self.kind, "action_id": self.action_id, **_as_json(self)}


def _keep_id(action: _Action, body: str) -> str:
    """Compute an action's id from its canonical body and remember both on the (frozen) action."""
    value = f"{action.id_prefix}-{hashlib.sha256(body.encode()).hexdigest()[:16]}"
    object.__setattr__(action, "_id", value)
    object.__setattr__(action, "_body", body)
    return value


@dataclass(frozen=True, slots=True)
class RewireFlowKey(_Action):
    """Point one connection key of a cloud flow at the surviving connection reference."""

    kind: ClassVar[str] = "rewire-flow-key"
    id_prefix: ClassVar[str] = "rw"

    environment_id: str
    flow_id: str
    flow_name: str
    key: str
    from_reference_id: str
    from_logical_name: str
    to_logical_name: str
    to_reference_id: str
    to_display_name: str
    group_id: str
    preconditions: FlowPreconditions

    def _render(self) -> str:
        return _rewire_text(
            self.environment_id,
            self.flow_id,
            self.flow_name,
            self.from_logical_name,
            self.from_reference_id,
            self.group_id,
            self.key,
            self.preconditions,
            _rewire_target_text(self.to_display_name, self.to_logical_name, self.to_reference_id),
        )


@dataclass(frozen=True, slots=True)
class DeleteReference(_Action):
    """Delete a connection reference that no flow uses once the rewires before it succeeded."""

    kind: ClassVar[str] = "delete-reference"
    id_prefix: ClassVar[str] = "del"

    environment_id: str
    reference_id: str
    logical_name: str
    display_name: str | None
    connector: str | None
    connection_id: str | None
    reason: str
    group_id: str | None
    unused_since: str | None
    depends_on: tuple[str, ...]
    preconditions: ReferencePreconditions

    def _render(self) -> str:
        e, n = encode_basestring, _json_text
        return (
            f'{{"connection_id":{n(self.connection_id)},"connector":{n(self.connector)},'
            f'"depends_on":[{",".join(map(e, self.depends_on))}],'
            f'"display_name":{n(self.display_name)},"environment_id":{e(self.environment_id)},'
            f'"group_id":{n(self.group_id)},"logical_name":{e(self.logical_name)},'
            f'"preconditions":{_reference_preconditions_text(self.preconditions)},'
            f'"reason":{e(self.reason)},"reference_id":{e(self.reference_id)},'
            f'"type":"delete-reference","unused_since":{n(self.unused_since)}}}'
        )


@dataclass(frozen=True, slots=True)
class RenameReference(_Action):
    """Change a connection reference's display name to the proposed compliant name."""

    kind: ClassVar[str] = "rename-reference"
    id_prefix: ClassVar[str] = "ren"

    environment_id: str
    reference_id: str
    logical_name: str
    from_display_name: str | None
    to_display_name: str
    preconditions: ReferencePreconditions

    def _render(self) -> str:
        e = encode_basestring
        return (
            f'{{"environment_id":{e(self.environment_id)},'
            f'"from_display_name":{_json_text(self.from_display_name)},'
            f'"logical_name":{e(self.logical_name)},'
            f'"preconditions":{_reference_preconditions_text(self.preconditions)},'
            f'"reference_id":{e(self.reference_id)},"to_display_name":{e(self.to_display_name)},'
            f'"type":"rename-reference"}}'
        )


Action = RewireFlowKey | DeleteReference | RenameReference
ACTION_TYPES: dict[str, type[Action]] = {
    cls.kind: cls for cls in (RewireFlowKey, DeleteReference, RenameReference)
}


@dataclass(frozen=True, slots=True)
class Skipped:
    """Something the plan deliberately leaves alone, and why."""

    environment_id: str
    object_type: str  # reference | flow-key
    object_id: str
    name: str
    reason: str


@dataclass(frozen=True)
class Plan:
    """An immutable, ordered list of actions and what they were planned against."""

    run_id: str
    created_at: datetime
    tool_version: str
    config_fingerprint: str
    environment_ids: tuple[str, ...]
    actions: tuple[Action, ...]
    skipped: tuple[Skipped, ...] = ()
    format_version: int = PLAN_FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON document of the plan, without its content hash."""
        return {
            **self._head(),
            "actions": [a.to_dict() for a in self.actions],
            "skipped": [_as_json(s) for s in self.skipped],
        }

    def _head(self) -> dict[str, Any]:
        """The document's members other than its two lists, in file order."""
        return {
            "format": PLAN_FORMAT,
            "format_version": self.format_version,
            "run_id": self.run_id,
            "created_at": self.created_at.isoformat(),
            "tool_version": self.tool_version,
            "config_fingerprint": self.config_fingerprint,
            "environment_ids": list(self.environment_ids),
        }

    @cached_property
    def content_hash(self) -> str:
        """Return the hash over the whole plan, as stored in ``plan.json``."""
        return _stream_plan(self, None)

    def actions_for(self, environment_id: str) -> tuple[Action, ...]:
        """Return the actions of one environment, in order."""
        return self._actions_by_environment.get(environment_id, ())

    @cached_property
    def _actions_by_environment(self) -> dict[str, tuple[Action, ...]]:
        by_env: dict[str, list[Action]] = defaultdict(list)
        for action in self.actions:
            by_env[action.environment_id].append(action)
        return {env: tuple(actions) for env, actions in by_env.items()}


# ---------------------------------------------------------------------------------------------
# Hashes and canonical JSON


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_READABLE = json.JSONEncoder(ensure_ascii=False)


def compute_content_hash(document: Mapping[str, Any]) -> str:
    """Return ``sha256:<hex>`` over a plan document (its ``content_hash`` key excluded)."""
    body = {k: v for k, v in document.items() if k != "content_hash"}
    return "sha256:" + hashlib.sha256(_canonical(body).encode()).hexdigest()


def reference_content_sha256(row: Mapping[str, Any]) -> str:
    """Return the hash of a ``references`` row's planned-against fields (apply recomputes it)."""
    values = {name: _plain(row.get(name)) for name in REFERENCE_HASH_FIELDS}
    return hashlib.sha256(_canonical(values).encode()).hexdigest()


def _as_json(obj: Any) -> dict[str, Any]:
    """A dataclass as a JSON-ready dict (tuples become lists); faster than ``asdict``."""
    out = {}
    for name, kind in _layout(type(obj)):
        value = getattr(obj, name)
        if kind == "dataclass":
            value = _as_json(value)
        elif kind == "tuple":
            value = list(value)
        out[name] = value
    return out


_HINTS: dict[type, dict[str, Any]] = {}
_LAYOUTS: dict[type, tuple[tuple[str, str], ...]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The resolved field types of a dataclass, in field order (cached: resolving is slow)."""
    if cls not in _HINTS:
        hints = typing.get_type_hints(cls)
        _HINTS[cls] = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    return _HINTS[cls]


def _layout(cls: type) -> tuple[tuple[str, str], ...]:
    """Each field of a dataclass and whether it holds a dataclass, a tuple or a scalar."""

    def kind(hint: Any) -> str:
        if dataclasses.is_dataclass(hint):
            return "dataclass"
        return "tuple" if typing.get_origin(hint) is tuple else "scalar"

    if cls not in _LAYOUTS:
        _LAYOUTS[cls] = tuple((name, kind(hint)) for name, hint in _hints(cls).items())
    return _LAYOUTS[cls]


def _canonical(value: Any) -> str:
    return _CANONICAL.encode(value)


def _json_text(value: str | None) -> str:
    """A string or None as JSON (anything else raises ``TypeError``: the caller falls back)."""
    return "null" if value is None else encode_basestring(value)


def _json_scalar(value: Any) -> str:
    """A string, bool or None as JSON (anything else raises ``TypeError``)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    return encode_basestring(value)


# The templates (here and in the actions' ``_render``) give exactly what ``_canonical`` gives for
# the same values: keys sorted, no spaces, non-ASCII kept. ``encode_basestring`` raises TypeError
# for anything but a string, and callers then fall back to ``_canonical``.


@lru_cache(maxsize=1 << 14)
def _rewire_target_text(to_display_name: str, to_logical_name: str, to_reference_id: str) -> str:
    """The end of a rewire's canonical JSON: what it points at (remembered: a whole group's
    rewires point at one reference)."""
    e = encode_basestring
    return (
        f'"to_display_name":{e(to_display_name)},"to_logical_name":{e(to_logical_name)},'
        f'"to_reference_id":{e(to_reference_id)},"type":"rewire-flow-key"}}'
    )


def _rewire_text(
    environment_id: str,
    flow_id: str,
    flow_name: str,
    from_logical_name: str,
    from_reference_id: str,
    group_id: str,
    key: str,
    pre: FlowPreconditions,
    target_text: str,
) -> str:
    """A rewire's canonical JSON, given the end ``_rewire_target_text`` gives for its target."""
    e = encode_basestring
    etag, modified_on = pre.etag, pre.modified_on
    return (
        f'{{"environment_id":{e(environment_id)},"flow_id":{e(flow_id)},'
        f'"flow_name":{e(flow_name)},"from_logical_name":{e(from_logical_name)},'
        f'"from_reference_id":{e(from_reference_id)},"group_id":{e(group_id)},'
        f'"key":{e(key)},"preconditions":{{'
        f'"clientdata_sha256":{e(pre.clientdata_sha256)},'
        f'"etag":{"null" if etag is None else e(etag)},'
        f'"modified_on":{"null" if modified_on is None else e(modified_on)},'
        f'"state":{e(pre.state)}}},{target_text}'
    )


def _reference_preconditions_text(pre: ReferencePreconditions) -> str:
    return (
        f'{{"content_sha256":{encode_basestring(pre.content_sha256)},'
        f'"etag":{_json_text(pre.etag)},"modified_on":{_json_text(pre.modified_on)}}}'
    )


_REFERENCE_HASH_ORDER = tuple(sorted(REFERENCE_HASH_FIELDS))


def _reference_hash_text(
    connection_id: Any,
    connector_id: Any,
    custom_connector_id: Any,
    description: Any,
    display_name: Any,
    is_managed: Any,
    logical_name: Any,
    modified_on: Any,
    owner_id: Any,
    reference_id: Any,
) -> str:
    """What ``reference_content_sha256`` hashes, for JSON-ready values (fields in key order)."""
    n = _json_scalar
    return (
        f'{{"connection_id":{n(connection_id)},"connector_id":{n(connector_id)},'
        f'"custom_connector_id":{n(custom_connector_id)},"description":{n(description)},'
        f'"display_name":{n(display_name)},"is_managed":{n(is_managed)},'
        f'"logical_name":{n(logical_name)},"modified_on":{n(modified_on)},'
        f'"owner_id":{n(owner_id)},"reference_id":{n(reference_id)}}}'
    )


def _skipped_text(item: Skipped) -> str:
    """The canonical JSON of a skipped item."""
    e = encode_basestring
    try:
        return (
            f'{{"environment_id":{e(item.environment_id)},"name":{e(item.name)},'
            f'"object_id":{e(item.object_id)},"object_type":{e(item.object_type)},'
            f'"reason":{e(item.reason)}}}'
        )
    except TypeError:
        return _canonical(_as_json(item))


def _action_text(action: Action) -> str:
    """The canonical JSON of an action with its id: its line in plan.json, its part of the hash.

    ``action_id`` sorts before every other key, so it goes first, in front of the body.
    """
    body = action.canonical_body()
    try:
        action_id = action._id
    except AttributeError:
        action_id = _keep_id(action, body)
    return f'{{"action_id":{encode_basestring(action_id)},{body[1:]}'


def _plain(value: Any) -> Any:
    """A JSON-ready scalar: missing values become None, timestamps ISO 8601 in UTC."""
    if value is None or (not isinstance(value, list | tuple) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp | datetime):
        stamp = pd.Timestamp(value)
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        return stamp.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


_PLAIN_TYPES = frozenset({str, bool, int, float, type(None)})


def _plain_values(series: pd.Series, *, shared: bool = False) -> list[Any]:
    """A column as a list of ``_plain`` values, computed on the whole column at once.

    ``shared``: equal strings become one object (less memory where values repeat).
    """
    dtype = series.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or (isinstance(dtype, np.dtype) and dtype.kind == "M"):
        return _iso_values(series)
    if shared and isinstance(dtype, pd.StringDtype):
        codes, uniques = pd.factorize(series)
        shared = np.append(uniques.to_numpy(dtype=object), None)
        return shared[codes].tolist()  # code -1 (missing) takes the None at the end
    values = series.to_numpy(dtype=object, na_value=None).tolist()
    if not _PLAIN_TYPES.issuperset(map(type, values)):
        values = [_plain(v) for v in values]
    return values


def _iso_values(series: pd.Series) -> list[str | None]:
    """Timestamps as ``_plain`` gives them (ISO 8601 in UTC), for a whole column."""
    try:
        utc = series.dt.tz_convert("UTC") if series.dt.tz is not None else series
        stamps = (utc.dt.tz_localize(None) if utc.dt.tz is not None else utc).to_numpy(
            "datetime64[ns]"
        )
    except (OverflowError, ValueError):  # out of the nanosecond range: one by one
        return [_plain(v) for v in series.to_numpy(dtype=object)]
    seconds = stamps.astype("datetime64[s]")
    missing = np.isnat(stamps)
    odd = (stamps != seconds) & ~missing  # fractions of a second: pandas writes those
    out: list[str | None] = np.char.add(np.datetime_as_string(seconds, unit="s"), "+00:00").tolist()
    if missing.any() or odd.any():
        originals = series.to_numpy(dtype=object)
        for i in np.flatnonzero(missing | odd).tolist():
            out[i] = None if missing[i] else _plain(originals[i])
    return out


# ---------------------------------------------------------------------------------------------
# Save: plan.json is streamed, and hashed as it is written


_LISTS = ("actions", "skipped")


def save_plan(plan: Plan, path: str | Path) -> Path:
    """Write ``plan.json`` with its content hash; return the path written.

    The file is written as it is rendered (one action or skipped item per line, in canonical
    JSON), so the whole document is never held in memory.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as out:
        digest = _stream_plan(plan, out)
    tmp.replace(path)
    plan.__dict__["content_hash"] = digest  # the cached_property's value: the same hash
    return path


def _canonical_frame(head: Mapping[str, Any]) -> tuple[str, str, str]:
    """The canonical document around its two lists: before actions, between them, after."""
    keys = sorted({*head, *_LISTS})
    pieces: list[str] = []
    text = "{"
    for i, key in enumerate(keys):
        text += ("," if i else "") + _canonical(key) + ":"
        if key in _LISTS:
            pieces.append(text + "[")
            text = "]"
        else:
            text += _canonical(head[key])
    return pieces[0], pieces[1], text + "}"


def _stream_plan(plan: Plan, out: IO[bytes] | None) -> str:
    """Return the plan's content hash; with ``out``, write plan.json there as it is hashed.

    The hash is over the canonical document (what ``compute_content_hash`` gives); the file
    holds the same canonical text for each action and skipped item, one per line.
    """
    head = plan._head()
    before, between, after = _canonical_frame(head)
    hasher = hashlib.sha256(before.encode())
    if out is not None:
        members = "".join(
            f"  {_READABLE.encode(k)}: {_READABLE.encode(v)},\n" for k, v in head.items()
        )
        out.write(("{\n" + members).encode())
    _stream_list(hasher, out, "actions", map(_action_text, plan.actions))
    hasher.update(between.encode())
    _stream_list(hasher, out, "skipped", map(_skipped_text, plan.skipped))
    hasher.update(after.encode())
    digest = "sha256:" + hasher.hexdigest()
    if out is not None:
        out.write(f'  "content_hash": {_READABLE.encode(digest)}\n}}\n'.encode())
    return digest


_ITEM_BREAK = ",\n    "  # between two items of a list in plan.json
_BATCH = 2048  # items rendered, hashed and written at a time


def _stream_list(hasher: Any, out: IO[bytes] | None, name: str, texts: Iterator[str]) -> None:
    """Hash (and write) the items of one list, a batch at a time.

    In the file items are parted by a comma, a line break and an indent, in the hash by a
    comma alone: JSON text never holds a raw line break, so a replace turns one into the other.
    """
    first = True
    while batch := list(islice(texts, _BATCH)):
        if out is None:
            hasher.update(("," if not first else "").encode() + ",".join(batch).encode())
        else:
            data = (("" if first else _ITEM_BREAK) + _ITEM_BREAK.join(batch)).encode()
            hasher.update(data.replace(_ITEM_BREAK.encode(), b","))
            out.write(f'  "{name}": [\n    '.encode() + data if first else data)
        first = False
    if out is not None:
        out.write((f'  "{name}": [],\n' if first else "\n  ],\n").encode())


# ---------------------------------------------------------------------------------------------
# Load


def load_plan(path: str | Path) -> Plan:
    """Read and validate ``plan.json``; raise ``PlanError`` naming what is wrong."""
    path = Path(path)
    source = str(path)
    try:
        with path.open(encoding="utf-8") as handle, gc_paused():
            reader = _StreamReader(source)
            if reader.read(handle):
                return reader.plan()
        text = path.read_text(encoding="utf-8")  # another layout: read the document whole
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"Cannot read the plan {path}: {exc}.") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(
            f"{path} is not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "it is not a plan written by connref-cleanup."
        ) from None
    return plan_from_document(document, source=source)


def plan_from_document(document: Any, *, source: str = "the plan") -> Plan:
    """Validate a parsed plan document and return the ``Plan`` it holds."""
    if not isinstance(document, dict):
        document = None
    _check_head(document, document or (), source)
    assert document is not None
    if document["content_hash"] != compute_content_hash(document):
        raise PlanError(f"{source}: {ALTERED}.")
    try:
        with gc_paused():
            return _plan_from_checked(document)
    except (TypeError, ValueError) as exc:
        raise PlanError(f"{source}: {exc}.") from None


def _check_head(head: Mapping[str, Any] | None, present: Iterable[str], source: str) -> None:
    """Refuse a document that is not a plan, has another version or misses a field."""
    if head is None or head.get("format") != PLAN_FORMAT:
        raise PlanError(f'{source} is not a connref-cleanup plan (no "format": "{PLAN_FORMAT}").')
    version = head.get("format_version")
    if version != PLAN_FORMAT_VERSION:
        raise PlanError(
            f"{source} has plan format version {version!r}; this connref-cleanup "
            f"({__version__}) reads version {PLAN_FORMAT_VERSION}. "
            "Re-run the job to get a new plan."
        )
    present = set(present)
    required = [f.name for f in dataclasses.fields(Plan)] + ["content_hash"]
    for name in required:
        if name not in present:
            raise PlanError(f"{source} is missing the field '{name}'; {ALTERED}.")


def _plan_from_checked(document: dict[str, Any]) -> Plan:
    actions = tuple(_action_from_dict(item, i) for i, item in enumerate(document["actions"], 1))
    skipped = tuple(
        _skipped_from_dict(item, i)
        for i, item in enumerate(_list(document["skipped"], "skipped"), 1)
    )
    return _plan_from_parts(document, actions, skipped)


def _plan_from_parts(
    head: Mapping[str, Any], actions: tuple[Action, ...], skipped: tuple[Skipped, ...]
) -> Plan:
    return Plan(
        run_id=_typed(head["run_id"], str, "run_id"),
        created_at=datetime.fromisoformat(_typed(head["created_at"], str, "created_at")),
        tool_version=_typed(head["tool_version"], str, "tool_version"),
        config_fingerprint=_typed(head["config_fingerprint"], str, "config_fingerprint"),
        environment_ids=tuple(
            _typed(e, str, "environment_ids")
            for e in _list(head["environment_ids"], "environment_ids")
        ),
        actions=actions,
        skipped=skipped,
        format_version=head["format_version"],
    )


def _action_from_dict(item: Any, index: int) -> Action:
    return _read_action(item, index)[0]


def _read_action(item: Any, index: int) -> tuple[Action, str]:
    """Build one action of a document and check its id; return it with its canonical text.

    The text is what ``_canonical(item)`` gives: the action holds exactly the item's values
    (their types are checked), and its id is the item's.
    """
    if not isinstance(item, dict):
        raise PlanError(f"action #{index} is not an object")
    kind = item.get("type")
    cls = ACTION_TYPES.get(kind)  # type: ignore[arg-type]
    if cls is None:
        known = ", ".join(sorted(ACTION_TYPES))
        raise PlanError(
            f"action #{index} has the unknown action type {kind!r} (known: {known}); "
            "this plan was written by another version, or altered. Re-run the job."
        )
    action = _fast_from_dict(cls, item, ("type", "action_id"))
    if action is None:  # something is off: the careful path names it
        body = {k: v for k, v in item.items() if k not in ("type", "action_id")}
        action = _from_dict(cls, body, f"action #{index} ({kind})")
    text = action.canonical_body()
    action_id = _keep_id(action, text)
    if item.get("action_id") != action_id:
        raise PlanError(f"action #{index} ({kind}) has an id that does not match it; {ALTERED}")
    return action, f'{{"action_id":{encode_basestring(action_id)},{text[1:]}'


def _skipped_from_dict(item: Any, index: int) -> Skipped:
    fast = _fast_from_dict(Skipped, item, ())
    return fast if fast is not None else _from_dict(Skipped, item, f"skipped item #{index}")


_OPTIONAL_STR = "str | None"
_STR_TUPLE = "tuple[str, ...]"
_SPECS: dict[tuple[type, tuple[str, ...]], Any] = {}


def _spec(cls: type, meta: tuple[str, ...]) -> tuple[frozenset[str], list[tuple[str, Any]]] | None:
    """What ``_fast_from_dict`` checks for a class: its keys and each field's kind."""
    key = (cls, meta)
    if key not in _SPECS:
        fields: list[tuple[str, Any]] | None = []
        for name, hint in _hints(cls).items():
            if hint is str:
                kind: Any = str
            elif hint == (str | None):
                kind = _OPTIONAL_STR
            elif hint == tuple[str, ...]:
                kind = _STR_TUPLE
            elif dataclasses.is_dataclass(hint):
                kind = hint
            else:
                fields = None
                break
            fields.append((name, kind))  # type: ignore[union-attr]
        _SPECS[key] = None if fields is None else (frozenset(_hints(cls)) | set(meta), fields)
    return _SPECS[key]  # type: ignore[no-any-return]


def _fast_from_dict(cls: type[Any], data: Any, meta: tuple[str, ...]) -> Any:
    """Build a dataclass from a JSON object whose keys and types are exactly right, else None.

    ``meta`` are keys the object holds besides the fields (an action's type and id).
    """
    spec = _spec(cls, meta)
    if spec is None or type(data) is not dict or data.keys() != spec[0]:
        return None
    values = []
    for name, kind in spec[1]:
        value = data[name]
        if kind is str:
            if type(value) is not str:
                return None
        elif kind is _OPTIONAL_STR:
            if value is not None and type(value) is not str:
                return None
        elif kind is _STR_TUPLE:
            if type(value) is not list or not all(type(v) is str for v in value):
                return None
            value = tuple(value)
        else:
            value = _fast_from_dict(kind, value, ())
            if value is None:
                return None
        values.append(value)
    return cls(*values)


def _from_dict(cls: type[Any], data: Any, where: str) -> Any:
    """Build a dataclass from a JSON object, checking every field is present and typed."""
    if not isinstance(data, dict):
        raise PlanError(f"{where} is not an object")
    hints = _hints(cls)
    names = list(hints)
    missing = [n for n in names if n not in data]
    if missing:
        raise PlanError(f"{where} is missing the field '{missing[0]}'")
    extra = sorted(set(data) - set(names))
    if extra:
        raise PlanError(f"{where} has the unexpected field '{extra[0]}'")
    return cls(**{n: _field_value(hints[n], data[n], f"{where}, field '{n}'") for n in names})


def _field_value(hint: Any, value: Any, where: str) -> Any:
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _from_dict(hint, value, where)
    options = typing.get_args(hint)
    if typing.get_origin(hint) is tuple:
        return tuple(_field_value(options[0], v, where) for v in _list(value, where))
    if type(None) in options:
        return None if value is None else _field_value(options[0], value, where)
    return _typed(value, hint, where)


def _typed(value: Any, kind: type, where: str) -> Any:
    if type(value) is not kind:
        raise PlanError(f"{where} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise PlanError(f"{where} must be a list, got {type(value).__name__}")
    return value


class _StreamReader:
    """Read plan.json as ``save_plan`` lays it out, one line at a time, hashing as it goes.

    ``read`` returns False as soon as the text is laid out otherwise (hand-edited, re-indented,
    not JSON, ...): the caller then parses the whole document, which also words JSON errors.
    Problems with the plan itself are kept, and ``plan`` raises them in the order
    ``plan_from_document`` would.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.head: dict[str, Any] = {}  # the members other than the two lists
        self.opened: list[str] = []  # the lists met, in order
        self.items: dict[str, list[Any]] = {name: [] for name in _LISTS}
        self.problems: dict[str, Exception] = {}
        self.hasher: Any = None
        self.frame = ("", "", "")

    def read(self, handle: IO[str]) -> bool:
        """Consume the file; True if it had the expected layout (and so was read whole)."""
        if handle.readline() != "{\n":
            return False
        in_list: str | None = None
        more = True  # the member or item before ended with a comma
        for raw in handle:
            line = raw.rstrip("\n")
            if in_list is not None:
                if line.startswith("    ") and more:
                    text = line[4:]
                    more = text.endswith(",")
                    if not self._item(in_list, text[:-1] if more else text):
                        return False
                elif line in ("  ]", "  ],") and not more:
                    in_list, more = None, line.endswith(",")
                else:
                    return False
            elif line == "}":
                return not more and not handle.read().strip()
            elif line.startswith('  "') and more:
                text = line[2:]
                if text.endswith(": ["):
                    in_list = self._open(text[:-3])
                    if in_list is None:
                        return False
                else:
                    more = text.endswith(",")
                    if not self._member(text[:-1] if more else text):
                        return False
            else:
                return False
        return False  # no closing brace

    def _member(self, text: str) -> bool:
        try:
            member = json.loads("{" + text + "}")
        except json.JSONDecodeError:
            return False
        if len(member) != 1:
            return False
        ((key, value),) = member.items()
        if key in self.head or key in self.opened:
            return False  # json keeps the last of repeated keys: leave that to it
        if key in _LISTS:  # an inline list, as "actions": []
            if not isinstance(value, list) or self._open(_READABLE.encode(key)) is None:
                return False
            return all(self._take(key, item) for item in value)
        if self.opened and key != "content_hash":
            return False  # a member after the lists: the hash is not streamed that way
        self.head[key] = value
        return True

    def _open(self, quoted: str) -> str | None:
        try:
            key = json.loads(quoted)
        except json.JSONDecodeError:
            return None
        if key not in _LISTS or self.opened != list(_LISTS[: _LISTS.index(key)]):
            return None  # unknown, repeated, or skipped before actions
        if key == "actions":
            self.frame = _canonical_frame(
                {k: v for k, v in self.head.items() if k != "content_hash"}
            )
            self.hasher = hashlib.sha256(self.frame[0].encode())
        else:
            self.hasher.update(self.frame[1].encode())
        self.opened.append(key)
        return key  # type: ignore[no-any-return]

    def _item(self, name: str, text: str) -> bool:
        try:
            item = json.loads(text)
        except json.JSONDecodeError:
            return False
        return self._take(name, item)

    def _take(self, name: str, item: Any) -> bool:
        items = self.items[name]
        index = len(items) + 1
        canonical = None
        if name not in self.problems:
            try:
                if name == "actions":
                    action, canonical = _read_action(item, index)
                    items.append(action)
                else:
                    skip = _skipped_from_dict(item, index)
                    items.append(skip)
                    canonical = _skipped_text(skip)
            except (PlanError, TypeError, ValueError) as exc:
                self.problems[name] = exc
        if canonical is None:
            items.append(None)  # keeps the count; the plan is refused anyway
            canonical = _canonical(item)
        self.hasher.update((canonical if index == 1 else "," + canonical).encode())
        return True

    def plan(self) -> Plan:
        """Return the plan read, or raise what ``plan_from_document`` would raise."""
        _check_head(self.head, {*self.head, *self.opened}, self.source)
        self.hasher.update(self.frame[2].encode())
        if self.head["content_hash"] != "sha256:" + self.hasher.hexdigest():
            raise PlanError(f"{self.source}: {ALTERED}.")
        try:
            for name in _LISTS:
                if name in self.problems:
                    raise self.problems[name]
            actions, skipped = (tuple(self.items[name]) for name in _LISTS)
            return _plan_from_parts(self.head, actions, skipped)
        except (TypeError, ValueError) as exc:
            raise PlanError(f"{self.source}: {exc}.") from None


# ---------------------------------------------------------------------------------------------
# Building


@dataclass
class _Unit:
    """Actions that are planned or dropped together (a whole duplicate group, or one action).

    ``names`` runs alongside ``actions``: what a skipped action is reported as (kind, object id,
    name), or None for a rewire, whose skipped item follows from the action itself.
    """

    environment_id: str
    order: tuple[int, str]
    actions: list[Action] = field(default_factory=list)
    names: list[tuple[str, str, str] | None] = field(default_factory=list)

    def add(self, action: Action, name: tuple[str, str, str] | None) -> None:
        self.actions.append(action)
        self.names.append(name)


_REFERENCE_COLUMNS = (
    "environment_id",
    "reference_id",
    "logical_name",
    "display_name",
    "connector",
    "connector_id",
    "connection_id",
    "custom_connector_id",
    "description",
    "is_managed",
    "owner_id",
    "modified_on",
    "etag",
)
_FLOW_COLUMNS = (
    "environment_id",
    "flow_id",
    "name",
    "state",
    "etag",
    "modified_on",
    "clientdata_sha256",
    "is_managed",
)


_FEW = 2000  # below this many keys, lookups go one by one


class _LazyColumns(dict):  # type: ignore[type-arg]
    """A frame's columns as lists of JSON-ready values, converted when first read."""

    def __init__(self, frame: pd.DataFrame, names: Sequence[str]) -> None:
        super().__init__()
        self.frame = frame
        self.names = names

    def __missing__(self, name: str) -> list[Any]:
        if name not in self.names:
            raise KeyError(name)
        (values,) = _columns(self.frame, (name,), shared=True)
        self[name] = values
        return values


class _Rows:
    """A snapshot table by (environment, id), for single lookups and for whole columns of keys.

    Rows missing either key are left out, and the first of repeated keys wins (as ``_index``).
    Values are JSON-ready (``_plain``); whole columns are only converted when asked for.
    """

    def __init__(self, frame: pd.DataFrame, id_column: str, columns: Sequence[str]) -> None:
        keep = (frame["environment_id"].notna() & frame[id_column].notna()).to_numpy(dtype=bool)
        self.frame = _rows_where(frame, columns, None if keep.all() else keep)
        self.names = tuple(columns)
        self.id_column = id_column

    def __len__(self) -> int:
        return len(self.frame)

    @cached_property
    def values(self) -> _LazyColumns:
        """Every column as a list, by position (each converted when first asked for)."""
        return _LazyColumns(self.frame, self.names)

    @cached_property
    def envs(self) -> list[Any]:
        return self.values["environment_id"]

    @cached_property
    def _by_key(self) -> tuple[dict[Any, int], bool]:
        """Position by id, or by (environment, id) if an id is in several environments (True)."""
        ids = self.values[self.id_column]
        last = len(ids) - 1
        # Reversed, so that the first of repeated keys is the one kept.
        by_id = dict(zip(reversed(ids), range(last, -1, -1), strict=True))
        if len(by_id) == len(ids):
            return by_id, False
        keys = list(zip(self.envs, ids, strict=True))
        return dict(zip(reversed(keys), range(last, -1, -1), strict=True)), True

    def find(self, env: Any, object_id: Any) -> int | None:
        """Return the position of a row, or None."""
        by_key, pairs = self._by_key
        if pairs:
            return by_key.get((env, object_id))
        pos = by_key.get(object_id)
        return pos if pos is not None and self.envs[pos] == env else None

    def row(self, pos: int) -> dict[str, Any]:
        """Return a row as a dict of JSON-ready values."""
        return {name: self.values[name][pos] for name in self.names}

    def get(self, env: Any, object_id: Any) -> dict[str, Any] | None:
        """Return a row as a dict, or None if absent."""
        pos = self.find(env, object_id)
        return None if pos is None else self.row(pos)

    @cached_property
    def _index(self) -> tuple[pd.MultiIndex, np.ndarray | None]:
        """The (environment, id) keys, the first of repeated ones kept, and their positions."""
        keys = pd.MultiIndex.from_arrays([self.frame["environment_id"], self.frame[self.id_column]])
        first = ~keys.duplicated(keep="first")
        if first.all():
            return keys, None
        return keys[first], np.flatnonzero(first)

    def positions(self, envs: Sequence[Any], ids: Sequence[Any]) -> np.ndarray:
        """The position of each (environment, id), -1 where there is no such row."""
        if not len(ids) or not len(self.frame):
            return np.full(len(ids), -1, dtype=np.intp)
        if len(ids) < _FEW:  # not worth the index
            found = map(self.find, envs, ids)
            return np.fromiter((-1 if p is None else p for p in found), np.intp, len(ids))
        fast = self._arrow_positions(envs, ids)
        if fast is None:
            return self._indexed_positions(envs, ids)
        pos, unsure = fast
        if len(unsure):  # ids also in another environment: those by both keys
            pos[unsure] = self._indexed_positions(_at(envs, unsure), _at(ids, unsure))
        return pos

    def _indexed_positions(self, envs: Sequence[Any], ids: Sequence[Any]) -> np.ndarray:
        """``positions`` by a lookup of both keys in a (slower) two-level index."""
        if not len(ids):
            return np.full(0, -1, dtype=np.intp)
        index, first = self._index
        keys = [v if isinstance(v, pd.Series) else _string_array(list(v)) for v in (envs, ids)]
        pos = index.get_indexer(pd.MultiIndex.from_arrays(keys))
        return pos if first is None else np.where(pos >= 0, first[pos], -1)

    @cached_property
    def _arrow_keys(self) -> tuple[pa.Array, pa.Array] | None:
        """The (environment, id) columns as arrow arrays if both hold strings, else None."""
        envs, ids = (_arrow_strings(self.frame[n]) for n in ("environment_id", self.id_column))
        return None if envs is None or ids is None else (envs, ids)

    def _arrow_positions(
        self, envs: Sequence[Any], ids: Sequence[Any]
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """``positions`` by an arrow hash lookup of the ids, and where that is unsure.

        A key is looked up by its id alone, which finds the first row with that id: the row
        wanted if its environment matches. If not, the id may be in several environments, so
        the lookup is unsure there. None if the keys are not strings.
        """
        keys = self._arrow_keys
        if keys is None:
            return None
        wanted_envs, wanted_ids = _arrow_strings(envs), _arrow_strings(ids)
        if wanted_envs is None or wanted_ids is None:
            return None
        found = pc.index_in(wanted_ids.cast(keys[1].type), value_set=keys[1])
        same_env = pc.fill_null(
            pc.equal(keys[0].take(found), wanted_envs.cast(keys[0].type)), False
        )
        pos = pc.if_else(same_env, found, -1).to_numpy(zero_copy_only=False)
        unsure = pc.and_(pc.is_valid(found), pc.invert(same_env)).to_numpy(zero_copy_only=False)
        return np.array(pos, dtype=np.intp), np.flatnonzero(unsure)  # a copy: callers write

    def gather(self, positions: np.ndarray, names: Sequence[str]) -> dict[str, list[Any]]:
        """Columns of the rows at ``positions`` (as lists, None where a position is -1)."""
        missing = positions < 0
        if not len(self.frame):
            return {name: [None] * len(positions) for name in names}
        at = np.where(missing, 0, positions)
        # Columns converted already are taken from their lists; the others by arrow.
        fresh = [name for name in names if name not in self.values]
        taken = dict(zip(fresh, _columns(_rows_where(self.frame, fresh, at), fresh), strict=True))
        out = {n: taken[n] if n in taken else _objects(self.values[n])[at].tolist() for n in names}
        if missing.any():
            for values in out.values():
                for i in np.flatnonzero(missing).tolist():
                    values[i] = None
        return out


class _Context:
    """Lookups over the snapshot that every planning step needs."""

    def __init__(self, snapshot: Snapshot, settings: PlanSettings) -> None:
        self.snapshot = snapshot
        self.settings = settings
        self.references = _Rows(snapshot.references, "reference_id", _REFERENCE_COLUMNS)
        self.flows = _Rows(snapshot.flows, "flow_id", _FLOW_COLUMNS)
        self.dependents = other_dependents(snapshot)
        self.delete_blockers = _environment_blockers(snapshot)
        self._protected: dict[Any, bool] = {}
        self._reference_preconditions: dict[int, ReferencePreconditions] = {}

    @cached_property
    def usages(self) -> pd.DataFrame:
        """Usages with every key present, and their logical names in lower case."""
        keys = ["environment_id", "flow_id", "key", "logical_name"]
        usages = self.snapshot.usages
        known = usages[keys].notna().all(axis=1).to_numpy(dtype=bool)
        uses = _rows_where(usages, keys, None if known.all() else known)
        return uses.assign(_ln=uses["logical_name"].str.lower())

    @cached_property
    def usage_keys(self) -> _UsageKeys:
        """The usages as integer codes, for matching them with rewires."""
        return _UsageKeys(self.usages)

    def reference(self, env: str, ref_id: str) -> dict[str, Any] | None:
        """Return a ``references`` row (None for missing values), or None if absent."""
        return self.references.get(env, ref_id)

    def flow(self, env: str, flow_id: str) -> dict[str, Any] | None:
        """Return a ``flows`` row (None for missing values), or None if absent."""
        return self.flows.get(env, flow_id)

    def is_protected(self, logical_name: Any) -> bool:
        """``PlanSettings.is_protected``, remembered per name."""
        if not self.settings.protected_patterns:
            return False
        if logical_name not in self._protected:
            self._protected[logical_name] = self.settings.is_protected(logical_name)
        return self._protected[logical_name]

    def flows_using(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """How many flows use each (environment, lower-case logical name) asked about."""
        keys = set(keys)
        if not keys:
            return {}
        uses = self.usages
        uses = _rows_where(uses, uses.columns, isin(uses["_ln"], {name for _, name in keys}))
        users = uses.groupby(["environment_id", "_ln"])["flow_id"].nunique()
        return {k: int(v) for k, v in users.items() if k in keys}

    def reference_preconditions(self, pos: int) -> ReferencePreconditions:
        """The preconditions of the reference at a position (one value per reference)."""
        pre = self._reference_preconditions.get(pos)
        if pre is None:
            values = self.references.values
            try:
                text = _reference_hash_text(*(values[n][pos] for n in _REFERENCE_HASH_ORDER))
                content = hashlib.sha256(text.encode()).hexdigest()
            except TypeError:  # a value the template does not know: the general way
                content = reference_content_sha256(self.references.row(pos))
            pre = ReferencePreconditions(values["etag"][pos], values["modified_on"][pos], content)
            self._reference_preconditions[pos] = pre
        return pre


@gc_paused()
def build_plan(
    snapshot: Snapshot,
    proposals: Proposals,
    findings: pd.DataFrame | None,
    settings: PlanSettings,
    *,
    run_id: str,
    config_fingerprint: str,
    now: datetime,
) -> Plan:
    """Turn proposals and findings into a safe, ordered plan (pure: nothing is read or written)."""
    ctx = _Context(snapshot, settings)
    skipped: list[Skipped] = []
    units = _group_units(ctx, proposals, findings, skipped)
    deleted = {
        (a.environment_id, a.reference_id)
        for u in units
        for a in u.actions
        if type(a) is DeleteReference
    }
    units += _unused_units(ctx, findings, deleted, skipped)  # adds what it deletes to `deleted`
    if settings.propose_renames:
        units += _rename_units(ctx, findings, deleted, skipped)
    actions = _within_limits(units, settings.max_actions_per_environment, skipped)
    # Dropping deletes leaves the rewires as they are, so one count serves the drop and the guard.
    still_used = _used_after(ctx, actions)
    actions = _drop_still_used_deletes(actions, still_used, skipped)
    created = now if now.tzinfo else now.replace(tzinfo=UTC)
    plan = Plan(
        run_id=run_id,
        created_at=created.astimezone(UTC),
        tool_version=__version__,
        config_fingerprint=config_fingerprint,
        environment_ids=tuple(sorted(snapshot.environments["environment_id"].dropna().unique())),
        actions=_ordered(actions),
        skipped=_unique_skips(skipped),
    )
    _ensure_safe(plan, ctx, still_used)
    return plan


def describe(plan: Plan) -> list[str]:
    """Explain a plan in plain words, one line per action, skipped item and summary count."""
    from cleanup.plan_explain import describe as _describe

    return _describe(plan)


def _index(frame: pd.DataFrame, id_column: str) -> dict[tuple[str, str], dict[str, Any]]:
    rows = frame.dropna(subset=["environment_id", id_column])
    rows = rows.drop_duplicates(["environment_id", id_column]).astype(object)
    rows = rows.where(rows.notna(), None)
    return {(r["environment_id"], r[id_column]): r for r in _records(rows)}


def _environment_blockers(snapshot: Snapshot) -> dict[str, str]:
    """Why deletes are off in an environment: incomplete snapshot or unreadable flows."""
    out: dict[str, str] = {}
    envs = snapshot.environments
    for env, status, why in zip(
        envs["environment_id"], envs["status"], envs["status_reason"], strict=True
    ):
        if not (isinstance(status, str) and status == "complete"):
            detail = f" ({why})" if isinstance(why, str) and why else ""
            out[env] = f"the environment's snapshot is not complete{detail}: usage is unknown"
    flows = snapshot.flows
    unreadable = flows[~flows["parse_status"].isin(USAGE_KNOWN_PARSE_STATUSES).fillna(False)]
    for env, count in unreadable.groupby("environment_id").size().items():
        out.setdefault(
            str(env), f"{count} flow(s) in the environment could not be read: usage is unknown"
        )
    known = set(envs["environment_id"].dropna())
    for env in set(snapshot.references["environment_id"].dropna()) - known:
        out[env] = "the environment is not in the snapshot's environment list: usage is unknown"
    return out


def _rows_where(frame: pd.DataFrame, names: Iterable[str], rows: np.ndarray | None) -> pd.DataFrame:
    """Some columns of a frame, at some rows (a boolean mask or positions; None: all rows).

    Done column by column: arrow filters and takes a column fast, where a frame's own
    indexing of arrow-backed columns was ten times slower.
    """
    columns = {}
    for name in names:
        if name in frame.columns:
            values = frame[name].array
            columns[name] = values if rows is None else values[rows]
    return pd.DataFrame(columns)


def _at(values: Sequence[Any], rows: np.ndarray) -> Sequence[Any]:
    """Some of a column's values (a Series or a list), by position."""
    if isinstance(values, pd.Series):
        return values.iloc[rows]
    return [values[i] for i in rows.tolist()]


def _arrow_strings(values: Any) -> pa.Array | None:
    """Values as one arrow string array (a Series of arrow strings, or a list of str/None).

    None if they are anything else: callers then take the pandas way.
    """
    if isinstance(values, pd.Series):
        dtype = values.dtype
        if not (isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"):
            return None
        array = pa.array(values)
    else:
        try:
            array = pa.array(values, type=pa.large_string())
        except (pa.ArrowException, TypeError, ValueError):
            return None
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array if pa.types.is_string(array.type) or pa.types.is_large_string(array.type) else None


def _columns(frame: pd.DataFrame, names: Sequence[str], *, shared: bool = False) -> list[list[Any]]:
    """Columns of a frame as lists (None for missing values; absent columns are all None).

    ``shared``: equal strings become one object (for columns with many repeats).
    """
    return [
        _plain_values(frame[n], shared=shared) if n in frame.columns else [None] * len(frame)
        for n in names
    ]


def _positions(series: pd.Series) -> dict[Any, list[int]]:
    """The row positions of each value of a column, in row order (missing values: None)."""
    codes, uniques = pd.factorize(series, use_na_sentinel=False)
    keys = [None if pd.isna(u) else u for u in np.asarray(uniques, dtype=object).tolist()]
    if not keys:
        return {}
    order = np.argsort(codes, kind="stable").tolist()  # slices of one list: cheaper than arrays
    ends = np.cumsum(np.bincount(codes, minlength=len(keys))).tolist()
    return {key: order[a:z] for key, a, z in zip(keys, [0, *ends[:-1]], ends, strict=True)}


_FLOW_UNKNOWN = "the flow is not in the snapshot"
_FLOW_UNHASHED = "the flow's content hash is unknown, so apply could not detect a change"


_MOVE_COLUMNS = (
    "environment_id",
    "group_id",
    "flow_id",
    "key",
    "from_reference_id",
    "from_logical_name",
    "why_blocked",
)


class _Moves:
    """The proposed moves as columns, with what the snapshot says of each move's flow.

    A column is kept as codes into its distinct values (see ``_coded``). ``why`` is a move's own
    block, else its flow's problem (unknown, managed, no content hash); the survivor and
    protection are checked per group. ``flow`` maps a move to its flow in ``flows``.
    """

    def __init__(self, ctx: _Context, frame: pd.DataFrame) -> None:
        self.columns = {name: _coded(frame, name) for name in _MOVE_COLUMNS}
        self.of_group = _positions(pd.Series(self.values("group_id"), dtype=object))
        self.flow, positions = pd.factorize(
            ctx.flows.positions(frame["environment_id"], frame["flow_id"])
        )
        self.flows = _Flows(ctx, positions)
        names = self.flows.name[self.flow]
        self.name = np.where(_truthy(names), names, self.values("flow_id"))
        blocked = self.values("why_blocked")
        self.why = np.where(_truthy(blocked), blocked, self.flows.problem[self.flow])

    def values(self, name: str, rows: np.ndarray | None = None) -> np.ndarray:
        """A column's values (at some rows), as ``_columns`` gives them."""
        codes, values = self.columns[name]
        return values[codes if rows is None else codes[rows]]  # type: ignore[no-any-return]

    def json(self, name: str, rows: np.ndarray) -> list[str]:
        """A column's values at some rows as JSON (each distinct value encoded once)."""
        codes, values = self.columns[name]
        return _json_array(values)[codes[rows]].tolist()  # type: ignore[no-any-return]


class _Flows:
    """What the plan needs of some of the snapshot's flows, by position (-1: not in it)."""

    def __init__(self, ctx: _Context, positions: np.ndarray) -> None:
        names = ("name", "is_managed", "clientdata_sha256", "etag", "modified_on", "state")
        got = {k: _objects(v) for k, v in ctx.flows.gather(positions, names).items()}
        self.name = got["name"]
        self.etag, self.modified_on = got["etag"], got["modified_on"]
        self.clientdata_sha256 = got["clientdata_sha256"]
        self.state = _objects(
            [FLOW_STATES.get(s, "unknown") if s is not None else "unknown" for s in got["state"]]
        )
        unmanaged = np.fromiter((m is False for m in got["is_managed"]), bool, len(positions))
        # Filled from the least to the most telling: unknown, then managed, then unhashed.
        problem = np.full(len(positions), None, dtype=object)
        problem[~_truthy(self.clientdata_sha256)] = _FLOW_UNHASHED
        problem[~unmanaged] = BLOCK_MANAGED_FLOW
        problem[positions < 0] = _FLOW_UNKNOWN
        self.problem = problem

    def preconditions(self, flows: np.ndarray) -> list[FlowPreconditions]:
        """The preconditions of the given flows (one object per flow)."""
        of, distinct = pd.factorize(flows)
        fields = (self.etag, self.modified_on, self.clientdata_sha256, self.state)
        pres = list(map(FlowPreconditions, *(f[distinct] for f in fields)))
        return _objects(pres)[of].tolist()  # type: ignore[no-any-return]


def _objects(values: Sequence[Any]) -> np.ndarray:
    """Values as a numpy object array (one element per value, whatever the values are)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _truthy(values: np.ndarray) -> np.ndarray:
    """Whether each value is truthy."""
    return np.fromiter(map(bool, values.tolist()), bool, len(values))  # a list iterates faster


def _coded(frame: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A column as codes into its distinct values: ``values[codes]`` is what ``_columns`` gives.

    Strings are factorized (repeats share one object; code -1, missing, takes the None at the
    end); other columns keep a value per row. An absent column is all None.
    """
    if name not in frame.columns:
        return np.full(len(frame), -1, dtype=np.intp), _objects([None])
    series = frame[name]
    if isinstance(series.dtype, pd.StringDtype):
        codes, uniques = pd.factorize(series)
        return codes, np.append(uniques.to_numpy(dtype=object), None)
    return np.arange(len(series)), _objects([*_plain_values(series), None])


def _json_value(value: Any) -> str:
    """A value as canonical JSON (what ``_canonical`` gives it)."""
    return encode_basestring(value) if type(value) is str else _canonical(value)


def _json_list(values: np.ndarray) -> list[str]:
    """Each value as canonical JSON."""
    listed = values.tolist()  # a list iterates faster
    try:
        return list(map(encode_basestring, listed))
    except TypeError:  # not only strings
        return [encode_basestring(v) if type(v) is str else _canonical(v) for v in listed]


def _json_array(values: np.ndarray) -> np.ndarray:
    """Each value as canonical JSON, as an object array (to be indexed by codes)."""
    return _objects(_json_list(values))


@dataclass
class _Group:
    """A duplicate group in scope: its unit, survivor, leftovers and moves, and what it skips."""

    unit: _Unit
    survivor_id: str
    label: str  # the survivor, as delete reasons name it
    leftovers: list[tuple[Any, ...]]
    moves: list[int]
    skips: list[Skipped]

    @property
    def gid(self) -> str:
        """The group's id."""
        return self.unit.order[1]


def _group_units(
    ctx: _Context, proposals: Proposals, findings: pd.DataFrame | None, skipped: list[Skipped]
) -> list[_Unit]:
    """A unit per duplicate group in scope: its rewires, then the deletes they allow.

    What is skipped is said group by group, in the order of the survivors.
    """
    moves = _Moves(ctx, proposals.moves)
    slots = _groups(proposals, _duplicate_scope(findings), moves)
    groups = [slot for slot in slots if isinstance(slot, _Group)]
    rewired = _group_rewires(ctx, moves, groups)
    _group_deletes(ctx, groups, rewired)
    units = []
    for slot in slots:
        if isinstance(slot, Skipped):
            skipped.append(slot)
            continue
        skipped.extend(slot.skips)
        if slot.unit.actions:
            units.append(slot.unit)
    return units


def _groups(
    proposals: Proposals, scope: set[tuple[str, str]] | None, moves: _Moves
) -> list[_Group | Skipped]:
    """Each survivor's group with the leftovers and moves in scope, or why it is set aside."""
    columns = ("environment_id", "reference_id", "logical_name", "why_not")
    leftovers = list(zip(*_columns(proposals.leftovers, columns, shared=True), strict=True))
    (group_of_leftover,) = _columns(proposals.leftovers, ("group_id",), shared=True)
    leftovers_of = _positions(pd.Series(group_of_leftover, dtype=object))
    from_id = moves.values("from_reference_id").tolist()
    columns = (
        "group_id",
        "environment_id",
        "survivor_id",
        "survivor_logical_name",
        "survivor_display_name",
    )
    out: list[_Group | Skipped] = []
    for gid, env, survivor_id, survivor_ln, survivor_dn in zip(
        *_columns(proposals.survivors, columns, shared=True), strict=True
    ):
        if scope is not None and (env, survivor_id) not in scope:
            if scope:  # the rule ran, so this group was set aside on purpose: say so
                name = survivor_ln or survivor_id
                out.append(Skipped(env, "reference", survivor_id, name, SET_ASIDE))
            continue
        skips: list[Skipped] = []
        kept = _in_scope([leftovers[i] for i in leftovers_of.get(gid, ())], scope, skips)
        ids = {row[1] for row in kept}
        rows = [i for i in moves.of_group.get(gid, ()) if from_id[i] in ids]
        unit = _Unit(env, (0, gid))
        out.append(_Group(unit, survivor_id, survivor_dn or survivor_ln, kept, rows, skips))
    return out


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts with None for missing values (pandas' NA is not falsy-safe)."""
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return [{str(k): v for k, v in row.items()} for row in rows]


_FINDING_COLUMNS = ("environment_id", "object_id", "logical_name", "extra")


def _finding_rows(
    findings: pd.DataFrame | None, rule: str, columns: Sequence[str] = _FINDING_COLUMNS
) -> pd.DataFrame | None:
    """The findings of one rule about references (None if there are no findings)."""
    if findings is None or findings.empty:
        return None
    missing = {"rule", "environment_id", "object_type", "object_id"} - set(findings.columns)
    if missing:
        raise PlanError(f"The findings table lacks column(s) {', '.join(sorted(missing))}.")
    wanted = findings["rule"].eq(rule) & findings["object_type"].eq("reference")
    return _rows_where(findings, columns, wanted.fillna(False).astype(bool).to_numpy(dtype=bool))


def _duplicate_scope(findings: pd.DataFrame | None) -> set[tuple[str, str]] | None:
    """The references the findings still report as duplicates; None when no findings given.

    A member without an active ``duplicate`` finding was set aside by an exclusion (or the
    rule is off): the plan neither moves its flows nor deletes it.
    """
    if findings is None:
        return None
    rows = _finding_rows(findings, "duplicate", ("environment_id", "object_id"))
    if rows is None:
        return set()
    return set(zip(*_columns(rows, ("environment_id", "object_id")), strict=True))


def _in_scope(
    leftovers: list[tuple[Any, ...]], scope: set[tuple[str, str]] | None, skipped: list[Skipped]
) -> list[tuple[Any, ...]]:
    kept = []
    for row in leftovers:
        env, ref_id, logical_name = row[0], row[1], row[2]
        if scope is None or (env, ref_id) in scope:
            kept.append(row)
        else:
            skipped.append(Skipped(env, "reference", ref_id, logical_name or ref_id, SET_ASIDE))
    return kept


def _group_rewires(ctx: _Context, moves: _Moves, groups: list[_Group]) -> _Rewired:
    """Plan the groups' rewires into their units, and say in their skips which moves are not.

    Each move is re-checked against the snapshot, as proposals may be stale or hand-edited: the
    flow is known, unmanaged and hashed (see ``_Moves``), the survivor is known and bound, and
    the reference the key leaves is not protected. All groups' moves are planned at once.
    """
    rows = np.fromiter(chain.from_iterable(g.moves for g in groups), np.intp)
    group_of = np.repeat(np.arange(len(groups)), [len(g.moves) for g in groups])
    targets = [_rewire_target(ctx, g.unit.environment_id, g.survivor_id) for g in groups]
    why = moves.why[rows]
    why = np.where(_truthy(why), why, _objects([t.problem for t in targets])[group_of])
    if ctx.settings.protected_patterns:
        _block_protected(ctx, moves, rows, why)
    blocked = _truthy(why)
    _skip_moves(moves, groups, rows[blocked], group_of[blocked], why[blocked])
    planned = np.flatnonzero(~blocked)
    actions = _rewires(moves, rows[planned], group_of[planned], groups, targets)
    # Planned rows run group by group, so each group's rewires are a slice.
    ends = np.cumsum(np.bincount(group_of[planned], minlength=len(groups))).tolist()
    for group, start, end in zip(groups, [0, *ends][:-1], ends, strict=True):
        group.unit.actions.extend(actions[start:end])
        group.unit.names.extend([None] * (end - start))
    ids = [a.action_id for a in actions]
    return _Rewired(group_of, moves.values("from_reference_id", rows), blocked, ids)


class _Target(NamedTuple):
    """The survivor a group's rewires point at, and what keeps them from it (if anything)."""

    logical_name: Any
    reference_id: Any
    display_name: Any
    problem: str | None


def _rewire_target(ctx: _Context, env: str, survivor_id: str) -> _Target:
    """The survivor a group's rewires point at."""
    refs = ctx.references
    target = refs.find(env, survivor_id)
    if target is None:
        return _Target(None, None, None, "the survivor is not in the snapshot")
    t_ln = refs.values["logical_name"][target]
    t_dn = refs.values["display_name"][target] or t_ln
    problem = None
    if not t_ln:  # a flow key names its reference by logical name
        problem = "the survivor has no logical name for a flow to point at"
    elif not (refs.values["connection_id"][target] or "").strip():
        problem = f"the survivor '{t_ln}' is not bound to a connection"
    return _Target(t_ln, refs.values["reference_id"][target], t_dn, problem)


def _block_protected(ctx: _Context, moves: _Moves, rows: np.ndarray, why: np.ndarray) -> None:
    """Give, in ``why``, the moves not blocked yet that leave a protected reference a reason."""
    refs = ctx.references
    envs, from_ids = moves.values("environment_id", rows), moves.values("from_reference_id", rows)
    for i in np.flatnonzero(~_truthy(why)).tolist():
        source = refs.find(envs[i], from_ids[i])
        source_ln = None if source is None else refs.values["logical_name"][source]
        if source is not None and ctx.is_protected(source_ln):
            why[i] = f"'{source_ln}' is protected by plan.protected_patterns"


def _skip_moves(
    moves: _Moves, groups: list[_Group], rows: np.ndarray, group_of: np.ndarray, why: np.ndarray
) -> None:
    """Say, in each group's skips, which of its flow keys are not rewired and why."""
    flow_ids, keys = (moves.values(name, rows).tolist() for name in ("flow_id", "key"))
    for g, flow_id, key, name, reason in zip(
        group_of.tolist(), flow_ids, keys, moves.name[rows].tolist(), why.tolist(), strict=True
    ):
        group = groups[g]
        object_id, label = f"{flow_id}/{key}", f"flow '{name}' key {key}"
        group.skips.append(Skipped(group.unit.environment_id, "flow-key", object_id, label, reason))


def _rewires(
    moves: _Moves,
    rows: np.ndarray,
    group_of: np.ndarray,
    groups: list[_Group],
    targets: list[_Target],
) -> list[RewireFlowKey]:
    """The rewires of some moves, with their canonical bodies and ids computed column-wise."""
    t_ln, t_id, t_dn = (_objects([t[k] for t in targets])[group_of].tolist() for k in range(3))
    gids = _objects([g.gid for g in groups])
    pres = moves.flows.preconditions(moves.flow[rows])
    names = moves.name[rows]
    env, flow_id, key, from_id, from_ln = (
        moves.values(n, rows).tolist()
        for n in ("environment_id", "flow_id", "key", "from_reference_id", "from_logical_name")
    )
    actions = list(
        map(
            RewireFlowKey,
            env,
            flow_id,
            names.tolist(),
            key,
            from_id,
            from_ln,
            t_ln,
            t_id,
            t_dn,
            gids[group_of].tolist(),
            pres,
        )
    )
    ends = _objects([None if t.problem else _rewire_target_json(t) for t in targets])
    shared = (
        moves.json("environment_id", rows),
        moves.json("from_logical_name", rows),
        moves.json("from_reference_id", rows),
        _json_array(gids)[group_of].tolist(),
        moves.json("key", rows),
        ends[group_of].tolist(),
    )
    own = (flow_id, names.tolist(), *_attributes(pres, _PRECONDITION_KEYS))
    _keep_ids(actions, _rewire_bodies(shared, own))
    return actions


_PRECONDITION_KEYS = ("clientdata_sha256", "etag", "modified_on", "state")


def _rewire_bodies(shared: Sequence[list[str]], own: Sequence[list[Any]]) -> list[str]:
    """Rewires' canonical JSON (what ``_rewire_text`` gives), from columns of their fields.

    ``shared``: fields whose values repeat, already in JSON (environment, from logical name, from
    reference, group, key, target); ``own``: flow id, flow name and the preconditions' fields
    (clientdata hash, etag, modified on, state), each made JSON as its body is rendered, so that
    few of those strings live at once.
    """
    try:
        return _render_rewires(shared, own, encode_basestring)
    except TypeError:  # a value that is not a string: all in JSON first, the general way
        return _render_rewires(shared, [_json_list(_objects(c)) for c in own], str)


def _render_rewires(
    shared: Sequence[list[str]], own: Sequence[list[Any]], e: Callable[[Any], str]
) -> list[str]:
    """``_rewire_bodies``, with ``e`` making the ``own`` values JSON."""
    return [
        f'{{"environment_id":{env},"flow_id":{e(f)},"flow_name":{e(n)},"from_logical_name":{ln},'
        f'"from_reference_id":{r},"group_id":{g},"key":{k},"preconditions":{{'
        f'"clientdata_sha256":{e(sha)},"etag":{"null" if etag is None else e(etag)},'
        f'"modified_on":{"null" if mod is None else e(mod)},"state":{e(state)}}},{end}'
        for env, ln, r, g, k, end, f, n, sha, etag, mod, state in zip(*shared, *own, strict=True)
    ]


def _rewire_target_json(target: _Target) -> str:
    """``_rewire_target_text`` for a target whose values may be any JSON values."""
    return (
        f'"to_display_name":{_json_value(target.display_name)},'
        f'"to_logical_name":{_json_value(target.logical_name)},'
        f'"to_reference_id":{_json_value(target.reference_id)},"type":"rewire-flow-key"}}'
    )


def _keep_ids(actions: Sequence[_Action], bodies: list[str]) -> None:
    """``_keep_id`` for many actions of one type."""
    if not actions:
        return
    prefix, sha256, keep = actions[0].id_prefix + "-", hashlib.sha256, object.__setattr__
    for action, body in zip(actions, bodies, strict=True):
        keep(action, "_id", prefix + sha256(body.encode()).hexdigest()[:16])
        keep(action, "_body", body)


class _Rewired:
    """The rewires planned off each (group, reference left): their ids, or that one is blocked."""

    def __init__(
        self, group_of: np.ndarray, from_ids: np.ndarray, blocked: np.ndarray, ids: list[str]
    ) -> None:
        codes, refs = pd.factorize(from_ids, use_na_sentinel=False)
        self._refs = pd.Index(refs, dtype=object)
        self._width = max(len(refs), 1)
        keys = group_of.astype(np.int64) * self._width + codes
        self._blocked = keys[blocked]
        order = np.argsort(keys[~blocked], kind="stable")  # stable: ids stay in move order
        self._keys = keys[~blocked][order]
        self._ids = _objects(ids)[order].tolist()

    def ids(self, group_of: np.ndarray, ref_ids: np.ndarray) -> list[tuple[str, ...] | None]:
        """Per (group, reference): its rewires' ids in move order, or None if one is blocked."""
        codes = self._refs.get_indexer(ref_ids)
        keys = np.where(codes >= 0, group_of.astype(np.int64) * self._width + codes, -1)
        blocked = np.isin(keys, self._blocked) & (codes >= 0)
        first = np.searchsorted(self._keys, keys, side="left").tolist()
        last = np.searchsorted(self._keys, keys, side="right").tolist()
        return [
            None if no else tuple(self._ids[a:z])
            for no, a, z in zip(blocked.tolist(), first, last, strict=True)
        ]


def _rewire(move: Mapping[str, Any], flow: Mapping[str, Any], target: Mapping[str, Any]) -> Action:
    state = FLOW_STATES.get(flow["state"], "unknown") if flow["state"] is not None else "unknown"
    return RewireFlowKey(
        environment_id=move["environment_id"],
        flow_id=move["flow_id"],
        flow_name=flow["name"] or move["flow_id"],
        key=move["key"],
        from_reference_id=move["from_reference_id"],
        from_logical_name=move["from_logical_name"],
        to_logical_name=target["logical_name"],
        to_reference_id=target["reference_id"],
        to_display_name=target["display_name"] or target["logical_name"],
        group_id=move["group_id"],
        preconditions=FlowPreconditions(
            etag=flow["etag"],
            modified_on=_plain(flow["modified_on"]),
            clientdata_sha256=flow["clientdata_sha256"],
            state=state,
        ),
    )


def _group_deletes(ctx: _Context, groups: list[_Group], rewired: _Rewired) -> None:
    """Plan the deletes of the groups' leftovers into their units, or say why not."""
    group_of = np.repeat(np.arange(len(groups)), [len(g.leftovers) for g in groups])
    leftovers = list(chain.from_iterable(g.leftovers for g in groups))
    ids = rewired.ids(group_of, _objects([row[1] for row in leftovers]))
    planned: list[tuple[_Group, int, str, str, tuple[str, ...]]] = []
    for g, (env, ref_id, logical_name, why_not), depends_on in zip(
        group_of.tolist(), leftovers, ids, strict=True
    ):
        group = groups[g]
        pos = ctx.references.find(env, ref_id)
        name = logical_name or ref_id
        why = (
            _delete_problem(ctx, env, ref_id, pos)
            or why_not
            or (None if depends_on is not None else "a flow key that uses it could not be rewired")
        )
        if why:
            group.skips.append(Skipped(env, "reference", ref_id, name, why))
        else:
            planned.append((group, pos, ref_id, name, depends_on))  # type: ignore[arg-type]
    deletes = _deletes_at(
        ctx,
        [pos for _, pos, *_ in planned],
        [f"duplicate of '{g.label}' (group {g.gid})" for g, *_ in planned],
        [g.gid for g, *_ in planned],
        [None] * len(planned),
        [depends_on for *_, depends_on in planned],
    )
    for (group, _, ref_id, name, _), action in zip(planned, deletes, strict=True):
        group.unit.add(action, ("reference", ref_id, name))


def _delete_problem(ctx: _Context, env: str, ref_id: str, pos: int | None) -> str | None:
    if pos is None:
        return "the reference is not in the snapshot"
    values = ctx.references.values
    if values["is_managed"][pos] is not False:
        return "managed: fix it in the source environment"
    if ctx.is_protected(values["logical_name"][pos]):
        return "protected by plan.protected_patterns"
    if env in ctx.delete_blockers:
        return ctx.delete_blockers[env]
    return ctx.dependents.get((env, ref_id))


def _delete_at(
    ctx: _Context,
    pos: int,
    reason: str,
    group_id: str | None,
    unused_since: str | None,
    depends_on: tuple[str, ...],
) -> DeleteReference:
    """A delete of the reference at a position of the snapshot's references."""
    return _deletes_at(ctx, [pos], [reason], [group_id], [unused_since], [depends_on])[0]


def _deletes_at(
    ctx: _Context,
    positions: list[int],
    reasons: list[str],
    group_ids: list[str | None],
    unused_since: list[str | None],
    depends_on: list[tuple[str, ...]],
) -> list[DeleteReference]:
    """Deletes of the references at some positions of the snapshot's references."""
    values = ctx.references.values
    env, ref_id, logical_name, display_name, connector, connection_id = (
        [values[name][p] for p in positions]
        for name in (
            "environment_id",
            "reference_id",
            "logical_name",
            "display_name",
            "connector",
            "connection_id",
        )
    )
    return list(
        map(
            DeleteReference,
            env,
            ref_id,
            [name or rid for name, rid in zip(logical_name, ref_id, strict=True)],
            display_name,
            connector,
            connection_id,
            reasons,
            group_ids,
            unused_since,
            depends_on,
            [ctx.reference_preconditions(p) for p in positions],
        )
    )


def _delete(
    row: Mapping[str, Any],
    reason: str,
    group_id: str | None,
    unused_since: str | None,
    depends_on: tuple[str, ...],
) -> DeleteReference:
    return DeleteReference(
        environment_id=row["environment_id"],
        reference_id=row["reference_id"],
        logical_name=row["logical_name"] or row["reference_id"],
        display_name=row["display_name"],
        connector=row["connector"],
        connection_id=row["connection_id"],
        reason=reason,
        group_id=group_id,
        unused_since=unused_since,
        depends_on=depends_on,
        preconditions=_reference_preconditions(row),
    )


def _reference_preconditions(row: Mapping[str, Any]) -> ReferencePreconditions:
    return ReferencePreconditions(
        etag=row["etag"],
        modified_on=_plain(row["modified_on"]),
        content_sha256=reference_content_sha256(row),
    )


def _findings(findings: pd.DataFrame | None, rule: str) -> list[dict[str, Any]]:
    rows = _finding_rows(findings, rule)
    if rows is None:
        return []
    out = []
    for row in _records(rows):
        try:
            extra = json.loads(row.get("extra") or "{}")
        except json.JSONDecodeError:
            extra = {}
        out.append({**row, "extra": extra if isinstance(extra, dict) else {}})
    return out


def _unused_units(
    ctx: _Context,
    findings: pd.DataFrame | None,
    deleted: set[tuple[str, str]],
    skipped: list[Skipped],
) -> list[_Unit]:
    found = []
    for finding in _findings(findings, "unused"):
        env, ref_id = finding["environment_id"], finding["object_id"]
        if (env, ref_id) not in deleted:
            found.append((finding, env, ref_id, ctx.references.find(env, ref_id)))
    users = ctx.flows_using(
        (env, (ctx.references.values["logical_name"][pos] or "").lower())
        for finding, env, _, pos in found
        if pos is not None and finding["extra"].get("grace_passed") is True
    )
    units = []
    for finding, env, ref_id, pos in found:
        if (env, ref_id) in deleted:  # an earlier finding about the same reference
            continue
        row = None if pos is None else ctx.references.row(pos)
        name = (row or {}).get("logical_name") or finding.get("logical_name") or ref_id
        since, day = _since(finding["extra"].get("unused_since"))
        why = _unused_problem(ctx, env, ref_id, pos, finding["extra"], day, users)
        if why:
            skipped.append(Skipped(env, "reference", ref_id, name, why))
            continue
        assert pos is not None
        reason = f"unused since {day}" if day else "unused"
        action = _delete_at(ctx, pos, reason, None, since, ())
        units.append(_Unit(env, (1, name.lower()), [action], [("reference", ref_id, name)]))
        deleted.add((env, ref_id))
    return units


def _since(value: Any) -> tuple[str | None, str | None]:
    """Return the "unused since" time as ISO 8601 and as a day, or Nones if unreadable."""
    try:
        stamp = pd.Timestamp(value) if value else None
    except (TypeError, ValueError):
        return None, None
    if stamp is None or pd.isna(stamp):
        return None, None
    iso = _plain(stamp)
    return iso, iso[:10]


def _unused_problem(
    ctx: _Context,
    env: str,
    ref_id: str,
    pos: int | None,
    extra: Mapping[str, Any],
    since: str | None,
    users: Mapping[tuple[str, str], int],
) -> str | None:
    if extra.get("grace_passed") is not True:
        when = f" (unused since {since})" if since else ""
        return f"grace period not passed{when}"
    problem = _delete_problem(ctx, env, ref_id, pos)
    if problem or pos is None:
        return problem
    logical_name = ctx.references.values["logical_name"][pos]
    count = users.get((env, (logical_name or "").lower()), 0)
    return f"still used by {count} flow(s)" if count else None


def _rename_units(
    ctx: _Context,
    findings: pd.DataFrame | None,
    deleted: set[tuple[str, str]],
    skipped: list[Skipped],
) -> list[_Unit]:
    proposed = []
    for finding in _findings(findings, "bad-name"):
        env, ref_id = finding["environment_id"], finding["object_id"]
        extra = finding["extra"]
        name = extra.get("proposed_name") or extra.get("proposed")
        if (env, ref_id) not in deleted and isinstance(name, str) and name.strip():
            proposed.append((env, ref_id, name.strip()))
    taken = _display_names_by_environment(ctx, proposed)
    units = []
    for env, ref_id, new_name in sorted(set(proposed)):
        row = ctx.reference(env, ref_id)
        label = (row or {}).get("logical_name") or ref_id
        if row is not None and row["display_name"] == new_name:
            continue  # nothing to do
        why = _rename_problem(ctx, row, new_name, taken[(env, new_name.lower())])
        if why:
            skipped.append(Skipped(env, "reference", ref_id, label, f"rename: {why}"))
            continue
        action = RenameReference(
            environment_id=env,
            reference_id=ref_id,
            logical_name=label,
            from_display_name=row["display_name"],  # type: ignore[index]
            to_display_name=new_name,
            preconditions=_reference_preconditions(row),  # type: ignore[arg-type]
        )
        units.append(_Unit(env, (2, label.lower()), [action], [("reference", ref_id, label)]))
    return units


def _display_names_by_environment(
    ctx: _Context, proposed: list[tuple[str, str, str]]
) -> dict[tuple[str, str], set[str]]:
    """Which references hold, or are proposed to get, each display name (case-insensitive)."""
    taken: dict[tuple[str, str], set[str]] = defaultdict(set)
    refs = ctx.references
    for pos, (env, ref_id, display_name) in enumerate(
        zip(refs.envs, refs.values["reference_id"], refs.values["display_name"], strict=True)
    ):
        if display_name and refs.find(env, ref_id) == pos:
            taken[(env, display_name.lower())].add(ref_id)
    for env, ref_id, name in proposed:
        taken[(env, name.lower())].add(ref_id)
    return taken


def _rename_problem(
    ctx: _Context, row: Mapping[str, Any] | None, new_name: str, holders: set[str]
) -> str | None:
    if row is None:
        return "the reference is not in the snapshot"
    if row["is_managed"] is not False:
        return "managed: fix it in the source environment"
    if ctx.settings.is_protected(row["logical_name"]):
        return "protected by plan.protected_patterns"
    others = holders - {row["reference_id"]}
    if others:
        return f"the proposed name '{new_name}' is already used or proposed for another reference"
    return None


def _within_limits(units: list[_Unit], limit: int, skipped: list[Skipped]) -> list[Action]:
    """Keep whole units per environment, in order, until the next one would pass the limit."""
    actions: list[Action] = []
    by_env: dict[str, list[_Unit]] = defaultdict(list)
    for unit in units:
        by_env[unit.environment_id].append(unit)
    for env, env_units in by_env.items():
        count, full = 0, False
        for unit in sorted(env_units, key=lambda u: u.order):
            full = full or count + len(unit.actions) > limit
            if not full:
                actions.extend(unit.actions)
                count += len(unit.actions)
                continue
            reason = f"over the per-environment limit of {limit} actions"
            for action, names in zip(unit.actions, unit.names, strict=True):
                kind, object_id, name = names or _rewire_skip_names(action)  # type: ignore[arg-type]
                skipped.append(Skipped(env, kind, object_id, name, reason))
    return actions


def _rewire_skip_names(action: RewireFlowKey) -> tuple[str, str, str]:
    """How a rewire left out of the plan is reported (as ``_group_rewires`` names it)."""
    key = action.key
    return "flow-key", f"{action.flow_id}/{key}", f"flow '{action.flow_name}' key {key}"


def _drop_still_used_deletes(
    actions: list[Action], still_used: Mapping[tuple[str, str], int], skipped: list[Skipped]
) -> list[Action]:
    """Drop any delete whose logical name a flow would still use after the planned rewires.

    ``still_used`` is what ``_used_after`` counts for these actions.
    """
    deletes = _deletes(actions)
    if not deletes:
        return actions
    rewires = [a for a in actions if type(a) is RewireFlowKey]
    planned = set(map(attrgetter("action_id"), rewires))  # what deletes wait for
    dropped: set[int] = set()  # by identity: only the deletes are looked at
    for action in deletes:
        users = still_used.get((action.environment_id, action.logical_name.lower()))
        why = None
        if users:
            why = f"still used after the planned rewires by {users} flow(s)"
        elif not planned.issuperset(action.depends_on):
            why = "a rewire it depends on is not in the plan"
        if why:
            env, ref_id, name = action.environment_id, action.reference_id, action.logical_name
            skipped.append(Skipped(env, "reference", ref_id, name, why))
            dropped.add(id(action))
    return [a for a in actions if id(a) not in dropped] if dropped else actions


def _used_after(ctx: _Context, actions: Iterable[Action]) -> dict[Any, int]:
    """Count, per (environment, logical name) a delete names, the flows using it after rewires.

    A usage counts under the name its flow key has after the rewires (the target of each rewire
    of the key, or its own name if none moves it).
    """
    actions = actions if isinstance(actions, list | tuple) else list(actions)
    targets = {(a.environment_id, a.logical_name.lower()) for a in _deletes(actions)}
    if not targets:
        return {}
    rewires = [a for a in actions if type(a) is RewireFlowKey]
    return _count_used_after(ctx, rewires, targets)


def _count_used_after(
    ctx: _Context, rewires: list[RewireFlowKey], targets: set[tuple[str, str]]
) -> dict[Any, int]:
    """``_used_after`` for given rewires and (environment, lower-case name) targets.

    Worked on integer codes: each usage is matched to the rewires of its flow key, and each
    (usage or rewire, target) pair to the target it names; then distinct flows are counted.
    """
    uses = ctx.usage_keys
    envs, flows, keys, to_names = _attributes(
        rewires, ("environment_id", "flow_id", "key", "to_logical_name")
    )
    lower: dict[str, str] = {}  # a group's rewires share their target's name
    afters = [lower.get(name) or lower.setdefault(name, name.lower()) for name in to_names]
    listed = list(targets)
    target_of = {target: i for i, target in enumerate(listed)}
    moved_to = np.fromiter(
        (target_of.get(pair, -1) for pair in zip(envs, afters, strict=True)), np.intp, len(afters)
    )
    own = uses.targets(listed)
    rows, after = _names_after(uses.keys_of(envs, flows, keys), uses.key, own, moved_to)
    hit = after >= 0
    counts = _distinct_per_target(after[hit], uses.flow[rows[hit]], len(listed))
    return {listed[i]: int(counts[i]) for i in np.flatnonzero(counts).tolist()}


def _names_after(
    rewired: np.ndarray, used: np.ndarray, own: np.ndarray, moved_to: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The target each usage names after the rewires, as (usage row, target) pairs.

    ``rewired``/``used``: the flow key code of each rewire / usage (-1: a key no usage has);
    ``own``/``moved_to``: the target a usage names now / a rewire points at (-1: none). A usage
    keeps its own target unless a rewire moves its key; a key rewired more than once gets a pair
    per rewire (as a merge of usages with rewires would).
    """
    known = np.flatnonzero(rewired >= 0)
    order = known[np.argsort(rewired[known], kind="stable")]
    in_order = rewired[order]
    first = np.searchsorted(in_order, used, side="left")
    count = np.searchsorted(in_order, used, side="right") - first  # the key's rewires
    kept = np.flatnonzero(count == 0)
    moved = np.flatnonzero(count)
    repeats = count[moved]
    # The n-th pair of a moved usage takes the n-th of its key's rewires (in sorted order).
    step = np.arange(repeats.sum()) - np.repeat(np.cumsum(repeats) - repeats, repeats)
    which = order[np.repeat(first[moved], repeats) + step]
    rows = np.concatenate([kept, np.repeat(moved, repeats)])
    return rows, np.concatenate([own[kept], moved_to[which]])


def _distinct_per_target(targets: np.ndarray, flows: np.ndarray, size: int) -> np.ndarray:
    """How many distinct flows each target has, from (target, flow code) pairs."""
    if not len(targets):
        return np.zeros(size, dtype=np.int64)
    width = int(flows.max()) + 1
    pairs = pd.unique(targets.astype(np.int64) * width + flows)  # np.unique sorts: slower
    return np.bincount(pairs // width, minlength=size)


class _UsageKeys:
    """The usages with every key present, as integer codes (built once per context).

    ``flow``: a code per flow id; ``key``: a code per (environment, flow, connection key).
    """

    def __init__(self, usages: pd.DataFrame) -> None:
        env, self._envs = _codes(usages["environment_id"])
        self.flow, self._flows = _codes(usages["flow_id"])
        key, self._keys = _codes(usages["key"])
        name, self._names = _codes(usages["_ln"])
        self._env_flows = pd.Index(pd.unique(env.astype(np.int64) * len(self._flows) + self.flow))
        self.key = self._combine(env, self.flow, key)
        self._env, self._name = env, name

    def _combine(self, env: np.ndarray, flow: np.ndarray, key: np.ndarray) -> np.ndarray:
        """The (environment, flow, key) code of given part codes (-1 where a part is -1)."""
        pair = self._env_flows.get_indexer(env.astype(np.int64) * len(self._flows) + flow)
        known = (pair >= 0) & (key >= 0) & (env >= 0) & (flow >= 0)
        return np.where(known, pair.astype(np.int64) * len(self._keys) + key, -1)

    def keys_of(self, envs: list[Any], flows: list[Any], keys: list[Any]) -> np.ndarray:
        """The key code of each (environment, flow, connection key); -1 if no usage has it."""
        parts = (_lookup(c, v) for c, v in ((self._envs, envs), (self._flows, flows)))
        return self._combine(*parts, _lookup(self._keys, keys))

    def targets(self, targets: list[tuple[str, str]]) -> np.ndarray:
        """The index in ``targets`` of each usage's (environment, lower-case name), or -1."""
        envs = _lookup(self._envs, [env for env, _ in targets]).astype(np.int64)
        names = _lookup(self._names, [name for _, name in targets])
        known = np.flatnonzero((envs >= 0) & (names >= 0))  # the others no usage names
        width = len(self._names)
        found = pd.Index(envs[known] * width + names[known]).get_indexer(
            self._env.astype(np.int64) * width + self._name
        )
        return np.append(known, -1)[found]  # type: ignore[no-any-return]  # -1 takes the -1


def _codes(series: pd.Series) -> tuple[np.ndarray, dict[Any, int]]:
    """A column's values as dense integer codes, and the code of each value."""
    codes, uniques = pd.factorize(series)
    return codes, {value: i for i, value in enumerate(uniques.tolist())}


def _lookup(codes: dict[Any, int], values: list[Any]) -> np.ndarray:
    """The code of each value (-1 for a value without one)."""
    return np.fromiter(map(codes.get, values, repeat(-1, len(values))), np.int64, len(values))


def _attributes(objects: list[Any], names: Sequence[str]) -> list[list[Any]]:
    """Some attributes of each object, as one list per attribute."""
    return [[getattr(o, name) for o in objects] for name in names]


def _string_array(values: list[Any]) -> Any:
    """Values as an arrow-backed string array (fast to index), or as objects if not strings."""
    try:
        return pd.array(values, dtype="string[pyarrow]")
    except (TypeError, ValueError, pa.ArrowException):
        return pd.array(values, dtype=object)


def _ordered(actions: list[Action]) -> tuple[Action, ...]:
    """Per environment: rewires (by flow, key), then renames, then deletes (by logical name)."""

    def sort_key(action: Action) -> tuple[str, int, str, str]:
        if isinstance(action, RewireFlowKey):
            return (action.environment_id, 0, action.flow_id, action.key)
        rank = 1 if isinstance(action, RenameReference) else 2
        return (action.environment_id, rank, action.logical_name.lower(), action.reference_id)  # type: ignore[union-attr]

    return tuple(sorted(actions, key=sort_key))


def _unique_skips(skipped: list[Skipped]) -> tuple[Skipped, ...]:
    seen = dict.fromkeys(skipped)
    return tuple(
        sorted(seen, key=lambda s: (s.environment_id, s.object_type, s.object_id, s.reason))
    )


def _deletes(actions: Iterable[Action]) -> list[DeleteReference]:
    return [a for a in actions if type(a) is DeleteReference]


# ---------------------------------------------------------------------------------------------
# The last guard


def ensure_safe(plan: Plan, snapshot: Snapshot, settings: PlanSettings) -> None:
    """Raise ``PlanError`` if the plan breaks a safety rule (a bug: build_plan filters first)."""
    with gc_paused():
        _ensure_safe(plan, _Context(snapshot, settings))


def _ensure_safe(
    plan: Plan, ctx: _Context, still_used: Mapping[tuple[str, str], int] | None = None
) -> None:
    """``ensure_safe``; ``still_used``: what ``_used_after`` counts for the plan's rewires, if
    known already (as it is while building: the plan's rewires are those the count saw)."""
    problems: list[str] = []
    rewire_problems = _rewire_problems(ctx, plan.actions)
    refs = ctx.references
    for i, action in enumerate(plan.actions):
        if type(action) is RewireFlowKey:
            if i in rewire_problems:
                problems.extend(f"{action.action_id}: {p}" for p in rewire_problems[i])
            continue
        pos = refs.find(action.environment_id, action.reference_id)
        if pos is None or refs.values["is_managed"][pos] is not False:
            problems.append(f"{action.action_id}: changes a managed or unknown reference")
        elif ctx.is_protected(refs.values["logical_name"][pos]):
            problems.append(f"{action.action_id}: changes a protected reference")
        elif isinstance(action, DeleteReference) and action.environment_id in ctx.delete_blockers:
            problems.append(f"{action.action_id}: deletes where usage is unknown")
    if still_used is None:
        still_used = _used_after(ctx, plan.actions)
    for action in _deletes(plan.actions):
        if still_used.get((action.environment_id, action.logical_name.lower())):
            problems.append(f"{action.action_id}: deletes a reference still used after rewires")
    if problems:
        raise PlanError("Refusing to produce an unsafe plan: " + "; ".join(problems))


def _rewire_problems(ctx: _Context, actions: Sequence[Action]) -> dict[int, list[str]]:
    """What is wrong with each rewire, by its index in ``actions`` (looked up all at once)."""
    index = [i for i, a in enumerate(actions) if type(a) is RewireFlowKey]
    rewires = [actions[i] for i in index]
    envs, flow_ids, target_ids = _attributes(
        rewires, ("environment_id", "flow_id", "to_reference_id")
    )
    flows = ctx.flows.positions(envs, flow_ids)
    (managed,) = ctx.flows.gather(flows, ("is_managed",)).values()
    targets = ctx.references.positions(envs, target_ids)
    (bound,) = ctx.references.gather(targets, ("connection_id",)).values()
    out: dict[int, list[str]] = {}
    for i, is_managed, connection_id in zip(index, managed, bound, strict=True):
        if is_managed is not False or not (connection_id or "").strip():
            out[i] = []
            if is_managed is not False:  # also None: the flow is unknown
                out[i].append("rewires a managed or unknown flow")
            if not (connection_id or "").strip():
                out[i].append("rewires to an unbound or unknown reference")
    return out
