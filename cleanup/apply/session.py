"""``apply`` and ``resume``: refuse or confirm, lock, journal, execute, report.

Order of an apply, each step refusing before the next (nothing is written until step 6):

1. load the plan (``load_plan`` refuses a damaged or altered file);
2. ``check_plan``: tool version, config fingerprint, age, action types, ``[apply]`` limits;
3. refuse if an earlier apply of this plan was interrupted (``resume`` it first);
4. show the plan in words and ask, unless ``--yes``; without a terminal and without
   ``--yes``, refuse;
5. take the run lock (shared with the nightly run), discover the environments, and
   ``check_environments`` (still there, have Dataverse, allowed by ``apply.environments``);
6. create ``<run>/apply-<UTC time>/`` with a copy of the plan and the journal, and execute.

An apply runs in a new ``apply-<timestamp>`` folder inside the plan's run folder, so a plan
applied twice keeps two separate journals, and ``restore`` puts back exactly one apply.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cleanup import __version__
from cleanup.apply.checks import check_environments, check_plan
from cleanup.apply.context import ApplyContext, EnvironmentContext
from cleanup.apply.executor import execute, handled_types
from cleanup.apply.journal import (
    JOURNAL_FILE,
    Journal,
    JournalState,
    fold,
    fsync_directory,
    read_journal,
    utc_now,
)
from cleanup.apply.outcomes import ActionOutcome, ApplyCancelled, ApplyRefused, ApplyResult
from cleanup.apply.report import deliver_report, write_reports
from cleanup.apply.settings import ApplySettings
from cleanup.clients.platform import PlatformClients
from cleanup.config import Settings
from cleanup.connect import open_tenant
from cleanup.errors import PlanError
from cleanup.lock import run_lock
from cleanup.plan import Plan, describe, load_plan
from cleanup.progress import QUIET, Progress
from cleanup.snapshot.tables import environment_row

PLAN_FILE = "plan.json"
APPLY_PREFIX = "apply-"
STAMP = "%Y%m%dT%H%M%SZ"
# Shown the whole text (what will happen, then the question); returns the answer.
Confirm = Callable[[str], bool]
APPLY_QUESTION = "Apply these changes?"


def apply_plan(
    plan_path: str | Path,
    settings: Settings,
    *,
    assume_yes: bool = False,
    interactive: bool = False,
    confirm: Confirm | None = None,
    progress: Progress = QUIET,
    apply_settings: ApplySettings | None = None,
) -> ApplyResult:
    """Apply exactly a reviewed plan (a plan.json or its run folder), or refuse."""
    path = plan_file(plan_path)
    plan = load_plan(path)
    limits = apply_settings or apply_section(settings)
    check_plan(plan, settings, limits, now=datetime.now(UTC), handled=handled_types())
    with run_lock(lock_path(settings)):  # a running apply says "locked", not "unfinished"
        refuse_unfinished(path.parent)
    ask(plan, limits, assume_yes=assume_yes, interactive=interactive, confirm=confirm)
    with run_lock(lock_path(settings)):
        refuse_unfinished(path.parent)  # another apply may have started while we asked
        with open_tenant(settings) as clients:
            environments = open_environments(clients, plan, limits)
            folder = new_apply_folder(path.parent)
            _copy_plan(path, folder / PLAN_FILE)
            with Journal(folder / JOURNAL_FILE) as journal:
                header = journal.append(
                    "started",
                    mode="apply",
                    plan=str(path),
                    plan_hash=plan.content_hash,
                    plan_run_id=plan.run_id,
                    tool_version=__version__,
                    config_fingerprint=settings.fingerprint(),
                    who=who(clients),
                    limits=dataclasses.asdict(limits),
                )
                run = _Run(plan, "apply", folder, journal, fold([header]), limits, progress)
                return run.execute(clients, environments, settings)


def resume_run(
    run_folder: str | Path,
    settings: Settings,
    *,
    progress: Progress = QUIET,
    apply_settings: ApplySettings | None = None,
) -> ApplyResult:
    """Finish an interrupted apply from its journal (an apply folder, or its run folder)."""
    folder = find_apply_folder(run_folder)
    state = fold(read_journal(folder / JOURNAL_FILE))
    if state.header is None:
        raise ApplyRefused(f"{folder} holds no started apply: there is nothing to resume.")
    plan = load_plan(folder / PLAN_FILE)
    if plan.content_hash != state.header.get("plan_hash"):
        raise PlanError(f"{folder / PLAN_FILE} is not the plan its journal applied; refusing.")
    limits = apply_settings or apply_section(settings)
    now = datetime.now(UTC)
    check_plan(plan, settings, limits, now=now, handled=handled_types(), check_age=False)
    with run_lock(lock_path(settings)), open_tenant(settings) as clients:
        environments = open_environments(clients, plan, limits)
        with Journal(folder / JOURNAL_FILE) as journal:
            journal.append("resumed", mode="resume", who=who(clients), tool_version=__version__)
            run = _Run(plan, "resume", folder, journal, state, limits, progress)
            return run.execute(clients, environments, settings)


class _Run:
    """One execution of a plan against an open journal."""

    def __init__(
        self,
        plan: Plan,
        mode: str,
        folder: Path,
        journal: Journal,
        state: JournalState,
        limits: ApplySettings,
        progress: Progress,
    ) -> None:
        self.plan, self.mode, self.folder, self.journal = plan, mode, folder, journal
        self.ctx = ApplyContext(folder, journal, state, limits, progress, total=len(plan.actions))
        for action_id, record in state.outcomes.items():
            self.ctx.outcomes[action_id] = ActionOutcome.from_record(record, action_id)
        self.started = utc_now()

    def execute(
        self,
        clients: PlatformClients,
        environments: dict[str, EnvironmentContext],
        settings: Settings,
    ) -> ApplyResult:
        """Run the plan, journal the end, write the report, return the result."""
        workers = min(self.ctx.limits.concurrency, settings.http.concurrency_per_environment)
        with stop_on_signals(self.ctx.stop, self.ctx.progress), clients.http.writes_enabled():
            execute(self.plan, self.ctx, environments, workers=workers)
        interrupted = self.ctx.stop.is_set() and len(self.ctx.outcomes) < len(self.plan.actions)
        result = self._result(clients, interrupted)
        self.journal.append(
            "interrupted" if interrupted else "finished",
            counts=result.counts(),
            exit_code=result.exit_code,
            requests=result.requests,
        )
        write_reports(result, self.folder, "apply")
        deliver_report(result, self.folder, settings, "apply")
        return result

    def _result(self, clients: PlatformClients, interrupted: bool) -> ApplyResult:
        header = self.ctx.state.header or {}
        order = {a.action_id: i for i, a in enumerate(self.plan.actions)}
        outcomes = sorted(self.ctx.outcomes.values(), key=lambda o: order.get(o.action_id, 0))
        usage = clients.http.usage
        return ApplyResult(
            folder=self.folder,
            mode=self.mode,
            plan_run_id=self.plan.run_id,
            plan_hash=self.plan.content_hash,
            started_at=self.started,
            finished_at=utc_now(),
            outcomes=outcomes,
            planned=len(self.plan.actions),
            interrupted=interrupted,
            requests={
                "total": sum(usage.requests.values()),
                "writes": self.ctx.writes,
                "throttled": usage.throttled,
            },
            who=header.get("who", {}),
        )


# ---------------------------------------------------------------------------------------------
# Helpers shared with restore


def apply_section(settings: Settings) -> ApplySettings:
    """The ``[apply]`` settings (the safe defaults when the section is absent)."""
    section = getattr(settings, "apply", None)
    return section if isinstance(section, ApplySettings) else ApplySettings()


def lock_path(settings: Settings) -> Path:
    """The run lock shared by nightly runs, manual runs, apply, resume and restore."""
    return settings.schedule.lock_path(settings.run.runs_dir)


def plan_file(path: str | Path) -> Path:
    """A plan.json, given the file or the run folder holding it."""
    path = Path(path)
    return path / PLAN_FILE if path.is_dir() else path


def apply_folders(run_folder: Path) -> list[Path]:
    """The apply folders of a run, oldest first."""
    if not run_folder.is_dir():
        return []
    return sorted(p for p in run_folder.iterdir() if p.is_dir() and p.name.startswith(APPLY_PREFIX))


def find_apply_folder(path: str | Path) -> Path:
    """An apply folder, given it or its run folder (then the latest apply of that run)."""
    path = Path(path)
    if (path / JOURNAL_FILE).is_file():
        return path
    folders = [f for f in apply_folders(path) if (f / JOURNAL_FILE).is_file()]
    if not folders:
        raise ApplyRefused(f"{path} holds no apply journal ({APPLY_PREFIX}*/{JOURNAL_FILE}).")
    return folders[-1]


def refuse_unfinished(run_folder: Path) -> None:
    """Refuse a new apply while an earlier apply of the same plan is unfinished."""
    for folder in apply_folders(run_folder):
        journal = folder / JOURNAL_FILE
        if not journal.is_file():
            continue
        state = fold(read_journal(journal))
        if state.header is not None and not state.finished:
            raise ApplyRefused(
                f"An earlier apply of this plan did not finish ({folder}). Run "
                f"'connref-cleanup resume {folder}' to finish it (it turns back on any flow "
                "it left off) before applying again."
            )


def new_apply_folder(run_folder: Path) -> Path:
    """Create ``apply-<UTC time>`` inside the run folder."""
    stamp = datetime.now(UTC).strftime(STAMP)
    for suffix in ["", *(f"-{n}" for n in range(2, 100))]:
        folder = run_folder / f"{APPLY_PREFIX}{stamp}{suffix}"
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        fsync_directory(run_folder)
        return folder
    raise ApplyRefused(f"Too many applies in the same second in {run_folder}.")


def _copy_plan(source: Path, target: Path) -> None:
    data = source.read_bytes()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def open_environments(
    clients: PlatformClients, plan: Plan, limits: ApplySettings
) -> dict[str, EnvironmentContext]:
    """Discover the tenant's environments, check the plan's, and open a client for each."""
    discovered = {
        row["environment_id"]: row for row in map(environment_row, clients.environments())
    }
    check_environments(plan, limits, discovered)
    wanted = dict.fromkeys(a.environment_id for a in plan.actions)
    return {env: EnvironmentContext(clients, env, discovered[env]) for env in wanted}


def who(clients: PlatformClients) -> dict[str, Any]:
    """Who is applying: the app registration and the person or service account on this host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    tenant = clients.settings.tenant
    return {
        "client_id": tenant.client_id,
        "tenant_id": tenant.tenant_id,
        "auth": tenant.auth,
        "user": user,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


def ask(
    plan: Plan,
    limits: ApplySettings,
    *,
    assume_yes: bool,
    interactive: bool,
    confirm: Confirm | None,
) -> None:
    """Ask for confirmation (unless ``assume_yes``); refuse without a terminal."""
    if assume_yes:
        return
    if not interactive:
        raise ApplyRefused(
            "Refusing to apply without confirmation: there is no terminal to ask on. Review the "
            "plan with 'connref-cleanup plan show', then run apply with --yes."
        )
    deletes = "deletes allowed" if limits.allow_delete else "no deletes"
    lines = [*describe(plan), f"Limits: {limits.max_actions_per_run} actions per run, {deletes}."]
    if not (confirm or ask_on_terminal)(question(lines, APPLY_QUESTION)):
        raise ApplyCancelled("Apply cancelled; nothing was changed.")


def question(lines: list[str], ask: str) -> str:
    """The confirmation text: what will happen, one item a line, then the question."""
    return "\n".join([*lines, "", ask])


def ask_on_terminal(text: str) -> bool:
    """Show the text and ask on the terminal; only "y" or "yes" agrees."""
    try:
        answer = input(f"{text} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event, progress: Progress) -> Iterator[None]:
    """On SIGTERM or Ctrl-C: finish the objects in progress, start no new one."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def request_stop(signum: int, _frame: Any) -> None:
        progress.say("Stopping after the objects in progress; run 'resume' to continue.")
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
