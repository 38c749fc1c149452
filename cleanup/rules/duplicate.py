"""``duplicate``: several references in one environment doing the job of one.

Groups come from ``cleanup.consolidate.duplicate_groups`` (same connector and same bound
connection; or same connector, unbound, in the same solution) and the survivor from
``cleanup.consolidate.propose``, so the finding, the report and the plan agree on both.
"""

from __future__ import annotations

import pandas as pd

from cleanup.consolidate import BASIS_SAME_CONNECTION
from cleanup.rules.base import (
    FINDING_FACTS,
    Rule,
    RuleContext,
    group_lists,
    quoted,
    register,
    text,
)
from cleanup.rules.naming import connector_display_names

KEY = ["environment_id", "reference_id"]


@register("duplicate")
class DuplicateReference(Rule):
    """Several references use the same connection (or are unbound in one solution)."""

    severity = "medium"

    def evaluate(self, ctx: RuleContext) -> pd.DataFrame:
        """Report every member of every duplicate group, naming the survivor and why."""
        groups = ctx.duplicate_groups
        if groups.empty:
            return self.nothing()
        survivors = ctx.proposals.survivors
        rows = _members(ctx, groups, survivors)
        connector = connector_display_names(rows["connector"], ctx.naming)
        same = rows["basis"].eq(BASIS_SAME_CONNECTION)
        what = (
            "One of "
            + text(rows["group_size"])
            + " references in this environment bound to the same "
            + connector
            + " connection "
            + quoted(rows["conn_display_name"], text(rows["connection_id"]))
            + "."
        ).mask(
            ~same,
            "One of "
            + text(rows["group_size"])
            + " unbound "
            + connector
            + " references in the same solution.",
        )
        keep = " Keep " + quoted(rows["survivor_display_name"]) + ": " + text(rows["reason"]) + "."
        detail = what + keep.mask(
            rows["is_survivor"], " It is the one to keep: " + text(rows["reason"]) + "."
        )
        fix = pd.Series(
            "Keep it; move the other members' flows to it, then delete them (see the plan).",
            index=rows.index,
            dtype="string",
        ).mask(
            ~rows["is_survivor"],
            "Move its flows to " + quoted(rows["survivor_display_name"]) + " and delete it.",
        )
        extra = rows[
            [
                "basis",
                "connector",
                "connection_id",
                "group_size",
                "members",
                "is_survivor",
                "survivor_id",
                "survivor_logical_name",
                "decided_by",
            ]
        ]
        return self.findings(rows, detail=detail, suggested_fix=fix, extra=extra)


def _members(ctx: RuleContext, groups: pd.DataFrame, survivors: pd.DataFrame) -> pd.DataFrame:
    refs = ctx.references[[*FINDING_FACTS, "conn_display_name"]]
    rows = groups.merge(refs, on=KEY, how="inner")
    names = group_lists(rows, ["group_id"], "logical_name", name="members")
    rows = rows.merge(names, on="group_id", how="left")
    rows["group_size"] = rows["group_id"].map(rows.groupby("group_id").size()).astype("Int64")
    rows = rows.merge(survivors.drop(columns="environment_id"), on="group_id", how="left")
    rows["is_survivor"] = rows["reference_id"].eq(rows["survivor_id"]).fillna(False).astype(bool)
    return rows
