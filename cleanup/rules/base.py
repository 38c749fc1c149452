"""What every rule shares: the ``Rule`` base class, the evaluation context and findings rows.

A rule reads the snapshot through a ``RuleContext``, whose joined tables (references with
their environment, owner, connection and flow usage) are built once per run and shared by
all rules, and returns rows conforming to ``schemas.FINDINGS`` via ``Rule.findings``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar, TypeVar

import numpy as np
import pandas as pd

from cleanup import schemas
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
        comp = comp.loc[comp["object_type"].isin(["reference", "flow"]).fillna(False)]
        sol = self.snapshot.solutions
        out = comp.merge(sol, on=["environment_id", "solution_id"], how="left")
        out["is_system"] = (
            out["unique_name"].str.lower().isin(SYSTEM_SOLUTIONS).fillna(False)
            | out["unique_name"].isna()
            | out["solution_id"].str.lower().eq(DEFAULT_SOLUTION_ID).fillna(False)
        )
        out["object_key"] = out["object_id"].str.lower()
        return out.drop_duplicates(["environment_id", "solution_id", "object_key"])

    @cached_property
    def flow_usage(self) -> pd.DataFrame:
        """One row per (environment, reference, flow) that uses it, with the flow's name/state."""
        use = self.snapshot.usages.loc[:, ["environment_id", "flow_id", "logical_name"]]
        # Dataverse logical names are case-insensitive; flows may spell them differently.
        use = use.assign(logical_key=use["logical_name"].str.lower()).dropna(subset="logical_key")
        use = use.drop_duplicates(["environment_id", "flow_id", "logical_key"])
        refs = self.snapshot.references[["environment_id", "reference_id", "logical_name"]]
        refs = refs.assign(logical_key=refs["logical_name"].str.lower())
        out = use.drop(columns="logical_name").merge(
            refs[["environment_id", "reference_id", "logical_key"]],
            on=["environment_id", "logical_key"],
        )
        flows = self.snapshot.flows[["environment_id", "flow_id", "name", "state"]]
        out = out.merge(flows, on=["environment_id", "flow_id"], how="left")
        return out.rename(columns={"name": "flow_name", "state": "flow_state"})

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
        counts = self.flow_usage.assign(active=self.flow_usage["flow_state"].eq(ACTIVE_FLOW_STATE))
        counts = counts.groupby(["environment_id", "reference_id"]).agg(
            flow_count=("flow_id", "nunique"), active_flow_count=("active", "sum")
        )
        out = out.merge(
            counts, left_on=["environment_id", "reference_id"], right_index=True, how="left"
        )
        for col in ("flow_count", "active_flow_count"):
            out[col] = out[col].fillna(0).astype("Int64")
        return out

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
    def reference_solutions(self) -> pd.DataFrame:
        """[environment_id, object_key, solutions, managed_solutions] of non-system solutions."""
        mem = self.memberships
        mem = mem.loc[mem["object_type"].eq("reference") & ~mem["is_system"]]
        keys = ["environment_id", "object_key"]
        managed = mem.loc[mem["is_managed"].fillna(False).astype(bool)]
        out = group_lists(mem, keys, "unique_name", name="solutions")
        return out.merge(
            group_lists(managed, keys, "unique_name", name="managed_solutions"), how="left"
        )

    def flows_of(self, reference_ids: pd.DataFrame) -> pd.DataFrame:
        """Return [environment_id, reference_id, flows] with up to MAX_LISTED flow names each."""
        use = self.flow_usage.merge(
            reference_ids[["environment_id", "reference_id"]].drop_duplicates()
        )
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
        extra: pd.DataFrame | None = None,
        severity: pd.Series | str | None = None,
    ) -> pd.DataFrame:
        """Build findings from reference-like rows (``RuleContext.references`` columns)."""
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
        out["extra"] = to_json_objects(
            extra if extra is not None else pd.DataFrame(index=rows.index)
        )
        out["first_seen"] = pd.NaT
        out["change"] = pd.NA
        return schemas.conform(out, schemas.FINDINGS, name=f"findings of rule {self.name}")


def add_solutions(ctx: RuleContext, rows: pd.DataFrame) -> pd.DataFrame:
    """Add ``solutions`` and ``managed_solutions`` (lists of unique names) to reference rows."""
    sols = ctx.reference_solutions
    keyed = rows.assign(object_key=rows["reference_id"].str.lower())
    out = keyed.merge(sols, on=["environment_id", "object_key"], how="left")
    out.index = rows.index
    for col in ("solutions", "managed_solutions"):
        out[col] = as_lists(out[col])
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
    rows = frame.loc[frame[column].notna(), [*keys, column]].drop_duplicates()
    rows = rows.sort_values([*keys, column], kind="stable")
    if limit is not None:
        rows = rows.groupby(keys, sort=False, dropna=False).head(limit)
    out = rows.drop_duplicates(keys)[keys].reset_index(drop=True)
    # Rows are sorted by key, so each group is one contiguous slice: split once instead of a
    # Python aggregation per group (there can be hundreds of thousands of groups).
    codes = rows.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()
    bounds = np.flatnonzero(np.diff(codes)) + 1
    chunks = np.split(rows[column].astype(object).to_numpy(), bounds) if len(rows) else []
    out[name] = pd.Series([chunk.tolist() for chunk in chunks], dtype=object)
    return out


def as_lists(series: pd.Series) -> pd.Series:
    """Return cells as Python lists without missing items (pandas may give arrays; NA -> [])."""

    def to_list(value: object) -> list[object]:
        if isinstance(value, list | tuple | np.ndarray):
            return [v for v in value if not pd.isna(v)]
        return []

    # A list aggregation over "string" columns gives an Arrow list column; go through tolist().
    return pd.Series([to_list(v) for v in series.tolist()], index=series.index, dtype=object)


def to_json_objects(frame: pd.DataFrame) -> pd.Series:
    """Return one JSON object string per row of ``frame`` (``<NA>`` becomes null)."""
    if frame.empty or not len(frame.columns):
        return pd.Series("{}", index=frame.index, dtype="string")
    # JSON escapes line feeds inside strings, so splitting on "\n" is splitting on records.
    text = frame.to_json(orient="records", lines=True, force_ascii=False, date_format="iso")
    lines = text.rstrip("\n").split("\n")
    return pd.Series(lines, index=frame.index, dtype="string")


def text(series: pd.Series, default: str = "") -> pd.Series:
    """Return ``series`` as non-null strings, for building messages."""
    return series.astype("string").fillna(default)


def quoted(series: pd.Series, default: str = "(no name)") -> pd.Series:
    """Return ``series`` as quoted names for messages ('Name')."""
    return "'" + text(series, default) + "'"
