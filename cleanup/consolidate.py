"""Consolidation: group duplicate connection references and choose one survivor per group.

Pure pandas over a :class:`~cleanup.snapshot.model.Snapshot`; no I/O.

Grouping (``duplicate_groups``), always within one environment and one connector (compared
case-insensitively):

* ``same-connection``: two or more references bound to the same connection id.
* ``unbound-same-solution``: two or more unbound references that share a solution other than
  the default ones ("Default", "Active", "Basic", or the well-known default solution id).
  A reference can sit in several solutions, but it joins at most one group: candidate
  solutions are taken largest first (then by solution unique name, then id), each claims the
  references not yet claimed, and a candidate left with fewer than two members is dropped.

The group id is a short hash of the environment and the sorted member ids, so it is the same
on every run that sees the same members, whatever the row order.

Survivor choice (``propose``), first difference wins: unmanaged over managed; in the solution
shared by most of the flows that use the group; compliant name; service principal connection;
most flows; oldest; then logical name (and reference id, so the order is total).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cleanup.snapshot.model import Snapshot

BASIS_SAME_CONNECTION = "same-connection"
BASIS_UNBOUND_SAME_SOLUTION = "unbound-same-solution"
DEFAULT_SOLUTION_ID = "fd140aaf-4df4-11dd-bd17-0019b9312238"
DEFAULT_SOLUTION_NAMES = frozenset({"default", "active", "basic"})
WORKFLOW_COMPONENT_TYPE = "29"

GROUP_COLUMNS = (
    "group_id",
    "environment_id",
    "reference_id",
    "connector",
    "connection_id",
    "basis",
)
SURVIVOR_COLUMNS = (
    "group_id",
    "environment_id",
    "survivor_id",
    "survivor_logical_name",
    "survivor_display_name",
    "decided_by",
    "reason",
)
MOVE_COLUMNS = (
    "environment_id",
    "group_id",
    "flow_id",
    "key",
    "from_reference_id",
    "from_logical_name",
    "to_reference_id",
    "to_logical_name",
    "blocked",
    "why_blocked",
)
LEFTOVER_COLUMNS = (
    "environment_id",
    "group_id",
    "reference_id",
    "logical_name",
    "deletable",
    "why_not",
)

# (member column, sort ascending, label used in "decided by") in ranking order.
_CRITERIA = (
    ("_managed", True, "unmanaged over managed"),
    ("_solution_flows", False, "in the solution of the flows that use the group"),
    ("_compliant", False, "compliant name"),
    ("_service_principal", False, "service principal connection"),
    ("_used_by", False, "most used"),
    ("_created_key", True, "oldest"),
    ("_ln_key", True, "logical name"),
    ("reference_id", True, "reference id"),
)

_AUTO_NAME_RE = re.compile(r"(^|_)shared[a-z0-9]*_[0-9a-f]{5}$", re.IGNORECASE)
_NAME_PARTS_RE = re.compile(r"\s+[\u2013\u2014-]\s+")

NameCheck = Callable[[Mapping[str, Any]], bool]

BLOCK_UNBOUND_SURVIVOR = (
    "the survivor '{survivor}' is not bound to a connection, so flows pointed at it could not "
    "be turned on; bind it to a connection first"
)
BLOCK_MANAGED_FLOW = (
    "the flow is managed: editing it would create an unmanaged layer; fix it in the source "
    "environment"
)
BLOCK_FLOW_UNKNOWN = "the flow is not in the snapshot (or its managed state is unknown)"
MANAGED_LEFTOVER = "managed: fix it in the source environment"


@dataclass(frozen=True, eq=False)
class Proposals:
    """Survivors, flow keys to move and leftovers of every duplicate group."""

    survivors: pd.DataFrame
    moves: pd.DataFrame
    leftovers: pd.DataFrame


# ---------------------------------------------------------------------------------------------
# Grouping


def duplicate_groups(snapshot: Snapshot) -> pd.DataFrame:
    """Return one row per member of each duplicate group, with the basis of the grouping."""
    refs = _reference_keys(snapshot.references)
    parts = [_same_connection(refs), _unbound_same_solution(refs, snapshot)]
    parts = [p for p in parts if not p.empty]
    if not parts:
        return _empty(GROUP_COLUMNS)
    out = pd.concat(parts, ignore_index=True)
    out = out[list(GROUP_COLUMNS)].astype("string")
    return out.take(_sort_order(out, ["environment_id", "group_id", "reference_id"])).reset_index(
        drop=True
    )


def group_id_for(environment_id: str, member_ids: Any) -> str:
    """Return the stable id of a group: a short hash of its environment and sorted members."""
    blob = "\n".join([str(environment_id), *sorted(str(m) for m in member_ids)])
    return "dup-" + hashlib.sha256(blob.encode()).hexdigest()[:12]


def _reference_keys(references: pd.DataFrame) -> pd.DataFrame:
    refs = references[["environment_id", "reference_id", "connector", "connection_id"]]
    refs = refs.dropna(subset=["environment_id", "reference_id", "connector"])
    refs = refs.drop_duplicates(["environment_id", "reference_id"])
    # Connection names are matched case-insensitively, as the rules match them.
    connection = refs["connection_id"].str.strip().str.lower()
    return refs.assign(
        _connector_key=refs["connector"].str.strip().str.lower(),
        _connection_key=connection.mask(connection == ""),
    )


def _same_connection(refs: pd.DataFrame) -> pd.DataFrame:
    bound = refs[refs["_connection_key"].notna()]
    keys = ["environment_id", "_connector_key", "_connection_key"]
    sizes = bound.groupby(keys, sort=False)["reference_id"].transform("size")
    members = bound[sizes >= 2]
    if members.empty:
        return _empty(GROUP_COLUMNS)
    return _with_group_ids(members, keys).assign(basis=BASIS_SAME_CONNECTION)


def _with_group_ids(members: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    codes = members.groupby(keys, sort=False).ngroup().to_numpy()
    order = np.argsort(codes, kind="stable")
    envs = members["environment_id"].to_numpy(dtype=object)[order]
    refs = members["reference_id"].to_numpy(dtype=object)[order].tolist()
    starts = np.flatnonzero(np.diff(codes[order], prepend=-1)).tolist()
    ends = [*starts[1:], len(refs)] if starts else []
    ids = [group_id_for(envs[a], refs[a:b]) for a, b in zip(starts, ends, strict=True)]
    group_ids = np.asarray(ids, dtype=object)[codes] if ids else np.array([], dtype=object)
    return members.reset_index(drop=True).assign(group_id=group_ids)


def _unbound_same_solution(refs: pd.DataFrame, snapshot: Snapshot) -> pd.DataFrame:
    unbound = refs[refs["_connection_key"].isna()]
    # Join the references to their solutions on integer codes (ids compared lower-cased).
    sols = _solution_codes(snapshot)
    ref, refs_lower = _lower_codes(unbound["reference_id"])
    sol, sol_ref = _component_matches(snapshot, sols, "reference", refs_lower)
    at_ref, at_sol = _int_join(
        _combine_codes(
            _codes_in(unbound["environment_id"], sols.environments), ref, len(refs_lower)
        ),
        _combine_codes(sols.pair_env[sol], sol_ref, len(refs_lower)),
    )
    candidates = unbound.iloc[at_ref].assign(solution_id=sols.solution_id.take(sol[at_sol]))
    candidates = candidates.drop_duplicates(["environment_id", "reference_id", "solution_id"])
    keys = ["environment_id", "_connector_key", "solution_id"]
    sizes = candidates.groupby(keys, sort=False)["reference_id"].transform("size")
    candidates = candidates[sizes >= 2]
    if candidates.empty:
        return _empty(GROUP_COLUMNS)
    names = _solution_names(snapshot)
    candidates = candidates.merge(names, on=["environment_id", "solution_id"], how="left")
    rows = _claim_members(candidates, keys)
    if not rows:
        return _empty(GROUP_COLUMNS)
    claimed = pd.DataFrame(rows, columns=["environment_id", "reference_id", "group_id"])
    base = unbound.drop(columns=["_connector_key", "_connection_key"])
    return base.merge(claimed, on=["environment_id", "reference_id"]).assign(
        basis=BASIS_UNBOUND_SAME_SOLUTION
    )


def _claim_members(candidates: pd.DataFrame, keys: list[str]) -> list[tuple[str, str, str]]:
    # Largest shared solution first, so the usual "one solution, many duplicates" case wins;
    # ties by name and id keep the outcome independent of row order.
    summary = candidates.groupby(keys, sort=False).agg(
        members=("reference_id", lambda s: tuple(sorted(s))),
        name=("_solution_name_key", "first"),
    )
    summary = summary.reset_index().assign(size=lambda f: f["members"].map(len))
    summary = summary.sort_values(
        ["size", "name", "solution_id", "environment_id", "_connector_key"],
        ascending=[False, True, True, True, True],
        na_position="last",
    )
    taken: set[tuple[str, str]] = set()
    rows: list[tuple[str, str, str]] = []
    for env, members in zip(summary["environment_id"], summary["members"], strict=True):
        free = [m for m in members if (env, m) not in taken]
        if len(free) < 2:
            continue
        gid = group_id_for(env, free)
        taken.update((env, m) for m in free)
        rows.extend((env, m, gid) for m in free)
    return rows


def _default_solution_mask(frame: pd.DataFrame) -> pd.Series:
    is_default_id = frame["solution_id"].str.lower().str.strip() == DEFAULT_SOLUTION_ID
    return is_default_id.fillna(False).astype(bool)


def _solution_names(snapshot: Snapshot) -> pd.DataFrame:
    sols = snapshot.solutions.drop_duplicates(["environment_id", "solution_id"])
    label = sols["friendly_name"].fillna(sols["unique_name"]).fillna(sols["solution_id"])
    return pd.DataFrame(
        {
            "environment_id": sols["environment_id"],
            "solution_id": sols["solution_id"],
            "_solution_name_key": sols["unique_name"].str.lower(),
            "_solution_label": label,
        }
    )


# ---------------------------------------------------------------------------------------------
# Proposals


def propose(
    snapshot: Snapshot,
    groups: pd.DataFrame,
    *,
    naming: Any = None,
    name_is_compliant: NameCheck | None = None,
) -> Proposals:
    """Choose a survivor for each duplicate group and list the flow keys to move and leftovers.

    ``name_is_compliant`` receives a mapping with ``environment_id``, ``reference_id``,
    ``display_name``, ``logical_name``, ``connector`` and ``identity``; by default names are
    checked with ``cleanup.rules.naming.check_name`` and the ``naming`` settings (the default
    convention when None), or with ``looks_compliant`` if the naming rule is not installed.
    """
    if groups.empty:
        return Proposals(_empty(SURVIVOR_COLUMNS), _empty(MOVE_COLUMNS), _empty(LEFTOVER_COLUMNS))
    check = name_is_compliant or default_name_check(naming)
    members, uses = _member_facts(snapshot, groups, check)
    ranked = _rank(members)
    survivors = _survivors(ranked)
    moves = _moves(snapshot, uses, survivors, members)
    leftovers = _leftovers(snapshot, ranked, moves)
    return Proposals(survivors, moves, leftovers)


def default_name_check(naming: Any = None) -> NameCheck:
    """Return the name check used when none is injected (the naming rule if available).

    Pass the same ``naming`` settings the rules use, so the report and the plan agree on
    survivors; without them the naming rule's default convention applies.
    """
    rule = _naming_rule()
    if rule is None:
        return looks_compliant
    is_compliant, default_settings = rule
    return _NamingCheck(is_compliant, default_settings() if naming is None else naming)


class _NamingCheck:
    """The naming rule's verdict on a member; it reads only ``FIELDS``, so it can be shared."""

    FIELDS = ("display_name", "logical_name", "connector", "identity", "area")

    def __init__(self, is_compliant: Callable[..., bool], naming: Any) -> None:
        self._is_compliant = is_compliant
        self._naming = naming

    def __call__(self, row: Mapping[str, Any]) -> bool:
        return self.of(*(row.get(f) for f in self.FIELDS))

    def of(
        self,
        display_name: Any,
        logical_name: Any,
        connector: Any,
        identity: Any,
        area: Any = None,
    ) -> bool:
        """Say whether one name is compliant (``area`` only shapes a proposal, not this)."""
        return bool(
            self._is_compliant(display_name, logical_name, connector, identity, self._naming)
        )


