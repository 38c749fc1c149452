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
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import typing
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from cleanup import __version__
from cleanup.consolidate import BLOCK_MANAGED_FLOW, Proposals, other_dependents
from cleanup.errors import ConfigError, PlanError
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


@dataclass(frozen=True)
class FlowPreconditions:
    """The flow as it was planned against; apply refuses the action if any of it changed."""

    etag: str | None
    modified_on: str | None
    clientdata_sha256: str
    state: str  # on | off | suspended | unknown


@dataclass(frozen=True)
class ReferencePreconditions:
    """The connection reference as it was planned against; a change means drift."""

    etag: str | None
    modified_on: str | None
    content_sha256: str


class _Action:
    """Shared behaviour of the action dataclasses: a type tag and a content-derived id."""

    kind: ClassVar[str]
    id_prefix: ClassVar[str]

    @cached_property
    def action_id(self) -> str:
        """A stable id: a hash of the action's type and content."""
        body = _canonical({"type": self.kind, **_as_json(self)})
        return f"{self.id_prefix}-{hashlib.sha256(body.encode()).hexdigest()[:16]}"

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form of the action."""
        return {"type": self.kind, "action_id": self.action_id, **_as_json(self)}


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


Action = RewireFlowKey | DeleteReference | RenameReference
ACTION_TYPES: dict[str, type[Action]] = {
    cls.kind: cls for cls in (RewireFlowKey, DeleteReference, RenameReference)
}


@dataclass(frozen=True)
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
            "format": PLAN_FORMAT,
            "format_version": self.format_version,
            "run_id": self.run_id,
            "created_at": self.created_at.isoformat(),
            "tool_version": self.tool_version,
            "config_fingerprint": self.config_fingerprint,
            "environment_ids": list(self.environment_ids),
            "actions": [a.to_dict() for a in self.actions],
            "skipped": [_as_json(s) for s in self.skipped],
        }

    @property
    def content_hash(self) -> str:
        """Return the hash over the whole plan, as stored in ``plan.json``."""
        return compute_content_hash(self.to_dict())

    def actions_for(self, environment_id: str) -> tuple[Action, ...]:
        """Return the actions of one environment, in order."""
        return tuple(a for a in self.actions if a.environment_id == environment_id)


# ---------------------------------------------------------------------------------------------
# Hashes


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
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


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


# ---------------------------------------------------------------------------------------------
# Save and load


def save_plan(plan: Plan, path: str | Path) -> Path:
    """Write ``plan.json`` with its content hash; return the path written."""
    path = Path(path)
    document = plan.to_dict()
    document["content_hash"] = compute_content_hash(document)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(_readable_json(document), encoding="utf-8")
    tmp.replace(path)
    return path


def _readable_json(document: Mapping[str, Any]) -> str:
    """JSON with one action or skipped item per line: easy to review and to diff, fast to write."""
    lines = ["{"]
    items = list(document.items())
    for i, (key, value) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        name = json.dumps(key)
        if isinstance(value, list) and value and isinstance(value[0], dict):
            rows = ",\n".join("    " + json.dumps(v, ensure_ascii=False) for v in value)
            lines.append(f"  {name}: [\n{rows}\n  ]{comma}")
        else:
            lines.append(f"  {name}: {json.dumps(value, ensure_ascii=False)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def load_plan(path: str | Path) -> Plan:
    """Read and validate ``plan.json``; raise ``PlanError`` naming what is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"Cannot read the plan {path}: {exc}.") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(
            f"{path} is not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "it is not a plan written by connref-cleanup."
        ) from None
    return plan_from_document(document, source=str(path))


def plan_from_document(document: Any, *, source: str = "the plan") -> Plan:
    """Validate a parsed plan document and return the ``Plan`` it holds."""
    if not isinstance(document, dict) or document.get("format") != PLAN_FORMAT:
        raise PlanError(f'{source} is not a connref-cleanup plan (no "format": "{PLAN_FORMAT}").')
    version = document.get("format_version")
    if version != PLAN_FORMAT_VERSION:
        raise PlanError(
            f"{source} has plan format version {version!r}; this connref-cleanup "
            f"({__version__}) reads version {PLAN_FORMAT_VERSION}. "
            "Re-run the job to get a new plan."
        )
    required = [f.name for f in dataclasses.fields(Plan)] + ["content_hash"]
    for name in required:
        if name not in document:
            raise PlanError(f"{source} is missing the field '{name}'; {ALTERED}.")
    if document["content_hash"] != compute_content_hash(document):
        raise PlanError(f"{source}: {ALTERED}.")
    try:
        return _plan_from_checked(document)
    except (TypeError, ValueError) as exc:
        raise PlanError(f"{source}: {exc}.") from None


