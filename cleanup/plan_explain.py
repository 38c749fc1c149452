"""Explain a plan in plain words ("Would rewire ...", "Would delete ..."), pip-tools style.

This is the second consumer of a ``Plan`` value, next to apply: it reads the same actions and
never decides anything itself.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping

from cleanup.plan import (
    Action,
    DeleteReference,
    Plan,
    RenameReference,
    RewireFlowKey,
    Skipped,
)

_STATE_NOTE = {
    "on": " (the flow is on: it is turned off, changed and turned back on)",
    "suspended": " (the flow is suspended: it stays suspended)",
}


def describe(plan: Plan) -> list[str]:
    """Explain a plan in plain words, one line per action, skipped item and summary count."""
    return list(iter_describe(plan))


def iter_describe(plan: Plan) -> Iterator[str]:
    """The lines of ``describe``, one at a time (a report shows only the first ones)."""
    skipped_in = _skipped_by_environment(plan)
    yield (
        f"Plan {plan.run_id}, created {plan.created_at:%Y-%m-%d %H:%M} UTC by connref-cleanup "
        f"{plan.tool_version} (config {plan.config_fingerprint}), "
        f"{_count(len(plan.environment_ids), 'environment')} analysed."
    )
    for env in _environments(plan, skipped_in):
        actions = plan.actions_for(env)
        skipped = skipped_in.get(env, [])
        yield f"Environment {env}: {_summary(actions)}; {len(skipped)} skipped."
        yield from ("  " + action_line(a) for a in actions)
        yield from ("  " + skipped_line(s) for s in skipped)
    if plan.actions:
        active = len({a.environment_id for a in plan.actions})
        yield (
            f"Total: {_summary(plan.actions)} in {_count(active, 'environment')}; "
            f"{len(plan.skipped)} skipped."
        )
    else:
        yield f"Nothing to do; {len(plan.skipped)} skipped."


def line_count(plan: Plan) -> int:
    """How many lines ``describe`` gives, without writing them."""
    environments = _environments(plan, _skipped_by_environment(plan))
    # The first and the last line, and a heading per environment; every action and skipped
    # item has its own line, and each lies in one of those environments.
    return 2 + len(environments) + len(plan.actions) + len(plan.skipped)


def _skipped_by_environment(plan: Plan) -> dict[str, list[Skipped]]:
    skipped_in: dict[str, list[Skipped]] = defaultdict(list)
    for item in plan.skipped:
        skipped_in[item.environment_id].append(item)
    return skipped_in


def action_line(action: Action) -> str:
    """Describe one action in one sentence, starting with "Would"."""
    env = action.environment_id
    if isinstance(action, RewireFlowKey):
        note = _STATE_NOTE.get(action.preconditions.state, "")
        return (
            f"Would rewire flow '{action.flow_name}' (env {env}), key {action.key}: "
            f"{action.from_logical_name} -> {action.to_display_name}{note}"
        )
    if isinstance(action, RenameReference):
        return (
            f"Would rename connection reference {action.logical_name} (env {env}): "
            f"'{action.from_display_name or ''}' -> '{action.to_display_name}'"
        )
    return _delete_line(action)


def _delete_line(action: DeleteReference) -> str:
    label = f"'{action.display_name}' ({action.logical_name})"
    if not action.display_name or action.display_name == action.logical_name:
        label = action.logical_name
    head = f"Would delete connection reference {label} (env {action.environment_id})"
    if action.group_id is None:
        return f"{head} ({action.reason})"
    after = f", after {_count(len(action.depends_on), 'rewire')}" if action.depends_on else ""
    return f"{head}: {action.reason}{after}"


def skipped_line(item: Skipped) -> str:
    """Describe one deliberately skipped item and why."""
    kind = "reference" if item.object_type == "reference" else "flow key"
    name = item.name if item.object_type != "reference" else f"{kind} {item.name}"
    return f"Skipped {name} (env {item.environment_id}): {item.reason}"


def _environments(plan: Plan, skipped_in: Mapping[str, list[Skipped]]) -> list[str]:
    """Environments with an action or a skipped item: analysed ones first, in plan order."""
    seen = dict.fromkeys(plan.environment_ids)
    seen.update(dict.fromkeys(a.environment_id for a in plan.actions))
    seen.update(dict.fromkeys(skipped_in))
    return [env for env in seen if plan.actions_for(env) or skipped_in.get(env)]


def _summary(actions: tuple[Action, ...]) -> str:
    counts = Counter(map(type, actions))
    parts = [
        f"{verb} {_count(counts[kind], noun)}"
        for kind, verb, noun in (
            (RewireFlowKey, "rewire", "flow key"),
            (RenameReference, "rename", "reference"),
            (DeleteReference, "delete", "reference"),
        )
        if counts[kind]
    ]
    return "would " + ", ".join(parts) if parts else "nothing to do"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
