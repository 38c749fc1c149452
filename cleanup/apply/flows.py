"""Rewire a cloud flow: turn it off if it is on, patch its clientdata, turn it back on, verify.

All planned keys of one flow change in one pass (one backup, one off/on cycle), because they
share the flow's ETag. ``FlowWriter.converge`` moves a flow from any state this apply knows
(the ETag is one it read for the backup or wrote itself) towards a goal (content, state), one
journalled step at a time; the same code finishes an interrupted apply and puts flows back in
``restore``. A flow that was on is never left off quietly: if turning it on fails, the flow is
put back as it was; if even that fails it is reported as OFF, at the top of the report.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cleanup.apply.context import (
    ApplyContext,
    EnvironmentContext,
    ObjectUnit,
    Step,
    StepFailed,
    describe_error,
)
from cleanup.apply.journal import backup_path, read_backup, utc_now, write_backup
from cleanup.apply.outcomes import (
    ALREADY,
    DONE,
    DRIFT,
    FAILED,
    LEFT_OFF,
    ROLLED_BACK,
    SKIPPED,
    ActionOutcome,
)
from cleanup.clients.dataverse import DataverseClient
from cleanup.clients.http import dumps_compact
from cleanup.errors import CleanupError
from cleanup.plan import FLOW_STATES, FlowPreconditions, RewireFlowKey
from cleanup.snapshot.clientdata import parse_clientdata
from cleanup.snapshot.tables import clientdata_bytes, connector_name, sha256_hex

FLOW_SELECT = "workflowid,name,statecode,statuscode,ismanaged,modifiedon,clientdata"
STATE_SELECT = "workflowid,statecode,statuscode,modifiedon"
OFF, ON = 0, 1
BODIES = {OFF: {"statecode": 0, "statuscode": 1}, ON: {"statecode": 1, "statuscode": 2}}
MAX_STEPS = 6
MANAGED = "the flow is managed: changing it would create an unmanaged layer; fix it in the source"


class RewireProblem(CleanupError):
    """The flow's clientdata no longer says what the plan expects."""


class TurnOnRefused(StepFailed):
    """The platform refused to turn the flow on (e.g. 0x80060467)."""


def sha256_text(text: str | None) -> str | None:
    """Return the hex SHA-256 of a clientdata text, as the snapshot takes it (None for None)."""
    return None if text is None else sha256_hex(clientdata_bytes(text))


@dataclass(frozen=True)
class FlowImage:
    """A flow as read (or as written): what apply compares and restores."""

    etag: str | None
    state: int | None
    status: int | None
    clientdata: str | None
    modified_on: str | None
    is_managed: bool | None
    name: str

    @property
    def sha(self) -> str | None:
        """The SHA-256 of the clientdata text."""
        return sha256_text(self.clientdata)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> FlowImage:
        """Build from a ``workflows`` row."""
        return cls(
            etag=row.get("@odata.etag"),
            state=row.get("statecode"),
            status=row.get("statuscode"),
            clientdata=row.get("clientdata"),
            modified_on=row.get("modifiedon"),
            is_managed=row.get("ismanaged"),
            name=str(row.get("name") or row.get("workflowid") or ""),
        )

    def after(self, row: dict[str, Any], clientdata: str | None) -> FlowImage:
        """The flow after a write whose answer carries state columns but not clientdata."""
        return FlowImage(
            etag=row.get("@odata.etag"),
            state=row.get("statecode"),
            status=row.get("statuscode"),
            clientdata=clientdata,
            modified_on=row.get("modifiedon", self.modified_on),
            is_managed=self.is_managed,
            name=self.name,
        )


def read_flow(dv: DataverseClient, flow_id: str) -> FlowImage | None:
    """Read a flow by id (None if it does not exist)."""
    row, _etag = dv.get_row("workflows", flow_id, FLOW_SELECT)
    return None if row is None else FlowImage.from_row(row)


# ---------------------------------------------------------------------------------------------
# clientdata


def rewire_clientdata(raw: str | None, changes: Sequence[tuple[str, str, str]]) -> str:
    """Point each (key, from, to) at ``to``; the rest of the JSON is kept as it was.

    Only ``properties.connectionReferences[key].connection.connectionReferenceLogicalName``
    changes; the text is re-serialised compactly (as Dataverse stores it) only if something
    changed. Raises ``RewireProblem`` if a key no longer names the planned reference.
    """
    if not isinstance(raw, str):
        raise RewireProblem("the flow has no clientdata")
    try:
        data = json.loads(raw)
        refs = data["properties"]["connectionReferences"]
    except (ValueError, TypeError, KeyError):
        raise RewireProblem("its clientdata is not a flow definition any more") from None
    changed = False
    for key, old, new in changes:
        entry = refs.get(key) if isinstance(refs, dict) else None
        connection = entry.get("connection") if isinstance(entry, dict) else None
        current = connection.get("connectionReferenceLogicalName") if connection else None
        if not isinstance(connection, dict) or not isinstance(current, str):
            raise RewireProblem(f"its key {key} no longer names a connection reference")
        if current.casefold() == new.casefold():
            continue
        if current.casefold() != old.casefold():
            raise RewireProblem(f"its key {key} now uses {current}, not {old}")
        connection["connectionReferenceLogicalName"] = new
        changed = True
    return dumps_compact(data) if changed else raw


