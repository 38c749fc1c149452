"""``broken-connection``: the bound connection is in error or does not exist.

Only said where the environment's snapshot is complete, so the connections table was read:
a connection we could not list is unknown, not missing.
"""

from __future__ import annotations

import pandas as pd

from cleanup.rules.base import Rule, RuleContext, quoted, register, text

# Statuses that say nothing about health; a connection in one of them is not called broken.
UNKNOWN_STATUSES = ("Unknown",)


@register("broken-connection")
class BrokenConnection(Rule):
    """The reference's connection is in error or missing from the environment."""

    severity = "medium"

    def evaluate(self, ctx: RuleContext) -> pd.DataFrame:
        """Report bound references whose connection is missing or not connected."""
        refs = ctx.references
        bound = refs["connection_id"].notna() & refs["env_status"].eq("complete").fillna(False)
        missing = ~refs["conn_exists"].astype(bool)
        failing = refs["conn_is_connected"].eq(False).fillna(False) & ~refs["conn_status"].isin(
            UNKNOWN_STATUSES
        ).fillna(True)
        rows = refs.loc[bound & (missing | failing)]
        if rows.empty:
            return self.nothing()
        rows = rows.merge(ctx.flows_of(rows), how="left").set_axis(rows.index)
        gone = ~rows["conn_exists"].astype(bool)
        severity = pd.Series("medium", index=rows.index).mask(rows["flow_count"].gt(0), "high")
        detail = (
            "Its connection "
            + quoted(rows["conn_display_name"], "(unnamed)")
            + " is "
            + text(rows["conn_status"], "not connected")
            + ": "
            + text(rows["conn_error"], "no error message")
            + "; "
            + text(rows["flow_count"])
            + " flow(s) use this reference."
        ).mask(
            gone,
            "Bound to connection "
            + text(rows["connection_id"])
            + ", which does not exist in this environment; "
            + text(rows["flow_count"])
            + " flow(s) use this reference.",
        )
        fix = pd.Series(
            "Repair the connection (sign in again) or bind the reference to a working one.",
            index=rows.index,
            dtype="string",
        ).mask(gone, "Bind the reference to an existing connection.")
        extra = rows[
            ["connector", "connection_id", "conn_status", "conn_error", "flow_count", "flows"]
        ]
        extra = extra.rename(columns={"conn_status": "connection_status", "conn_error": "error"})
        return self.findings(rows, detail=detail, suggested_fix=fix, extra=extra, severity=severity)
