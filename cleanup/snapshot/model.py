"""The snapshot: one DataFrame per table, plus the metadata of how it was taken."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import pandas as pd

from cleanup import schemas


@dataclass(frozen=True)
class Snapshot:
    """All tables of one snapshot, each conforming to its schema in ``cleanup.schemas``."""

    environments: pd.DataFrame
    connections: pd.DataFrame
    references: pd.DataFrame
    flows: pd.DataFrame
    usages: pd.DataFrame
    solutions: pd.DataFrame
    solution_components: pd.DataFrame
    owners: pd.DataFrame
    dependency_checks: pd.DataFrame
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_tables(cls, tables: dict[str, pd.DataFrame], metadata: dict[str, Any]) -> Snapshot:
        """Build a snapshot, conforming each table (absent tables are empty)."""
        conformed = {
            name: schemas.conform(tables[name], schema, name=name)
            if name in tables
            else schemas.empty_frame(schema)
            for name, schema in schemas.SNAPSHOT_TABLES.items()
        }
        return cls(**conformed, metadata=metadata)

    def tables(self) -> dict[str, pd.DataFrame]:
        """Return the tables by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "metadata"}

    def complete_environments(self) -> set[str]:
        """Return the ids of environments whose snapshot is complete."""
        env = self.environments
        return set(env.loc[env["status"] == "complete", "environment_id"])
