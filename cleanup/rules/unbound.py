"""``unbound``: a reference with no connection; flows that use it cannot be turned on."""

from __future__ import annotations

import pandas as pd

from cleanup.rules.base import Rule, RuleContext, register, text
from cleanup.rules.naming import connector_display_names


@register("unbound")
class UnboundReference(Rule):
    """The reference is not bound to any connection."""

    severity = "low"

    def evaluate(self, ctx: RuleContext) -> pd.DataFrame:
        """Report unbound references; high when flows use them (they cannot run)."""
        refs = ctx.references
        rows = refs.loc[refs["connection_id"].isna()]
        if rows.empty:
            return self.nothing()
        rows = rows.merge(ctx.flows_of(rows), how="left").set_axis(rows.index)
        used = rows["flow_count"].gt(0)
        severity = pd.Series("low", index=rows.index).mask(used, "high")
        flows = rows["flows"].apply(lambda v: ", ".join(v) if isinstance(v, list) else "")
        detail = pd.Series(
            "Not bound to any connection; no flow read uses it.", index=rows.index, dtype="string"
        ).mask(
            used,
            "Not bound to any connection, so the "
            + text(rows["flow_count"])
            + " flow(s) using it cannot be turned on: "
            + flows
            + ".",
        )
        fix = (
            "Bind it to a "
            + connector_display_names(rows["connector"], ctx.naming)
            + " connection (a service principal's if possible), e.g. with a deployment settings "
            "file at import; if nothing needs it, delete it."
        )
        extra = rows[["connector", "flow_count", "active_flow_count", "flows"]]
        return self.findings(rows, detail=detail, suggested_fix=fix, extra=extra, severity=severity)