def _plan_from_checked(document: dict[str, Any]) -> Plan:
    actions = tuple(_action_from_dict(item, i) for i, item in enumerate(document["actions"], 1))
    skipped = tuple(
        _from_dict(Skipped, item, f"skipped item #{i}")
        for i, item in enumerate(_list(document["skipped"], "skipped"), 1)
    )
    plan = Plan(
        run_id=_typed(document["run_id"], str, "run_id"),
        created_at=datetime.fromisoformat(_typed(document["created_at"], str, "created_at")),
        tool_version=_typed(document["tool_version"], str, "tool_version"),
        config_fingerprint=_typed(document["config_fingerprint"], str, "config_fingerprint"),
        environment_ids=tuple(
            _typed(e, str, "environment_ids")
            for e in _list(document["environment_ids"], "environment_ids")
        ),
        actions=actions,
        skipped=skipped,
        format_version=document["format_version"],
    )
    return plan


def _action_from_dict(item: Any, index: int) -> Action:
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
    body = {k: v for k, v in item.items() if k not in ("type", "action_id")}
    action: Action = _from_dict(cls, body, f"action #{index} ({kind})")
    if item.get("action_id") != action.action_id:
        raise PlanError(f"action #{index} ({kind}) has an id that does not match it; {ALTERED}")
    return action


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


# ---------------------------------------------------------------------------------------------
# Building


@dataclass
class _Unit:
    """Actions that are planned or dropped together (a whole duplicate group, or one action)."""

    environment_id: str
    order: tuple[int, str]
    actions: list[Action] = field(default_factory=list)
    names: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # id -> skipped object


class _Context:
    """Lookups over the snapshot that every planning step needs."""

    def __init__(self, snapshot: Snapshot, settings: PlanSettings) -> None:
        self.snapshot = snapshot
        self.settings = settings
        self.references = _index(snapshot.references, "reference_id")
        self.flows = _index(snapshot.flows, "flow_id")
        self.dependents = other_dependents(snapshot)
        self.delete_blockers = _environment_blockers(snapshot)
        uses = snapshot.usages.dropna(subset=["environment_id", "flow_id", "key", "logical_name"])
        self.usages = uses.assign(_ln=uses["logical_name"].str.lower())
        users = self.usages.groupby(["environment_id", "_ln"])["flow_id"].nunique()
        self.flows_using: dict[Any, int] = users.to_dict()

    def reference(self, env: str, ref_id: str) -> dict[str, Any] | None:
        """Return a ``references`` row (None for missing values), or None if absent."""
        return self.references.get((env, ref_id))

    def flow(self, env: str, flow_id: str) -> dict[str, Any] | None:
        """Return a ``flows`` row (None for missing values), or None if absent."""
        return self.flows.get((env, flow_id))


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
    deleted = {(a.environment_id, a.reference_id) for u in units for a in _deletes(u.actions)}
    units += _unused_units(ctx, findings, deleted, skipped)
    if settings.propose_renames:
        deleted = {(a.environment_id, a.reference_id) for u in units for a in _deletes(u.actions)}
        units += _rename_units(ctx, findings, deleted, skipped)
    actions = _within_limits(units, settings.max_actions_per_environment, skipped)
    actions = _drop_still_used_deletes(ctx, actions, skipped)
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
    _ensure_safe(plan, ctx)
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


