"""The two join-heavy report sections: the entity view and the duplicate groups.

Both list a capped part of the tenant. The joins, counts and sort keys are computed column-wise
over the tables; rows become Python dicts only for the environments, groups, references and
flows that are shown, so the cost barely grows with the tenant.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cleanup.report.rows import flow_state, fold, fold_key, fold_text, part, records
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
FLOW_FIELDS = ("environment_id", "flow_id", "name")
USE_FIELDS = ("environment_id", "flow_id", "key", "logical_name", "action_count")
ENV, LN = "environment_id", "_ln"  # LN: the case-folded logical name


def entity_view(
    snapshot: Snapshot,
    env_names: Mapping[str, str],
    *,
    environments_shown: int | None = None,
    references_shown: int | None = None,
    flows_shown: int | None = None,
) -> dict[str, Any]:
    """Return, per environment, each reference with the flows that use it, and the unused ones.

    ``environments`` holds at most ``environments_shown`` environments (those with the most
    references), in name order; ``total`` counts them all. Each lists at most
    ``references_shown`` used, missing and unused references, each with at most
    ``flows_shown`` flows; the ``*_total`` counts are exact. None means no cap.
    """
    refs, usages = snapshot.references, snapshot.usages
    named = usages.loc[usages["logical_name"].notna(), ENV]
    known = set(refs[ENV].dropna().unique()) | set(named.dropna().unique())
    envs = [
        env
        for env in records(snapshot.environments, [ENV, "status", "status_reason"])
        if env[ENV] in known or env["status"] == "complete"
    ]
    total = len(envs)
    if environments_shown is not None and total > environments_shown:
        sizes = refs[ENV].value_counts()
        envs.sort(key=lambda e: (-int(sizes.get(e[ENV], 0)), fold(env_names.get(e[ENV]))))
        envs = envs[:environments_shown]
    ids = [env[ENV] for env in envs]
    tables = _EntityTables(snapshot, ids, references_shown, flows_shown)
    unreadable = _count_by_env(snapshot.flows, snapshot.flows["parse_status"] != "ok")
    legacy = _count_by_env(usages, usages["logical_name"].isna())
    shown = [tables.environment(env, env_names, unreadable, legacy) for env in envs]
    return {"environments": sorted(shown, key=lambda e: fold(e["name"])), "total": total}


class _EntityTables:
    """The references and uses of the shown environments, matched and capped column-wise."""

    def __init__(
        self,
        snapshot: Snapshot,
        env_ids: list[str],
        references_shown: int | None,
        flows_shown: int | None,
    ) -> None:
        # Only the columns shown: every column taken costs, and the tables are large.
        refs = _columns(snapshot.references, REFERENCE_FIELDS)
        refs = refs[refs[ENV].isin(env_ids)]
        refs = refs.iloc[np.argsort(fold_key(refs["display_name"]), kind="stable")]
        refs = refs.assign(**{LN: fold_text(refs["logical_name"])})
        usages = _columns(snapshot.usages, USE_FIELDS)
        uses = usages[usages["logical_name"].notna() & usages[ENV].isin(env_ids)]
        uses = uses.assign(**{LN: fold_text(uses["logical_name"])})
        per_name = uses.groupby([ENV, LN], sort=False).size()
        ref_keys = _key_index(refs)
        # A flow names a reference by logical name, case-insensitively; when two references share
        # a name, the first (by display name) has the flows.
        n_uses = per_name.reindex(ref_keys, fill_value=0).to_numpy()
        used = (n_uses > 0) & ~refs.duplicated([ENV, LN]).to_numpy()
        refs = refs.assign(_uses=n_uses, _used=used)
        missing = per_name[~per_name.index.isin(ref_keys)].rename("_uses").reset_index()
        missing = missing.iloc[np.argsort(missing[LN].to_numpy(dtype=object), kind="stable")]
        matched = uses[_key_index(uses).isin(ref_keys)]
        self.flow_counts = matched.groupby(ENV)["flow_id"].nunique().to_dict()
        self.used = _head_by_env(refs[used], references_shown)
        self.unused = _head_by_env(refs[~used], references_shown)
        self.missing = _head_by_env(missing, references_shown)
        self.totals = {
            "used": refs.loc[used, ENV].value_counts().to_dict(),
            "unused": refs.loc[~used, ENV].value_counts().to_dict(),
            "missing": missing[ENV].value_counts().to_dict(),
        }
        wanted = [(r[ENV], r[LN]) for rows in (self.used, self.missing) for r in _flat(rows)]
        self.flows = _flows_by_name(snapshot, uses, wanted, flows_shown)

    def environment(
        self,
        env: dict[str, Any],
        env_names: Mapping[str, str],
        unreadable: Mapping[str, int],
        legacy: Mapping[str, int],
    ) -> dict[str, Any]:
        env_id = env[ENV]
        used = [self._reference(r, REFERENCE_FIELDS) for r in self.used.get(env_id, [])]
        unused = [
            {
                **{f: r[f] for f in REFERENCE_FIELDS},
                "flows": [],
                "flows_total": 0,
                "flows_hidden": 0,
            }
            for r in self.unused.get(env_id, [])
        ]
        missing = [self._reference(r, ()) for r in self.missing.get(env_id, [])]
        totals = {name: int(counts.get(env_id, 0)) for name, counts in self.totals.items()}
        return {
            "environment_id": env_id,
            "name": env_names.get(env_id, env_id),
            "status": env["status"] or "unknown",
            "status_reason": env["status_reason"],
            "complete": env["status"] == "complete",
            "usage_known": env["status"] == "complete" and not unreadable.get(env_id, 0),
            "used": used,
            "used_total": totals["used"],
            "used_hidden": totals["used"] - len(used),
            "unused": unused,
            "unused_total": totals["unused"],
            "unused_hidden": totals["unused"] - len(unused),
            "missing": missing,
            "missing_total": totals["missing"],
            "missing_hidden": totals["missing"] - len(missing),
            "flow_count": int(self.flow_counts.get(env_id, 0)),
            "unreadable_flows": unreadable.get(env_id, 0),
            "legacy_uses": legacy.get(env_id, 0),
        }

    def _reference(self, row: dict[str, Any], fields: Iterable[str]) -> dict[str, Any]:
        logical, flows = self.flows.get((row[ENV], row[LN]), (None, []))
        out = {f: row[f] for f in fields}
        if not fields:  # named by flows, not found: the name as the first flow spells it
            out["logical_name"] = logical
        total = int(row["_uses"])
        return {**out, "flows": flows, "flows_total": total, "flows_hidden": total - len(flows)}


def _flows_by_name(
    snapshot: Snapshot, uses: pd.DataFrame, wanted: list[Key], flows_shown: int | None
) -> dict[Key, tuple[Any, list[dict[str, Any]]]]:
    """Return, per (environment, folded name), how the first flow spells it and the flows."""
    if not wanted:
        return {}
    keys = pd.MultiIndex.from_tuples(wanted, names=[ENV, LN])
    picked = uses[_key_index(uses).isin(keys)]
    flows = snapshot.flows[["environment_id", "flow_id", "name", "state"]]
    flows = flows[flows[ENV].isin(picked[ENV].unique())]
    joined = picked.merge(flows, on=["environment_id", "flow_id"], how="left")
    joined = joined.iloc[np.lexsort((fold_key(joined["key"]), fold_key(joined["name"])))]
    if flows_shown is not None:
        joined = joined.groupby([ENV, LN], sort=False).head(flows_shown)
    out: dict[Key, tuple[Any, list[dict[str, Any]]]] = {}
    columns = [ENV, LN, "flow_id", "key", "logical_name", "name", "state", "action_count"]
    for row in records(joined, columns):
        slot = out.setdefault((row[ENV], row[LN]), (row["logical_name"], []))
        state = flow_state(row["state"])
        slot[1].append(
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


def _key_index(frame: pd.DataFrame) -> pd.MultiIndex:
    return pd.MultiIndex.from_arrays([frame[ENV], frame[LN]], names=[ENV, LN])


def _head_by_env(frame: pd.DataFrame, limit: int | None) -> dict[str, list[dict[str, Any]]]:
    """Return the first ``limit`` rows of each environment as dicts, in the frame's order."""
    if limit is not None:
        frame = frame.groupby(ENV, sort=False).head(limit)
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in records(frame, list(frame.columns)):
        out[row[ENV]].append(row)
    return out


