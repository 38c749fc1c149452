"""``[snapshot]`` settings: incremental nights and how often a full read refreshes everything."""

from __future__ import annotations

from dataclasses import dataclass

from cleanup.errors import ConfigError


@dataclass(frozen=True)
class SnapshotSettings:
    """``[snapshot]``: incremental nights and how often a full read refreshes everything."""

    incremental: bool = True
    full_refresh_every: int = 7  # nights; 1 reads everything every night

    def __post_init__(self) -> None:
        if self.full_refresh_every < 1:
            raise ConfigError(
                "snapshot.full_refresh_every must be at least 1 (1 = a full read every night)."
            )