def is_rewired(raw: str | None, changes: Sequence[tuple[str, str, str]]) -> bool:
    """True if every key already names its target reference."""
    try:
        return rewire_clientdata(raw, [(k, new, new) for k, _old, new in changes]) == raw
    except RewireProblem:
        return False


def flow_drift(pre: FlowPreconditions, current: FlowImage) -> str | None:
    """Say how the flow differs from what the plan was made against (None: it does not)."""
    if pre.etag and current.etag != pre.etag:
        return f"the flow changed since the plan (ETag {pre.etag} is now {current.etag})"
    if pre.modified_on and not same_time(pre.modified_on, current.modified_on):
        return f"the flow was modified at {current.modified_on}, after the plan"
    if current.sha != pre.clientdata_sha256:
        return "the flow's definition changed since the plan"
    state = FLOW_STATES.get(current.state, "unknown") if current.state is not None else "unknown"
    if pre.state != state:
        return f"the flow was {pre.state} when planned and is {state} now"
    return None


def same_time(one: str | None, two: str | None) -> bool:
    """Compare two ISO 8601 timestamps as instants."""
    try:
        return datetime.fromisoformat(str(one)) == datetime.fromisoformat(str(two))
    except ValueError:
        return one == two


# ---------------------------------------------------------------------------------------------
# Moving a flow, one journalled step at a time


class FlowWriter:
    """The writes of one flow: steps, convergence, verification and making it safe."""

    def __init__(
        self,
        unit: ObjectUnit[FlowImage],
        dv: DataverseClient,
        flow_id: str,
        changes: Sequence[tuple[str, str, str]] = (),
    ) -> None:
        self.unit = unit
        self.dv = dv
        self.flow_id = flow_id
        self.changes = changes  # journalled with clientdata patches: the audit's "what"

    def step(
        self, name: str, current: FlowImage, body: dict[str, Any], clientdata: str | None
    ) -> Step[FlowImage]:
        """One PATCH and how to recognise it landed: the state and content it leaves."""
        state = body.get("statecode", current.state)
        expect = {"state": state, "clientdata_sha256": sha256_text(clientdata)}

        def send(if_match: str) -> FlowImage | None:
            row = self.dv.patch("workflows", self.flow_id, body, if_match, select=STATE_SELECT)
            return None if row is None else current.after(row, clientdata)

        details: dict[str, Any] = {
            "expect": expect,
            "before": {"state": current.state, "clientdata_sha256": current.sha},
        }
        if name == "patch-clientdata" and self.changes:
            details["changes"] = [{"key": k, "from": a, "to": b} for k, a, b in self.changes]
        return Step(name, send, lambda img: flow_landed(img, expect), details)

    def converge(self, current: FlowImage, content: str | None, state: int | None) -> FlowImage:
        """Bring a trusted flow to (content, state); raise ``StepFailed`` if it cannot."""
        target = sha256_text(content)
        for _ in range(MAX_STEPS):
            if not self.unit.trusted(current):
                raise StepFailed("someone else changed the flow meanwhile", drift=True)
            if current.sha == target and current.state == state:
                return current
            step = self._next_step(current, content, target, state)
            try:
                new = self.unit.perform(step, current.etag or "")
            except StepFailed as exc:
                if step.name == "turn-on" and not exc.drift and exc.error is not None:
                    raise TurnOnRefused(str(exc), error=exc.error) from exc
                raise
            if new is None:
                raise StepFailed("the flow disappeared", drift=True)
            current = new
        raise StepFailed("the flow did not settle in the expected state")

    def _next_step(
        self, current: FlowImage, content: str | None, target: str | None, state: int | None
    ) -> Step[FlowImage]:
        if current.sha != target:
            if current.state == ON:
                return self.step("turn-off", current, BODIES[OFF], current.clientdata)
            return self.step("patch-clientdata", current, {"clientdata": content}, content)
        if state in BODIES and current.state in BODIES:
            name = "turn-on" if state == ON else "turn-off"
            return self.step(name, current, BODIES[state], current.clientdata)
        raise StepFailed(
            f"the flow is in state {current.state}; apply does not move it to {state}", drift=True
        )

    def verify(self, content: str | None, state: int | None) -> FlowImage | None:
        """Re-read until the flow shows (content, state); journal and return what was seen."""
        expect = {"state": state, "clientdata_sha256": sha256_text(content)}
        seen = self.unit.wait_until(lambda img: flow_landed(img, expect))
        ok = flow_landed(seen, expect)
        self.unit.journal(
            "verified" if ok else "verify-failed",
            etag=seen.etag if seen else None,
            state=seen.state if seen else None,
            clientdata_sha256=seen.sha if seen else None,
        )
        return seen if ok else None

    def make_safe(self, was_on: bool) -> str | None:
        """Turn a flow this apply turned off back on; return what is still wrong (None: fine)."""
        if not was_on:
            return None
        try:
            current = self.unit.reread()
        except CleanupError as exc:
            return f"the flow's state could not be read ({describe_error(exc)}); it may be OFF"
        if current is None or current.state != OFF:
            return None
        if not (self.unit.trail.did("turn-off") or self.unit.trail.turn_on_failed):
            return None  # someone else turned it off: not ours to turn on
        try:
            self.unit.trust(current.etag, "turning back on a flow this apply turned off")
            self.converge(current, current.clientdata, ON)
        except CleanupError as exc:
            return f"the flow is OFF and could not be turned back on ({exc})"
        return None