def _flat(groups: Mapping[str, list[dict[str, Any]]]) -> Iterable[dict[str, Any]]:
    return (row for rows in groups.values() for row in rows)


def _count_by_env(frame: pd.DataFrame, mask: pd.Series) -> dict[str, int]:
    counts = frame.loc[mask.fillna(True).astype(bool), "environment_id"].value_counts()
    return {str(k): int(v) for k, v in counts.items()}


def duplicate_groups(
    snapshot: Snapshot,
    findings: pd.DataFrame,
    proposals: Any,
    env_names: Mapping[str, str],
    *,
    shown: int | None = None,
    rows_shown: int | None = None,
) -> dict[str, Any]:
    """Return the duplicate groups: members, survivor and why, moves and leftovers.

    ``groups`` holds at most ``shown`` groups (those with the most references, then the most
    moves), in environment and group order; ``total`` counts them all. Each group lists at most
    ``rows_shown`` members, moves and leftovers; its ``*_total`` counts are exact.
    """
    frames = _group_sources(findings, proposals)
    if not frames:
        return {"groups": [], "total": 0}
    frames, keys = _number_groups(frames)
    total = len(keys)
    if shown is not None and total > shown:
        selected = np.zeros(total, dtype=bool)
        selected[_largest_groups(keys, frames, env_names, shown)] = True
        frames = {name: f[selected[f[GROUP_KEY].to_numpy()]] for name, f in frames.items()}
    # Rows carry the group id as text, str(group_id), as the templates show it.
    frames = {name: f.assign(**{GROUP: _group_text(f)}) for name, f in frames.items()}
    parts = _GroupParts(
        **{name: _by_group(frames.get(name), columns) for name, columns in GROUP_SOURCES.items()},
        env_names=env_names,
        has_proposal=proposals is not None,
        rows_shown=rows_shown,
    )
    lookups = _Lookups(snapshot, parts)
    groups = [parts.group(key, lookups) for key in parts.group_keys()]
    groups.sort(key=lambda g: (fold(g["environment_name"]), fold(g["group_id"])))
    return {"groups": groups, "total": total}


