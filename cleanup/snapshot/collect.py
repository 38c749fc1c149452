"""Take a snapshot: every selected environment in parallel, each table of it in parallel.

An environment that cannot be read completely is kept and marked ``incomplete`` with the
reason; the other environments go on. What could not be read is unknown, never "unused".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from cleanup import __version__, schemas
from cleanup.clients.dataverse import WORKFLOW_COMPONENT_TYPE, DataverseClient
from cleanup.clients.platform import PlatformClients
from cleanup.config import EnvironmentSelection
from cleanup.errors import ApiError, CleanupError
from cleanup.progress import QUIET, Progress
from cleanup.snapshot import tables
from cleanup.snapshot.model import Snapshot

TABLES_PER_ENVIRONMENT = 5  # tasks run side by side inside one environment


@dataclass
class EnvironmentResult:
    """What one environment's snapshot produced."""

    row: dict[str, Any]
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def take_snapshot(clients: PlatformClients, *, run_id: str, progress: Progress = QUIET) -> Snapshot:
    """Snapshot every selected environment of the tenant."""
    settings = clients.settings
    started = time.monotonic()
    started_at = datetime.now(UTC).isoformat()
    env_rows = [tables.environment_row(item) for item in clients.environments()]
    selected = select_environments(env_rows, settings.environments)
    todo = [row for row in selected if row["status"] == "pending"]
    progress.say(f"Found {len(env_rows)} environments; reading {len(todo)}.")
    results = [EnvironmentResult(row) for row in selected if row["status"] != "pending"]
    workers = max(1, min(settings.http.parallel_environments, len(todo)))
    with ThreadPoolExecutor(workers, thread_name_prefix="env") as pool:
        futures = [pool.submit(snapshot_environment, clients, row) for row in todo]
        for done, future in enumerate(futures, 1):
            result = future.result()
            results.append(result)
            progress.say(_progress_line(done, len(todo), result))
    snapshot = _assemble(results, clients, run_id, started_at, time.monotonic() - started)
    return snapshot


def select_environments(
    rows: list[dict[str, Any]], selection: EnvironmentSelection
) -> list[dict[str, Any]]:
    """Mark each environment ``pending`` (to read) or ``skipped`` with the reason."""
    include = {s.lower() for s in selection.include}
    exclude = {s.lower() for s in selection.exclude}
    skus = {s.lower() for s in selection.skus}
    out = []
    for row in rows:
        names = {str(row["environment_id"]).lower(), str(row["display_name"]).lower()}
        reason = None
        if include and not names & include:
            reason = "not in environments.include"
        elif names & exclude:
            reason = "in environments.exclude"
        elif skus and str(row.get("sku") or "").lower() not in skus:
            reason = f"SKU {row.get('sku')} not in environments.skus"
        elif not row["has_dataverse"] and selection.skip_without_dataverse:
            reason = "no Dataverse database: it cannot hold connection references"
        out.append({**row, "status": "skipped" if reason else "pending", "status_reason": reason})
    return out


def snapshot_environment(clients: PlatformClients, env_row: dict[str, Any]) -> EnvironmentResult:
    """Read every table of one environment; failures make it incomplete, never fatal."""
    started = time.monotonic()
    env_id = env_row["environment_id"]
    dv = clients.dataverse(env_row["instance_url"], env_id)
    result = EnvironmentResult(dict(env_row))
    tasks: dict[str, Callable[[], dict[str, list[dict[str, Any]]]]] = {
        "flows": lambda: _read_flows(dv),
        "connection references": lambda: {
            "references": [tables.reference_row(env_id, r) for r in dv.connection_references()]
        },
        "solutions": lambda: _read_solutions(dv, result),
        "owners": lambda: {"owners": tables.owner_rows(env_id, dv.system_users(), dv.teams())},
        "connections": lambda: {
            "connections": [tables.connection_row(env_id, c) for c in clients.connections(env_id)]
        },
    }
    with ThreadPoolExecutor(TABLES_PER_ENVIRONMENT, thread_name_prefix=f"{env_id[:8]}") as pool:
        futures = {name: pool.submit(task) for name, task in tasks.items()}
        for name, future in futures.items():
            try:
                result.rows.update(future.result())
            except (CleanupError, ValueError, TypeError, KeyError, AttributeError) as exc:
                # Wrong shapes count as unreadable data, never as "nothing there".
                result.failures.append(f"{name}: {describe_failure(exc)}")
    result.row["status"] = "incomplete" if result.failures else "complete"
    result.row["status_reason"] = _summarise(result.failures)
    result.row["seconds"] = round(time.monotonic() - started, 3)
    return result


def _read_flows(dv: DataverseClient) -> dict[str, list[dict[str, Any]]]:
    flows: list[dict[str, Any]] = []
    usages: list[dict[str, Any]] = []
    for page in dv.cloud_flow_pages():
        for row in page:
            flow, uses = tables.flow_rows(dv.environment_id, row)
            flows.append(flow)
            usages.extend(uses)
        page.clear()  # let each page's clientdata go as soon as it is parsed
    return {"flows": flows, "usages": usages}