def _group_units(
    ctx: _Context, proposals: Proposals, findings: pd.DataFrame | None, skipped: list[Skipped]
) -> list[_Unit]:
    moves: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for move in _records(proposals.moves):
        moves[move["group_id"]].append(move)
    leftovers: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in _records(proposals.leftovers):
        leftovers[row["group_id"]].append(row)
    scope = _duplicate_scope(findings)
    units = []
    for survivor in _records(proposals.survivors):
        gid, env = survivor["group_id"], survivor["environment_id"]
        if scope is not None and (env, survivor["survivor_id"]) not in scope:
            if scope:  # the rule ran, so this group was set aside on purpose: say so
                name = survivor["survivor_logical_name"] or survivor["survivor_id"]
                skipped.append(Skipped(env, "reference", survivor["survivor_id"], name, SET_ASIDE))
            continue
        unit = _Unit(env, (0, gid))
        kept = _in_scope(leftovers[gid], scope, skipped)
        ids = {row["reference_id"] for row in kept}
        group_moves = [m for m in moves[gid] if m["from_reference_id"] in ids]
        planned = _group_rewires(ctx, unit, survivor, group_moves, skipped)
        for leftover in kept:
            _group_delete(ctx, unit, survivor, leftover, planned, skipped)
        if unit.actions:
            units.append(unit)
    return units


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts with None for missing values (pandas' NA is not falsy-safe)."""
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return [{str(k): v for k, v in row.items()} for row in rows]


def _duplicate_scope(findings: pd.DataFrame | None) -> set[tuple[str, str]] | None:
    """The references the findings still report as duplicates; None when no findings given.

    A member without an active ``duplicate`` finding was set aside by an exclusion (or the
    rule is off): the plan neither moves its flows nor deletes it.
    """
    if findings is None:
        return None
    return {(f["environment_id"], f["object_id"]) for f in _findings(findings, "duplicate")}


def _in_scope(
    leftovers: list[dict[str, Any]], scope: set[tuple[str, str]] | None, skipped: list[Skipped]
) -> list[dict[str, Any]]:
    kept = []
    for row in leftovers:
        key = (row["environment_id"], row["reference_id"])
        if scope is None or key in scope:
            kept.append(row)
        else:
            name = row["logical_name"] or row["reference_id"]
            skipped.append(Skipped(key[0], "reference", key[1], name, SET_ASIDE))
    return kept


def _group_rewires(
    ctx: _Context,
    unit: _Unit,
    survivor: Mapping[str, Any],
    moves: list[dict[str, Any]],
    skipped: list[Skipped],
) -> dict[str, list[str] | None]:
    """Plan a group's rewires; return, per leftover, its rewire ids (None if one is blocked)."""
    planned: dict[str, list[str] | None] = defaultdict(list)
    target = ctx.reference(unit.environment_id, survivor["survivor_id"])
    for move in moves:
        flow = ctx.flow(move["environment_id"], move["flow_id"])
        why = move["why_blocked"] or _rewire_problem(ctx, move, flow, target)
        name = f"flow '{(flow or {}).get('name') or move['flow_id']}' key {move['key']}"
        object_id = f"{move['flow_id']}/{move['key']}"
        if why:
            planned[move["from_reference_id"]] = None
            skipped.append(Skipped(unit.environment_id, "flow-key", object_id, name, why))
            continue
        action = _rewire(move, flow, target)  # type: ignore[arg-type]
        unit.actions.append(action)
        unit.names[action.action_id] = ("flow-key", object_id, name)
        ids = planned[move["from_reference_id"]]
        if ids is not None:
            ids.append(action.action_id)
    return planned


def _rewire_problem(
    ctx: _Context,
    move: Mapping[str, Any],
    flow: Mapping[str, Any] | None,
    target: Mapping[str, Any] | None,
) -> str | None:
    """Re-check a move against the snapshot; proposals may be stale or hand-edited."""
    source = ctx.reference(move["environment_id"], move["from_reference_id"])
    if flow is None:
        return "the flow is not in the snapshot"
    if flow["is_managed"] is not False:
        return BLOCK_MANAGED_FLOW
    if not flow["clientdata_sha256"]:
        return "the flow's content hash is unknown, so apply could not detect a change"
    if target is None:
        return "the survivor is not in the snapshot"
    if not (target["connection_id"] or "").strip():
        return f"the survivor '{target['logical_name']}' is not bound to a connection"
    if source is not None and ctx.settings.is_protected(source["logical_name"]):
        return f"'{source['logical_name']}' is protected by plan.protected_patterns"
    return None


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


def _group_delete(
    ctx: _Context,
    unit: _Unit,
    survivor: Mapping[str, Any],
    leftover: Mapping[str, Any],
    planned: Mapping[str, list[str] | None],
    skipped: list[Skipped],
) -> None:
    env, ref_id = leftover["environment_id"], leftover["reference_id"]
    row = ctx.reference(env, ref_id)
    name = leftover["logical_name"] or ref_id
    ids = planned.get(ref_id, [])
    why = (
        _delete_problem(ctx, env, ref_id, row)
        or leftover["why_not"]
        or (None if ids is not None else "a flow key that uses it could not be rewired")
    )
    if why:
        skipped.append(Skipped(env, "reference", ref_id, name, why))
        return
    reason = (
        f"duplicate of '{survivor['survivor_display_name'] or survivor['survivor_logical_name']}'"
        f" (group {survivor['group_id']})"
    )
    action = _delete(row, reason, survivor["group_id"], None, tuple(ids or ()))  # type: ignore[arg-type]
    unit.actions.append(action)
    unit.names[action.action_id] = ("reference", ref_id, name)


def _delete_problem(
    ctx: _Context, env: str, ref_id: str, row: Mapping[str, Any] | None
) -> str | None:
    if row is None:
        return "the reference is not in the snapshot"
    if row["is_managed"] is not False:
        return "managed: fix it in the source environment"
    if ctx.settings.is_protected(row["logical_name"]):
        return "protected by plan.protected_patterns"
    if env in ctx.delete_blockers:
        return ctx.delete_blockers[env]
    return ctx.dependents.get((env, ref_id))


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
    if findings is None or findings.empty:
        return []
    missing = {"rule", "environment_id", "object_type", "object_id"} - set(findings.columns)
    if missing:
        raise PlanError(f"The findings table lacks column(s) {', '.join(sorted(missing))}.")
    wanted = findings["rule"].eq(rule) & findings["object_type"].eq("reference")
    rows = findings[wanted.fillna(False).astype(bool)]
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
    units = []
    for finding in _findings(findings, "unused"):
        env, ref_id = finding["environment_id"], finding["object_id"]
        if (env, ref_id) in deleted:
            continue
        row = ctx.reference(env, ref_id)
        name = (row or {}).get("logical_name") or finding.get("logical_name") or ref_id
        since, day = _since(finding["extra"].get("unused_since"))
        why = _unused_problem(ctx, env, ref_id, row, finding["extra"], day)
        if why:
            skipped.append(Skipped(env, "reference", ref_id, name, why))
            continue
        reason = f"unused since {day}" if day else "unused"
        action = _delete(row, reason, None, since, ())  # type: ignore[arg-type]
        unit = _Unit(
            env, (1, name.lower()), [action], {action.action_id: ("reference", ref_id, name)}
        )
        units.append(unit)
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
    row: Mapping[str, Any] | None,
    extra: Mapping[str, Any],
    since: str | None,
) -> str | None:
    if extra.get("grace_passed") is not True:
        when = f" (unused since {since})" if since else ""
        return f"grace period not passed{when}"
    problem = _delete_problem(ctx, env, ref_id, row)
    if problem or row is None:
        return problem
    users = ctx.flows_using.get((env, (row["logical_name"] or "").lower()), 0)
    return f"still used by {users} flow(s)" if users else None


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
        units.append(
            _Unit(
                env, (2, label.lower()), [action], {action.action_id: ("reference", ref_id, label)}
            )
        )
    return units