GROUP, GROUP_KEY = "group_id", "_group"  # GROUP_KEY: the number of environment and group id
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
GROUP_SOURCES = {  # the rows that name a group (members: the findings) and their columns shown
    "members": ["object_id"],
    "survivors": SURVIVOR_FIELDS,
    "moves": MOVE_FIELDS,
    "leftovers": LEFTOVER_FIELDS,
}
PROPOSAL_PARTS = ("survivors", "moves", "leftovers")
REFERENCE_IDS = {"members": "object_id", "survivors": "survivor_id", "leftovers": "reference_id"}
ROLE_ORDER = ("survivor", "member", "leftover")
Rows = Mapping[Key, list[dict[str, Any]]]


def _group_sources(findings: pd.DataFrame, proposals: Any) -> dict[str, pd.DataFrame]:
    """Return the rows of each source that has any: environment, group id and its columns."""
    frames = {"members": _members_frame(findings)}
    for name in PROPOSAL_PARTS:
        frame, columns = part(proposals, name), GROUP_SOURCES[name]
        if frame is not None and not frame.empty:
            # Only the columns shown: the proposals of a large tenant hold a million moves.
            frames[name] = frame[[ENV, GROUP, *(col for col in columns if col in frame.columns)]]
    return {name: frame for name, frame in frames.items() if frame is not None and not frame.empty}


