"""Group findings by owner into email digests; pure (no I/O, no clients).

One digest per owner across all environments: an owner row exists per environment, and the
owner's identity is their email address, compared case-insensitively. Owners who cannot
receive mail (application users, disabled users, teams without a mailbox, owners the snapshot
could not find) get a digest addressed to the fallback address, "on behalf of" them. The
admins get one summary of everything, including what opted-out owners did not receive. In
test mode every digest goes to the admins and remembers where it would have gone.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

import pandas as pd

from cleanup.notify.message import clean_address, clean_text
from cleanup.notify.settings import NotifySettings
from cleanup.snapshot.model import Snapshot

DigestKind = Literal["owner", "fallback", "admin"]
ROUTE_DIRECT = "direct"
ROUTE_FALLBACK = "fallback"
ROUTE_OPTED_OUT = "opted out"
ROUTE_ADMINS = "admins only"
SEVERITY_ORDER = ("high", "medium", "low", "info")
OWNED_OBJECTS = frozenset({"reference", "flow"})  # other findings (environment, group) have none
MAX_FLOWS = 25  # flows listed per reference; the count of the rest is always given
FLOW_STATES = {0: "Off", 1: "On", 2: "Suspended"}
_SLUG_UNSAFE = re.compile(r"[^a-z0-9]+")

PlanSteps = Mapping[tuple[str, str], Sequence["PlannedStep | str"]]


@dataclass(frozen=True)
class PlannedStep:
    """One thing the plan would do to an object, and from when."""

    text: str
    when: str = ""  # e.g. "at the next reviewed apply", "not before 2025-07-01"


@dataclass(frozen=True)
class Problem:
    """One finding on an object, as a person reads it."""

    rule: str
    severity: str
    detail: str
    suggested_fix: str


@dataclass(frozen=True)
class FlowUse:
    """A cloud flow that uses a reference."""

    flow_id: str
    name: str
    state: str


@dataclass(frozen=True)
class Item:
    """One object (usually a connection reference) with its problems, flows and plan."""

    environment_id: str
    environment_name: str
    object_type: str
    object_id: str
    logical_name: str
    display_name: str
    problems: tuple[Problem, ...]
    flows: tuple[FlowUse, ...] = ()
    more_flows: int = 0
    planned: tuple[PlannedStep, ...] = ()

    @property
    def severity(self) -> str:
        """Return the worst severity among the problems."""
        return worst_severity(p.severity for p in self.problems)


@dataclass(frozen=True)
class Owner:
    """Who owns items, merged across environments; ``reason`` says why mail cannot reach them."""

    key: str  # mail:<address> | aad:<object id> | id:<env>/<owner id> | unknown
    name: str
    email: str | None
    kind: str  # user | team | application user | unknown
    reason: str = ""

    @property
    def reachable(self) -> bool:
        """Return True when mail can go to the owner directly."""
        return self.email is not None and not self.reason


@dataclass(frozen=True)
class OwnerSection:
    """One owner's part of the admin summary: where their digest went and what was in it."""

    owner: Owner
    route: str
    recipients: tuple[str, ...]
    items: tuple[Item, ...]

    @property
    def severity(self) -> str:
        """Return the worst severity among the owner's items."""
        return worst_severity(item.severity for item in self.items)


@dataclass(frozen=True)
class Digest:
    """One email's worth of items for one recipient set."""

    kind: DigestKind
    key: str  # stable across runs for the same owner: names files and Message-IDs
    to: tuple[str, ...]
    intended_to: tuple[str, ...]
    items: tuple[Item, ...]
    owner: Owner | None = None
    sections: tuple[OwnerSection, ...] = field(default=())
    test_mode: bool = False

    @property
    def environment_count(self) -> int:
        """Return how many environments the items span."""
        return len({item.environment_id for item in self.items})

    @property
    def filename(self) -> str:
        """Return a safe ``.eml`` file name: a slug of the owner plus the digest key."""
        label = "summary" if self.owner is None else (self.owner.name or self.owner.email or "")
        return f"{self.kind}-{slugify(label)}-{self.key[:10]}.eml"


def build_digests(
    findings: pd.DataFrame,
    snapshot: Snapshot,
    settings: NotifySettings,
    *,
    plan_steps: PlanSteps | None = None,
) -> list[Digest]:
    """Group findings into owner, fallback and admin digests (admin summary last)."""
    items_by_owner = _items_by_owner(findings, snapshot, plan_steps or {})
    opted_out = {addr.casefold() for addr in settings.opt_out}
    sections = [
        _section(owner, items, settings, opted_out) for owner, items in items_by_owner.items()
    ]
    sections.sort(key=_section_sort_key)
    digests = [_owner_digest(s) for s in sections if s.route in (ROUTE_DIRECT, ROUTE_FALLBACK)]
    digests.append(_admin_digest(sections, settings))
    if settings.test_mode:
        admins = unique_addresses(settings.admin_addresses)
        digests = [replace(d, to=admins, test_mode=True) for d in digests]
    return digests


