"""``[snapshot]`` settings: incremental nights and how often a full read refreshes everything."""

from __future__ import annotations

import os
from dataclasses import dataclass

from cleanup.errors import ConfigError

AUTO_PARSE_PROCESSES = 4  # the reading threads need a core too; more workers starve them
MAX_PARSE_PROCESSES = 64


@dataclass(frozen=True)
class SnapshotSettings:
    """``[snapshot]``: incremental nights and how often a full read refreshes everything."""

    incremental: bool = True
    full_refresh_every: int = 7  # nights; 1 reads everything every night
    # Worker processes that parse big flow pages; -1: one per core beyond the first, at most 4.
    parse_processes: int = -1

    def __post_init__(self) -> None:
        if self.full_refresh_every < 1:
            raise ConfigError(
                "snapshot.full_refresh_every must be at least 1 (1 = a full read every night)."
            )
        if not -1 <= self.parse_processes <= MAX_PARSE_PROCESSES:
            raise ConfigError(
                f"snapshot.parse_processes must be between 0 and {MAX_PARSE_PROCESSES} "
                "(0 = parse in the reading threads), or -1 to choose from the cores."
            )

    def processes(self) -> int:
        """How many worker processes parse flow pages."""
        if self.parse_processes >= 0:
            return self.parse_processes
        try:
            cores = len(os.sched_getaffinity(0))  # what a container or taskset allows
        except AttributeError:  # not on Linux
            cores = os.cpu_count() or 1
        return max(0, min(AUTO_PARSE_PROCESSES, cores - 1))
