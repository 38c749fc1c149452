"""The visitor: run each planned action through the handler of its type, environment by environment.

Per environment the order is fixed: every flow's rewires (a flow's keys together), then
renames, then deletes, so a delete only ever sees rewires that already ran. Inside a phase,
objects are independent and run side by side (``apply.concurrency``). An action type without
a handler stops the apply before the first write (``check_plan`` refuses it), and the visitor
refuses it again here: fail closed.

A unit that raises is recorded as failed and the others go on; a flow that unit had turned
off is turned back on first. A stop request (SIGTERM, Ctrl-C) lets running units finish and
starts no new one; ``resume`` continues from the journal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from cleanup.apply.context import ApplyContext, EnvironmentContext, describe_error, unit_name
from cleanup.apply.flows import apply_rewire_flow_key
from cleanup.apply.outcomes import FAILED, LEFT_OFF, RETRIED_BY_RESUME, ActionOutcome
from cleanup.apply.references import apply_delete_reference, apply_rename_reference
from cleanup.errors import PlanError
from cleanup.plan import Action, DeleteReference, Plan, RenameReference, RewireFlowKey

log = logging.getLogger(__name__)

Run = Callable[[ApplyContext, EnvironmentContext, Any], list[ActionOutcome]]


@dataclass(frozen=True)
class Handler:
    """How one action type is applied: its phase, how actions group, and the function."""

    phase: int
    group: Callable[[Any], tuple[str, ...]]
    run: Run


HANDLERS: dict[str, Handler] = {
    RewireFlowKey.kind: Handler(0, lambda a: ("flow", a.flow_id.lower()), apply_rewire_flow_key),
    RenameReference.kind: Handler(1, lambda a: (a.action_id,), apply_rename_reference),
    DeleteReference.kind: Handler(2, lambda a: (a.action_id,), apply_delete_reference),
}
PHASE_NAMES = {0: "flows", 1: "renames", 2: "deletes"}


def handled_types() -> frozenset[str]:
    """The action types this apply can execute."""
    return frozenset(HANDLERS)


def execute(
    plan: Plan,
    ctx: ApplyContext,
    environments: dict[str, EnvironmentContext],
    *,
    workers: int = 1,
) -> None:
    """Apply every action of the plan that has no final outcome in the journal yet."""
    unknown = {a.kind for a in plan.actions} - set(HANDLERS)
    if unknown:
        raise PlanError(f"No handler for the action type(s) {sorted(unknown)}; nothing applied.")
    for env_id in dict.fromkeys(a.environment_id for a in plan.actions):
        todo = [a for a in plan.actions_for(env_id) if _needs_work(ctx, a)]
        if todo:
            _environment(ctx, environments[env_id], todo, workers)
        if ctx.stop.is_set():
            return


def _needs_work(ctx: ApplyContext, action: Action) -> bool:
    status = ctx.status_of(action.action_id)
    return status is None or status in RETRIED_BY_RESUME


def _environment(
    ctx: ApplyContext, env: EnvironmentContext, actions: list[Action], workers: int
) -> None:
    for phase in sorted({HANDLERS[a.kind].phase for a in actions}):
        if ctx.stop.is_set():
            return
        groups: dict[tuple[str, ...], list[Action]] = {}
        for action in actions:
            handler = HANDLERS[action.kind]
            if handler.phase == phase:
                groups.setdefault(handler.group(action), []).append(action)
        ctx.journal.append("phase", step=PHASE_NAMES[phase], environment_id=env.environment_id)
        _run_units(ctx, env, list(groups.values()), workers)


def _run_units(
    ctx: ApplyContext, env: EnvironmentContext, groups: list[list[Action]], workers: int
) -> None:
    if workers <= 1 or len(groups) <= 1:
        for group in groups:
            if ctx.stop.is_set():
                return
            _run_unit(ctx, env, group)
        return
    with ThreadPoolExecutor(min(workers, len(groups)), thread_name_prefix="apply") as pool:
        futures = [pool.submit(_guarded, ctx, env, group) for group in groups]
        for future in futures:
            future.result()  # a SimulatedCrash or KeyboardInterrupt surfaces here


def _guarded(ctx: ApplyContext, env: EnvironmentContext, group: list[Action]) -> None:
    if not ctx.stop.is_set():
        _run_unit(ctx, env, group)


def _run_unit(ctx: ApplyContext, env: EnvironmentContext, group: Sequence[Action]) -> None:
    """Apply one object's actions; a failure is recorded, never left to stop the others."""
    handler = HANDLERS[group[0].kind]
    try:
        outcomes = handler.run(ctx, env, list(group))
    except Exception as exc:  # noqa: BLE001 - one object's problem must not abandon the rest
        log.exception("applying %s failed", group[0].action_id)
        touched = _touched(ctx, env, group[0])
        outcomes = [_failure(env, action, exc, touched) for action in group]
    ctx.record(outcomes, object_key=_object_key(env, group[0]))


def _touched(ctx: ApplyContext, env: EnvironmentContext, action: Action) -> bool:
    trail = ctx.state.objects.get(_object_key(env, action))
    return isinstance(action, RewireFlowKey) and trail is not None and trail.changed


def _failure(
    env: EnvironmentContext, action: Action, exc: Exception, touched: bool
) -> ActionOutcome:
    object_id = str(getattr(action, "flow_id", None) or getattr(action, "reference_id", ""))
    reason = f"{type(exc).__name__}: {describe_error(exc)}"
    if touched:
        # It may be off; LEFT_OFF makes resume come back to it and turn it on.
        reason += "; the flow may be OFF: run resume to finish it"
    return ActionOutcome(
        action_id=action.action_id,
        kind=action.kind,
        environment_id=env.environment_id,
        object_id=object_id,
        name=unit_name(action),
        status=LEFT_OFF if touched else FAILED,
        reason=reason,
    )


def _object_key(env: EnvironmentContext, action: Action) -> str:
    if isinstance(action, RewireFlowKey):
        return f"flow:{env.environment_id}:{action.flow_id.lower()}"
    return f"reference:{env.environment_id}:{getattr(action, 'reference_id', '').lower()}"
