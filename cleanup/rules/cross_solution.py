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
    pair_codes,
    quoted,
    register,
    shared_codes,
    text,
    value_codes,
)


@register("cross-solution")
class CrossSolutionReference(Rule):
    """A flow's solution does not carry a reference the flow uses."""

    severity = "low"

    def evaluate(self, ctx: RuleContext) -> pd.DataFrame:
        """Report references used by flows of unmanaged solutions that do not contain them."""
        pairs = _missing_pairs(ctx)
        if pairs.empty:
            return self.nothing()
        rows = _summary(ctx, pairs)
        if rows.empty:
            return self.nothing()
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


def _summary(ctx: RuleContext, pairs: pd.DataFrame) -> pd.DataFrame:
    """Return the affected references: ``FINDING_FACTS``, lacking solutions, flows, count."""
    # Grouped on integer codes of (environment, reference id), not on the string columns.
    key_of_ref, key_of_row = ctx.reference_keys(ctx.references)
    size = int(max(key_of_ref.max(initial=-1), key_of_row.max(initial=-1))) + 1
    ref_row = pairs["ref_row"].to_numpy()
    coded = pairs[["unique_name", "flow_label"]].assign(key=key_of_ref[ref_row])
    lacking = group_lists(coded, ["key"], "unique_name", name="lacking_solutions")
    flows = group_lists(coded, ["key"], "flow_label", name="flows", limit=MAX_LISTED)
    # A reference missing its environment or id is left out, as ``groupby`` drops it.
    refs = ctx.snapshot.references
    valid = (refs["environment_id"].notna() & refs["reference_id"].notna()).to_numpy(bool)
    counted = coded.loc[valid[ref_row], ["key"]].assign(flow=pairs["flow_code"])
    distinct = counted.loc[counted["flow"].ge(0)].drop_duplicates()
    affected = np.bincount(distinct["key"].to_numpy(), minlength=size)
    hit = np.zeros(size, dtype=bool)
    hit[counted["key"].to_numpy()] = True
    for found in (lacking, flows):
        listed = np.zeros(size, dtype=bool)
        listed[found["key"].to_numpy()] = True
        hit &= listed
    wanted = hit[key_of_row]
    rows = ctx.references.loc[wanted, FINDING_FACTS].reset_index(drop=True)
    key = key_of_row[wanted]
    rows["lacking_solutions"] = (
        lacking.set_index("key")["lacking_solutions"].reindex(key).to_numpy()
    )
    rows["flows"] = flows.set_index("key")["flows"].reindex(key).to_numpy()
    rows["affected_flows"] = affected[key]
    return rows


def _missing_pairs(ctx: RuleContext) -> pd.DataFrame:
    """[ref_row, flow_code, unique_name, flow_label] where an unmanaged solution holding the
    flow lacks the reference (``ref_row``: position in references; ``flow_code``: -1 unknown).
    """
    mem, links, snap = ctx.memberships, ctx.usage_links, ctx.snapshot
    use, refs = snap.usages, snap.references
    flow_sols = np.flatnonzero(
        (
            ~mem["is_system"]
            & mem["object_type"].eq("flow")
            & ~mem["is_managed"].fillna(True).astype(bool)
        ).to_numpy(bool)
    )
    ref_sols = np.flatnonzero(
        (mem["object_type"].eq("reference") & ~mem["is_system"]).to_numpy(bool)
    )
    u, r, f = (links[col].to_numpy() for col in ("use_row", "ref_row", "flow_row"))
    # Integer codes for the join keys (each string column hashed once, only the rows that
    # can match) instead of merges on million-row string columns; ids match case-blind.
    env_use, env_mem = shared_codes(use["environment_id"], mem["environment_id"])
    sol = value_codes(mem["solution_id"])
    flow_use, flow_mem = shared_codes(use["flow_id"].str.lower(), mem["object_key"].iloc[flow_sols])
    ref_refs, ref_mem = shared_codes(
        refs["reference_id"].str.lower(), mem["object_key"].iloc[ref_sols]
    )
    by_flow = pair_codes([env_use[u], env_mem[flow_sols]], [flow_use[u], flow_mem])
    pairs = pd.DataFrame({"key": by_flow[0], "link": np.arange(len(u))}).merge(
        pd.DataFrame({"key": by_flow[1], "mem_row": flow_sols}), on="key"
    )
    i, m = pairs["link"].to_numpy(), pairs["mem_row"].to_numpy()
    # An anti-join on (environment, reference, solution): memberships are distinct on them.
    by_ref = pair_codes([env_use[u[i]], env_mem[ref_sols]], [ref_refs[r[i]], ref_mem])
    held = pair_codes(by_ref, [sol[m], sol[ref_sols]])
    lacking = ~pd.Series(held[0]).isin(held[1]).to_numpy()
    i, m = i[lacking], m[lacking]
    known = use["flow_id"].notna().to_numpy(bool)[u[i]]
    missing = pd.DataFrame(
        {
            "ref_row": r[i],
            "flow_code": np.where(known, links["flow_code"].to_numpy()[i], -1),
            "unique_name": mem["unique_name"].array.take(m),
        }
    )
    name = pd.Series(snap.flows["name"].array.take(f[i], allow_fill=True))
    missing["flow_label"] = name.fillna(pd.Series(use["flow_id"].array.take(u[i])))
    return missing