def _display_names_by_environment(
    ctx: _Context, proposed: list[tuple[str, str, str]]
) -> dict[tuple[str, str], set[str]]:
    """Which references hold, or are proposed to get, each display name (case-insensitive)."""
    taken: dict[tuple[str, str], set[str]] = defaultdict(set)
    for (env, ref_id), row in ctx.references.items():
        if row["display_name"]:
            taken[(env, row["display_name"].lower())].add(ref_id)
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
            for action in unit.actions:
                kind, object_id, name = unit.names[action.action_id]
                skipped.append(Skipped(env, kind, object_id, name, reason))
    return actions


def _drop_still_used_deletes(
    ctx: _Context, actions: list[Action], skipped: list[Skipped]
) -> list[Action]:
    """Drop any delete whose logical name a flow would still use after the planned rewires."""
    still_used = _used_after(ctx, actions)
    planned = {a.action_id for a in actions}
    kept: list[Action] = []
    for action in actions:
        if isinstance(action, DeleteReference):
            users = still_used.get((action.environment_id, action.logical_name.lower()))
            why = None
            if users:
                why = f"still used after the planned rewires by {users} flow(s)"
            elif not set(action.depends_on) <= planned:
                why = "a rewire it depends on is not in the plan"
            if why:
                skipped.append(
                    Skipped(
                        action.environment_id,
                        "reference",
                        action.reference_id,
                        action.logical_name,
                        why,
                    )
                )
                continue
        kept.append(action)
    return kept


