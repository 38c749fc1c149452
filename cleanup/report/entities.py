"""The two join-heavy report sections: the entity view and the duplicate groups."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from cleanup.report.rows import flow_state, fold, part, records
from cleanup.snapshot.model import Snapshot

Key = tuple[str, str]

REFERENCE_FIELDS = (
    "environment_id",
    "reference_id",
    "logical_name",
    "display_name",
    "connector",
    "connection_id",
    "is_managed",
)


def entity_view(snapshot: Snapshot, env_names: Mapping[str, str]) -> list[dict[str, Any]]:
    """Return, per environment, each reference with the flows that use it, and the unused ones."""
    uses = _uses_by_environment(snapshot)
    refs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ref in records(snapshot.references, REFERENCE_FIELDS):
        refs[ref["environment_id"]].append(ref)
    unreadable = _count_by_env(snapshot.flows, snapshot.flows["parse_status"] != "ok")
    legacy = _count_by_env(snapshot.usages, snapshot.usages["logical_name"].isna())
    envs = records(snapshot.environments, ["environment_id", "status", "status_reason"])
    return sorted(
        (
            _environment_entities(env, env_names, refs, uses, unreadable, legacy)
            for env in envs
            if env["environment_id"] in refs
            or env["environment_id"] in uses
            or env["status"] == "complete"
        ),
        key=lambda e: fold(e["name"]),
    )


def _environment_entities(
    env: dict[str, Any],
    env_names: Mapping[str, str],
    refs: Mapping[str, list[dict[str, Any]]],
    uses: Mapping[str, dict[str, dict[str, Any]]],
    unreadable: Mapping[str, int],
    legacy: Mapping[str, int],
) -> dict[str, Any]:
    env_id = env["environment_id"]
    remaining = dict(uses.get(env_id, {}))
    used, unused = [], []
    for ref in sorted(refs.get(env_id, []), key=lambda r: fold(r["display_name"])):
        entry = remaining.pop(fold(ref["logical_name"]), None)
        flows = entry["flows"] if entry else []
        (used if flows else unused).append({**ref, "flows": flows})
    # A flow can name a reference that the environment does not hold: show it, it is broken.
    missing = sorted(remaining.values(), key=lambda m: fold(m["logical_name"]))
    return {
        "environment_id": env_id,
        "name": env_names.get(env_id, env_id),
        "status": env["status"] or "unknown",
        "status_reason": env["status_reason"],
        "complete": env["status"] == "complete",
        "usage_known": env["status"] == "complete" and not unreadable.get(env_id, 0),
        "used": used,
        "unused": unused,
        "missing": missing,
        "flow_count": len({f["flow_id"] for r in used for f in r["flows"]}),
        "unreadable_flows": unreadable.get(env_id, 0),
        "legacy_uses": legacy.get(env_id, 0),
    }


def _uses_by_environment(snapshot: Snapshot) -> dict[str, dict[str, dict[str, Any]]]:
    usages = snapshot.usages[snapshot.usages["logical_name"].notna()]
    flows = snapshot.flows[["environment_id", "flow_id", "name", "state"]]
    joined = usages.merge(flows, on=["environment_id", "flow_id"], how="left")
    rows = records(
        joined,
        ["environment_id", "flow_id", "key", "logical_name", "name", "state", "action_count"],
    )
    rows.sort(key=lambda r: (fold(r["name"]), fold(r["key"])))
    out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in rows:
        slot = out[row["environment_id"]].setdefault(
            fold(row["logical_name"]), {"logical_name": row["logical_name"], "flows": []}
        )
        state = flow_state(row["state"])
        slot["flows"].append(
            {
                "flow_id": row["flow_id"],
                "name": row["name"] or row["flow_id"],
                "state": state,
                "on": state == "On",
                "key": row["key"],
                "action_count": row["action_count"],
            }
        )
    return out


def _count_by_env(frame: pd.DataFrame, mask: pd.Series) -> dict[str, int]:
    counts = frame.loc[mask.fillna(True).astype(bool), "environment_id"].value_counts()
    return {str(k): int(v) for k, v in counts.items()}


def duplicate_groups(
    snapshot: Snapshot,
    findings: pd.DataFrame,
    proposals: Any,
    env_names: Mapping[str, str],
) -> list[dict[str, Any]]:
    """Return each duplicate group: members, survivor and why, moves and leftovers."""
    parts = _GroupParts(
        members=_members_from_findings(findings),
        survivors=_by_group(part(proposals, "survivors"), SURVIVOR_FIELDS),
        moves=_by_group(part(proposals, "moves"), MOVE_FIELDS),
        leftovers=_by_group(part(proposals, "leftovers"), LEFTOVER_FIELDS),
        lookups=_Lookups(snapshot),
        env_names=env_names,
        has_proposal=proposals is not None,
    )
    groups = [parts.group(key) for key in parts.group_keys()]
    return sorted(groups, key=lambda g: (fold(g["environment_name"]), fold(g["group_id"])))


SURVIVOR_FIELDS = ["survivor_id", "reason"]
MOVE_FIELDS = [
    "flow_id",
    "key",
    "from_logical_name",
    "to_logical_name",
    "blocked",
    "why_blocked",
    "reason",  # older name of why_blocked
]
LEFTOVER_FIELDS = ["reference_id", "logical_name", "deletable", "why_not"]
ROLE_ORDER = ("survivor", "member", "leftover")
Rows = Mapping[Key, list[dict[str, Any]]]


@dataclass(frozen=True)
class _GroupParts:
    """The proposals' rows and the snapshot lookups, indexed by (environment, group)."""

    members: Mapping[Key, list[str]]
    survivors: Rows
    moves: Rows
    leftovers: Rows
    lookups: _Lookups
    env_names: Mapping[str, str]
    has_proposal: bool

    def group_keys(self) -> set[Key]:
        return set(self.members) | set(self.survivors) | set(self.moves) | set(self.leftovers)

    def group(self, key: Key) -> dict[str, Any]:
        env_id, group_id = key
        survivor = (self.survivors.get(key) or [None])[0]
        survivor_id = survivor["survivor_id"] if survivor else None
        left = self.leftovers.get(key, [])
        left_ids = {r["reference_id"] for r in left}
        ids = [*self.members.get(key, []), *([survivor_id] if survivor_id else [])]
        ids += [r["reference_id"] for r in left]
        members = [
            self.lookups.member(env_id, ref_id, survivor_id, left_ids)
            for ref_id in dict.fromkeys(ids)
        ]
        members.sort(key=lambda m: ROLE_ORDER.index(m["role"]))  # survivor first; stable
        return {
            "environment_id": env_id,
            "environment_name": self.env_names.get(env_id, env_id),
            "group_id": group_id,
            "connector": next((m["connector"] for m in members if m["connector"]), None),
            "members": members,
            "survivor": next((m for m in members if m["role"] == "survivor"), None),
            "survivor_reason": survivor["reason"] if survivor else None,
            "moves": [_move(m, self.lookups, env_id) for m in self.moves.get(key, [])],
            "leftovers": [{**r, **_display(self.lookups, env_id, r["reference_id"])} for r in left],
            "has_proposal": self.has_proposal,
        }


