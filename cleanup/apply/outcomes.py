"""What happened to each planned action, and the result of a whole apply, resume or restore."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cleanup.errors import CleanupError

DONE = "done"  # changed and verified
ALREADY = "already-done"  # the server already was as planned: nothing written
SKIPPED = "skipped"  # a safety check said no; nothing written
DRIFT = "drift"  # changed since the plan; nothing written (or put back)
FAILED = "failed"  # a write failed; see the reason
ROLLED_BACK = "rolled-back"  # turning the flow on failed; it was put back as it was
LEFT_OFF = "left-off"  # the flow is OFF and could not be turned back on

SUCCEEDED = frozenset({DONE, ALREADY})
NEEDS_ATTENTION = frozenset({FAILED, ROLLED_BACK, LEFT_OFF})
RETRIED_BY_RESUME = frozenset({LEFT_OFF})

EXIT_OK = 0
EXIT_ATTENTION = 1
EXIT_PARTIAL = 3


class ApplyRefused(CleanupError):
    """The apply did not start: nothing was written."""

    exit_code = 2


class ApplyCancelled(ApplyRefused):
    """The person at the terminal declined: nothing was written."""

    exit_code = 1


@dataclass(frozen=True)
class ActionOutcome:
    """The end state of one planned action (or of a restored object)."""

    action_id: str
    kind: str
    environment_id: str
    object_id: str
    name: str
    status: str
    reason: str = ""
    writes: int = 0

    @classmethod
    def from_record(cls, record: dict[str, Any], action_id: str) -> ActionOutcome:
        """Rebuild an outcome from its journal record."""
        return cls(
            action_id=action_id,
            kind=str(record.get("kind", "")),
            environment_id=str(record.get("environment_id", "")),
            object_id=str(record.get("object_id", "")),
            name=str(record.get("name", "")),
            status=str(record.get("status", "")),
            reason=str(record.get("reason", "")),
            writes=int(record.get("writes", 0) or 0),
        )

    @property
    def needs_attention(self) -> bool:
        """True if a person must look at it (shown at the top of the report)."""
        return self.status in NEEDS_ATTENTION

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {**asdict(self), "needs_attention": self.needs_attention}


@dataclass
class ApplyResult:
    """What an apply, resume or restore did, and where its files are."""

    folder: Path
    mode: str  # apply | resume | restore
    plan_run_id: str
    plan_hash: str
    started_at: str
    finished_at: str = ""
    outcomes: list[ActionOutcome] = field(default_factory=list)
    planned: int = 0  # how many actions (or objects, for restore) were in scope
    interrupted: bool = False
    requests: dict[str, int] = field(default_factory=dict)
    who: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Return the number of outcomes per status."""
        return dict(Counter(o.status for o in self.outcomes))

    @property
    def attention(self) -> list[ActionOutcome]:
        """Return the outcomes a person must look at."""
        return [o for o in self.outcomes if o.needs_attention]

    @property
    def exit_code(self) -> int:
        """0 all done · 1 something needs attention · 3 partial (skipped, drift, interrupted)."""
        if self.attention:
            return EXIT_ATTENTION
        unfinished = self.interrupted or len(self.outcomes) < self.planned
        if unfinished or any(o.status not in SUCCEEDED for o in self.outcomes):
            return EXIT_PARTIAL
        return EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON document of the report."""
        return {
            "mode": self.mode,
            "folder": str(self.folder),
            "plan_run_id": self.plan_run_id,
            "plan_hash": self.plan_hash,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "who": self.who,
            "exit_code": self.exit_code,
            "interrupted": self.interrupted,
            "planned": self.planned,
            "counts": self.counts(),
            "requests": self.requests,
            "attention": [o.to_dict() for o in self.attention],
            "outcomes": [o.to_dict() for o in self.outcomes],
        }
