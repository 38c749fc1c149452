"""``unused`` and ``usage-unknown``: references nothing uses, said only where usage is known.

Usage is known in an environment when its snapshot is complete and every cloud flow's
clientdata was read. There, a reference no flow names (drafts and turned-off flows count) is a
*candidate*; the pipeline asks the platform about other dependents (canvas apps, bots) for
exactly the candidates (``unused_candidates``) and stores the answers in
``snapshot.dependency_checks``. Only a candidate the platform answered "no dependents" for is
unused; everything else is reported as unknown, never as unused.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from cleanup.rules.base import Rule, RuleContext, add_solutions, quoted, register, text
from cleanup.snapshot.model import Snapshot

KEY = ["environment_id", "reference_id"]
EXTRA = [
    "connector",
    "connection_id",
    "is_managed",
    "solutions",
    "unused_since",
    "grace_ends",
    "grace_passed",
]


def unused_candidates(snapshot: Snapshot) -> pd.DataFrame:
    """Return [environment_id, reference_id] of references no flow uses, where usage is known."""
    return _candidates(RuleContext(snapshot))[KEY].reset_index(drop=True)


def _candidates(ctx: RuleContext) -> pd.DataFrame:
    refs = ctx.references
    known = refs["usage_known"].fillna(False).astype(bool)
    return refs.loc[known & refs["flow_count"].eq(0)]


def _with_checks(ctx: RuleContext) -> pd.DataFrame:
    checks = ctx.snapshot.dependency_checks.drop_duplicates(KEY, keep="last")
    cols = ["checked", "dependent_count", "dependents", "error"]
    out = _candidates(ctx).merge(checks[KEY + cols], on=KEY, how="left")
    out["answered"] = out["checked"].fillna(False) & out["dependent_count"].notna()
    return out


@register("unused")
class UnusedReference(Rule):
    """No flow uses this connection reference and nothing else depends on it."""

    severity = "low"

    def evaluate(self, ctx: RuleContext) -> pd.DataFrame:
        """Report answered candidates with zero dependents, with their grace period."""
        cand = _with_checks(ctx)
        rows = cand.loc[cand["answered"] & cand["dependent_count"].eq(0)].copy()
        if rows.empty:
            return self.nothing()
        since = unused_since(ctx, rows)
        grace = timedelta(days=ctx.history_settings.grace_days)
        rows["unused_since"] = since
        rows["grace_ends"] = since + grace
        rows["grace_passed"] = rows["grace_ends"].le(ctx.now)
        flow_total = ctx.snapshot.flows.groupby("environment_id").size().rename("flows_read")
        rows = rows.merge(flow_total, left_on="environment_id", right_index=True, how="left")
        rows["flows_read"] = rows["flows_read"].fillna(0).astype("Int64")
        rows = add_solutions(ctx, rows)
        detail = (
            "No flow in this environment uses it ("
            + text(rows["flows_read"])
            + " flows read, drafts and turned-off flows included) and the platform reports "
            "no other dependents (apps, bots)."
        )
        extra = rows[EXTRA].assign(grace_days=ctx.history_settings.grace_days)
        fix = _fix(rows, ctx.history_settings.grace_days)
        return self.findings(rows, detail=detail, suggested_fix=fix, extra=extra)


def unused_since(ctx: RuleContext, rows: pd.DataFrame) -> pd.Series:
    """Return when each row's reference became continuously unused (this run without history)."""
    if ctx.history is None or rows.empty:
        return pd.Series(ctx.now, index=rows.index, dtype="datetime64[ns, UTC]")
    keys = pd.DataFrame(
        {
            "rule": "unused",
            "environment_id": rows["environment_id"],
            "object_id": rows["reference_id"],
        }
    )
    return ctx.history.first_seen(keys, ctx.now)


def _fix(rows: pd.DataFrame, grace_days: int) -> pd.Series:
    since = rows["unused_since"].dt.strftime("%Y-%m-%d").astype("string")
    ends = rows["grace_ends"].dt.strftime("%Y-%m-%d").astype("string")
    delete = (
        "Delete it: unused since " + since + ", past the " + str(grace_days) + "-day grace period."
    )
    wait = (
        "Tell the owner; if it is still unused on "
        + ends
        + " (grace period of "
        + str(grace_days)
        + " days), delete it."
    )
    managed = (
        "It is managed: remove it from its solution in the source environment and ship a new "
        "version; do not delete it here."
    )
    fix = wait.where(~rows["grace_passed"].astype(bool), delete)
    return fix.where(~rows["is_managed"].fillna(False).astype(bool), managed)


@register("usage-unknown")
class UsageUnknown(Rule):
    """Whether references are used could not be determined, so none is called unused."""

    severity = "info"

    def evaluate(self, ctx: RuleContext) -> pd.DataFrame:
        """Report environments with unknown usage, then candidates whose check failed."""
        return pd.concat([self._environments(ctx), self._references(ctx)], ignore_index=True)

    def _environments(self, ctx: RuleContext) -> pd.DataFrame:
        env = ctx.environments
        # Skipped environments were left out on purpose (selection, no Dataverse).
        env = env.loc[~env["usage_known"] & env["status"].ne("skipped").fillna(True)]
        rows = env.assign(
            object_type="environment",
            object_id=env["environment_id"],
            environment_name=env["display_name"],
        )
        detail = (
            "Usage of connection references is unknown here: "
            + text(rows["usage_unknown_reason"])
            + ". No reference in this environment is reported as unused."
        )
        fix = "Fix what blocked the read (see the reason) and run again."
        extra = rows[["status", "bad_flows"]].rename(columns={"status": "environment_status"})
        return self.findings(rows, detail=detail, suggested_fix=fix, extra=extra)

    def _references(self, ctx: RuleContext) -> pd.DataFrame:
        cand = _with_checks(ctx)
        rows = cand.loc[~cand["answered"]]
        why = text(rows["error"], "the check was not run")
        detail = (
            "No flow uses " + quoted(rows["display_name"]) + ", but asking the platform for "
            "other dependents (apps, bots) failed: " + why + ". It is not reported as unused."
        )
        fix = "Run again; if the check keeps failing, check the reference's dependencies by hand."
        return self.findings(rows, detail=detail, suggested_fix=fix, extra=rows[["error"]])
