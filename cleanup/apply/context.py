"""The state one apply (or restore) shares, and the one way it writes: ``ObjectUnit.perform``.

``perform`` is where "exactly once" lives. It journals the intent, sends the write with
``If-Match``, and journals the answer. When the answer is ambiguous (no answer, a 5xx after
retries, or a 412 that may be our own earlier attempt landing) it re-reads the object before
anything else: if the object shows the write's effect the step is done; if the object still has
the ETag we sent, the write never landed and, after a lost answer, it is sent once more;
anything else means someone else changed it (drift), and nothing more is sent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from cleanup.apply.journal import Journal, JournalState, ObjectTrail, crash_point, fold_object
from cleanup.apply.outcomes import ActionOutcome
from cleanup.apply.settings import ApplySettings
from cleanup.clients.dataverse import DataverseClient
from cleanup.clients.platform import PlatformClients
from cleanup.errors import ApiError, CleanupError
from cleanup.progress import Progress
from cleanup.snapshot.clientdata import STATUS_OK, parse_clientdata
from cleanup.snapshot.tables import connector_name

log = logging.getLogger(__name__)

AMBIGUOUS_STATUSES = frozenset({412, 429, 500, 502, 503, 504})
ImageT = TypeVar("ImageT")


class StepFailed(CleanupError):
    """A write did not happen (or its outcome could not be settled); says why."""

    def __init__(self, message: str, *, drift: bool = False, error: ApiError | None = None):
        super().__init__(message)
        self.drift = drift
        self.error = error


def is_ambiguous(exc: ApiError) -> bool:
    """A failure after which the write may or may not have happened."""
    return exc.status is None or exc.status in AMBIGUOUS_STATUSES


def describe_error(exc: BaseException) -> str:
    """Return an API error as "code: message" (or the exception text)."""
    if isinstance(exc, ApiError):
        code = f"{exc.code}: " if exc.code else ""
        status = f"HTTP {exc.status} " if exc.status else ""
        return f"{status}{code}{exc.message}".strip()
    return str(exc)


# ---------------------------------------------------------------------------------------------
# Per environment


class EnvironmentContext:
    """One environment's client and the lookups apply makes at most once there."""

    def __init__(self, clients: PlatformClients, environment_id: str, row: dict[str, Any]):
        self.clients = clients
        self.environment_id = environment_id
        self.display_name = str(row.get("display_name") or environment_id)
        self.dv: DataverseClient = clients.dataverse(row["instance_url"], environment_id)
        self._lock = threading.Lock()
        self._cache: dict[str, Any] = {}

    def _once(self, name: str, load: Callable[[], Any]) -> Any:
        with self._lock:
            if name not in self._cache:
                try:
                    self._cache[name] = (load(), None)
                except CleanupError as exc:
                    self._cache[name] = (None, describe_error(exc))
            return self._cache[name]

    def references_by_name(self) -> tuple[dict[str, dict[str, Any]] | None, str | None]:
        """Every reference by case-folded logical name (None and why, if unreadable)."""

        def load() -> dict[str, dict[str, Any]]:
            rows = self.dv.connection_references()
            return {str(r["connectionreferencelogicalname"]).casefold(): r for r in rows}

        return self._once("references", load)

    def connections(self) -> tuple[set[tuple[str, str]] | None, str | None]:
        """The environment's connections as (connector, name), case-folded."""

        def load() -> set[tuple[str, str]]:
            found = set()
            for item in self.clients.connections(self.environment_id):
                props = item.get("properties") or {}
                api = connector_name(props.get("apiId") or item.get("id")) or ""
                found.add((api.casefold(), str(item.get("name", "")).casefold()))
            return found

        return self._once("connections", load)

    def usage(self) -> tuple[dict[str, list[str]] | None, str | None]:
        """Which flows use each logical name now, from a fresh read of every cloud flow."""

        def load() -> dict[str, list[str]] | None:
            users: dict[str, list[str]] = {}
            for page in self.dv.cloud_flow_pages():
                for row in page:
                    parsed = parse_clientdata(row.get("clientdata"))
                    name = str(row.get("name") or row.get("workflowid"))
                    if parsed.status != STATUS_OK:
                        raise CleanupError(
                            f"flow '{name}' could not be read ({parsed.status}), so usage is "
                            "unknown"
                        )
                    for use in parsed.references:
                        if use.logical_name:
                            users.setdefault(use.logical_name.casefold(), []).append(name)
            return users

        return self._once("usage", load)

    def reference_component_type(self) -> tuple[int | None, str | None]:
        """The environment's solution component type for connection references."""
        value, error = self._once("component_type", self.dv.reference_component_type)
        if value is None and error is None:
            error = "the environment has no solution component type for connection references"
        return value, error

    def solutions(self) -> tuple[dict[str, dict[str, Any]] | None, str | None]:
        """Every solution by lower-case id."""

        def load() -> dict[str, dict[str, Any]]:
            return {str(s["solutionid"]).lower(): s for s in self.dv.solutions()}

        return self._once("solutions", load)


