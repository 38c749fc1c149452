"""``personal-connection``: a reference bound to a connection that signs in as a person."""

from __future__ import annotations

import pandas as pd

from cleanup.rules.base import Rule, RuleContext, quoted, register, text
from cleanup.rules.naming import connector_display_names

EXTRA = [
    "connector",
    "connection_id",
    "conn_created_by",
    "conn_created_by_email",
    "flow_count",
    "active_flow_count",
    "production",
]


@register("personal-connection")
class PersonalConnection(Rule):
    """The reference uses a person's connection instead of a service principal's."""

    severity = "medium"

    def evaluate(self, ctx: RuleContext) -> pd.DataFrame:
        """Report references bound to a user connection; high in production environments."""
        refs = ctx.references
        rows = refs.loc[refs["conn_identity"].eq("user").fillna(False)].copy()
        if rows.empty:
            return self.nothing()
        skus = {s.lower() for s in ctx.rules.production_skus}
        rows["production"] = rows["sku"].str.lower().isin(skus).fillna(False)
        severity = pd.Series("medium", index=rows.index).mask(rows["production"], "high")
        who = text(rows["conn_created_by"], "an unknown user")
        detail = (
            "Bound to "
            + quoted(rows["conn_display_name"], "(unnamed connection)")
            + ", a personal connection of "
            + who
            + "; its "
            + text(rows["flow_count"])
            + " flow(s) stop when that person leaves, loses access or changes password."
        )
        connector = connector_display_names(rows["connector"], ctx.naming)
        fix = (
            "Bind it to a service-principal connection for "
            + connector
            + " (or move its flows to a reference that uses one)."
        )
        extra = rows[EXTRA].rename(
            columns={"conn_created_by": "connection_owner", "conn_created_by_email": "owner_email"}
        )
        return self.findings(rows, detail=detail, suggested_fix=fix, extra=extra, severity=severity)