def _used_after(ctx: _Context, actions: Iterable[Action]) -> dict[Any, int]:
    """Count, per (environment, logical name) a delete names, the flows using it after rewires."""
    actions = list(actions)
    targets = {(a.environment_id, a.logical_name.lower()) for a in _deletes(actions)}
    if not targets:
        return {}
    rewires = pd.DataFrame(
        [
            (a.environment_id, a.flow_id, a.key, a.to_logical_name.lower())
            for a in actions
            if isinstance(a, RewireFlowKey)
        ],
        columns=["environment_id", "flow_id", "key", "_to"],
    ).astype("string")
    uses = ctx.usages[["environment_id", "flow_id", "key", "_ln"]]
    uses = uses.merge(rewires, on=["environment_id", "flow_id", "key"], how="left")
    uses = uses.assign(_after=uses["_to"].fillna(uses["_ln"]))
    wanted = pd.MultiIndex.from_tuples(sorted(targets))
    keyed = uses.set_index(["environment_id", "_after"])
    hits = keyed[keyed.index.isin(wanted)]
    return hits.groupby(level=[0, 1])["flow_id"].nunique().to_dict()


def _ordered(actions: list[Action]) -> tuple[Action, ...]:
    """Per environment: rewires (by flow, key), then renames, then deletes (by logical name)."""

    def sort_key(action: Action) -> tuple[str, int, str, str]:
        if isinstance(action, RewireFlowKey):
            return (action.environment_id, 0, action.flow_id, action.key)
        rank = 1 if isinstance(action, RenameReference) else 2
        return (action.environment_id, rank, action.logical_name.lower(), action.reference_id)

    return tuple(sorted(actions, key=sort_key))


def _unique_skips(skipped: list[Skipped]) -> tuple[Skipped, ...]:
    seen = dict.fromkeys(skipped)
    return tuple(
        sorted(seen, key=lambda s: (s.environment_id, s.object_type, s.object_id, s.reason))
    )


def _deletes(actions: Iterable[Action]) -> list[DeleteReference]:
    return [a for a in actions if isinstance(a, DeleteReference)]


# ---------------------------------------------------------------------------------------------
# The last guard


def ensure_safe(plan: Plan, snapshot: Snapshot, settings: PlanSettings) -> None:
    """Raise ``PlanError`` if the plan breaks a safety rule (a bug: build_plan filters first)."""
    _ensure_safe(plan, _Context(snapshot, settings))


def _ensure_safe(plan: Plan, ctx: _Context) -> None:
    problems: list[str] = []
    for action in plan.actions:
        problems.extend(f"{action.action_id}: {p}" for p in _action_problems(ctx, action))
    still_used = _used_after(ctx, plan.actions)
    for action in _deletes(plan.actions):
        if still_used.get((action.environment_id, action.logical_name.lower())):
            problems.append(f"{action.action_id}: deletes a reference still used after rewires")
    if problems:
        raise PlanError("Refusing to produce an unsafe plan: " + "; ".join(problems))


def _action_problems(ctx: _Context, action: Action) -> list[str]:
    env = action.environment_id
    if isinstance(action, RewireFlowKey):
        flow = ctx.flow(env, action.flow_id)
        target = ctx.reference(env, action.to_reference_id)
        problems = []
        if flow is None or flow["is_managed"] is not False:
            problems.append("rewires a managed or unknown flow")
        if target is None or not (target["connection_id"] or "").strip():
            problems.append("rewires to an unbound or unknown reference")
        return problems
    row = ctx.reference(env, action.reference_id)
    if row is None or row["is_managed"] is not False:
        return ["changes a managed or unknown reference"]
    if ctx.settings.is_protected(row["logical_name"]):
        return ["changes a protected reference"]
    if isinstance(action, DeleteReference) and env in ctx.delete_blockers:
        return ["deletes where usage is unknown"]
    return []
