"""``restore``: put every object one apply changed back as its backup shows it.

Deleted references are re-created first (same id, logical name, display name, connector,
connection, description and owner, inside their solution via ``MSCRM.SolutionUniqueName``),
then renamed references get their name back, then flows get their clientdata and on/off
state back (a flow can only be turned on once the references it names exist again).

An object is put back only if it is still the version the apply left (its ETag); anything
edited since is refused and reported, never overwritten. Restore has its own journal
(``restore-journal.jsonl``), uses the same journalled, exactly-once writes as apply, and is
idempotent: an object already as its backup shows it is left alone, so a second restore
writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cleanup import __version__
from cleanup.apply.checks import check_environment_ids
from cleanup.apply.context import ApplyContext, EnvironmentContext, ObjectUnit, Step, StepFailed
from cleanup.apply.flows import FlowImage, FlowWriter, flow_from_backup, pending_landed, read_flow
from cleanup.apply.journal import (
    JOURNAL_FILE,
    Journal,
    ObjectTrail,
    fold,
    read_backup,
    read_journal,
    utc_now,
)
from cleanup.apply.outcomes import (
    ALREADY,
    DONE,
    DRIFT,
    FAILED,
    LEFT_OFF,
    SKIPPED,
    ActionOutcome,
    ApplyCancelled,
    ApplyRefused,
    ApplyResult,
)
from cleanup.apply.references import etag_of, read_reference
from cleanup.apply.report import deliver_report, write_reports
from cleanup.apply.session import (
    PLAN_FILE,
    Confirm,
    apply_folders,
    apply_section,
    ask_on_terminal,
    lock_path,
    question,
    stop_on_signals,
    who,
)
from cleanup.apply.settings import ApplySettings
from cleanup.clients.dataverse import REFERENCE_COLUMNS
from cleanup.clients.platform import PlatformClients
from cleanup.config import Settings
from cleanup.connect import open_tenant
from cleanup.errors import CleanupError, PlanError
from cleanup.lock import run_lock
from cleanup.plan import load_plan
from cleanup.progress import QUIET, Progress
from cleanup.snapshot.tables import environment_row

RESTORE_JOURNAL = "restore-journal.jsonl"
ORDER = {"recreate": 0, "rename-back": 1, "restore-flow": 2}
LOOKUP = "@Microsoft.Dynamics.CRM.lookuplogicalname"
_DISPLAY = "connectionreferencedisplayname"


@dataclass(frozen=True)
class Item:
    """One object the apply changed, and how restore puts it back."""

    kind: str  # recreate | rename-back | restore-flow
    environment_id: str
    object_id: str
    trail: ObjectTrail  # the apply's journal trail of the object

    @property
    def key(self) -> str:
        """The object key used in both journals."""
        return self.trail.key


def restore_run(
    run_folder: str | Path,
    settings: Settings,
    *,
    assume_yes: bool = False,
    interactive: bool = False,
    confirm: Confirm | None = None,
    progress: Progress = QUIET,
    apply_settings: ApplySettings | None = None,
) -> ApplyResult:
    """Put back what an apply changed (an apply folder; a run folder: all its applies)."""
    targets = [(folder, *_items(folder)) for folder in restore_targets(run_folder)]
    everything = [item for _folder, items, _header in targets for item in items]
    limits = apply_settings or apply_section(settings)
    _ask(everything, assume_yes=assume_yes, interactive=interactive, confirm=confirm)
    results = []
    with run_lock(lock_path(settings)), open_tenant(settings) as clients:
        environments = _environments(clients, everything, limits)
        for folder, items, header in targets:  # newest apply first
            result = _restore_folder(folder, items, header, clients, environments, progress, limits)
            write_reports(result, folder, "restore")
            deliver_report(result, folder, settings, "restore")
            results.append(result)
    return results[0] if len(results) == 1 else _merge(Path(run_folder), results)


def restore_targets(path: str | Path) -> list[Path]:
    """The apply folders to restore, newest first: the one given, or every apply of a run."""
    path = Path(path)
    if (path / JOURNAL_FILE).is_file():
        return [path]
    folders = [f for f in apply_folders(path) if (f / JOURNAL_FILE).is_file()]
    if not folders:
        raise ApplyRefused(f"{path} holds no apply journal: there is nothing to restore.")
    return folders[::-1]


def _restore_folder(
    folder: Path,
    items: list[Item],
    header: dict[str, Any],
    clients: PlatformClients,
    environments: dict[str, EnvironmentContext],
    progress: Progress,
    limits: ApplySettings,
) -> ApplyResult:
    path = folder / RESTORE_JOURNAL
    state = fold(read_journal(path)) if path.exists() else fold([])
    with Journal(path) as journal:
        journal.append("started", mode="restore", who=who(clients), tool_version=__version__)
        ctx = ApplyContext(folder, journal, state, limits, progress, total=len(items))
        started = utc_now()
        with stop_on_signals(ctx.stop, progress), clients.http.writes_enabled():
            for item in items:
                if ctx.stop.is_set():
                    break
                _restore_one(ctx, environments[item.environment_id], item)
        result = _result(ctx, header, clients, items, started)
        journal.append("finished", counts=result.counts(), exit_code=result.exit_code)
    return result


def _merge(folder: Path, results: list[ApplyResult]) -> ApplyResult:
    first = results[0]
    return ApplyResult(
        folder=folder,
        mode="restore",
        plan_run_id=first.plan_run_id,
        plan_hash=first.plan_hash,
        started_at=first.started_at,
        finished_at=results[-1].finished_at,
        outcomes=[o for r in results for o in r.outcomes],
        planned=sum(r.planned for r in results),
        interrupted=any(r.interrupted for r in results),
        requests=results[-1].requests,  # the clients' counters: cumulative over the restore
        who=first.who,
    )


def _items(folder: Path) -> tuple[list[Item], dict[str, Any]]:
    state = fold(read_journal(folder / JOURNAL_FILE))
    if state.header is None:
        raise ApplyRefused(f"{folder} holds no started apply: there is nothing to restore.")
    if not state.finished:
        raise ApplyRefused(
            f"The apply in {folder} did not finish; run 'connref-cleanup resume {folder}' first, "
            "then restore."
        )
    plan = load_plan(folder / PLAN_FILE)
    if plan.content_hash != state.header.get("plan_hash"):
        raise PlanError(f"{folder / PLAN_FILE} is not the plan its journal applied; refusing.")
    items = []
    for trail in state.objects.values():
        kind = _kind_of(trail)
        if kind is not None and trail.backup is not None:
            _type, env, object_id = trail.key.split(":", 2)
            items.append(Item(kind, env, object_id, trail))
    items.sort(key=lambda i: (ORDER[i.kind], i.environment_id, i.object_id))
    return items, state.header


def _kind_of(trail: ObjectTrail) -> str | None:
    if not trail.changed:
        return None
    if trail.key.startswith("flow:"):
        return "restore-flow"
    if trail.did("delete"):
        return "recreate"
    if any(s.get("step") == "rename" for s in [*trail.steps, *trail.failures]):
        return "rename-back"
    return None


def _ask(
    items: list[Item], *, assume_yes: bool, interactive: bool, confirm: Confirm | None
) -> None:
    if assume_yes or not items:
        return
    if not interactive:
        raise ApplyRefused(
            "Refusing to restore without confirmation: there is no terminal to ask on. Run "
            "restore with --yes."
        )
    count = {k: sum(1 for i in items if i.kind == k) for k in ORDER}
    lines = [
        f"Would re-create {count['recreate']} deleted reference(s), give {count['rename-back']} "
        f"reference(s) their old name back and put back {count['restore-flow']} flow(s).",
        "Objects edited since the apply are refused, not overwritten.",
    ]
    if not (confirm or ask_on_terminal)(question(lines, "Restore these objects?")):
        raise ApplyCancelled("Restore cancelled; nothing was changed.")


def _environments(
    clients: PlatformClients, items: list[Item], limits: ApplySettings
) -> dict[str, EnvironmentContext]:
    discovered = {
        row["environment_id"]: row for row in map(environment_row, clients.environments())
    }
    wanted = {i.environment_id for i in items}
    check_environment_ids(wanted, limits, discovered)
    return {env: EnvironmentContext(clients, env, discovered[env]) for env in wanted}


def _restore_one(ctx: ApplyContext, env: EnvironmentContext, item: Item) -> None:
    handler = {"recreate": _recreate, "rename-back": _rename_back, "restore-flow": _restore_flow}
    try:
        status, reason, writes = handler[item.kind](ctx, env, item)
    except CleanupError as exc:
        status, reason, writes = FAILED, str(exc), 0
    outcome = ActionOutcome(
        action_id=item.key,
        kind=item.kind,
        environment_id=item.environment_id,
        object_id=item.object_id,
        name=_name(item),
        status=status,
        reason=reason,
        writes=writes,
    )
    ctx.record([outcome], object_key=item.key)


def _name(item: Item) -> str:
    backup = item.trail.backup or {}
    label = backup.get("logical_name") or item.object_id
    return f"flow {item.object_id}" if item.kind == "restore-flow" else f"reference {label}"


def _unit(
    ctx: ApplyContext,
    env: EnvironmentContext,
    item: Item,
    reread: Callable[[], Any],
    etag: Callable[[Any], str | None],
) -> ObjectUnit[Any]:
    kind = "flow" if item.kind == "restore-flow" else "reference"
    unit: ObjectUnit[Any] = ObjectUnit(ctx, env, kind, item.object_id, [item.key], reread, etag)
    left = item.trail.last_etag
    if item.kind != "recreate" and left:
        unit.trust(left, "the version the apply left")
    return unit


# ---------------------------------------------------------------------------------------------
# Flows


def _restore_flow(ctx: ApplyContext, env: EnvironmentContext, item: Item) -> tuple[str, str, int]:
    original = flow_from_backup(read_backup(ctx.folder / item.trail.backup["path"]))  # type: ignore[index]
    unit: ObjectUnit[FlowImage] = _unit(
        ctx,
        env,
        item,
        lambda: read_flow(env.dv, item.object_id),
        lambda img: img.etag if img else None,
    )
    current = unit.reread()
    if current is None:
        return FAILED, "the flow no longer exists; restore cannot re-create flows", 0
    unit.settle_pending(current, pending_landed(unit))
    if current.sha == original.sha and current.state == original.state:
        return ALREADY, "already as before the apply", 0
    if not unit.trusted(current):
        return DRIFT, "edited since the apply (its ETag differs); not restored", 0
    writer = FlowWriter(unit, env.dv, item.object_id)
    try:
        writer.converge(current, original.clientdata, original.state)
    except StepFailed as exc:
        still_wrong = writer.make_safe(original.state == 1)
        status = LEFT_OFF if still_wrong else (DRIFT if exc.drift else FAILED)
        return status, "; ".join(filter(None, [str(exc), still_wrong])), unit.writes
    if writer.verify(original.clientdata, original.state) is None:
        return FAILED, "the flow did not read back as it was", unit.writes
    return DONE, "put back as before the apply (clientdata and state)", unit.writes


# ---------------------------------------------------------------------------------------------
# References


def _backup_row(ctx: ApplyContext, item: Item) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    data = read_backup(ctx.folder / item.trail.backup["path"])  # type: ignore[index]
    return dict(data["row"]), list(data.get("solutions") or [])


def _same_reference(row: dict[str, Any] | None, before: dict[str, Any]) -> bool:
    if row is None:
        return False
    names = ("connectionreferencelogicalname", "connectorid", "connectionid")
    same = all(
        str(row.get(n) or "").casefold() == str(before.get(n) or "").casefold() for n in names
    )
    display = "connectionreferencedisplayname"
    return same and row.get(display) == before.get(display)


def _recreate(ctx: ApplyContext, env: EnvironmentContext, item: Item) -> tuple[str, str, int]:
    before, solutions = _backup_row(ctx, item)
    unit = _unit(ctx, env, item, lambda: read_reference(env.dv, item.object_id), etag_of)
    current = unit.reread()
    unit.settle_pending(current, lambda row: _same_reference(row, before))
    if current is not None:
        if _same_reference(current, before):
            return ALREADY, "already re-created", 0
        return DRIFT, "another reference with this id exists now; not restored", 0
    name = str(before["connectionreferencelogicalname"])
    refs, error = env.references_by_name()
    if refs is None:
        return FAILED, f"could not check that '{name}' is free ({error})", 0
    if name.casefold() in refs:
        return DRIFT, f"a reference named '{name}' was created since the apply; not restored", 0
    solution = next((s["unique_name"] for s in solutions if not s.get("is_managed")), None)
    step = _create_step(env, item, before, solution)
    try:
        unit.perform(step, "")
    except StepFailed as exc:
        return (DRIFT if exc.drift else FAILED), str(exc), unit.writes
    seen = unit.wait_until(lambda row: _same_reference(row, before))
    if not _same_reference(seen, before):
        return FAILED, "the re-created reference did not read back as it was", unit.writes
    unit.journal("verified", etag=etag_of(seen))
    where = f" in solution {solution}" if solution else ""
    return DONE, f"re-created with the same id, name and connection{where}", unit.writes


def _create_step(
    env: EnvironmentContext, item: Item, before: dict[str, Any], solution: str | None
) -> Step[dict[str, Any]]:
    body = _create_body(before)

    def send(_if_match: str) -> dict[str, Any] | None:
        return env.dv.create("connectionreferences", body, solution, select=REFERENCE_COLUMNS)

    details = {"expect": "present", "solution": solution, "after": body}
    return Step(
        "recreate",
        send,
        lambda row: _same_reference(row, before),
        details,
        unchanged=lambda row: row is None,
    )


def _create_body(before: dict[str, Any]) -> dict[str, Any]:
    columns = (
        "connectionreferenceid",
        "connectionreferencelogicalname",
        "connectionreferencedisplayname",
        "connectorid",
        "connectionid",
        "description",
    )
    body = {c: before[c] for c in columns if before.get(c) not in (None, "")}
    owner = before.get("_ownerid_value")
    if owner:
        owner_set = "teams" if before.get("_ownerid_value" + LOOKUP) == "team" else "systemusers"
        body["ownerid@odata.bind"] = f"/{owner_set}({owner})"
    custom = before.get("_customconnectorid_value")
    if custom:
        body["CustomConnectorId@odata.bind"] = f"/connectors({custom})"
    return body


def _rename_back(ctx: ApplyContext, env: EnvironmentContext, item: Item) -> tuple[str, str, int]:
    before, _solutions = _backup_row(ctx, item)
    old = before.get("connectionreferencedisplayname")
    unit = _unit(ctx, env, item, lambda: read_reference(env.dv, item.object_id), etag_of)
    current = unit.reread()
    unit.settle_pending(current, lambda row: _display_is(row, old))
    if current is None:
        return SKIPPED, "the reference no longer exists", 0
    if current.get(_DISPLAY) == old:
        return ALREADY, "already has its old name", 0
    if not unit.trusted(current):
        return DRIFT, "edited since the apply (its ETag differs); not restored", 0

    def send(if_match: str) -> dict[str, Any] | None:
        body = {_DISPLAY: old}
        return env.dv.patch(
            "connectionreferences", item.object_id, body, if_match, select=REFERENCE_COLUMNS
        )

    step = Step("rename-back", send, lambda row: _display_is(row, old))
    try:
        unit.perform(step, etag_of(current) or "")
    except StepFailed as exc:
        return (DRIFT if exc.drift else FAILED), str(exc), unit.writes
    return DONE, f"renamed back to '{old}'", unit.writes


def _display_is(row: dict[str, Any] | None, name: Any) -> bool:
    return row is not None and row.get(_DISPLAY) == name


def _result(
    ctx: ApplyContext,
    header: dict[str, Any],
    clients: PlatformClients,
    items: list[Item],
    started: str,
) -> ApplyResult:
    usage = clients.http.usage
    restore_header = ctx.state.header or {}
    return ApplyResult(
        folder=ctx.folder,
        mode="restore",
        plan_run_id=str(header.get("plan_run_id") or ""),
        plan_hash=str(header.get("plan_hash") or ""),
        started_at=started,
        finished_at=datetime.now(UTC).isoformat(timespec="microseconds"),
        outcomes=[ctx.outcomes[i.key] for i in items if i.key in ctx.outcomes],
        planned=len(items),
        interrupted=ctx.stop.is_set() and len(ctx.outcomes) < len(items),
        requests={
            "total": sum(usage.requests.values()),
            "writes": ctx.writes,
            "throttled": usage.throttled,
        },
        who=restore_header.get("who", {}),
    )