def flow_landed(image: FlowImage | None, expect: dict[str, Any]) -> bool:
    """True if the flow shows the state and content a write was meant to leave."""
    return (
        image is not None
        and image.state == expect.get("state")
        and image.sha == expect.get("clientdata_sha256")
    )


def pending_landed(unit: ObjectUnit[FlowImage]) -> Any:
    """How to recognise that the write pending in the journal landed."""
    expect = (unit.trail.pending or {}).get("expect") or {}
    return lambda img: flow_landed(img, expect)


# ---------------------------------------------------------------------------------------------
# The apply handler


def apply_rewire_flow_key(
    ctx: ApplyContext, env: EnvironmentContext, actions: Sequence[RewireFlowKey]
) -> list[ActionOutcome]:
    """Rewire the planned keys of one flow: off if on, patch clientdata, back on, verify."""
    return FlowJob(ctx, env, list(actions)).run()


class FlowJob:
    """Apply the rewires of one flow."""

    def __init__(self, ctx: ApplyContext, env: EnvironmentContext, actions: list[RewireFlowKey]):
        self.ctx, self.env, self.actions = ctx, env, actions
        first = actions[0]
        self.flow_id = first.flow_id
        self.changes = [(a.key, a.from_logical_name, a.to_logical_name) for a in actions]
        self.unit: ObjectUnit[FlowImage] = ObjectUnit(
            ctx,
            env,
            "flow",
            first.flow_id,
            [a.action_id for a in actions],
            reread=lambda: read_flow(env.dv, first.flow_id),
            etag_of=lambda img: img.etag if img else None,
        )
        self.writer = FlowWriter(self.unit, env.dv, first.flow_id, self.changes)

    def run(self) -> list[ActionOutcome]:
        """Apply (or finish applying) the rewires; return one outcome per action."""
        current = self.unit.reread()
        if current is None:
            gone = FAILED if self.unit.trail.changed else SKIPPED
            return self._all(gone, "the flow no longer exists")
        if current.is_managed is not False:
            return self._all(SKIPPED, MANAGED)
        if self.unit.trail.backup is None:
            verdict = self._first_look(current)
            if verdict is not None:
                return self._all(*verdict)
            self._backup(current)
            original = current
        else:
            original = self._original()
        goal = rewire_clientdata(original.clientdata, self.changes)
        self.unit.settle_pending(current, pending_landed(self.unit))
        return self._converge(current, original, goal)

    def _first_look(self, current: FlowImage) -> tuple[str, str] | None:
        problem = flow_drift(self.actions[0].preconditions, current)
        if problem:
            if is_rewired(current.clientdata, self.changes):
                return ALREADY, "the flow already uses the surviving reference"
            return DRIFT, problem
        try:
            goal = rewire_clientdata(current.clientdata, self.changes)
        except RewireProblem as exc:
            return DRIFT, str(exc)
        if goal == current.clientdata:
            return ALREADY, "the flow already uses the surviving reference"
        why = self._preflight(current, goal)
        return (SKIPPED, why) if why else None

    def _preflight(self, current: FlowImage, goal: str) -> str | None:
        """Refuse before any write what could not be turned back on afterwards."""
        refs, error = self.env.references_by_name()
        if refs is None:
            return f"the surviving reference could not be checked ({error})"
        for action in self.actions:
            row = refs.get(action.to_logical_name.casefold())
            if row is None:
                return f"the surviving reference {action.to_logical_name} no longer exists"
            if not row.get("connectionid"):
                return f"the surviving reference {action.to_logical_name} is no longer bound"
        if current.state != ON:
            return None
        return self._can_turn_on(goal, refs)

    def _can_turn_on(self, goal: str, refs: dict[str, dict[str, Any]]) -> str | None:
        connections, error = self.env.connections()
        if connections is None:
            return f"the flow is on and its connections could not be checked ({error})"
        for use in parse_clientdata(goal).references:
            if not use.logical_name:
                continue
            row = refs.get(use.logical_name.casefold())
            where = f"it uses {use.logical_name}, which"
            if row is None:
                return f"{where} does not exist: the flow could not be turned back on"
            connection = str(row.get("connectionid") or "")
            if not connection:
                return f"{where} is not bound: the flow could not be turned back on"
            connector = connector_name(row.get("connectorid")) or ""
            if (connector.casefold(), connection.casefold()) not in connections:
                return f"{where} names a missing connection: the flow could not be turned on"
        return None

    def _backup(self, current: FlowImage) -> None:
        env_id = self.env.environment_id
        path = backup_path(self.ctx.folder, "flow", env_id, self.flow_id)
        data = {
            "kind": "flow",
            "environment_id": env_id,
            "flow_id": self.flow_id,
            "read_at": utc_now(),
            "etag": current.etag,
            "name": current.name,
            "statecode": current.state,
            "statuscode": current.status,
            "modifiedon": current.modified_on,
            "ismanaged": current.is_managed,
            "clientdata": current.clientdata,
            "clientdata_sha256": current.sha,
        }
        write_backup(path, data)
        self.unit.journal(
            "backup",
            step="flow",
            path=str(path.relative_to(self.ctx.folder)),
            etag=current.etag,
            state=current.state,
            clientdata_sha256=current.sha,
        )

    def _original(self) -> FlowImage:
        record = self.unit.trail.backup or {}
        data = read_backup(self.ctx.folder / record["path"])
        return flow_from_backup(data)

    def _converge(self, current: FlowImage, original: FlowImage, goal: str) -> list[ActionOutcome]:
        rolling_back = self.unit.trail.turn_on_failed
        content = original.clientdata if rolling_back else goal
        was_on = original.state == ON
        try:
            self.writer.converge(current, content, original.state)
        except TurnOnRefused as exc:
            return self._roll_back(original, exc)
        except StepFailed as exc:
            return self._finish(DRIFT if exc.drift else FAILED, str(exc), was_on)
        except CleanupError as exc:
            return self._finish(FAILED, describe_error(exc), was_on)
        if self.writer.verify(content, original.state) is None:
            return self._finish(FAILED, "the flow did not read back as written", was_on)
        if rolling_back:
            return self._all(ROLLED_BACK, "turning the flow on had failed; it is back as it was")
        keys = ", ".join(f"{k}: {old} -> {new}" for k, old, new in self.changes)
        toggled = " (turned off and back on)" if was_on else ""
        return self._all(DONE, f"rewired {keys}{toggled}")

    def _roll_back(self, original: FlowImage, exc: TurnOnRefused) -> list[ActionOutcome]:
        error = describe_error(exc.error) if exc.error else str(exc)
        self.unit.journal("turn-on-failed", error=error)
        why = f"turning the flow on after the rewire failed ({error})"
        try:
            current = self.unit.reread()
            if current is None:
                raise StepFailed("the flow disappeared", drift=True)
            self.writer.converge(current, original.clientdata, original.state)
            if self.writer.verify(original.clientdata, original.state) is None:
                raise StepFailed("the flow did not read back as it was")
        except (StepFailed, CleanupError) as again:
            return self._finish(LEFT_OFF, f"{why}; putting it back failed too: {again}", True)
        return self._all(ROLLED_BACK, f"{why}; the flow was put back as it was and is on")

    def _finish(self, status: str, reason: str, was_on: bool) -> list[ActionOutcome]:
        still_wrong = self.writer.make_safe(was_on)
        if still_wrong:
            return self._all(LEFT_OFF, f"{reason}; {still_wrong}")
        if status == LEFT_OFF:
            status = FAILED  # make_safe managed to turn it on after all
        turned = "; the flow was turned back on" if self.unit.trail.did("turn-off") else ""
        return self._all(status, reason + (turned if was_on else ""))

    def _all(self, status: str, reason: str) -> list[ActionOutcome]:
        return [self.unit.outcome(a, status, reason) for a in self.actions]


def flow_from_backup(data: dict[str, Any]) -> FlowImage:
    """The flow as its backup recorded it."""
    return FlowImage(
        etag=data.get("etag"),
        state=data.get("statecode"),
        status=data.get("statuscode"),
        clientdata=data.get("clientdata"),
        modified_on=data.get("modifiedon"),
        is_managed=data.get("ismanaged"),
        name=str(data.get("name") or data.get("flow_id") or ""),
    )
