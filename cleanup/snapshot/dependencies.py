"""Ask the platform what else depends on each unused candidate (RetrieveDependenciesForDelete).

Only the candidates are asked, so the cost grows with what might be deleted, not with the tenant.
The API has no collection form: one request per candidate. Those round trips need not wait for
the whole tenant: as each environment's snapshot finishes, :meth:`DependencyChecks.start` asks
about the references the rule will likely report unused (``likely_unused``), while other
environments are still being read. The authoritative list is still ``rules.unused_candidates``
over the whole snapshot: :meth:`DependencyChecks.rows_for` asks whatever was not asked early and
leaves out any early answer the list does not name, so a wrong guess costs a request, never a
wrong answer.
A failed question leaves the reference's usage unknown (``checked`` false).
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pandas as pd

from cleanup import schemas
from cleanup.clients.platform import PlatformClients
from cleanup.errors import CleanupError
from cleanup.snapshot.collect import describe_failure
from cleanup.snapshot.model import Snapshot

Answers = dict[tuple[str, str], dict[str, Any]]


@dataclass(frozen=True)
class CheckCounts:
    """How the candidates' questions were asked: early (while reading), late, or not needed."""

    early: int = 0
    late: int = 0
    unneeded: int = 0


def check_dependencies(
    clients: PlatformClients, snapshot: Snapshot, candidates: pd.DataFrame
) -> pd.DataFrame:
    """Ask about each candidate, environments in parallel; return ``dependency_checks`` rows."""
    with DependencyChecks(clients) as checks:
        return checks.rows_for(snapshot, candidates)


class DependencyChecks:
    """The dependency questions of one run, started per environment as its snapshot finishes."""

    def __init__(self, clients: PlatformClients) -> None:
        self._clients = clients
        workers = max(1, clients.settings.http.parallel_environments)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="deps-env")
        self._early: list[Future[Answers]] = []
        self.counts = CheckCounts()

    def __enter__(self) -> DependencyChecks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop asking: questions not started yet are dropped, running ones finish."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def start(
        self,
        env_row: Mapping[str, Any],
        rows: Mapping[str, list[dict[str, Any]]],
        frames: Mapping[str, pd.DataFrame],
    ) -> None:
        """Ask early about the ``likely_unused`` references of a freshly read environment."""
        ids = list(dict.fromkeys(likely_unused(env_row, rows, frames)))
        if ids:
            self._early.append(self._pool.submit(self._ask, dict(env_row), ids))

    def rows_for(self, snapshot: Snapshot, candidates: pd.DataFrame) -> pd.DataFrame:
        """The ``dependency_checks`` rows of exactly ``candidates``: early answers and the rest."""
        answers: Answers = {}
        for future in self._early:
            answers.update(future.result())
        pairs = candidates[["environment_id", "reference_id"]]
        keys = list(pairs.itertuples(index=False, name=None))
        wanted = set(keys)
        late: dict[str, list[str]] = {}
        for env_id, ref_id in dict.fromkeys(keys):
            if (env_id, ref_id) not in answers:
                late.setdefault(env_id, []).append(ref_id)
        early = set(answers)
        envs = snapshot.environments.drop_duplicates("environment_id").set_index("environment_id")
        asked = [
            self._pool.submit(self._ask, _environment(envs, env_id), ids)
            for env_id, ids in late.items()
        ]
        for future in asked:
            answers.update(future.result())
        self.counts = CheckCounts(
            early=len(early & wanted),
            late=sum(map(len, late.values())),
            unneeded=len(early - wanted),
        )
        if not keys:
            return schemas.empty_frame(schemas.DEPENDENCY_CHECKS)
        return schemas.frame_from_rows([answers[key] for key in keys], schemas.DEPENDENCY_CHECKS)

    def _ask(self, env_row: Mapping[str, Any], reference_ids: list[str]) -> Answers:
        """Ask about references of one environment, side by side within its allowance."""
        env_id = env_row["environment_id"]
        url, ref_type = env_row.get("instance_url"), env_row.get("reference_component_type")
        workers = min(len(reference_ids), self._clients.settings.http.concurrency_per_environment)
        with ThreadPoolExecutor(max(1, workers), thread_name_prefix="deps") as pool:
            rows = pool.map(
                lambda ref_id: dependency_row(self._clients, env_id, ref_id, url, ref_type),
                reference_ids,
            )
            return {(env_id, ref_id): row for ref_id, row in zip(reference_ids, rows, strict=True)}


def _environment(envs: pd.DataFrame, env_id: str) -> dict[str, Any]:
    """An environment's row by id (only its id when the snapshot lacks it: then unknown)."""
    row = envs.loc[env_id].to_dict() if env_id in envs.index else {}
    return {**row, "environment_id": env_id}


def dependency_row(
    clients: PlatformClients, env_id: str, ref_id: str, instance_url: Any, ref_type: Any
) -> dict[str, Any]:
    """One ``dependency_checks`` row: what depends on a reference, or why it is unknown."""
    row: dict[str, Any] = {"environment_id": env_id, "reference_id": ref_id, "checked": False}
    if pd.isna(ref_type) or pd.isna(instance_url):
        row["error"] = "the environment's component type for connection references is unknown"
        return row
    try:
        found = clients.dataverse(instance_url, env_id).dependencies_for_delete(
            ref_id, int(ref_type)
        )
    except CleanupError as exc:
        row["error"] = describe_failure(exc)
        return row
    pairs = sorted(
        f"{d.get('dependentcomponenttype')}:{d.get('dependentcomponentobjectid')}"
        for d in found
        if isinstance(d, dict)
    )
    row.update(checked=True, dependent_count=len(pairs), dependents=";".join(pairs) or None)
    return row


def likely_unused(
    env_row: Mapping[str, Any],
    rows: Mapping[str, list[dict[str, Any]]],
    frames: Mapping[str, pd.DataFrame],
) -> list[str]:
    """References of one freshly read environment that ``unused_candidates`` will likely name.

    The same test on one environment's rows: read completely, every flow parsed, and no usage
    of a known flow names the reference's logical name (case-insensitively). Only a guess for
    asking early; the candidates of the whole snapshot decide.
    """
    if env_row.get("status") != "complete":
        return []
    flows, usages = rows.get("flows", []), rows.get("usages", [])
    if any(flow.get("parse_status") != "ok" for flow in flows):
        return []
    used = {
        use["logical_name"].lower()
        for use in usages
        if use.get("flow_id") is not None and isinstance(use.get("logical_name"), str)
    }
    stored_flows, stored_usages = frames.get("flows"), frames.get("usages")
    if stored_flows is not None and stored_flows["parse_status"].ne("ok").fillna(True).any():
        return []
    if stored_usages is not None:
        known = stored_usages.loc[stored_usages["flow_id"].notna(), "logical_name"]
        used.update(known.dropna().str.lower())
    return [
        ref["reference_id"]
        for ref in rows.get("references", [])
        if isinstance(ref.get("reference_id"), str)
        and not (isinstance(ref.get("logical_name"), str) and ref["logical_name"].lower() in used)
    ]