def _members_frame(findings: pd.DataFrame) -> pd.DataFrame | None:
    if "group_id" not in findings.columns or findings.empty:
        return None
    mask = findings["group_id"].notna() & (findings["object_type"] == "reference")
    return findings[[ENV, GROUP, "object_id"]][mask.fillna(False).astype(bool)]


def _group_text(frame: pd.DataFrame) -> pd.Series:
    return frame[GROUP].astype("string").fillna("None")  # str(group_id), as rows carry it


def _number_groups(
    frames: dict[str, pd.DataFrame],
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Number the groups in order of first sighting (members, survivors, moves, leftovers).

    Return the frames with each row's group number (GROUP_KEY), the members reduced to the first
    sighting of each, and per number the group's environment and group id (as text).
    """
    # A group is its environment (a missing one as "") and group id: integer codes of both
    # number the pairs without building a text key per row.
    envs = pd.concat([f[ENV] for f in frames.values()], ignore_index=True)
    group_ids = pd.concat([_group_text(f) for f in frames.values()], ignore_index=True)
    env_codes, _ = pd.factorize(envs.astype("string").fillna(""))
    id_codes, ids = pd.factorize(group_ids)
    numbers, _ = pd.factorize(env_codes.astype(np.int64) * len(ids) + id_codes)
    _, first = np.unique(numbers, return_index=True)  # numbers count up in order of sighting
    keys = pd.DataFrame({ENV: envs.take(first), GROUP: group_ids.take(first)})
    bounds = np.cumsum([0, *(len(f) for f in frames.values())])
    numbered = {
        name: frame.assign(**{GROUP_KEY: numbers[start:stop]})
        for (name, frame), start, stop in zip(frames.items(), bounds[:-1], bounds[1:], strict=True)
    }
    if "members" in numbered:  # the first sighting of each member, in the findings' order
        numbered["members"] = numbered["members"].drop_duplicates([GROUP_KEY, "object_id"])
    return numbered, keys.reset_index(drop=True)


def _largest_groups(
    keys: pd.DataFrame,
    frames: dict[str, pd.DataFrame],
    env_names: Mapping[str, str],
    shown: int,
) -> np.ndarray:
    """Return the numbers of the ``shown`` groups with the most references, then moves."""
    ids = [
        frames[name][[GROUP_KEY, col]].set_axis([GROUP_KEY, "ref"], axis=1)
        for name, col in REFERENCE_IDS.items()
        if name in frames and col in frames[name].columns
    ]
    size = np.zeros(len(keys), dtype=np.int64)
    if ids:
        refs = pd.concat(ids).dropna(subset=["ref"]).drop_duplicates()
        size = np.bincount(refs[GROUP_KEY].to_numpy(), minlength=len(keys))
    moved = np.zeros(len(keys), dtype=np.int64)
    if "moves" in frames:
        moved = np.bincount(frames["moves"][GROUP_KEY].to_numpy(), minlength=len(keys))
    names = [env_names.get(e, e) for e in keys[ENV].astype(object)]
    order = np.lexsort(
        (
            fold_key(keys[GROUP]),
            fold_key(pd.Series(names, dtype=object)),
            -moved,
            -size,
        )
    )
    return order[:shown]


@dataclass(frozen=True)
class _GroupParts:
    """The proposals' rows of the shown groups, indexed by (environment, group)."""

    members: Rows
    survivors: Rows
    moves: Rows
    leftovers: Rows
    env_names: Mapping[str, str]
    has_proposal: bool
    rows_shown: int | None

    def group_keys(self) -> set[Key]:
        return set(self.members) | set(self.survivors) | set(self.moves) | set(self.leftovers)

    def reference_keys(self) -> set[Key]:
        out = {(env, r["object_id"]) for (env, _), rows in self.members.items() for r in rows}
        out |= {(env, r["survivor_id"]) for (env, _), rows in self.survivors.items() for r in rows}
        out |= {(env, r["reference_id"]) for (env, _), rows in self.leftovers.items() for r in rows}
        return out

    def flow_keys(self) -> set[Key]:
        return {
            (env, r["flow_id"])
            for (env, _), rows in self.moves.items()
            for r in rows[: self.rows_shown]
        }

    def group(self, key: Key, lookups: _Lookups) -> dict[str, Any]:
        env_id, group_id = key
        survivor = (self.survivors.get(key) or [None])[0]
        survivor_id = survivor["survivor_id"] if survivor else None
        left = self.leftovers.get(key, [])
        left_ids = {r["reference_id"] for r in left}
        ids = [r["object_id"] for r in self.members.get(key, [])]
        ids += [*([survivor_id] if survivor_id else []), *(r["reference_id"] for r in left)]
        members = [
            lookups.member(env_id, ref_id, survivor_id, left_ids) for ref_id in dict.fromkeys(ids)
        ]
        members.sort(key=lambda m: ROLE_ORDER.index(m["role"]))  # survivor first; stable
        moves = self.moves.get(key, [])
        cap = self.rows_shown
        return {
            "environment_id": env_id,
            "environment_name": self.env_names.get(env_id, env_id),
            "group_id": group_id,
            "connector": next((m["connector"] for m in members if m["connector"]), None),
            "members": members[:cap],
            "members_total": len(members),
            "members_hidden": len(members[cap:]) if cap is not None else 0,
            "survivor": next((m for m in members if m["role"] == "survivor"), None),
            "survivor_reason": survivor["reason"] if survivor else None,
            "moves": [_move(m, lookups, env_id) for m in moves[:cap]],
            "moves_total": len(moves),
            "moves_hidden": len(moves[cap:]) if cap is not None else 0,
            "leftovers": [
                {**r, **_display(lookups, env_id, r["reference_id"])} for r in left[:cap]
            ],
            "leftovers_total": len(left),
            "leftovers_hidden": len(left[cap:]) if cap is not None else 0,
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
    for row in records(frame, [ENV, GROUP, *columns]):
        out[(row[ENV], row[GROUP])].append(row)
    return out


def _columns(frame: pd.DataFrame, names: Iterable[str]) -> pd.DataFrame:
    """Return the frame's columns of ``names`` that it has (records() fills in the others)."""
    return frame[[name for name in names if name in frame.columns]]


def _pick(frame: pd.DataFrame, id_column: str, wanted: set[Key]) -> pd.DataFrame:
    """Return the rows whose (environment, ``id_column``) is wanted."""
    if not wanted:
        return frame.iloc[0:0]
    frame = frame[frame[ENV].isin({env for env, _ in wanted})]  # cheap, and narrows a lot
    index = pd.MultiIndex.from_arrays([frame[ENV], frame[id_column]])
    return frame[index.isin(pd.MultiIndex.from_tuples(list(wanted)))]


class _Lookups:
    """Reference, flow-name and usage-count lookups for the shown groups."""

    def __init__(self, snapshot: Snapshot, parts: _GroupParts) -> None:
        # Only the columns read: filtering every column of a million flows or uses is slow.
        refs = _columns(snapshot.references, REFERENCE_FIELDS)
        refs = _pick(refs, "reference_id", parts.reference_keys())
        self.refs = {(r[ENV], r["reference_id"]): r for r in records(refs, REFERENCE_FIELDS)}
        flows = _pick(_columns(snapshot.flows, FLOW_FIELDS), "flow_id", parts.flow_keys())
        self.flows = {(f[ENV], f["flow_id"]): f["name"] for f in records(flows, FLOW_FIELDS)}
        names = {(env, fold(r["logical_name"])) for (env, _), r in self.refs.items()}
        usages = _columns(snapshot.usages, [ENV, "logical_name", "flow_id"])
        usages = usages[usages["logical_name"].notna() & usages[ENV].isin({e for e, _ in names})]
        usages = usages.assign(**{LN: fold_text(usages["logical_name"])})
        counts = _pick(usages, LN, names).groupby([ENV, LN])["flow_id"].nunique()
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