def unique_addresses(values: Iterable[str]) -> tuple[str, ...]:
    """Return addresses de-duplicated case-insensitively and sorted."""
    seen: dict[str, str] = {}
    for value in values:
        seen.setdefault(value.casefold(), value)
    return tuple(seen[k] for k in sorted(seen))


def worst_severity(severities: Iterable[str]) -> str:
    """Return the most severe of known severities ("info" when none is known)."""
    ranks = [_severity_rank(s) for s in severities]
    best = min(ranks, default=len(SEVERITY_ORDER))
    return SEVERITY_ORDER[best] if best < len(SEVERITY_ORDER) else "info"


def digest_key(kind: str, owner_key: str) -> str:
    """Return the stable key of a digest: the same owner gets the same key every night."""
    return hashlib.sha256(f"{kind}\0{owner_key}".encode()).hexdigest()[:16]


def slugify(text: str, max_len: int = 40) -> str:
    """Return a file-name-safe ASCII slug of remote text ("owner" when nothing is left)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = _SLUG_UNSAFE.sub("-", ascii_text.lower()).strip("-")
    return slug[:max_len].strip("-") or "owner"


# --- grouping ---------------------------------------------------------------------------


def _items_by_owner(
    findings: pd.DataFrame, snapshot: Snapshot, plan_steps: PlanSteps
) -> dict[Owner, list[Item]]:
    rows = _records(findings)
    owners = _owner_index(snapshot.owners)
    env_names = _environment_names(snapshot.environments)
    flows = _flows_by_reference(snapshot, rows)
    grouped: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        key = (row["environment_id"] or "", row["object_type"] or "", row["object_id"] or "")
        grouped.setdefault(key, []).append(row)
    by_key: dict[str, list[tuple[Owner, Item]]] = {}
    for (env_id, _type, object_id), object_rows in grouped.items():
        item = _item(object_rows, env_names, flows, plan_steps.get((env_id, object_id), ()))
        owner = _resolve_owner(object_rows[0], owners)
        by_key.setdefault(owner.key, []).append((owner, item))
    return {
        _merge_owners([o for o, _ in pairs]): sorted((i for _, i in pairs), key=_item_sort_key)
        for pairs in by_key.values()
    }


def _item(
    rows: list[dict[str, Any]],
    env_names: Mapping[str, str],
    flows: Mapping[tuple[str, str], list[FlowUse]],
    planned: Sequence[PlannedStep | str],
) -> Item:
    first = rows[0]
    env_id = first["environment_id"] or ""
    problems = sorted(
        {
            Problem(
                rule=clean_text(r["rule"]),
                severity=clean_text(r["severity"] or "info").lower(),
                detail=clean_text(r["detail"], 500),
                suggested_fix=clean_text(r["suggested_fix"], 500),
            )
            for r in rows
        },
        key=lambda p: (_severity_rank(p.severity), p.rule, p.detail),
    )
    logical = first["logical_name"] or ""
    uses = (
        flows.get((env_id, logical.casefold()), []) if first["object_type"] == "reference" else []
    )
    return Item(
        environment_id=env_id,
        environment_name=clean_text(first["environment_name"] or env_names.get(env_id) or env_id),
        object_type=first["object_type"] or "",
        object_id=first["object_id"] or "",
        logical_name=clean_text(logical, 200),
        display_name=clean_text(first["display_name"] or logical, 200),
        problems=tuple(problems),
        flows=tuple(uses[:MAX_FLOWS]),
        more_flows=max(0, len(uses) - MAX_FLOWS),
        planned=tuple(_planned_step(step) for step in planned),
    )


def _planned_step(step: PlannedStep | str) -> PlannedStep:
    if isinstance(step, PlannedStep):
        return PlannedStep(clean_text(step.text, 500), clean_text(step.when, 120))
    return PlannedStep(clean_text(step, 500))


def _resolve_owner(
    row: Mapping[str, Any], owners: Mapping[tuple[str, str], dict[str, Any]]
) -> Owner:
    env_id, owner_id = row["environment_id"] or "", row["owner_id"]
    hint = clean_text(row["owner_name"])
    if owner_id is None:
        if row["object_type"] not in OWNED_OBJECTS:
            return Owner("admins", "Environment-wide findings", None, "no owner")
        return Owner("unknown", hint or "Unknown owner", None, "unknown", "no owner recorded")
    found = owners.get((env_id, owner_id))
    if found is None:
        reason = "owner not found in the environment"
        return Owner(f"id:{env_id}/{owner_id}", hint or owner_id, None, "unknown", reason)
    return _owner_from_row(found, env_id, owner_id, hint)


def _owner_from_row(row: Mapping[str, Any], env_id: str, owner_id: str, hint: str) -> Owner:
    email = clean_address(row["email"])
    is_team = row["owner_type"] == "team"
    kind = "application user" if row["is_application_user"] else ("team" if is_team else "user")
    if row["is_application_user"]:
        reason = "application user without a mailbox"
    elif row["is_disabled"]:
        reason = "disabled user"
    elif not row["can_receive_mail"]:
        reason = "team without a mailbox" if is_team else "cannot receive mail"
    elif email is None:
        reason = "email address not usable" if row["email"] else "no email address"
    else:
        reason = ""
    if email:
        key = f"mail:{email.casefold()}"
    elif row["aad_object_id"]:
        key = f"aad:{str(row['aad_object_id']).casefold()}"
    else:
        key = f"id:{env_id}/{owner_id}"
    name = clean_text(row["name"]) or hint or email or owner_id
    return Owner(key, name, email, kind, reason)


def _merge_owners(owners: list[Owner]) -> Owner:
    """Merge one identity's per-environment rows: reachable if any environment says so."""
    reachable = [o for o in owners if o.reachable]
    base = min(reachable or owners, key=lambda o: (o.reason, o.kind, o.name))
    names = Counter(o.name for o in owners if o.name)
    name = min(names, key=lambda n: (-names[n], n)) if names else base.name
    return replace(base, name=name)


