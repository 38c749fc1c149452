"""``cross-solution``: a flow in an unmanaged solution uses a reference that solution lacks.

Exporting that solution then ships a flow without its reference, and the solution that does
carry it (often another team's, or a managed kit such as the CoE Starter Kit) can no longer be
upgraded or removed cleanly. A deliberate shared "connections" solution is a valid design:
exclude it in ``[exclusions]`` with that reason.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cleanup.rules.base import (
    FINDING_FACTS,
    MAX_LISTED,
    Rule,
    RuleContext,
    add_solutions,
    group_lists,
    quoted,
    register,
    text,
)

KEY = ["environment_id", "reference_id"]


@register("cross-solution")
class CrossSolutionReference(Rule):
    """A flow's solution does not carry a reference the flow uses."""

    severity = "low"

    def evaluate(self, ctx: RuleContext) -> pd.DataFrame:
        """Report references used by flows of unmanaged solutions that do not contain them."""
        pairs = _missing_pairs(ctx)
        if pairs.empty:
            return self.nothing()
        summary = group_lists(pairs, KEY, "unique_name", name="lacking_solutions")
        summary = summary.merge(
            group_lists(pairs, KEY, "flow_label", name="flows", limit=MAX_LISTED)
        )
        counts = pairs.groupby(KEY)["flow_id"].nunique().rename("affected_flows")
        summary = summary.merge(counts, left_on=KEY, right_index=True)
        rows = ctx.references[FINDING_FACTS].merge(summary, on=KEY)
        rows = add_solutions(ctx, rows)
        managed = rows["managed_solutions"].map(bool).astype(bool)
        severity = pd.Series("low", index=rows.index).mask(managed, "medium")
        carried = _joined(rows["solutions"], "no solution")
        lacking = _joined(rows["lacking_solutions"])
        detail = (
            text(rows["affected_flows"])
            + " flow(s) in solution(s) "
            + lacking
            + " use "
            + quoted(rows["display_name"])
            + ", which only "
            + carried
            + " carries; exporting those solutions leaves the flows without it."
        )
        fix = (
            "Add the reference to " + lacking + ", or point those flows at a reference in "
            "their own solution."
        )
        extra = rows[
            ["lacking_solutions", "solutions", "managed_solutions", "affected_flows", "flows"]
        ]
        return self.findings(rows, detail=detail, suggested_fix=fix, extra=extra, severity=severity)


def _joined(lists: pd.Series, empty: str = "") -> pd.Series:
    """Join each list of names with ", " (``empty`` for an empty list)."""
    return pd.Series([", ".join(v) if v else empty for v in lists], index=lists.index)


def _missing_pairs(ctx: RuleContext) -> pd.DataFrame:
    """(reference, flow, solution) where the unmanaged solution holds the flow, not the ref."""
    mem = ctx.memberships
    flow_sols = mem.loc[
        ~mem["is_system"]
        & mem["object_type"].eq("flow")
        & ~mem["is_managed"].fillna(True).astype(bool),
        ["environment_id", "object_key", "solution_id", "unique_name"],
    ].rename(columns={"object_key": "flow_key"})
    use = ctx.flow_usage[["environment_id", "flow_id", "reference_id", "flow_name"]]
    use = use.assign(flow_key=use["flow_id"].str.lower())
    use = use.merge(flow_sols, on=["environment_id", "flow_key"])
    keys = ["environment_id", "object_key", "solution_id"]
    ref_sols = ctx.reference_memberships[keys]
    use = use.assign(object_key=use["reference_id"].str.lower())
    # An anti-join on the keys alone (memberships are distinct on them), not a wide merge.
    carried = use[keys].assign(_row=np.arange(len(use))).merge(ref_sols, on=keys)["_row"]
    lacking = np.ones(len(use), dtype=bool)
    lacking[carried.to_numpy()] = False
    missing = use.loc[lacking]
    return missing.assign(flow_label=missing["flow_name"].fillna(missing["flow_id"]))
