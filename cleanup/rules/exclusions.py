"""Exclusions: set findings aside on purpose, with a reason, until an optional expiry date.

An exclusion matches a finding when every selector it names matches: the environment (id or
display name), the rule, the object's logical name, and a solution holding the object (by
unique name). Globs (``*``, ``?``) match case-insensitively. The first matching exclusion
wins and is recorded next to the finding it set aside. From the day after ``expires`` an
exclusion no longer applies and the ``expired-exclusion`` rule reports it.
"""

from __future__ import annotations

import hashlib
from datetime import date

import pandas as pd

from cleanup import schemas
from cleanup.rules.base import Rule, RuleContext, register
from cleanup.rules.settings import Exclusion, ExclusionSettings, glob_regex

EXCLUDED: schemas.Schema = {
    **schemas.FINDINGS,
    "exclusion": schemas.STR,  # what the exclusion selects, e.g. "environment='Prod*'"
    "exclusion_reason": schemas.STR,
    "exclusion_expires": schemas.STR,  # ISO date or <NA>
}


def is_active(exclusion: Exclusion, today: date) -> bool:
    """Say whether an exclusion still applies on ``today`` (it does on its expiry date)."""
    expiry = exclusion.expiry_date()
    return expiry is None or today <= expiry


def exclusion_id(exclusion: Exclusion) -> str:
    """Return a stable id for an exclusion, from what it selects (not its position)."""
    blob = "\x1f".join(
        [exclusion.environment, exclusion.solution, exclusion.logical_name, exclusion.rule]
    )
    return "exclusion-" + hashlib.sha256(blob.encode()).hexdigest()[:10]


def apply_exclusions(
    findings: pd.DataFrame, ctx: RuleContext, settings: ExclusionSettings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split findings into (kept, excluded); excluded rows say which exclusion and why."""
    today = ctx.now.date()
    chosen = pd.Series(-1, index=findings.index)
    for position, exclusion in enumerate(settings.items):
        if is_active(exclusion, today):
            hit = _matches(findings, ctx, exclusion) & chosen.eq(-1)
            chosen = chosen.mask(hit, position)
    hit = chosen.ne(-1)
    if hit.any():
        kept, excluded = findings.loc[~hit], findings.loc[hit].copy()
    else:  # nothing excluded: no copy of (possibly) millions of rows
        kept, excluded = findings, findings.iloc[:0].copy()
    picked = [settings.items[i] for i in chosen.loc[excluded.index]]
    excluded["exclusion"] = [e.describe() for e in picked]
    excluded["exclusion_reason"] = [e.reason for e in picked]
    excluded["exclusion_expires"] = [e.expires or None for e in picked]
    return kept, schemas.conform(excluded, EXCLUDED, name="excluded findings")


def _matches(findings: pd.DataFrame, ctx: RuleContext, exclusion: Exclusion) -> pd.Series:
    def glob(column: pd.Series, pattern: str) -> pd.Series:
        if pattern == "*":
            return pd.Series(True, index=column.index)
        return column.str.fullmatch(glob_regex(pattern), case=False).fillna(False).astype(bool)

    hit = glob(findings["rule"], exclusion.rule) & glob(
        findings["logical_name"], exclusion.logical_name
    )
    hit &= glob(findings["environment_id"], exclusion.environment) | glob(
        findings["environment_name"], exclusion.environment
    )
    if exclusion.solution:
        hit &= _in_solution(findings, ctx, exclusion.solution)
    return hit


def _in_solution(findings: pd.DataFrame, ctx: RuleContext, pattern: str) -> pd.Series:
    mem = ctx.memberships
    mem = mem.loc[mem["unique_name"].str.fullmatch(glob_regex(pattern), case=False).fillna(False)]
    members = pd.MultiIndex.from_frame(mem[["environment_id", "object_key"]])
    keys = pd.MultiIndex.from_arrays(
        [findings["environment_id"], findings["object_id"].str.lower()]
    )
    return pd.Series(keys.isin(members), index=findings.index)


@register("expired-exclusion")
class ExpiredExclusion(Rule):
    """An exclusion in the configuration has expired and no longer hides anything."""

    severity = "low"
    object_type = "exclusion"

    def evaluate(self, ctx: RuleContext) -> pd.DataFrame:
        """Report each configured exclusion whose expiry date has passed."""
        today = ctx.now.date()
        expired = [e for e in ctx.exclusions.items if not is_active(e, today)]
        rows = pd.DataFrame(
            {
                "environment_id": [None] * len(expired),
                "object_id": [exclusion_id(e) for e in expired],
                "display_name": [e.describe() for e in expired],
                "reason": [e.reason for e in expired],
                "expires": [e.expires for e in expired],
            },
            dtype="string",
        )
        detail = (
            "The exclusion ("
            + rows["display_name"]
            + ") expired on "
            + rows["expires"]
            + "; what it hid is reported again. Its reason was: "
            + rows["reason"]
        )
        fix = "Move 'expires' later if the reason still holds, or delete the entry."
        return self.findings(
            rows, detail=detail, suggested_fix=fix, extra=rows[["reason", "expires"]]
        )
