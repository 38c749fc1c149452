"""The ``[apply]`` section: what an apply may change, and how much of it.

Everything defaults to the safe side: deletes are off, no environment may be changed until it
is named (or ``allow_all_environments`` is set), and the blast radius is capped per run and
per environment. All of it is checked before the first write.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from cleanup.errors import ConfigError

MAX_CONCURRENCY = 52  # the Dataverse limit of concurrent requests per user and server


@dataclass(frozen=True)
class ApplySettings:
    """Opt-ins, blast-radius limits, allowed environments and protections of ``apply``."""

    allow_delete: bool = False
    max_actions_per_run: int = 200
    max_actions_per_environment: int = 100
    environments: tuple[str, ...] = ()  # ids or display names that may change
    allow_all_environments: bool = False
    protected_patterns: tuple[str, ...] = ()  # globs on logical names, case-insensitive
    max_plan_age_hours: float = 168.0  # 0: any age
    verify_timeout_seconds: float = 30.0
    concurrency: int = 4  # objects changed side by side in one environment
    rescan_flows_before_delete: bool = True

    def __post_init__(self) -> None:
        for name in ("max_actions_per_run", "max_actions_per_environment"):
            if getattr(self, name) < 1:
                raise ConfigError(f"'apply.{name}' must be at least 1.")
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ConfigError(f"'apply.concurrency' must be between 1 and {MAX_CONCURRENCY}.")
        if self.max_plan_age_hours < 0 or self.verify_timeout_seconds < 0:
            raise ConfigError(
                "'apply.max_plan_age_hours' and 'apply.verify_timeout_seconds' must not be "
                "negative."
            )
        if any(not p.strip() for p in self.protected_patterns):
            raise ConfigError("'apply.protected_patterns' must not hold an empty pattern.")

    def allows_environment(self, environment_id: str, display_name: str | None = None) -> bool:
        """Tell whether an environment (by id or display name) may be changed."""
        if self.allow_all_environments:
            return True
        wanted = {e.strip().casefold() for e in self.environments}
        names = {environment_id.casefold(), (display_name or "").casefold()} - {""}
        return bool(wanted & names)

    def is_protected(self, logical_name: str | None) -> bool:
        """Tell whether a logical name matches a protected pattern (case-insensitive glob)."""
        name = (logical_name or "").casefold()
        return any(fnmatch.fnmatchcase(name, p.casefold()) for p in self.protected_patterns)