def _naming_rule() -> tuple[Callable[..., bool], Callable[[], Any]] | None:
    try:
        from cleanup.rules.naming import name_is_compliant
        from cleanup.rules.settings import NamingSettings
    except ImportError:  # consolidation works without the naming rule, with a heuristic
        return None
    return name_is_compliant, NamingSettings


def looks_compliant(row: Mapping[str, Any]) -> bool:
    """Tell whether a display name looks like '<Area> – <Connector> – <Type>', not auto-made."""
    display = row.get("display_name")
    if not isinstance(display, str) or not display.strip():
        return False
    if _AUTO_NAME_RE.search(display.strip()):
        return False
    return len([p for p in _NAME_PARTS_RE.split(display.strip()) if p]) >= 3


def _member_facts(
    snapshot: Snapshot, groups: pd.DataFrame, check: NameCheck
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return the ranking facts of every group member, and the flow keys using each group."""
    cols = ["environment_id", "reference_id", "logical_name", "display_name", "is_managed"]
    refs = snapshot.references[[*cols, "created_on", "connection_id", "connector"]]
    refs = refs.drop_duplicates(["environment_id", "reference_id"])
    members = groups[["group_id", "environment_id", "reference_id"]].merge(
        refs,
        on=["environment_id", "reference_id"],
        how="left",
    )
    connection = members["connection_id"].str.strip()
    members["connection_id"] = connection.mask(connection == "")
    members = members.merge(
        _identities(snapshot), on=["environment_id", "connection_id"], how="left"
    )
    unbound = members["connection_id"].isna()
    members["identity"] = members["identity"].mask(unbound, "unbound").fillna("unknown")
    members["_ln_key"] = members["logical_name"].str.lower().fillna("")
    uses = _group_usages(snapshot, members)
    members = _add_usage_counts(members, uses)
    members = _add_solution_fit(snapshot, members, uses)
    created = members["created_on"]
    members = members.assign(
        # Unknown managed state ranks (and is treated) as managed: never assume we may touch it.
        _managed=members["is_managed"].fillna(True).astype(bool),
        _compliant=_compliance(members, check),
        _service_principal=(members["identity"] == "service-principal").astype(bool),
        _created_key=np.where(created.isna(), np.iinfo(np.int64).max, _as_ns(created)),
        _bound=~unbound,
    )
    return members, uses


def _compliance(members: pd.DataFrame, check: NameCheck) -> np.ndarray:
    fields = ["environment_id", "reference_id", "display_name", "logical_name", "connector"]
    if isinstance(check, _NamingCheck):
        # The default check reads only the name fields: ask once per distinct combination.
        keys = members[["display_name", "logical_name", "connector", "identity"]]
        codes = keys.groupby(list(keys.columns), sort=False, dropna=False).ngroup().to_numpy()
        distinct = keys.iloc[unique_first(codes)[1]].astype(object)
        distinct = distinct.where(distinct.notna(), None)
        answers = [check.of(*key) for key in distinct.itertuples(index=False, name=None)]
        return np.asarray(answers, dtype=bool)[codes]
    facts = members[[*fields, "identity"]].astype(object)
    facts = facts.where(facts.notna(), None)
    return np.asarray([bool(check(row)) for row in _records(facts)], dtype=bool)


def _as_ns(times: pd.Series) -> np.ndarray:
    values = times.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]")
    stamps = values.to_numpy(dtype="datetime64[ns]", na_value=np.datetime64("NaT"))
    return np.asarray(stamps.astype(np.int64))


def _identities(snapshot: Snapshot) -> pd.DataFrame:
    conns = snapshot.connections[["environment_id", "connection_id", "identity"]]
    return conns.dropna(subset=["connection_id"]).drop_duplicates(
        ["environment_id", "connection_id"]
    )


def _group_usages(snapshot: Snapshot, members: pd.DataFrame) -> pd.DataFrame:
    """Every flow key whose logical name (case-insensitive) is a group member's.

    A flow key matching several members goes to the first by group id, then reference id.
    """
    uses = snapshot.usages[["environment_id", "flow_id", "key", "logical_name"]]
    keyed = members[["group_id", "environment_id", "reference_id", "_ln_key"]]
    keyed = keyed[keyed["_ln_key"] != ""]
    # Members in (group id, reference id) order, so a member's position is its rank.
    keyed = keyed.sort_values(["group_id", "reference_id"], ignore_index=True)
    # (environment, lower-cased logical name) as one integer on both sides: no string merge.
    use_env, member_env = _shared_codes(uses["environment_id"], keyed["environment_id"])
    use_name, member_name = _shared_codes(uses["logical_name"], keyed["_ln_key"], lower=True)
    names = int(max(use_name.max(initial=0), member_name.max(initial=0))) + 1
    member = _first_match(
        _combine_codes(use_env, use_name, names), _combine_codes(member_env, member_name, names)
    )
    # Usages without a flow id or key are left out (no logical name: matched nothing).
    member[uses["flow_id"].isna().to_numpy() | uses["key"].isna().to_numpy()] = -1
    flow = pd.factorize(uses["flow_id"])[0]
    flow_key = _combine_codes(_combine_codes(use_env, flow), pd.factorize(uses["key"])[0])
    # Per flow key, the row of the first member (the first row among equals), in row order.
    matched = np.flatnonzero(member >= 0)
    matched = matched[np.argsort(member[matched], kind="stable")]
    keep = np.sort(matched[unique_first(flow_key[matched])[1]])
    member = member[keep]
    out = uses.take(keep).reset_index(drop=True)
    out["group_id"] = keyed["group_id"].array.take(member)
    out["reference_id"] = keyed["reference_id"].array.take(member)
    # Integer ids of the member, the group and the flow, for counting without strings.
    out["_member"] = _codes(keyed[["group_id", "reference_id"]])[member]
    out["_group"] = _codes(keyed[["group_id"]])[member]
    out["_flow"] = flow[keep]
    return out


def _shared_codes(*columns: pd.Series, lower: bool = False) -> list[np.ndarray]:
    """Number the values of several columns in one shared numbering (missing values: -1).

    Each column is factorized on its own (cheap for the few distinct values of ids like
    environments), then only the distinct values are matched, by arrow; ``lower`` compares
    them case-insensitively.
    """
    parts = [pd.factorize(column) for column in columns]
    values = pa.chunked_array(
        [_arrow(pd.Series(uniques, dtype="string")) for _, uniques in parts],
        type=pa.large_string(),
    )
    if lower:
        values = pc.utf8_lower(values)
    shared = values.combine_chunks().dictionary_encode().indices.to_numpy(zero_copy_only=False)
    bounds = np.cumsum([0, *(len(uniques) for _, uniques in parts)])
    # A trailing -1 maps the missing-value code (-1) to -1.
    return [
        np.append(shared[start:end], -1)[codes]
        for (codes, _), start, end in zip(parts, bounds[:-1], bounds[1:], strict=True)
    ]


def _combine_codes(first: np.ndarray, second: np.ndarray, size: int | None = None) -> np.ndarray:
    """Return one integer per (first, second) pair of codes (-1 when either is -1).

    ``size`` bounds ``second`` (pass the same one to compare pairs from several sources).
    """
    first, second = first.astype(np.int64), second.astype(np.int64)
    if size is None:
        if (int(first.max(initial=0)) + 1) * (int(second.max(initial=0)) + 1) >= 2**62:
            # Renumber densely so the product fits (keeping -1 as -1).
            first = np.where(first < 0, -1, pd.factorize(first)[0])
            second = np.where(second < 0, -1, pd.factorize(second)[0])
        size = int(second.max(initial=0)) + 1
    return np.where((first < 0) | (second < 0), -1, first * size + second)


def _first_match(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Return, per ``left`` code, the first position of an equal ``right`` code (-1: none)."""
    values, firsts = unique_first(right)
    if not len(values):
        return np.full(len(left), -1, dtype=np.int64)
    at = np.minimum(np.searchsorted(values, left), len(values) - 1)
    found = (values[at] == left) & (left >= 0)
    return np.where(found, firsts[at], -1)


def _add_usage_counts(members: pd.DataFrame, uses: pd.DataFrame) -> pd.DataFrame:
    per_member = _flows_per(uses, "_member", ["group_id", "reference_id"], "_used_by")
    per_group = _flows_per(uses, "_group", ["group_id"], "_group_flows")
    members = members.merge(per_member, on=["group_id", "reference_id"], how="left")
    members = members.merge(per_group, on="group_id", how="left")
    return members.assign(
        _used_by=members["_used_by"].fillna(0).astype(int),
        _group_flows=members["_group_flows"].fillna(0).astype(int),
    )


def _flows_per(uses: pd.DataFrame, code: str, keys: list[str], name: str) -> pd.DataFrame:
    """Count the distinct flows of each ``code`` of the usages: ``keys`` and the count."""
    codes = uses[code].to_numpy().astype(np.int64)
    flows = uses["_flow"].to_numpy().astype(np.int64)
    size = int(flows.max(initial=-1)) + 1
    present, first = unique_first(codes)
    counts = np.bincount(pd.unique(codes * size + flows) // max(size, 1))
    out = uses[keys].iloc[first].reset_index(drop=True)
    out[name] = counts[present]
    return out


def _add_solution_fit(
    snapshot: Snapshot, members: pd.DataFrame, uses: pd.DataFrame
) -> pd.DataFrame:
    """Add, per member, its solution holding the most flows that use the group, and how many."""
    sols = _solution_codes(snapshot)
    use_group, member_group = _shared_codes(uses["group_id"], members["group_id"])
    size = int(max(use_group.max(initial=0), member_group.max(initial=0))) + 1
    use_env = _codes_in(uses["environment_id"], sols.environments)
    group = _combine_codes(use_env, use_group, size)  # -1: no solution in its environment
    # The distinct (group, environment, flow) rows, as drop_duplicates would keep them.
    rows = np.flatnonzero(group >= 0)
    flow_code = uses["_flow"].to_numpy()[rows]
    rows = rows[~pd.Series(_combine_codes(group[rows], flow_code)).duplicated().to_numpy()]
    flow, flows = _lower_codes(uses["flow_id"].iloc[rows])
    sol, sol_flow = _component_matches(snapshot, sols, "flow", flows)
    # Each (group flow, solution membership) pair of one environment and flow is another flow
    # of the group in that solution, so counting the pairs counts the flows.
    at_flow, at_sol = _int_join(
        _combine_codes(use_env[rows], flow, len(flows)),
        _combine_codes(sols.pair_env[sol], sol_flow, len(flows)),
    )
    pairs = len(sols.label)
    group_sol, flow_counts = np.unique(
        _combine_codes(group[rows][at_flow], sol[at_sol], pairs), return_counts=True
    )
    # The member's own solutions, each with the number of the group's flows in it.
    member_env = _codes_in(members["environment_id"], sols.environments)
    ref, refs = _lower_codes(members["reference_id"])
    ref_sol, ref_key = _component_matches(snapshot, sols, "reference", refs)
    member, at_ref = _int_join(
        _combine_codes(member_env, ref, len(refs)),
        _combine_codes(sols.pair_env[ref_sol], ref_key, len(refs)),
    )
    candidate = ref_sol[at_ref]
    member_group_sol = _combine_codes(
        _combine_codes(member_env, member_group, size)[member], candidate, pairs
    )
    found = _first_match(member_group_sol, group_sol)
    member, candidate, count = member[found >= 0], candidate[found >= 0], found[found >= 0]
    count = flow_counts[count]
    # Most flows first, then by solution name and id; the first per member wins.
    order = np.lexsort([sols.rank[candidate], -count, member])
    best = order[np.flatnonzero(np.diff(member[order], prepend=-1))]
    solution_flows = np.zeros(len(members), dtype=np.int64)
    solution_flows[member[best]] = count[best]
    label = np.full(len(members), None, dtype=object)
    label[member[best]] = sols.label[candidate[best]]
    return members.assign(
        _solution_flows=solution_flows, _solution_label=pd.array(label, dtype="string")
    )


@dataclass(frozen=True, eq=False)
class _Solutions:
    """The solution components numbered by (environment, solution), default solutions left out.

    ``pair`` gives each component row its solution number (-1: dropped); per solution number,
    ``pair_env`` is its environment's position in ``environments``, ``rank`` its place in the
    order of names then ids, ``label`` the text that names it and ``solution_id`` its id.
    """

    environments: pd.Index
    pair: np.ndarray
    pair_env: np.ndarray
    rank: np.ndarray
    label: np.ndarray
    solution_id: pd.api.extensions.ExtensionArray


def _solution_codes(snapshot: Snapshot) -> _Solutions:
    keys = ["environment_id", "solution_id"]
    comps = snapshot.solution_components
    env, environments = pd.factorize(comps["environment_id"])
    solution, solutions = pd.factorize(comps["solution_id"])
    kept = (env >= 0) & (solution >= 0) & comps["object_id"].notna().to_numpy()
    pair = np.full(len(comps), -1, dtype=np.int64)
    pair[kept], combos = pd.factorize(_combine_codes(env[kept], solution[kept], len(solutions)))
    pairs = pd.DataFrame(
        {
            "environment_id": environments.take(combos // max(len(solutions), 1)),
            "solution_id": solutions.take(combos % max(len(solutions), 1)),
        }
    ).astype("string")
    # Leave out the default solutions, decided once per (environment, solution).
    names = snapshot.solutions["unique_name"].str.strip().str.lower()
    default_named = names.isin(DEFAULT_SOLUTION_NAMES).fillna(False).astype(bool)
    defaults = snapshot.solutions.loc[default_named, keys].drop_duplicates().assign(_default=1)
    named = pairs.merge(defaults, on=keys, how="left")["_default"].notna().to_numpy()
    dropped = np.append(_default_solution_mask(pairs).to_numpy() | named, True)
    pair[dropped[pair]] = -1
    facts = pairs.merge(_solution_names(snapshot), on=keys, how="left")
    rank = np.empty(len(pairs), dtype=np.int64)
    rank[
        np.lexsort([sort_codes(facts["solution_id"]), sort_codes(facts["_solution_name_key"])])
    ] = np.arange(len(pairs))
    label = facts["_solution_label"].fillna(facts["solution_id"]).to_numpy(dtype=object)
    return _Solutions(
        environments=pd.Index(environments),
        pair=pair,
        pair_env=(combos // max(len(solutions), 1)).astype(np.int64),
        rank=rank,
        label=label,
        solution_id=pairs["solution_id"].array,
    )


def _component_matches(
    snapshot: Snapshot, sols: _Solutions, object_type: str, keys: pa.Array
) -> tuple[np.ndarray, np.ndarray]:
    """Return the distinct (solution number, position in ``keys``) of one object type.

    ``keys`` holds lower-cased object ids: ids are GUIDs whose case differs between APIs.
    """
    comps = snapshot.solution_components
    wanted = (comps["object_type"] == object_type).fillna(False).to_numpy(dtype=bool)
    wanted &= sols.pair >= 0
    objects = pc.utf8_lower(_arrow(comps["object_id"]).filter(pa.array(wanted)))
    at = pc.index_in(objects, value_set=keys).fill_null(-1).to_numpy().astype(np.int64)
    sol = sols.pair[wanted]
    sol, at = sol[at >= 0], at[at >= 0]
    first = ~pd.Series(_combine_codes(sol, at, len(keys))).duplicated().to_numpy()
    return sol[first], at[first]


def _arrow(column: pd.Series) -> pa.Array:
    """The column as one arrow string array."""
    array = pa.array(column, from_pandas=True)
    return array if pa.types.is_large_string(array.type) else array.cast(pa.large_string())


def _lower_codes(column: pd.Series) -> tuple[np.ndarray, pa.Array]:
    """Number the lower-cased values of a column: the codes (missing: -1) and the values."""
    encoded = pc.utf8_lower(_arrow(column)).dictionary_encode()
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, encoded.dictionary


def _codes_in(column: pd.Series, index: pd.Index) -> np.ndarray:
    """Return each value's position in ``index`` (-1: missing or not there)."""
    codes, uniques = pd.factorize(column)
    return np.append(index.get_indexer(uniques), -1)[codes]


def _int_join(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the positions an inner join of two integer key arrays pairs (-1 joins nothing)."""
    at_left, at_right = np.flatnonzero(left >= 0), np.flatnonzero(right >= 0)
    pairs = pd.DataFrame({"_key": left[at_left], "_left": at_left}).merge(
        pd.DataFrame({"_key": right[at_right], "_right": at_right}), on="_key"
    )
    return pairs["_left"].to_numpy(), pairs["_right"].to_numpy()


def unique_first(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the distinct values of ``codes`` (sorted) and where each first occurs.

    The same as ``np.unique(codes, return_index=True)``, by hashing rather than sorting.
    """
    series = pd.Series(codes)
    firsts = series[~series.duplicated()]
    order = np.argsort(firsts.to_numpy(), kind="stable")
    return firsts.to_numpy()[order], firsts.index.to_numpy()[order]


def _codes(frame: pd.DataFrame) -> np.ndarray:
    """Number the distinct rows of ``frame`` (missing values equal), in order of appearance."""
    return frame.groupby(list(frame.columns), sort=False, dropna=False).ngroup().to_numpy()


def _rank(members: pd.DataFrame) -> pd.DataFrame:
    columns = ["group_id"] + [c for c, _, _ in _CRITERIA]
    ascending = [True] + [asc for _, asc, _ in _CRITERIA]
    ranked = members.sort_values(columns, ascending=ascending, ignore_index=True)
    ranked["_rank"] = ranked.groupby("group_id").cumcount()
    return ranked


def _survivors(ranked: pd.DataFrame) -> pd.DataFrame:
    first = ranked[ranked["_rank"] == 0].set_index("group_id")
    second = ranked[ranked["_rank"] == 1].set_index("group_id").reindex(first.index)
    first = first.assign(
        decided_by=_deciding_criterion(first, second),
        _managed_others=ranked.groupby("group_id")["_managed"].sum() - first["_managed"],
        _size=ranked.groupby("group_id").size(),
    )
    facts = first[list(_REASON_FACTS)]
    reasons = [
        _reason(dict(zip(_REASON_FACTS, values, strict=True)))
        for values in zip(*(facts[col].tolist() for col in _REASON_FACTS), strict=True)
    ]
    out = pd.DataFrame(
        {
            "group_id": first.index,
            "environment_id": first["environment_id"].to_numpy(),
            "survivor_id": first["reference_id"].to_numpy(),
            "survivor_logical_name": first["logical_name"].to_numpy(),
            "survivor_display_name": first["display_name"].to_numpy(),
            "decided_by": first["decided_by"].to_numpy(),
            "reason": reasons,
        }
    )
    return out.sort_values(["environment_id", "group_id"], ignore_index=True).astype("string")


def _deciding_criterion(first: pd.DataFrame, second: pd.DataFrame) -> np.ndarray:
    """Name the first criterion on which the survivor beats the runner-up."""
    differs = np.column_stack(
        [
            (first[col].astype(object) != second[col].astype(object)).to_numpy(dtype=bool)
            for col, _, _ in _CRITERIA
        ]
    )
    labels = np.array([label for _, _, label in _CRITERIA], dtype=object)
    decided = labels[differs.argmax(axis=1)]
    return np.where(second["reference_id"].isna().to_numpy(), "only member", decided)


_REASON_FACTS = (
    "_size",
    "_managed",
    "_managed_others",
    "_group_flows",
    "_solution_flows",
    "_solution_label",
    "identity",
    "_used_by",
    "created_on",
    "_compliant",
    "decided_by",
)


def _reason(row: Mapping[str, Any]) -> str:
    """The full ranking explanation for one survivor, in the order the criteria apply."""
    others = row["_size"] - 1
    if row["_managed"]:
        managed = "managed (all members are managed)"
    elif row["_managed_others"] == others:
        managed = "unmanaged (others managed)"
    elif row["_managed_others"]:
        managed = f"unmanaged ({row['_managed_others']} of {others} others managed)"
    else:
        managed = "unmanaged"
    total = row["_group_flows"]
    if row["_solution_flows"]:
        solution = (
            f"in solution '{row['_solution_label']}' like {row['_solution_flows']} of "
            f"{total} flow{'s' if total != 1 else ''} that use the group"
        )
    else:
        solution = "not in a solution with the flows that use the group"
    identity = {
        "service-principal": "service principal connection",
        "user": "user connection",
        "unbound": "not bound to a connection",
    }.get(row["identity"], "connection identity unknown")
    used = row["_used_by"]
    usage = f"used by {used} flow{'s' if used != 1 else ''}" if used else "used by no flow"
    created = row["created_on"]
    born = f"created {created:%Y-%m-%d}" if not pd.isna(created) else "creation date unknown"
    name = "compliant name" if row["_compliant"] else "name not compliant"
    parts = [managed, solution, name, identity, usage, born]
    return f"kept: {'; '.join(parts)} (decided by: {row['decided_by']})"


def _moves(
    snapshot: Snapshot, uses: pd.DataFrame, survivors: pd.DataFrame, members: pd.DataFrame
) -> pd.DataFrame:
    target = survivors[["group_id", "survivor_id", "survivor_logical_name"]].merge(
        members[["group_id", "reference_id", "_bound"]].rename(
            columns={"reference_id": "survivor_id", "_bound": "_survivor_bound"}
        ),
        on=["group_id", "survivor_id"],
    )
    # One text per survivor, not per flow key.
    target["_unbound_text"] = target["survivor_logical_name"].map(
        lambda ln: BLOCK_UNBOUND_SURVIVOR.format(survivor=ln)
    )
    # Join and filter on positions, then gather only the columns the moves keep.
    use_at, target_at = _int_join(*_shared_codes(uses["group_id"], target["group_id"]))
    use_ref, survivor = _shared_codes(uses["reference_id"], target["survivor_id"])
    use_ref, survivor = use_ref[use_at], survivor[target_at]
    moving = (use_ref != survivor) & (use_ref >= 0) & (survivor >= 0)
    use_at, target_at = use_at[moving], target_at[moving]
    if not len(use_at):
        return _empty(MOVE_COLUMNS)
    rank = _sort_rank(uses, ["environment_id", "group_id", "flow_id", "key"])
    order = np.argsort(rank[use_at], kind="stable")
    use_at, target_at = use_at[order], target_at[order]
    env = uses["environment_id"].array.take(use_at)
    flow_id = uses["flow_id"].array.take(use_at)
    managed = _flow_managed(snapshot, pd.DataFrame({"environment_id": env, "flow_id": flow_id}))
    why = pd.Series(pd.NA, index=range(len(use_at)), dtype="string")
    why = why.mask(managed.isna().to_numpy(), BLOCK_FLOW_UNKNOWN)
    why = why.mask(managed.fillna(False).to_numpy(dtype=bool), BLOCK_MANAGED_FLOW)
    unbound = ~target["_survivor_bound"].to_numpy(dtype=bool)[target_at]
    why = why.mask(unbound, pd.Series(target["_unbound_text"].array.take(target_at)))
    out = pd.DataFrame(
        {
            "environment_id": env,
            "group_id": uses["group_id"].array.take(use_at),
            "flow_id": flow_id,
            "key": uses["key"].array.take(use_at),
            "from_reference_id": uses["reference_id"].array.take(use_at),
            "from_logical_name": uses["logical_name"].array.take(use_at),
            "to_reference_id": target["survivor_id"].array.take(target_at),
            "to_logical_name": target["survivor_logical_name"].array.take(target_at),
            "blocked": why.notna().to_numpy(dtype=bool),
            "why_blocked": why.array,
        }
    )
    return out.astype({c: "string" for c in MOVE_COLUMNS if c != "blocked"})


def _sort_rank(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Return each row's place when sorted by ``columns`` (stable, missing values last)."""
    rank = np.empty(len(frame), dtype=np.int64)
    rank[_sort_order(frame, columns)] = np.arange(len(frame))
    return rank


def _sort_order(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Return the row positions sorted by the text ``columns`` (stable, missing values last).

    Arrow sorts text as pandas does, and much faster than pandas sorts arrow-backed text.
    """
    table = pa.table({c: _arrow(frame[c]) for c in columns})
    keys = [(c, "ascending", "at_end") for c in columns]
    return pc.sort_indices(table, sort_keys=keys).to_numpy()


def _flow_managed(snapshot: Snapshot, keys: pd.DataFrame) -> pd.Series:
    """Return each (environment_id, flow_id) row's ``is_managed`` (<NA>: not in the snapshot).

    A flow listed twice counts by its first row.
    """
    on = ["environment_id", "flow_id"]
    flows = snapshot.flows[[*on, "is_managed"]]
    # Flow ids are GUIDs: look each up by id alone, then check the environment; only keys
    # whose id's first row is in another environment need the slower two-column merge.
    found = pc.index_in(_arrow(keys["flow_id"]), value_set=_arrow(flows["flow_id"]))
    found = found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    key_env, flow_env = _shared_codes(keys["environment_id"], flows["environment_id"])
    other_env = (found >= 0) & (np.append(flow_env, -1)[found] != key_env)
    found[other_env] = -1
    out = pd.Series(flows["is_managed"].array.take(found, allow_fill=True))
    if other_env.any():
        retry = keys.loc[other_env, on].reset_index(drop=True)
        first = flows.drop_duplicates(on)
        out[other_env] = retry.merge(first, on=on, how="left")["is_managed"].to_numpy()
    return out


def sort_codes(values: Any) -> np.ndarray:
    """Return integer codes that sort like ``values`` (missing values last, as pandas sorts)."""
    codes, uniques = pd.factorize(values, sort=True)
    return np.where(codes < 0, len(uniques), codes).astype(np.int64)


def _leftovers(snapshot: Snapshot, ranked: pd.DataFrame, moves: pd.DataFrame) -> pd.DataFrame:
    rest = ranked[ranked["_rank"] > 0]
    if rest.empty:
        return _empty(LEFTOVER_COLUMNS)
    keys = ["environment_id", "reference_id"]
    blocked = moves.loc[moves["blocked"], ["environment_id", "from_reference_id", "why_blocked"]]
    blocked = blocked.rename(columns={"from_reference_id": "reference_id"}).dropna(subset=keys)
    stuck = blocked.drop_duplicates(keys).merge(
        blocked.groupby(keys, sort=False).size().rename("_count").reset_index(), on=keys
    )
    stuck["_stuck"] = (
        stuck["_count"].astype("string")
        + " flow key(s) still use it and cannot be moved: "
        + stuck["why_blocked"].astype("string")
    )
    dependents = pd.DataFrame(
        [(env, ref, why) for (env, ref), why in _other_dependents(snapshot).items()],
        columns=[*keys, "_dependents"],
    ).astype("string")
    facts = (
        rest[keys]
        .astype("string")
        .merge(stuck[[*keys, "_stuck"]].astype("string"), on=keys, how="left")
        .merge(dependents, on=keys, how="left")
    )
    # Per leftover: managed; flow keys that cannot move; other dependents (each if so).
    managed = pd.Series(
        np.where(rest["_managed"].to_numpy(dtype=bool), MANAGED_LEFTOVER, None), dtype="string"
    )
    why_not = _joined(_joined(managed, facts["_stuck"]), facts["_dependents"])
    out = pd.DataFrame(
        {
            "environment_id": rest["environment_id"].array,
            "group_id": rest["group_id"].array,
            "reference_id": rest["reference_id"].array,
            "logical_name": rest["logical_name"].array,
            "why_not": why_not.array,
        }
    )
    out.insert(4, "deletable", out["why_not"].isna().to_numpy())
    order = _sort_order(out, ["environment_id", "group_id", "reference_id"])
    out = out.take(order).reset_index(drop=True)
    return out.astype({c: "string" for c in LEFTOVER_COLUMNS if c != "deletable"})


def _joined(first: pd.Series, then: pd.Series) -> pd.Series:
    """Join two text columns with "; ", skipping missing parts (both missing: missing)."""
    return (first + "; " + then).fillna(first).fillna(then)


def other_dependents(snapshot: Snapshot) -> dict[tuple[str, str], str]:
    """Return, per (environment, reference), why a platform dependency check forbids deleting it.

    Flows (component type 29) are left out: their usage is read from clientdata and rewired;
    any other dependent (canvas app, bot, ...) or a failed check blocks the delete.
    """
    return _other_dependents(snapshot)


def _other_dependents(snapshot: Snapshot) -> dict[tuple[str, str], str]:
    checks = snapshot.dependency_checks.dropna(subset=["environment_id", "reference_id"])
    out: dict[tuple[str, str], str] = {}
    others: dict[str, str | None] = {}  # the same dependents text recurs: read it once
    for env, ref, checked, deps in zip(
        checks["environment_id"].tolist(),
        checks["reference_id"].tolist(),
        checks["checked"].tolist(),
        checks["dependents"].tolist(),
        strict=True,
    ):
        if pd.isna(checked) or not checked:
            out[(env, ref)] = "the dependency check failed, so apps or bots using it are unknown"
            continue
        if pd.isna(deps):
            continue
        if deps not in others:
            others[deps] = _other_components(deps)
        if others[deps] is not None:
            out[(env, ref)] = others[deps]
    return out


def _other_components(deps: object) -> str | None:
    pairs = [p for p in str(deps).split(";") if p.strip()]
    other = [p.strip() for p in pairs if p.split(":", 1)[0].strip() != WORKFLOW_COMPONENT_TYPE]
    return f"other components depend on it ({', '.join(sorted(other))})" if other else None


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts keyed by column name."""
    return [{str(k): v for k, v in row.items()} for row in frame.to_dict("records")]


def _empty(columns: tuple[str, ...]) -> pd.DataFrame:
    dtypes = {"blocked": "bool", "deletable": "bool"}
    return pd.DataFrame({c: pd.Series(dtype=dtypes.get(c, "string")) for c in columns})