def _move(move: dict[str, Any], lookups: _Lookups, env_id: str) -> dict[str, Any]:
    return {
        **move,
        "flow_name": lookups.flow_name(env_id, move["flow_id"]),
        "blocked": move["blocked"] is True,
        "why_blocked": move["why_blocked"] or move["reason"],
    }


def _display(lookups: _Lookups, env_id: str, ref_id: str) -> dict[str, Any]:
    ref = lookups.refs.get((env_id, ref_id), {})
    return {"display_name": ref.get("display_name")}


def _by_group(frame: pd.DataFrame | None, columns: list[str]) -> dict[Key, list[dict[str, Any]]]:
    out: dict[Key, list[dict[str, Any]]] = defaultdict(list)
    for row in records(frame, ["environment_id", "group_id", *columns]):
        out[(row["environment_id"], str(row["group_id"]))].append(row)
    return out


def _members_from_findings(findings: pd.DataFrame) -> dict[Key, list[str]]:
    grouped = findings[findings["group_id"].notna() & (findings["object_type"] == "reference")]
    out: dict[Key, list[str]] = defaultdict(list)
    for row in records(grouped, ["environment_id", "group_id", "object_id"]):
        key = (row["environment_id"], str(row["group_id"]))
        if row["object_id"] not in out[key]:
            out[key].append(row["object_id"])
    return out


class _Lookups:
    """Reference, flow-name and usage-count lookups shared by every group."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.refs = {
            (r["environment_id"], r["reference_id"]): r
            for r in records(snapshot.references, REFERENCE_FIELDS)
        }
        flows = records(snapshot.flows, ["environment_id", "flow_id", "name"])
        self.flows = {(f["environment_id"], f["flow_id"]): f["name"] for f in flows}
        usages = snapshot.usages[snapshot.usages["logical_name"].notna()]
        folded = usages.assign(ln=usages["logical_name"].str.casefold())
        counts = folded.groupby(["environment_id", "ln"])["flow_id"].nunique()
        self.flow_counts = {(str(e), str(ln)): int(n) for (e, ln), n in counts.items()}

    def flow_name(self, env_id: str, flow_id: Any) -> Any:
        return self.flows.get((env_id, flow_id)) or flow_id

    def member(
        self, env_id: str, ref_id: str, survivor_id: str | None, leftover_ids: set[str]
    ) -> dict[str, Any]:
        ref = self.refs.get((env_id, ref_id)) or {"reference_id": ref_id}
        role = (
            "survivor"
            if ref_id == survivor_id
            else "leftover"
            if ref_id in leftover_ids
            else "member"
        )
        return {
            "reference_id": ref_id,
            "logical_name": ref.get("logical_name"),
            "display_name": ref.get("display_name"),
            "connector": ref.get("connector"),
            "connection_id": ref.get("connection_id"),
            "is_managed": ref.get("is_managed"),
            "flow_count": self.flow_counts.get((env_id, fold(ref.get("logical_name"))), 0),
            "role": role,
        }
