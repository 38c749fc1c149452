"""Take a snapshot: every selected environment in parallel, each table of it in parallel.

An environment that cannot be read completely is kept and marked ``incomplete`` with the
reason; the other environments go on. What could not be read is unknown, never "unused".

Cost model (see ``benchmarks/README.md``): one request per page of each table, pages of 5,000
rows with ``$select``; no request per flow or per reference. Cloud flows are parsed page by
page as they arrive (big pages in worker processes, ``cleanup.snapshot.flowpages``), and
finished environments are turned into columnar DataFrames in batches, in the environments'
order, so neither clientdata documents nor row dictionaries of the whole tenant are ever held
at once.
On an incremental night (``cleanup.snapshot.incremental``) only changed flows are fetched.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cleanup import __version__, schemas
from cleanup.clients.dataverse import (
    DEPENDENCY_TABLE,
    WORKFLOW_COMPONENT_TYPE,
    DataverseClient,
)
from cleanup.clients.platform import PlatformClients
from cleanup.config import EnvironmentSelection
from cleanup.errors import ApiError, CleanupError
from cleanup.interpreter import SNAPSHOT_SWITCH_INTERVAL, switch_interval
from cleanup.progress import QUIET, Progress
from cleanup.shard import Shard, skip_reason
from cleanup.snapshot import tables
from cleanup.snapshot.flowpages import FlowPageParser, parse_flow_page
from cleanup.snapshot.incremental import (
    FlowBase,
    FlowRead,
    PageParser,
    find_bases,
    read_flows_full,
    read_flows_incremental,
)
from cleanup.snapshot.model import Snapshot
from cleanup.snapshot.settings import SnapshotSettings

if TYPE_CHECKING:
    from cleanup.snapshot.dependencies import DependencyChecks

TABLES_PER_ENVIRONMENT = 8  # independent reads of one environment, run side by side
BATCH_ROWS = 50_000  # rows per table buffered before they become a DataFrame
HELD_ROWS = 100_000  # rows of environments read ahead of an earlier, slower one (~100 MB)
READ_ERRORS = (CleanupError, ValueError, TypeError, KeyError, AttributeError)
# Which table a failed read makes unknown, as the environment's status reason names it.
LABELS = {
    "flows": "flows",
    "references": "connection references",
    "solutions": "solutions",
    "publishers": "solutions",
    "components": "solutions",
    "users": "owners",
    "teams": "owners",
    "connections": "connections",
}
ROW_TABLES = ("connections", "references", "flows", "usages", "solutions")
ROW_TABLES += ("solution_components", "owners")


@dataclass
class EnvironmentResult:
    """What one environment's snapshot produced."""

    row: dict[str, Any]
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)  # stored rows reused as is
    info: dict[str, Any] = field(default_factory=dict)  # mode and flow counts, for metadata

    def count(self, table: str) -> int:
        """Rows of ``table`` in this result, parsed and reused."""
        frame = self.frames.get(table)
        return len(self.rows.get(table, [])) + (0 if frame is None else len(frame))


@switch_interval(SNAPSHOT_SWITCH_INTERVAL)
def take_snapshot(
    clients: PlatformClients,
    *,
    run_id: str,
    progress: Progress = QUIET,
    shard: Shard | None = None,
    full: bool = False,
    snapshot_settings: SnapshotSettings | None = None,
    dependencies: DependencyChecks | None = None,
    flow_pages: FlowPageParser | None = None,
) -> Snapshot:
    """Snapshot every selected environment of the tenant (of this shard, when sharded).

    Environments whose last snapshot (under ``run.runs_dir``) is complete are read
    incrementally unless ``full`` is set or a periodic full refresh is due; the settings are
    ``snapshot_settings``, else ``settings.snapshot``, else the defaults. With ``dependencies``,
    each environment's likely unused references are asked about as soon as it is read. Flow
    pages are parsed by ``flow_pages`` (else by worker processes as the settings say).
    """
    snapshot_settings = snapshot_settings or clients.settings.snapshot
    with contextlib.ExitStack() as stack:
        if flow_pages is None:
            flow_pages = stack.enter_context(
                FlowPageParser(
                    snapshot_settings.processes(),
                    withheld_variables=clients.settings.secret_variables(),
                )
            )
        return _take_snapshot(
            clients, run_id, progress, shard, full, snapshot_settings, dependencies, flow_pages
        )


