"""What every rule shares: the ``Rule`` base class, the evaluation context and findings rows.

A rule reads the snapshot through a ``RuleContext``, whose joined tables (references with
their environment, owner, connection and flow usage) are built once per run and shared by
all rules, and returns rows conforming to ``schemas.FINDINGS`` via ``Rule.findings``.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cleanup import schemas
from cleanup.consolidate import Proposals, duplicate_groups, propose, sort_codes, unique_first
from cleanup.frames import text_scalar
from cleanup.rules.settings import (
    ExclusionSettings,
    HistorySettings,
    NamingSettings,
    RulesSettings,
)
from cleanup.snapshot.model import Snapshot

if TYPE_CHECKING:
    from cleanup.history import History

# Solutions every component belongs to; membership in them says nothing about ownership.
SYSTEM_SOLUTIONS = frozenset({"default", "active", "basic"})
DEFAULT_SOLUTION_ID = "fd140aaf-4df4-11dd-bd17-0019b9312238"  # the same in every environment
ACTIVE_FLOW_STATE = 1
MAX_LISTED = 20  # flows named in a finding's extra; the count is always complete
KEY = ["environment_id", "reference_id"]
# The ``RuleContext.references`` columns ``Rule.findings`` reads (select them before wide merges).
FINDING_FACTS = [
    "environment_id",
    "reference_id",
    "environment_name",
    "logical_name",
    "display_name",
    "owner_id",
    "owner_name",
]
R = TypeVar("R", bound="Rule")


@dataclass(frozen=True)
class RuleContext:
    """Everything a rule may read: the snapshot, settings, history and the run's time."""

    snapshot: Snapshot
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    rules: RulesSettings = field(default_factory=RulesSettings)
    naming: NamingSettings = field(default_factory=NamingSettings)
    exclusions: ExclusionSettings = field(default_factory=ExclusionSettings)
    history_settings: HistorySettings = field(default_factory=HistorySettings)
    history: History | None = None

    @cached_property
    def environments(self) -> pd.DataFrame:
        """Environments with ``usage_known`` and, where not, ``usage_unknown_reason``."""
        env = self.snapshot.environments
        flows = self.snapshot.flows
        # "empty" clientdata is unknown too: a cloud flow always has a definition, so a null
        # one means we could not see it, and a flow we cannot see might use any reference.
        bad = flows.loc[flows["parse_status"].ne("ok").fillna(True)]
        bad = bad.sort_values(["environment_id", "name", "flow_id"])
        bad = bad.groupby("environment_id").agg(
            bad_flows=("flow_id", "size"),
            example_flow=("name", "first"),
            example_status=("parse_status", "first"),
        )
        out = env.merge(bad, left_on="environment_id", right_index=True, how="left")
        out["bad_flows"] = out["bad_flows"].fillna(0).astype("Int64")
        flows_reason = (
            text(out["bad_flows"])
            + " flow(s) could not be read (e.g. "
            + quoted(out["example_flow"], "(unnamed)")
            + ": "
            + text(out["example_status"], "unknown")
            + "), and a flow that cannot be read might use any reference"
        )
        env_reason = (
            "the snapshot of this environment is "
            + text(out["status"], "unknown")
            + " ("
            + text(out["status_reason"], "no reason recorded")
            + ")"
        )
        reason = pd.Series(pd.NA, index=out.index, dtype="string")
        reason = reason.mask(out["bad_flows"].gt(0), flows_reason)
        reason = reason.mask(out["status"].ne("complete").fillna(True), env_reason)
        out["usage_known"] = reason.isna()
        out["usage_unknown_reason"] = reason
        return out

    @cached_property
    def memberships(self) -> pd.DataFrame:
        """Solution membership of references and flows, with each solution's names."""
        comp = self.snapshot.solution_components
        wanted = comp["object_type"].isin(["reference", "flow"]).fillna(False).to_numpy(bool)
        if not wanted.all():  # a filter copies millions of text cells: only when it drops some
            comp = comp.loc[wanted]
        comp = comp.reset_index(drop=True)
        keys = ["environment_id", "solution_id"]
        # Millions of components, thousands of solutions: look each solution up once, keep
        # the first row per (environment, solution, object), then gather by position.
        env, sol_id = (value_codes(comp[k]) for k in keys)
        pair = pd.factorize(pair_codes([env], [sol_id])[0])[0]  # numbered as first seen
        pairs = comp[keys].iloc[unique_first(pair)[1]].reset_index(drop=True)
        sol = self.snapshot.solutions.drop_duplicates(keys)
        info = pairs.merge(sol, on=keys, how="left")
        info["is_system"] = (
            info["unique_name"].str.lower().isin(SYSTEM_SOLUTIONS).fillna(False)
            | info["unique_name"].isna()
            | info["solution_id"].str.lower().eq(DEFAULT_SOLUTION_ID).fillna(False)
        )
        object_key = comp["object_id"].str.lower()
        obj = pd.factorize(object_key)[0].astype(np.int64)
        member = pd.Series(pair.astype(np.int64) * (obj.max(initial=0) + 2) + obj + 1)
        rows = np.flatnonzero(~member.duplicated().to_numpy())
        every = len(rows) == len(comp)  # usually no duplicates: skip copying every column
        out = pd.concat(
            [
                comp if every else comp.take(rows).reset_index(drop=True),
                info.drop(columns=keys).take(pair[rows]).reset_index(drop=True),
            ],
            axis=1,
        )
        out["object_key"] = object_key.array if every else object_key.array.take(rows)
        return out.set_axis(rows)

    @cached_property
    def usage_links(self) -> pd.DataFrame:
        """``flow_usage`` as positions: [use_row, ref_row, flow_row (-1: none), flow_code]."""
        use, refs, flows = self.snapshot.usages, self.snapshot.references, self.snapshot.flows
        # Dataverse logical names are case-insensitive; flows may spell them differently.
        logical_key = use["logical_name"].str.lower()
        # Join on integer codes of the keys, looked up once per table, rather than merging
        # (and re-hashing) million-row string columns; the joins keep pandas' row order.
        env = shared_codes(use["environment_id"], refs["environment_id"], flows["environment_id"])
        name = shared_codes(logical_key, refs["logical_name"].str.lower())
        flow = shared_codes(use["flow_id"], flows["flow_id"])
        by_name = pair_codes(env[:2], name)
        by_flow = pair_codes([env[0], env[2]], flow)
        distinct = ~pd.Series(pair_codes([by_flow[0]], [name[0]])[0]).duplicated().to_numpy()
        rows = np.flatnonzero(logical_key.notna().to_numpy() & distinct)
        at, ref_row = join_positions(by_name[0][rows], by_name[1])
        use_row = rows[at]
        at, flow_row = join_positions(by_flow[0][use_row], by_flow[1], keep_unmatched=True)
        use_row, ref_row = use_row[at], ref_row[at]
        return pd.DataFrame(
            {
                "use_row": use_row,
                "ref_row": ref_row,
                "flow_row": flow_row,
                "flow_code": flow[0][use_row],
            }
        )

    @cached_property
    def flow_usage(self) -> pd.DataFrame:
        """One row per (environment, reference, flow) that uses it, with the flow's name/state."""
        return self._usage_rows(np.arange(len(self.usage_links)))

    def _usage_rows(self, picked: np.ndarray) -> pd.DataFrame:
        """Return the ``flow_usage`` rows at positions ``picked`` (of ``usage_links``)."""
        use, refs, flows = self.snapshot.usages, self.snapshot.references, self.snapshot.flows
        links = self.usage_links
        u, r, f = (links[col].to_numpy()[picked] for col in ("use_row", "ref_row", "flow_row"))
        return pd.DataFrame(
            {
                "environment_id": use["environment_id"].array.take(u),
                "flow_id": use["flow_id"].array.take(u),
                "logical_key": pd.Series(use["logical_name"].array.take(u)).str.lower().array,
                "reference_id": refs["reference_id"].array.take(r),
                "flow_name": flows["name"].array.take(f, allow_fill=True),
                "flow_state": flows["state"].array.take(f, allow_fill=True),
            }
        )

    @cached_property
    def references(self) -> pd.DataFrame:
        """References joined with environment, owner, bound connection and usage counts."""
        refs = self.snapshot.references
        env = self.environments[["environment_id", "display_name", "sku", "status", "usage_known"]]
        env = env.rename(columns={"display_name": "environment_name", "status": "env_status"})
        out = refs.assign(connection_key=refs["connection_id"].str.lower())
        out = out.merge(env, on="environment_id", how="left")
        owners = self.snapshot.owners[["environment_id", "owner_id", "name"]]
        owners = owners.drop_duplicates(["environment_id", "owner_id"])
        owners = owners.rename(columns={"name": "owner_name"})
        out = out.merge(owners, on=["environment_id", "owner_id"], how="left")
        out = out.merge(self._connections(), on=["environment_id", "connection_key"], how="left")
        out["conn_exists"] = out["conn_exists"].fillna(False).astype("boolean")
        flow_count, active_flow_count = self._flow_counts(out)
        out["flow_count"] = pd.array(flow_count, dtype="Int64")
        out["active_flow_count"] = pd.array(active_flow_count, dtype="Int64")
        return out

    def _flow_counts(self, out: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Return, per row of ``out``, how many distinct flows use its reference (and active)."""
        # Counted per (environment, reference id) on codes, not by grouping the string columns
        # of ``flow_usage``; a row missing either key has no usage (groupby drops it).
        links = self.usage_links
        key = self.reference_keys(out)
        size = int(max(k.max(initial=-1) for k in key)) + 1
        group = key[0][links["ref_row"].to_numpy()]
        use_row = links["use_row"].to_numpy()
        known = self.snapshot.usages["flow_id"].notna().to_numpy(bool)[use_row]
        used_by = group[known]
        pairs = pair_codes([used_by], [links["flow_code"].to_numpy()[known]])[0]
        distinct = used_by[~pd.Series(pairs).duplicated().to_numpy()]
        state = self.snapshot.flows["state"].array.take(
            links["flow_row"].to_numpy(), allow_fill=True
        )
        active = pd.Series(state).eq(ACTIVE_FLOW_STATE).fillna(False).to_numpy(bool)
        has_key = (out["environment_id"].notna() & out["reference_id"].notna()).to_numpy(bool)
        flow_count = np.bincount(distinct, minlength=size)[key[1]]
        active_count = np.bincount(group, weights=active, minlength=size).astype(np.int64)[key[1]]
        return np.where(has_key, flow_count, 0), np.where(has_key, active_count, 0)

    def reference_keys(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Number the (environment_id, reference_id) of ``snapshot.references`` and of ``rows``.

        Equal pairs get equal codes (missing values equal), dense from 0.
        """
        refs = self.snapshot.references
        env = shared_codes(refs["environment_id"], rows["environment_id"])
        ref = shared_codes(refs["reference_id"], rows["reference_id"])
        key = value_codes(pd.Series(np.concatenate(pair_codes(env, ref))))
        return key[: len(refs)], key[len(refs) :]

    def _connections(self) -> pd.DataFrame:
        conn = self.snapshot.connections
        keep = {
            "identity": "conn_identity",
            "status": "conn_status",
            "is_connected": "conn_is_connected",
            "error": "conn_error",
            "created_by_name": "conn_created_by",
            "created_by_email": "conn_created_by_email",
            "display_name": "conn_display_name",
        }
        out = conn[["environment_id", "connection_id", *keep]].rename(columns=keep)
        # Connection names are GUID-like; the two APIs do not agree on their case.
        out = out.assign(connection_key=out.pop("connection_id").str.lower(), conn_exists=True)
        return out.drop_duplicates(["environment_id", "connection_key"])

    @cached_property
    def reference_memberships(self) -> pd.DataFrame:
        """The rows of ``memberships`` that put a reference in a non-system solution."""
        mem = self.memberships
        return mem.loc[mem["object_type"].eq("reference") & ~mem["is_system"]]

    @cached_property
    def reference_solutions(self) -> pd.DataFrame:
        """[environment_id, object_key, solutions, managed_solutions] of non-system solutions."""
        mem = self.reference_memberships
        keys = ["environment_id", "object_key"]
        managed = mem.loc[mem["is_managed"].fillna(False).astype(bool)]
        out = group_lists(mem, keys, "unique_name", name="solutions")
        return out.merge(
            group_lists(managed, keys, "unique_name", name="managed_solutions"), how="left"
        )

    @cached_property
    def duplicate_groups(self) -> pd.DataFrame:
        """``cleanup.consolidate.duplicate_groups`` of the snapshot."""
        return duplicate_groups(self.snapshot)

    @cached_property
    def proposals(self) -> Proposals:
        """``cleanup.consolidate.propose`` with the run's naming settings, computed once."""
        return propose(self.snapshot, self.duplicate_groups, naming=self.naming)

    def flows_of(self, reference_ids: pd.DataFrame) -> pd.DataFrame:
        """Return [environment_id, reference_id, flows] with up to MAX_LISTED flow names each."""
        # Pick the usage rows of those references on integer codes, not by a string merge.
        refs = self.snapshot.references
        env = shared_codes(refs["environment_id"], reference_ids["environment_id"])
        ref = shared_codes(refs["reference_id"], reference_ids["reference_id"])
        key = pair_codes(env, ref)
        wanted = pd.Series(key[0][self.usage_links["ref_row"].to_numpy()]).isin(key[1])
        use = self._usage_rows(np.flatnonzero(wanted.to_numpy()))
        use = use.assign(label=use["flow_name"].fillna(use["flow_id"]))
        return group_lists(use, KEY, "label", name="flows", limit=MAX_LISTED)


REGISTRY: dict[str, type[Rule]] = {}


def register(name: str) -> Callable[[type[R]], type[R]]:
    """Register a rule class under ``name`` (kebab-case); a name can be taken only once."""

    def decorate(cls: type[R]) -> type[R]:
        if name in REGISTRY:
            raise ValueError(
                f"Rule name {name!r} is already registered by {REGISTRY[name].__qualname__}; "
                "pick another name."
            )
        if not (cls.__doc__ or "").strip():
            raise ValueError(f"Rule {name!r} needs a docstring: it is the summary users read.")
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return decorate


class Rule(ABC):
    """A registered check; its docstring's first line is the summary shown to users."""

    name: ClassVar[str] = ""
    severity: ClassVar[str] = "low"
    object_type: ClassVar[str] = "reference"

    @abstractmethod
    def evaluate(self, ctx: RuleContext) -> pd.DataFrame:
        """Return this rule's findings (columns of ``schemas.FINDINGS``)."""

    @classmethod
    def summary(cls) -> str:
        """Return the one-line user-facing summary of the rule."""
        return (cls.__doc__ or cls.name).strip().splitlines()[0]

    def nothing(self) -> pd.DataFrame:
        """Return an empty findings table."""
        return schemas.empty_frame(schemas.FINDINGS)

    def findings(
        self,
        rows: pd.DataFrame,
        *,
        detail: pd.Series | str,
        suggested_fix: pd.Series | str,
        extra: pd.DataFrame | pd.Series | None = None,
        severity: pd.Series | str | None = None,
    ) -> pd.DataFrame:
        """Build findings from reference-like rows (``RuleContext.references`` columns).

        ``extra`` is a frame of facts per row, or a Series already made by ``to_json_objects``.
        """
        if rows.empty:
            return schemas.empty_frame(schemas.FINDINGS)
        out = pd.DataFrame(index=rows.index)
        out["rule"] = self.name
        out["severity"] = self.severity if severity is None else severity
        out["environment_id"] = rows["environment_id"]
        out["environment_name"] = rows.get("environment_name")
        out["object_type"] = rows.get("object_type", self.object_type)
        out["object_id"] = rows["object_id"] if "object_id" in rows else rows["reference_id"]
        for col in ("logical_name", "display_name", "owner_id", "owner_name", "group_id"):
            out[col] = rows.get(col, pd.NA)
        out["detail"] = detail
        out["suggested_fix"] = suggested_fix
        if isinstance(extra, pd.Series):
            out["extra"] = extra
        else:
            out["extra"] = to_json_objects(
                extra if extra is not None else pd.DataFrame(index=rows.index)
            )
        out["first_seen"] = pd.NaT
        out["change"] = pd.NA
        return schemas.conform(out, schemas.FINDINGS, name=f"findings of rule {self.name}")


def add_solutions(ctx: RuleContext, rows: pd.DataFrame) -> pd.DataFrame:
    """Add ``solutions`` and ``managed_solutions`` (lists of unique names) to reference rows."""
    sols = ctx.reference_solutions
    out = rows.assign(object_key=rows["reference_id"].str.lower())
    # A lookup on integer codes of the keys (one row per key in ``sols``), not a string merge.
    env = shared_codes(out["environment_id"], sols["environment_id"])
    obj = shared_codes(out["object_key"], sols["object_key"])
    key = pair_codes(env, obj)
    index = pd.Index(key[1])
    if not index.is_unique:
        return _add_solutions_merged(out, sols)
    found = index.get_indexer(key[0])
    for col in ("solutions", "managed_solutions"):
        # ``group_lists`` gives lists without missing items; a reference in no solution, [].
        values = sols[col].to_numpy(dtype=object)
        out[col] = pd.Series(
            [values[i] if i >= 0 and isinstance(values[i], list) else [] for i in found.tolist()],
            index=out.index,
            dtype=object,
        )
    return out


def _add_solutions_merged(keyed: pd.DataFrame, sols: pd.DataFrame) -> pd.DataFrame:
    out = keyed.merge(sols, on=["environment_id", "object_key"], how="left")
    out.index = keyed.index
    for col in ("solutions", "managed_solutions"):
        values = out[col].to_numpy(dtype=object)
        out[col] = pd.Series(
            [v if isinstance(v, list) else [] for v in values], index=out.index, dtype=object
        )
    return out


def group_lists(
    frame: pd.DataFrame,
    keys: list[str],
    column: str,
    *,
    name: str | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """Return one row per key group with the sorted distinct values of ``column`` as a list."""
    name = name or column
    present = frame[column].notna().to_numpy(bool)
    # A boolean filter copies every cell: only filter when something is missing.
    rows = frame[[*keys, column]] if present.all() else frame.loc[present, [*keys, column]]
    # Work on integer codes that sort like the values: the distinct (keys, value) rows,
    # sorted by keys then value, as drop_duplicates and a stable sort_values would give.
    codes = [sort_codes(rows[col]) for col in keys]
    value_code, uniques = pd.factorize(rows[column], sort=True)
    codes.append(value_code.astype(np.int64))
    both = _combine(codes, len(rows))
    distinct = np.flatnonzero(~pd.Series(both).duplicated().to_numpy())
    order = distinct[np.argsort(both[distinct], kind="stable")]
    group = _combine([c[order] for c in codes[:-1]], len(order))
    # Rows are sorted by key, so each group is one contiguous slice: cut once instead of a
    # Python aggregation per group (there can be hundreds of thousands of groups).
    change = np.diff(group, prepend=-1) != 0
    starts = np.flatnonzero(change)
    if limit is not None:
        keep = np.arange(len(order)) - starts[np.cumsum(change) - 1] < limit
        order, group = order[keep], group[keep]
        starts = np.flatnonzero(np.diff(group, prepend=-1))
    out = rows[keys].iloc[order[starts]].reset_index(drop=True)
    if isinstance(rows[column].dtype, pd.StringDtype):  # text: convert each distinct value once
        values = np.asarray(uniques, dtype=object)[codes[-1][order]].tolist()
    else:
        values = rows[column].astype(object).to_numpy()[order].tolist()
    bounds = starts.tolist()
    ends = [*bounds[1:], len(values)] if bounds else []
    out[name] = pd.Series([values[a:b] for a, b in zip(bounds, ends, strict=True)], dtype=object)
    return out


def _combine(codes: list[np.ndarray], length: int) -> np.ndarray:
    """Combine per-column codes into one code per row that orders rows like the columns do."""
    out = np.zeros(length, dtype=np.int64)
    for column in codes:
        size = int(column.max(initial=-1)) + 2
        if length and int(out.max()) >= np.iinfo(np.int64).max // size:
            out = np.unique(out, return_inverse=True)[1].astype(np.int64)  # ranks: same order
        out = out * size + column + 1
    return out


def shared_codes(*columns: pd.Series) -> list[np.ndarray]:
    """Number the values of several columns together: equal values (missing too), equal codes."""
    joined = pd.concat([c.reset_index(drop=True) for c in columns], ignore_index=True)
    return np.split(value_codes(joined), np.cumsum([len(c) for c in columns])[:-1])


def value_codes(column: pd.Series) -> np.ndarray:
    """Number a column's values as first seen; missing values share one code (the last)."""
    # ``use_na_sentinel=False`` is much slower on Arrow text than mapping the sentinel.
    codes, uniques = pd.factorize(column)
    return np.where(codes < 0, len(uniques), codes).astype(np.int64)


def pair_codes(first: list[np.ndarray], second: list[np.ndarray]) -> list[np.ndarray]:
    """Combine two lists of ``shared_codes`` part by part into one code per (first, second)."""
    size = max((int(c.max(initial=-1)) + 1 for c in second), default=0)
    top = max((int(c.max(initial=0)) for c in first), default=0)
    if size and top >= np.iinfo(np.int64).max // size - 1:  # renumber densely: no overflow
        first = shared_codes(*(pd.Series(c) for c in first))
    return [a * size + b for a, b in zip(first, second, strict=True)]


def join_positions(
    left: np.ndarray, right: np.ndarray, *, keep_unmatched: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Return the (left, right) positions of equal keys, in left order, as a merge pairs them.

    Left keys without a match are left out, or kept with right position -1 (``keep_unmatched``).
    """
    index = pd.Index(right)
    if index.is_unique:  # the usual case: a hash lookup is cheaper than a merge
        found = index.get_indexer(left).astype(np.int64)
        at = np.arange(len(left)) if keep_unmatched else np.flatnonzero(found >= 0)
        return at, found[at]
    pairs = pd.DataFrame({"key": left, "left": np.arange(len(left))}).merge(
        pd.DataFrame({"key": right, "right": np.arange(len(right))}),
        on="key",
        how="left" if keep_unmatched else "inner",
    )
    return pairs["left"].to_numpy(), pairs["right"].fillna(-1).to_numpy(dtype=np.int64)


def to_json_objects(frame: pd.DataFrame) -> pd.Series:
    """Return one JSON object string per row of ``frame`` (``<NA>`` becomes null)."""
    if frame.empty or not len(frame.columns):
        return pd.Series("{}", index=frame.index, dtype="string")
    if not frame.columns.is_unique:
        return pd.Series(_json_lines(frame), index=frame.index, dtype="string")
    # Values repeat a lot (connectors, solutions, group members): encode each column's
    # distinct values once, with the same encoder, and splice the pieces into the records.
    pieces: list[pa.Array | pa.Scalar] = []
    for position, name in enumerate(frame.columns):
        fragments = _json_fragments(frame.iloc[:, position], name)
        if fragments is None:
            return pd.Series(_json_lines(frame), index=frame.index, dtype="string")
        pieces.append(text_scalar(("{" if position == 0 else ",") + f'"{name}":'))
        pieces.append(fragments)
    pieces.append(text_scalar("}"))
    joined = pc.binary_join_element_wise(*pieces, text_scalar(""))
    return pd.Series(pd.arrays.ArrowStringArray(joined), index=frame.index).astype("string")


def _json_lines(frame: pd.DataFrame) -> list[str]:
    # JSON escapes line feeds inside strings, so splitting on "\n" is splitting on records.
    text = frame.to_json(orient="records", lines=True, force_ascii=False, date_format="iso")
    return text.rstrip("\n").split("\n")


def _json_fragments(column: pd.Series, name: object) -> pa.Array | None:
    """Return each value's JSON text as ``to_json`` writes it in a record (None: cannot)."""
    if not (isinstance(name, str) and name.isidentifier() and name.isascii()):
        return None
    distinct = _distinct_values(column)
    codes, values = distinct if distinct is not None else (np.arange(len(column)), column)
    prefix = f'{{"{name}":'
    lines = _json_lines(values.to_frame(name).reset_index(drop=True))
    if len(lines) != len(values) or not all(
        line.startswith(prefix) and line.endswith("}") for line in lines
    ):
        return None
    texts = pa.array([line[len(prefix) : -1] for line in lines], type=pa.large_string())
    return texts.take(pa.array(codes))


def _distinct_values(column: pd.Series) -> tuple[np.ndarray, pd.Series] | None:
    """Return codes and distinct values of a column, or None where equal is not the same JSON."""
    if column.dtype == object:
        values = column.tolist()
        kinds = set(map(type, values))
        if kinds == {list}:
            try:
                "".join(itertools.chain.from_iterable(values))  # lists of text only
            except TypeError:
                return None
            keys = np.empty(len(values), dtype=object)
            keys[:] = [tuple(v) for v in values]
        elif kinds == {str}:
            keys = np.asarray(values, dtype=object)
        else:
            return None
        codes = pd.factorize(keys)[0]
    elif column.dtype.kind == "f":
        return None  # floats are rare in extras: encode each one as it is
    else:
        codes = pd.factorize(column, use_na_sentinel=False)[0]
    return codes, column.iloc[unique_first(codes)[1]]


def text(series: pd.Series, default: str = "") -> pd.Series:
    """Return ``series`` as non-null strings, for building messages."""
    return series.astype("string").fillna(default)


def quoted(series: pd.Series, default: str = "(no name)") -> pd.Series:
    """Return ``series`` as quoted names for messages ('Name')."""
    return "'" + text(series, default) + "'"
