"""Checks that run before the first write: is this the plan we think, and is it within limits?

``check_plan`` needs nothing but the plan and the settings (no network): the tool version and
config fingerprint it was written with, its age, known action types, and the ``[apply]``
limits. ``check_environments`` runs once the tenant's environments are known: each one the plan
changes must still exist, have Dataverse, and be allowed by ``apply.environments``.
Every problem is collected, so one refusal lists them all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cleanup import __version__
from cleanup.apply.settings import ApplySettings
from cleanup.config import Settings
from cleanup.errors import PlanError, SafetyLimitExceeded
from cleanup.plan import (
    DeleteReference,
    Plan,
    RenameReference,
    RewireFlowKey,
)


def check_plan(
    plan: Plan,
    settings: Settings,
    limits: ApplySettings,
    *,
    now: datetime,
    handled: frozenset[str],
    check_age: bool = True,
) -> None:
    """Refuse a plan that is not this tool's and this config's, or that breaks a limit."""
    problems = _identity_problems(plan, settings, limits, now, handled, check_age)
    if problems:
        raise PlanError("Refusing the plan: " + " ".join(problems))
    problems = limit_problems(plan, limits)
    if problems:
        raise SafetyLimitExceeded("Refusing the plan; nothing was changed: " + " ".join(problems))


def _identity_problems(
    plan: Plan,
    settings: Settings,
    limits: ApplySettings,
    now: datetime,
    handled: frozenset[str],
    check_age: bool,
) -> list[str]:
    problems = []
    if plan.tool_version != __version__:
        problems.append(
            f"it was written by connref-cleanup {plan.tool_version}, this is {__version__}; "
            "re-run the job with this version to get a new plan."
        )
    fingerprint = settings.fingerprint()
    if plan.config_fingerprint != fingerprint:
        problems.append(
            f"it was written with another configuration (fingerprint {plan.config_fingerprint}, "
            f"now {fingerprint}); re-run the job with this config to get a new plan."
        )
    age = (now - plan.created_at).total_seconds() / 3600
    if check_age and limits.max_plan_age_hours and age > limits.max_plan_age_hours:
        problems.append(
            f"it is {age:.0f} hours old, more than apply.max_plan_age_hours "
            f"({limits.max_plan_age_hours:g}); re-run the job to get a fresh plan."
        )
    unknown = sorted({a.kind for a in plan.actions} - handled)
    if unknown:
        problems.append(f"apply does not know the action type(s) {', '.join(unknown)}.")
    strays = sorted({a.environment_id for a in plan.actions} - set(plan.environment_ids))
    if strays:
        problems.append(f"actions name environments the plan did not analyse: {strays}.")
    return problems


def limit_problems(plan: Plan, limits: ApplySettings) -> list[str]:
    """Return every way the plan breaks the ``[apply]`` limits (empty: within limits)."""
    problems = []
    total = len(plan.actions)
    if total > limits.max_actions_per_run:
        problems.append(
            f"{total} actions exceed apply.max_actions_per_run ({limits.max_actions_per_run})."
        )
    for env, count in sorted(Counter(a.environment_id for a in plan.actions).items()):
        if count > limits.max_actions_per_environment:
            problems.append(
                f"environment {env}: {count} actions exceed apply.max_actions_per_environment "
                f"({limits.max_actions_per_environment})."
            )
    deletes = [a for a in plan.actions if isinstance(a, DeleteReference)]
    if deletes and not limits.allow_delete:
        problems.append(
            f"the plan deletes {len(deletes)} reference(s) but apply.allow_delete is false; "
            "set [apply] allow_delete = true to allow deletes."
        )
    problems.extend(_protected_problems(plan, limits))
    return problems


def _protected_problems(plan: Plan, limits: ApplySettings) -> list[str]:
    touched = []
    for action in plan.actions:
        if isinstance(action, RewireFlowKey):
            names = [action.from_logical_name]
        elif isinstance(action, DeleteReference | RenameReference):
            names = [action.logical_name]
        else:
            names = []
        touched += [(action, n) for n in names if limits.is_protected(n)]
    return [
        f"{action.action_id} would change or move away from the protected reference '{name}' "
        "(apply.protected_patterns)."
        for action, name in touched
    ]


def check_environments(
    plan: Plan, limits: ApplySettings, discovered: Mapping[str, Mapping[str, Any]]
) -> None:
    """Refuse if an environment the plan changes is gone, has no Dataverse, or is not allowed."""
    check_environment_ids({a.environment_id for a in plan.actions}, limits, discovered)


def check_environment_ids(
    environment_ids: set[str], limits: ApplySettings, discovered: Mapping[str, Mapping[str, Any]]
) -> None:
    """Refuse if one of these environments is gone, has no Dataverse, or is not allowed."""
    problems = []
    for env in sorted(environment_ids):
        row = discovered.get(env)
        if row is None:
            problems.append(f"environment {env} no longer exists in the tenant (or is hidden).")
            continue
        name = row.get("display_name")
        if not row.get("instance_url"):
            problems.append(f"environment {env} ({name}) has no Dataverse database.")
        if not limits.allows_environment(env, name):
            problems.append(
                f"environment {env} ({name}) is not in apply.environments; add its id or name "
                "there to allow changes."
            )
    if problems:
        raise SafetyLimitExceeded("Refusing the plan; nothing was changed: " + " ".join(problems))