def _take_snapshot(
    clients: PlatformClients,
    run_id: str,
    progress: Progress,
    shard: Shard | None,
    full: bool,
    snapshot_settings: SnapshotSettings,
    dependencies: DependencyChecks | None,
    flow_pages: FlowPageParser,
) -> Snapshot:
    settings = clients.settings
    started = time.monotonic()
    started_at = datetime.now(UTC).isoformat()
    counts_before = flow_pages.counts.copy()
    env_rows = [tables.environment_row(item) for item in clients.environments()]
    selected = select_environments(env_rows, settings.environments, shard=shard)
    todo = [row for row in selected if row["status"] == "pending"]
    bases = find_bases(
        settings.run.runs_dir,
        [row["environment_id"] for row in todo],
        run_id=run_id,
        settings=snapshot_settings,
        tool_version=__version__,
        full=full,
    )
    incremental = sum(isinstance(b, FlowBase) for b in bases.values())
    progress.say(
        f"Found {len(env_rows)} environments; reading {len(todo)}"
        + (f" ({incremental} incrementally)." if incremental else ".")
    )
    results = [EnvironmentResult(row) for row in selected if row["status"] != "pending"]
    sinks = {name: TableSink(name) for name in ROW_TABLES}
    workers = max(1, min(settings.http.parallel_environments, len(todo)))
    with ThreadPoolExecutor(workers, thread_name_prefix="env") as pool:
        futures = [
            pool.submit(
                snapshot_environment,
                clients,
                row,
                base=bases.get(row["environment_id"]),
                parse=flow_pages,
            )
            for row in todo
        ]
        index = {future: i for i, future in enumerate(futures)}
        in_order = InOrder(HELD_ROWS, weight=lambda result: sum(map(len, result.rows.values())))
        for done, future in enumerate(as_completed(futures), 1):
            result = future.result()
            progress.say(_progress_line(done, len(todo), result))
            if dependencies is not None:
                dependencies.start(result.row, result.rows, result.frames)
            # Rows reach the tables in the environments' order, so none need sorting at the end.
            for ready in in_order.add(index[future], result):
                _drain(ready, sinks)
            results.append(result)
    order = {row["environment_id"]: i for i, row in enumerate(selected)}
    results.sort(key=lambda r: order[r.row["environment_id"]])
    frames = {name: _in_order(sink.frame(), order) for name, sink in sinks.items()}
    snapshot = _assemble(results, frames, clients, run_id, started_at, started, shard)
    snapshot.metadata["flow_pages"] = flow_pages.counts.since(counts_before)
    return snapshot


