"""Fault injection and the Dataverse service protection limits, both read on every request.

Tests mutate a live ``Faults`` object while the simulator runs (append rules, change latency,
revoke tokens); the server reads the fields on each request, so changes apply immediately.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field


@dataclass
class FaultRule:
    """Answer matching requests with an injected status, body, delay or dropped connection.

    Matching: every criterion that is not None must hold. ``path`` is a regex searched in the
    request path (no query), e.g. ``r"/workflows$"``. ``page`` is the 1-based page a paged
    collection request would return (page 1 = the request without a skip token).
    Effect: ``status`` None answers normally (useful with ``delay_seconds`` alone, or with
    ``body`` for a 200 carrying a damaged payload). ``after_processing`` runs the request for
    real first (a write is applied) and then answers with the fault. ``times`` None = forever.
    """

    service: str | None = None  # identity | bap | powerapps | dataverse | graph
    environment_id: str | None = None
    method: str | None = None
    path: str | None = None
    page: int | None = None
    status: int | None = None
    retry_after: float | None = None
    times: int | None = None
    body: str | None = None
    after_processing: bool = False
    delay_seconds: float = 0.0
    drop_connection: bool = False
    hits: int = 0  # how many requests this rule has answered so far

    def matches(
        self, service: str, environment_id: str | None, method: str, path: str, page: int | None
    ) -> bool:
        """Whether this rule applies to the request (ignores ``times``)."""
        if self.service is not None and self.service != service:
            return False
        if self.environment_id is not None and self.environment_id != environment_id:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.page is not None and self.page != page:
            return False
        return self.path is None or re.search(self.path, path) is not None

    @property
    def exhausted(self) -> bool:
        """True once the rule has answered ``times`` requests."""
        return self.times is not None and self.hits >= self.times


@dataclass
class Faults:
    """Every knob of fault injection and limits; mutable while the simulator runs."""

    latency_ms: float = 0.0
    rules: list[FaultRule] = field(default_factory=list)
    # Service protection limits per (token subject, Dataverse environment); off unless enabled.
    enforce_limits: bool = False
    requests_per_window: int = 6000
    window_seconds: float = 300.0
    max_concurrent: int = 52
    token_lifetime_seconds: int = 3600
    revoke_tokens_issued_before: float | None = None  # epoch seconds
    bap_page_size: int = 100
    connections_page_size: int | None = None  # None: $top if given, else 250
    # Optional rule from the API notes: refuse a clientdata PATCH while the flow is on.
    reject_clientdata_patch_when_on: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def take_rule(
        self, service: str, environment_id: str | None, method: str, path: str, page: int | None
    ) -> FaultRule | None:
        """The first live matching rule, counting the hit; None when no rule applies."""
        with self.lock:
            for rule in list(self.rules):
                if rule.exhausted or not rule.matches(service, environment_id, method, path, page):
                    continue
                rule.hits += 1
                return rule
        return None


@dataclass
class Throttle:
    """A service-protection refusal: the 429 body and its Retry-After."""

    code: str
    message: str
    retry_after: int


@dataclass
class _KeyState:
    window: deque[float] = field(default_factory=deque)
    in_flight: int = 0
    peak: int = 0


class Limiter:
    """Counts requests and concurrency per (subject, environment); refuses beyond the limits."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: dict[tuple[str, str], _KeyState] = {}

    def enter(self, key: tuple[str, str], faults: Faults) -> Throttle | None:
        """Admit a request (call ``leave`` when done) or return why it is throttled."""
        now = time.monotonic()
        with self._lock:
            state = self._state.setdefault(key, _KeyState())
            while state.window and state.window[0] <= now - faults.window_seconds:
                state.window.popleft()
            if faults.enforce_limits:
                throttle = self._check(state, faults, now)
                if throttle is not None:
                    return throttle
            state.in_flight += 1
            state.peak = max(state.peak, state.in_flight)
            state.window.append(now)
            return None

    @staticmethod
    def _check(state: _KeyState, faults: Faults, now: float) -> Throttle | None:
        if state.in_flight >= faults.max_concurrent:
            message = (
                f"Number of concurrent requests exceeded the limit of {faults.max_concurrent}."
            )
            return Throttle("0x80072326", message, 1)
        if len(state.window) >= faults.requests_per_window:
            wait = math.ceil(state.window[0] + faults.window_seconds - now)
            message = (
                f"Number of requests exceeded the limit of {faults.requests_per_window} "
                f"over time window of {faults.window_seconds:g} seconds."
            )
            return Throttle("0x80072322", message, max(1, wait))
        return None

    def leave(self, key: tuple[str, str]) -> None:
        """Mark an admitted request as finished."""
        with self._lock:
            self._state[key].in_flight -= 1

    def remaining(self, key: tuple[str, str], faults: Faults) -> int:
        """Requests left in the current window (for the debug header)."""
        with self._lock:
            state = self._state.get(key)
            used = len(state.window) if state else 0
        return max(0, faults.requests_per_window - used)

    def peak(self, environment_id: str | None = None) -> int:
        """The highest number of simultaneous requests seen (for one environment, or any)."""
        with self._lock:
            peaks = [s.peak for (_, env), s in self._state.items() if environment_id in (None, env)]
        return max(peaks, default=0)