def _read_solutions(dv: DataverseClient, result: EnvironmentResult) -> dict[str, list]:
    env_id = dv.environment_id
    solutions = tables.solution_rows(env_id, dv.solutions(), dv.publishers())
    ref_type = dv.reference_component_type()
    result.row["reference_component_type"] = ref_type
    types = [WORKFLOW_COMPONENT_TYPE] + ([ref_type] if ref_type is not None else [])
    components = tables.component_rows(env_id, dv.solution_components(types), ref_type)
    if ref_type is None:
        raise ApiError(
            "No solution component type for connectionreference "
            "(solutioncomponentdefinitions): solution membership of references is unknown"
        )
    return {"solutions": solutions, "solution_components": components}


def describe_failure(exc: BaseException) -> str:
    """Say what went wrong in one line, with a next step for the common cases."""
    if isinstance(exc, ApiError) and exc.status in (401, 403):
        return (
            f"access denied (HTTP {exc.status}{', ' + exc.code if exc.code else ''}: "
            f"{exc.message}). Add the app as an application user with a read role here."
        )
    if isinstance(exc, ApiError):
        return str(exc)
    return f"unexpected answer ({type(exc).__name__}: {exc})"


def _summarise(failures: Iterable[str]) -> str | None:
    # "flows, owners: access denied ..." rather than the same sentence once per table.
    by_reason: dict[str, list[str]] = {}
    for failure in failures:
        table, _, reason = failure.partition(": ")
        by_reason.setdefault(reason, []).append(table)
    parts = [f"{', '.join(tables)}: {reason}" for reason, tables in by_reason.items()]
    return "; ".join(parts) if parts else None


def _progress_line(done: int, total: int, result: EnvironmentResult) -> str:
    row = result.row
    flows = len(result.rows.get("flows", []))
    refs = len(result.rows.get("references", []))
    state = row["status"] if row["status"] == "complete" else f"INCOMPLETE ({row['status_reason']})"
    return f"[{done}/{total}] {row['display_name']}: {refs} references, {flows} flows, {state}"


def _assemble(
    results: list[EnvironmentResult],
    clients: PlatformClients,
    run_id: str,
    started_at: str,
    seconds: float,
) -> Snapshot:
    usage = clients.http.usage
    for result in results:
        env_id = result.row["environment_id"]
        result.row["requests"] = usage.requests.get(env_id, 0)
        result.row.setdefault("seconds", 0.0)
    collected: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        for name, rows in result.rows.items():
            collected.setdefault(name, []).extend(rows)
    frames = {name: tables_frame(name, rows) for name, rows in collected.items()}
    frames["environments"] = tables_frame("environments", [r.row for r in results])
    metadata = {
        "tool_version": __version__,
        "config_fingerprint": clients.settings.fingerprint(),
        "run_id": run_id,
        "started_at": started_at,
        "finished_at": datetime.now(UTC).isoformat(),
        "seconds": round(seconds, 3),
        "requests": {
            "total": sum(usage.requests.values()),
            "by_environment": dict(usage.requests),
            "by_table": dict(usage.by_table),
            "throttled": usage.throttled,
        },
        "bytes": sum(usage.bytes.values()),
        "environments": {
            r.row["environment_id"]: {
                "status": r.row["status"],
                "reason": r.row.get("status_reason"),
                "requests": r.row["requests"],
                "seconds": r.row["seconds"],
            }
            for r in results
        },
        "complete": all(r.row["status"] != "incomplete" for r in results),
    }
    return Snapshot.from_tables(frames, metadata)


def tables_frame(name: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Build a conforming frame for a snapshot table from rows."""
    return schemas.frame_from_rows(rows, schemas.SNAPSHOT_TABLES[name])


def check_dependencies(
    clients: PlatformClients, snapshot: Snapshot, candidates: pd.DataFrame
) -> pd.DataFrame:
    """Ask the platform what else depends on each candidate (RetrieveDependenciesForDelete).

    Only the candidates are asked, so the cost grows with what might be deleted, not with the
    tenant. A failed question leaves the reference's usage unknown (``checked`` false).
    """
    if candidates.empty:
        return schemas.empty_frame(schemas.DEPENDENCY_CHECKS)
    envs = snapshot.environments.set_index("environment_id")
    jobs = [
        (
            env_id,
            ref_id,
            envs.at[env_id, "instance_url"],
            envs.at[env_id, "reference_component_type"],
        )
        for env_id, ref_id in candidates[["environment_id", "reference_id"]].itertuples(index=False)
    ]
    workers = min(32, len(jobs), clients.settings.http.parallel_environments * 4)
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="deps") as pool:
        rows = list(pool.map(lambda job: _dependency_row(clients, *job), jobs))
    return tables_frame("dependency_checks", rows)


def _dependency_row(
    clients: PlatformClients, env_id: str, ref_id: str, instance_url: Any, ref_type: Any
) -> dict[str, Any]:
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