# ---------------------------------------------------------------------------------------------
# The whole run


@dataclass
class ApplyContext:
    """What every unit of one apply, resume or restore shares."""

    folder: Path
    journal: Journal
    state: JournalState
    limits: ApplySettings
    progress: Progress
    total: int = 0
    outcomes: dict[str, ActionOutcome] = field(default_factory=dict)
    writes: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    sleep: Callable[[float], None] = time.sleep
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, outcomes: list[ActionOutcome], object_key: str | None = None) -> None:
        """Journal the outcomes of one unit and remember them."""
        if not outcomes:
            return
        first = outcomes[0]
        self.journal.append(
            "outcome",
            object=object_key,
            action_ids=[o.action_id for o in outcomes],
            kind=first.kind,
            environment_id=first.environment_id,
            object_id=first.object_id,
            name=first.name,
            status=first.status,
            reason=first.reason,
            writes=first.writes,
        )
        with self._lock:
            for outcome in outcomes:
                self.outcomes[outcome.action_id] = outcome
            done = len(self.outcomes)
        self.progress.say(f"[{done}/{self.total}] {first.status}: {first.name} {first.reason}")

    def status_of(self, action_id: str) -> str | None:
        """Return the recorded status of an action (None: not settled yet)."""
        with self._lock:
            outcome = self.outcomes.get(action_id)
        return outcome.status if outcome else None

    def count_write(self) -> None:
        """Count one write request sent."""
        with self._lock:
            self.writes += 1


# ---------------------------------------------------------------------------------------------
# One object


@dataclass
class Step(Generic[ImageT]):
    """One write: what it sends and how to recognise its effect on a re-read object."""

    name: str  # turn-off | patch-clientdata | turn-on | delete | rename | recreate
    send: Callable[[str], ImageT | None]  # given the If-Match, write; the row written, if known
    landed: Callable[[ImageT | None], bool]
    details: dict[str, Any] = field(default_factory=dict)  # journalled with the intent
    # "the write did not land", when that is not "still has the ETag we sent" (a create)
    unchanged: Callable[[ImageT | None], bool] | None = None
    reread_after: bool = True  # False: the answer says it all (a delete leaves nothing to read)