def select_environments(
    rows: list[dict[str, Any]], selection: EnvironmentSelection, *, shard: Shard | None = None
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
        elif shard is not None and not shard.owns(str(row["environment_id"])):
            reason = skip_reason(str(row["environment_id"]), shard.count)
        out.append({**row, "status": "skipped" if reason else "pending", "status_reason": reason})
    return out


def snapshot_environment(
    clients: PlatformClients,
    env_row: dict[str, Any],
    *,
    base: FlowBase | str | None = None,
    parse: PageParser = parse_flow_page,
) -> EnvironmentResult:
    """Read every table of one environment; failures make it incomplete, never fatal.

    ``base`` is the environment's stored flows to read incrementally against, or the reason
    it is read in full (``None``: a full read); ``parse`` turns flow pages into rows.
    """
    started = time.monotonic()
    env_id = env_row["environment_id"]
    dv = clients.dataverse(env_row["instance_url"], env_id)
    result = EnvironmentResult(dict(env_row))
    flow_base = base if isinstance(base, FlowBase) else None
    tasks: dict[str, Callable[[], Any]] = {
        "flows": lambda: _read_flows(dv, flow_base, parse),
        "references": lambda: [tables.reference_row(env_id, r) for r in dv.connection_references()],
        "solutions": dv.solutions,
        "publishers": dv.publishers,
        "components": lambda: _read_components(dv),
        "users": dv.system_users,
        "teams": dv.teams,
        "connections": lambda: [
            tables.connection_row(env_id, c) for c in clients.connections(env_id)
        ],
    }
    answers: dict[str, Any] = {}
    with ThreadPoolExecutor(TABLES_PER_ENVIRONMENT, thread_name_prefix=f"{env_id[:8]}") as pool:
        futures = {name: pool.submit(task) for name, task in tasks.items()}
        for name, future in futures.items():
            try:
                answers[name] = future.result()
            except READ_ERRORS as exc:
                # Wrong shapes count as unreadable data, never as "nothing there".
                _fail(result, LABELS[name], exc)
    _collect(result, answers, flow_base, base)
    result.row["status"] = "incomplete" if result.failures else "complete"
    result.row["status_reason"] = _summarise(result.failures)
    result.row["seconds"] = round(time.monotonic() - started, 3)
    return result


def _read_flows(dv: DataverseClient, base: FlowBase | None, parse: PageParser) -> FlowRead:
    if base is None:
        return read_flows_full(dv, parse)
    return read_flows_incremental(dv, base, parse)


def _read_components(dv: DataverseClient) -> tuple[int | None, list[dict[str, Any]] | None]:
    ref_type = dv.reference_component_type()
    if ref_type is None:
        return None, None
    return ref_type, dv.solution_components([WORKFLOW_COMPONENT_TYPE, ref_type])


def _collect(
    result: EnvironmentResult,
    answers: dict[str, Any],
    flow_base: FlowBase | None,
    base: FlowBase | str | None,
) -> None:
    """Map the answers of the table reads into snapshot rows, recording what failed."""
    env_id = result.row["environment_id"]
    steps: dict[str, Callable[[], None]] = {
        "flows": lambda: _collect_flows(result, answers["flows"], flow_base, base),
        "references": lambda: result.rows.update(references=answers["references"]),
        "solutions": lambda: result.rows.update(
            solutions=tables.solution_rows(env_id, answers["solutions"], answers["publishers"])
        ),
        "components": lambda: _collect_components(result, *answers["components"]),
        "users": lambda: result.rows.update(
            owners=tables.owner_rows(env_id, answers["users"], answers["teams"])
        ),
        "connections": lambda: result.rows.update(connections=answers["connections"]),
    }
    needs = {"solutions": ("solutions", "publishers"), "users": ("users", "teams")}
    for name, step in steps.items():
        if all(part in answers for part in needs.get(name, (name,))):
            try:
                step()
            except READ_ERRORS as exc:
                _fail(result, LABELS[name], exc)


def _collect_flows(
    result: EnvironmentResult, read: FlowRead, flow_base: FlowBase | None, base: Any
) -> None:
    result.rows["flows"], result.rows["usages"] = read.flows, read.usages
    if read.reused_flows is not None:
        result.frames["flows"] = read.reused_flows
    if read.reused_usages is not None:
        result.frames["usages"] = read.reused_usages
    result.info.update(read.info)
    if flow_base is None:
        reason = base if isinstance(base, str) and base else "full read"
    elif read.reused_flows is None:
        reason = "so many flows changed that a full read costs fewer requests"
    else:
        result.info.update(
            mode="incremental",
            base_run=flow_base.run_id,
            nights_since_full=flow_base.nights_since_full + 1,
        )
        return
    result.info.update(mode="full", full_reason=reason, nights_since_full=0)


def _collect_components(
    result: EnvironmentResult, ref_type: int | None, rows: list[dict[str, Any]] | None
) -> None:
    result.row["reference_component_type"] = ref_type
    if ref_type is None or rows is None:
        raise ApiError(
            "No solution component type for connectionreference "
            "(solutioncomponentdefinitions): solution membership of references is unknown"
        )
    result.rows["solution_components"] = tables.component_rows(
        result.row["environment_id"], rows, ref_type
    )


def _fail(result: EnvironmentResult, label: str, exc: BaseException) -> None:
    message = f"{label}: {describe_failure(exc)}"
    if message not in result.failures:
        result.failures.append(message)


class TableSink:
    """One snapshot table's rows, turned into DataFrames in batches as environments finish."""

    def __init__(self, name: str, batch_rows: int = BATCH_ROWS) -> None:
        self.name = name
        self.batch_rows = batch_rows
        self._rows: list[dict[str, Any]] = []
        self._frames: list[pd.DataFrame] = []
        self._lock = threading.Lock()

    def add_rows(self, rows: list[dict[str, Any]]) -> None:
        """Buffer rows; convert the buffer to a DataFrame once it holds a batch."""
        with self._lock:
            self._rows.extend(rows)
            if len(self._rows) < self.batch_rows:
                return
            batch, self._rows = self._rows, []
        frame = tables_frame(self.name, batch)
        with self._lock:
            self._frames.append(frame)

    def add_frame(self, frame: pd.DataFrame) -> None:
        """Add rows that are already a conforming DataFrame (reused from a stored snapshot)."""
        if not frame.empty:
            with self._lock:
                self._frames.append(frame)

    def frame(self) -> pd.DataFrame:
        """Every row added so far, as one conforming DataFrame."""
        with self._lock:
            rows, frames = self._rows, list(self._frames)
        if rows or not frames:
            frames.append(tables_frame(self.name, rows))
        if len(frames) == 1:
            return frames[0]
        return pd.concat(frames, ignore_index=True)


class InOrder:
    """Hands items on in the order of their indexes, holding back those that came early.

    At most ``limit`` of their ``weight`` is held; beyond it the earliest held item goes on out
    of order: one slow environment must not keep every other environment's rows in memory.
    """

    def __init__(self, limit: int, weight: Callable[[Any], int] = lambda item: 1) -> None:
        self.limit = limit
        self.weight = weight
        self._held: dict[int, Any] = {}
        self._held_weight = 0
        self._passed: set[int] = set()  # indexes handed on out of order, ahead of their turn
        self._next = 0

    def add(self, index: int, item: Any) -> list[Any]:
        """Take item ``index``; return the items whose turn has come (or that overflowed)."""
        self._held[index] = item
        self._held_weight += self.weight(item)
        ready = []
        while True:
            while self._next in self._passed:
                self._passed.discard(self._next)
                self._next += 1
            if self._next in self._held:
                ready.append(self._release(self._next))
                self._next += 1
            elif self._held_weight > self.limit:
                first = min(self._held)
                ready.append(self._release(first))
                self._passed.add(first)
            else:
                return ready

    def _release(self, index: int) -> Any:
        item = self._held.pop(index)
        self._held_weight -= self.weight(item)
        return item


def _drain(result: EnvironmentResult, sinks: dict[str, TableSink]) -> None:
    # Hand the environment's rows to the sinks and drop them here: the result keeps counts only.
    for name, rows in result.rows.items():
        sinks[name].add_rows(rows)
    for name, frame in result.frames.items():
        sinks[name].add_frame(frame)
    result.rows, result.frames = {}, {}


def _in_order(frame: pd.DataFrame, order: dict[str, int]) -> pd.DataFrame:
    # Environments finish in any order; sort by the admin API's order for stable output.
    if frame.empty:
        return frame
    position = frame["environment_id"].map(order).to_numpy(dtype="float64", na_value=np.inf)
    index = np.argsort(position, kind="stable")
    if (index[1:] > index[:-1]).all():
        return frame.reset_index(drop=True)
    return frame.take(index).reset_index(drop=True)


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
        if table not in by_reason.setdefault(reason, []):
            by_reason[reason].append(table)
    parts = [f"{', '.join(tables)}: {reason}" for reason, tables in by_reason.items()]
    return "; ".join(parts) if parts else None


def _progress_line(done: int, total: int, result: EnvironmentResult) -> str:
    row = result.row
    flows, refs = result.count("flows"), result.count("references")
    state = row["status"] if row["status"] == "complete" else f"INCOMPLETE ({row['status_reason']})"
    mode = " (incremental)" if result.info.get("mode") == "incremental" else ""
    return (
        f"[{done}/{total}] {row['display_name']}: {refs} references, {flows} flows{mode}, {state}"
    )


def _assemble(
    results: list[EnvironmentResult],
    frames: dict[str, pd.DataFrame],
    clients: PlatformClients,
    run_id: str,
    started_at: str,
    started: float,
    shard: Shard | None,
) -> Snapshot:
    # Dependency checks asked early are their own stage: the snapshot's figures leave them out.
    usage = clients.http.usage.without_table(DEPENDENCY_TABLE)
    for result in results:
        env_id = result.row["environment_id"]
        result.row["requests"] = usage.requests.get(env_id, 0)
        result.row.setdefault("seconds", 0.0)
    frames["environments"] = tables_frame("environments", [r.row for r in results])
    modes = [r.info.get("mode") for r in results if r.info.get("mode")]
    metadata = {
        "tool_version": __version__,
        "config_fingerprint": clients.settings.fingerprint(),
        "run_id": run_id,
        "started_at": started_at,
        "finished_at": datetime.now(UTC).isoformat(),
        "seconds": round(time.monotonic() - started, 3),
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
                **r.info,
            }
            for r in results
        },
        "modes": {mode: modes.count(mode) for mode in sorted(set(modes))},
        "complete": all(r.row["status"] != "incomplete" for r in results),
    }
    if shard is not None:
        metadata["shard"] = {"index": shard.index, "count": shard.count}
    return Snapshot.from_tables(frames, metadata)


def tables_frame(name: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Build a conforming frame for a snapshot table from rows."""
    return schemas.frame_from_rows(rows, schemas.SNAPSHOT_TABLES[name])