def _section(
    owner: Owner, items: list[Item], settings: NotifySettings, opted_out: set[str]
) -> OwnerSection:
    if owner.key == "admins":
        route, recipients = ROUTE_ADMINS, settings.admin_addresses
    elif owner.email and owner.email.casefold() in opted_out:
        route, recipients = ROUTE_OPTED_OUT, ()
    elif owner.reachable and owner.email:
        route, recipients = ROUTE_DIRECT, (owner.email,)
    else:
        route, recipients = ROUTE_FALLBACK, settings.fallback_recipients
    return OwnerSection(owner, route, unique_addresses(recipients), tuple(items))


def _owner_digest(section: OwnerSection) -> Digest:
    kind: DigestKind = "owner" if section.route == ROUTE_DIRECT else "fallback"
    return Digest(
        kind=kind,
        key=digest_key(kind, section.owner.key),
        to=section.recipients,
        intended_to=section.recipients,
        items=section.items,
        owner=section.owner,
    )


def _admin_digest(sections: list[OwnerSection], settings: NotifySettings) -> Digest:
    admins = unique_addresses(settings.admin_addresses)
    items = tuple(sorted((i for s in sections for i in s.items), key=_item_sort_key))
    return Digest(
        kind="admin",
        key=digest_key("admin", "summary"),
        to=admins,
        intended_to=admins,
        items=items,
        sections=tuple(sections),
    )


# --- lookups ----------------------------------------------------------------------------


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    if frame.empty:
        return []
    obj = frame.astype(object)
    rows = obj.where(obj.notna(), None).to_dict("records")
    return cast(list[dict[str, Any]], rows)  # column names are strings


def _owner_index(owners: pd.DataFrame) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["environment_id"], r["owner_id"]): r for r in _records(owners)}


def _environment_names(environments: pd.DataFrame) -> dict[str, str]:
    return {r["environment_id"]: r["display_name"] or "" for r in _records(environments)}


def _flows_by_reference(
    snapshot: Snapshot, rows: list[dict[str, Any]]
) -> dict[tuple[str, str], list[FlowUse]]:
    """Return the flows using each reference named in the findings, by (env, logical name)."""
    wanted = {
        (r["environment_id"], r["logical_name"].casefold())
        for r in rows
        if r["object_type"] == "reference" and r["logical_name"] and r["environment_id"]
    }
    usages = snapshot.usages.dropna(subset=["logical_name"])
    if not wanted or usages.empty:
        return {}
    uses = pd.DataFrame(
        {
            "environment_id": usages["environment_id"].astype(object),
            "lname": usages["logical_name"].str.casefold().astype(object),
            "flow_id": usages["flow_id"].astype(object),
        }
    )
    keys = pd.DataFrame(sorted(wanted), columns=["environment_id", "lname"])
    flows = snapshot.flows[["environment_id", "flow_id", "name", "state"]].astype(object)
    hits = uses.merge(keys, on=["environment_id", "lname"]).drop_duplicates()
    hits = hits.merge(flows, on=["environment_id", "flow_id"], how="left")
    out: dict[tuple[str, str], list[FlowUse]] = {}
    for row in _records(hits):
        name = clean_text(row["name"] or row["flow_id"], 200)
        state = FLOW_STATES.get(row["state"], "Unknown") if row["state"] is not None else "Unknown"
        out.setdefault((row["environment_id"], row["lname"]), []).append(
            FlowUse(row["flow_id"], name, state)
        )
    for uses_list in out.values():
        uses_list.sort(key=lambda f: (f.name.casefold(), f.flow_id))
    return out


def _severity_rank(severity: str) -> int:
    return SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else len(SEVERITY_ORDER)


def _item_sort_key(item: Item) -> tuple[str, str, str, str]:
    return (
        item.environment_name.casefold(),
        item.display_name.casefold(),
        item.object_type,
        item.object_id,
    )


def _section_sort_key(section: OwnerSection) -> tuple[bool, str, str, str]:
    # The admins' own (environment-wide) section first, then owners by name.
    owner = section.owner
    return (section.route != ROUTE_ADMINS, owner.name.casefold(), owner.email or "", owner.key)