class ObjectUnit(Generic[ImageT]):
    """One object's journal trail and its writes."""

    def __init__(
        self,
        ctx: ApplyContext,
        env: EnvironmentContext,
        kind: str,
        object_id: str,
        action_ids: list[str],
        reread: Callable[[], ImageT | None],
        etag_of: Callable[[ImageT | None], str | None],
    ) -> None:
        self.ctx = ctx
        self.env = env
        self.kind = kind
        self.object_id = object_id
        self.action_ids = action_ids
        self.key = f"{kind}:{env.environment_id}:{object_id.lower()}"
        self.trail: ObjectTrail = ctx.state.trail(self.key)
        self.reread = reread
        self.etag_of = etag_of
        self.writes = 0

    def journal(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append a record about this object (and fold it into the trail)."""
        record = self.ctx.journal.append(
            event,
            object=self.key,
            object_type=self.kind,
            environment_id=self.env.environment_id,
            object_id=self.object_id,
            action_ids=self.action_ids,
            **fields,
        )
        fold_object(self.trail, event, record)
        return record

    def trust(self, etag: str | None, why: str) -> None:
        """Accept an ETag we did not write ourselves (journalled, with the reason)."""
        if etag and etag not in self.trail.etags:
            self.journal("trusted", etag=etag, why=why)

    def trusted(self, image: ImageT | None) -> bool:
        """True if the object is in a version we read for the backup or wrote ourselves."""
        return image is not None and self.etag_of(image) in self.trail.etags

    def settle_pending(
        self, current: ImageT | None, landed: Callable[[ImageT | None], bool]
    ) -> None:
        """After a restart: decide whether the last write sent before it landed."""
        pending = self.trail.pending
        if pending is None:
            return
        if landed(current):
            self.journal("done", step=pending["step"], etag=self.etag_of(current), how="found")
        else:
            self.journal(
                "write-failed", step=pending["step"], error="did not land before the restart"
            )

    def perform(self, step: Step[ImageT], if_match: str) -> ImageT | None:
        """Send one write exactly once and return the object after it; raise ``StepFailed``."""
        resent = False
        while True:
            self.journal("intent", step=step.name, if_match=if_match, **step.details)
            try:
                self.writes += 1
                self.ctx.count_write()
                answer = step.send(if_match)
            except ApiError as exc:
                current = self._settle(step, exc, if_match, resent)
                if current is _RESEND:
                    resent = True
                    continue
                return current  # type: ignore[return-value]
            crash_point(f"sent:{step.name}")
            current = answer if answer is not None or not step.reread_after else self.reread()
            self.journal("done", step=step.name, etag=self.etag_of(current), how="answered")
            return current

    def _settle(self, step: Step[ImageT], exc: ApiError, if_match: str, resent: bool) -> Any:
        error = describe_error(exc)
        # Re-read whatever the error: after retries even a 404 or a duplicate-key refusal can
        # be the answer to an earlier attempt that landed.
        current = self.reread()
        if step.landed(current):
            how = f"confirmed by re-reading after: {error}"
            self.journal("done", step=step.name, etag=self.etag_of(current), how=how)
            return current
        if not is_ambiguous(exc):
            self.journal("write-failed", step=step.name, error=error, status=exc.status)
            raise StepFailed(f"{step.name} refused: {error}", error=exc)
        if step.unchanged is not None:
            unchanged = step.unchanged(current)
        else:
            unchanged = current is not None and self.etag_of(current) == if_match
        self.journal("write-failed", step=step.name, error=error, status=exc.status)
        if not unchanged:
            raise StepFailed(f"{step.name}: the object changed meanwhile ({error})", drift=True)
        if exc.status is None and not resent:
            return _RESEND  # the answer was lost and the write never landed: send it again
        raise StepFailed(f"{step.name} failed: {error}", error=exc)

    def wait_until(self, check: Callable[[ImageT | None], bool]) -> ImageT | None:
        """Re-read until ``check`` holds or the verify timeout passes; return the last read."""
        deadline = time.monotonic() + self.ctx.limits.verify_timeout_seconds
        delay = 0.5
        while True:
            current = self.reread()
            if check(current) or time.monotonic() >= deadline:
                return current
            self.ctx.sleep(delay)
            delay = min(delay * 2, 5.0)

    def outcome(self, action: Any, status: str, reason: str = "") -> ActionOutcome:
        """Build the outcome of one of this unit's actions."""
        return ActionOutcome(
            action_id=action.action_id,
            kind=action.kind,
            environment_id=self.env.environment_id,
            object_id=self.object_id,
            name=unit_name(action),
            status=status,
            reason=reason,
            writes=self.writes,
        )


_RESEND = object()


def unit_name(action: Any) -> str:
    """A short human name for what an action changes."""
    if hasattr(action, "flow_name"):
        return f"flow '{action.flow_name}'"
    return f"reference {getattr(action, 'logical_name', action.action_id)}"
