"""The read-only pipeline, stage by stage, writing everything into one run folder.

snapshot ─▶ dependency checks (unused candidates only) ─▶ rules ─▶ consolidate ─▶ plan
         ─▶ findings files, plan.json, report.html, deployment settings ─▶ owner emails
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from cleanup import __version__
from cleanup.config import Settings
from cleanup.connect import open_tenant
from cleanup.consolidate import Proposals, duplicate_groups, propose
from cleanup.findings_io import read_findings, write_findings
from cleanup.history import History, load_history
from cleanup.lock import run_lock
from cleanup.notify.settings import NotifySettings
from cleanup.plan import (
    DeleteReference,
    Plan,
    RewireFlowKey,
    build_plan,
    load_plan,
    save_plan,
)
from cleanup.progress import QUIET, Progress
from cleanup.report import ReportHistory, ReportInput, write_deployment_settings, write_report
from cleanup.report.trend import load_trend
from cleanup.rules import evaluate_rules, unused_candidates
from cleanup.shard import Shard, merge_runs
from cleanup.snapshot.collect import take_snapshot
from cleanup.snapshot.dependencies import DependencyChecks
from cleanup.snapshot.model import Snapshot
from cleanup.snapshot.store import load_snapshot, new_run_folder, save_snapshot, write_json

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_FINDINGS = 4
ACTIONABLE = ("low", "medium", "high")
PLAN_FILE = "plan.json"
RUN_FILE = "run.json"


@dataclass(frozen=True)
class Analysis:
    """What the pure stages made of a snapshot."""

    findings: pd.DataFrame
    excluded: pd.DataFrame
    resolved: pd.DataFrame
    proposals: Proposals
    plan: Plan
    history: History


@dataclass(frozen=True)
class RunResult:
    """What a run produced and where."""

    folder: Path
    snapshot: Snapshot
    analysis: Analysis | None = None
    deliveries: list[Any] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """Return the documented exit code: partial beats findings beats clean."""
        if not self.snapshot.metadata.get("complete", False):
            return EXIT_PARTIAL
        if self.analysis is not None and self.analysis.findings["severity"].isin(ACTIONABLE).any():
            return EXIT_FINDINGS
        return EXIT_OK


def run_snapshot(
    settings: Settings,
    progress: Progress = QUIET,
    *,
    full: bool = False,
    shard: Shard | None = None,
) -> RunResult:
    """Snapshot the tenant into a new run folder (no analysis)."""
    folder = new_run_folder(settings.run.runs_dir)
    with open_tenant(settings) as clients:
        snapshot = take_snapshot(
            clients, run_id=folder.name, progress=progress, full=full, shard=shard
        )
    save_snapshot(snapshot, folder)
    return RunResult(folder=folder, snapshot=snapshot)


def run_once(
    settings: Settings,
    progress: Progress = QUIET,
    *,
    send_mail: bool = True,
    full: bool = False,
    shard: Shard | None = None,
) -> RunResult:
    """Run the whole read-only pipeline once into a new run folder.

    ``full`` reads every flow even where an incremental night would do. A shard run stops
    after its snapshot and dependency checks: ``merge_shards`` analyses the whole tenant.
    """
    with run_lock(_lock_path(settings, shard)):
        folder = new_run_folder(settings.run.runs_dir)
        with open_tenant(settings) as clients, DependencyChecks(clients) as dependencies:
            snapshot = take_snapshot(
                clients,
                run_id=folder.name,
                progress=progress,
                full=full,
                shard=shard,
                dependencies=dependencies,
            )
            candidates = unused_candidates(snapshot)
            progress.say(f"Asking the platform about {len(candidates)} possibly unused references.")
            checks = dependencies.rows_for(snapshot, candidates)
            snapshot = dataclasses.replace(snapshot, dependency_checks=checks)
            # The clients see the simulator's endpoints when it is on; the run is of the config.
            snapshot.metadata["config_fingerprint"] = settings.fingerprint()
            save_snapshot(snapshot, folder)
            if shard is not None:
                result = RunResult(folder=folder, snapshot=snapshot)
            else:
                mail = (clients.settings, clients.http.tokens) if send_mail else None
                result = _analyse_and_notify(folder, snapshot, settings, progress, mail)
    write_run_summary(result)
    progress.say(f"Run folder: {folder}")
    return result


def merge_shards(
    settings: Settings,
    folders: Sequence[str | Path],
    progress: Progress = QUIET,
    *,
    send_mail: bool = True,
) -> RunResult:
    """Merge shard run folders into a new run folder, then analyse, report and notify."""
    with run_lock(_lock_path(settings, None)):
        folder = new_run_folder(settings.run.runs_dir)
        progress.say(f"Merging {len(folders)} shard folders into {folder}.")
        try:
            merge_runs(folders, folder)
        except Exception:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        snapshot = load_snapshot(folder)
        if send_mail and settings.notify.enabled:
            with mail_tenant(settings) as mail:
                result = _analyse_and_notify(folder, snapshot, settings, progress, mail)
        else:
            result = _analyse_and_notify(folder, snapshot, settings, progress, None)
    write_run_summary(result)
    progress.say(f"Run folder: {folder}")
    return result


@contextmanager
def mail_tenant(settings: Settings, preview: bool = False) -> Iterator[tuple[Settings, Any]]:
    """Yield the settings and tokens Graph mail needs (the simulator's when it is on)."""
    if preview or settings.notify.transport != "graph":
        yield settings, None
        return
    with open_tenant(settings) as clients:
        yield clients.settings, clients.http.tokens


def _analyse_and_notify(
    folder: Path,
    snapshot: Snapshot,
    settings: Settings,
    progress: Progress,
    mail: tuple[Settings, Any] | None,
) -> RunResult:
    analysis = analyse(snapshot, settings, folder)
    write_outputs(folder, snapshot, analysis, settings)
    deliveries = []
    if mail is not None:
        if settings.notify.enabled:
            progress.say("Mailing the owners.")
        mail_settings, tokens = mail
        deliveries = notify_owners(
            folder, mail_settings, snapshot, analysis, settings.notify, tokens=tokens
        )
    return RunResult(folder=folder, snapshot=snapshot, analysis=analysis, deliveries=deliveries)


def _lock_path(settings: Settings, shard: Shard | None) -> Path:
    # Shards of one tenant may share a runs folder and a machine: one lock per shard.
    path = settings.schedule.lock_path(settings.run.runs_dir)
    return (
        path
        if shard is None
        else path.with_name(f"{path.name}.shard-{shard.index}-of-{shard.count}")
    )


def analyse(snapshot: Snapshot, settings: Settings, folder: Path) -> Analysis:
    """Rules, history, consolidation and the plan: pure, apart from reading earlier runs."""
    history = load_history(settings.run.runs_dir, current_run_id=folder.name)
    results = evaluate_rules(snapshot, settings, history)
    resolved = history.resolved(results.findings, snapshot, results.excluded)
    proposals = results.proposals
    if proposals is None:  # the duplicate rule is disabled
        proposals = propose(snapshot, duplicate_groups(snapshot), naming=settings.naming)
    plan = build_plan(
        snapshot,
        proposals,
        results.findings,
        settings.plan,
        run_id=folder.name,
        config_fingerprint=settings.fingerprint(),
        now=datetime.now(UTC),
    )
    return Analysis(results.findings, results.excluded, resolved, proposals, plan, history)


def write_outputs(folder: Path, snapshot: Snapshot, analysis: Analysis, settings: Settings) -> None:
    """Write findings, plan, report and deployment settings into the run folder."""
    write_findings(folder, analysis.findings, analysis.excluded)
    save_plan(analysis.plan, folder / PLAN_FILE)
    render_run_report(folder, snapshot, analysis, settings)


def render_run_report(
    folder: Path, snapshot: Snapshot, analysis: Analysis, settings: Settings
) -> Path:
    """Render ``report.html`` and the deployment settings of one run."""
    write_deployment_settings(snapshot, folder, analysis.proposals, analysis.plan)
    history = ReportHistory(
        resolved=analysis.resolved,
        trend=load_trend(settings.run.runs_dir, current_run_id=folder.name),
    )
    report = ReportInput(
        snapshot=snapshot,
        findings=analysis.findings,
        run_id=folder.name,
        generated_at=datetime.now(UTC),
        tool_version=__version__,
        proposals=analysis.proposals,
        plan=analysis.plan,
        history=history,
    )
    return write_report(report, folder)


def rerender(folder: Path, settings: Settings) -> Path:
    """Re-render the report of a past run from its folder (the plan is not rebuilt)."""
    snapshot = load_snapshot(folder)
    findings = read_findings(folder)
    history = load_history(settings.run.runs_dir, current_run_id=folder.name)
    resolved = history.resolved(findings, snapshot)
    proposals = propose(snapshot, duplicate_groups(snapshot), naming=settings.naming)
    plan = load_plan(folder / PLAN_FILE)
    analysis = Analysis(findings, findings.iloc[0:0], resolved, proposals, plan, history)
    return render_run_report(folder, snapshot, analysis, settings)


def notify_owners(
    folder: Path,
    settings: Settings,
    snapshot: Snapshot,
    analysis: Analysis,
    notify: NotifySettings,
    *,
    tokens: Any = None,
    preview: bool = False,
) -> list[Any]:
    """Mail each owner their digest (and the admins a summary) when notifications are on.

    ``settings`` are those the clients use (the simulator's endpoints in the demo), so Graph
    mail goes where the snapshot came from; a failed send is recorded, never raised.
    """
    if not notify.enabled:
        return []
    from cleanup.notify.deliver import notify_run, open_transport

    with open_transport(settings, notify, tokens=tokens) as transport:
        return notify_run(
            folder,
            notify,
            transport=transport,
            findings=analysis.findings,
            snapshot=snapshot,
            plan_steps=plan_steps(analysis.plan),
            preview=preview,
        )


def plan_steps(plan: Plan) -> dict[tuple[str, str], list[str]]:
    """Say, per reference, what the plan would do to it (for the owners' digests)."""
    steps: dict[tuple[str, str], list[str]] = {}
    for action in plan.actions:
        if isinstance(action, RewireFlowKey):
            key = (action.environment_id, action.from_reference_id)
            text = f"flow '{action.flow_name}' moves to '{action.to_logical_name}'"
        elif isinstance(action, DeleteReference):
            key = (action.environment_id, action.reference_id)
            text = "deleted once its flows have moved" if action.depends_on else "deleted"
        else:
            key = (action.environment_id, getattr(action, "reference_id", ""))
            text = f"renamed to '{getattr(action, 'to_display_name', '')}'"
        steps.setdefault(key, []).append(f"{text} (at the next reviewed apply)")
    return steps


def write_run_summary(result: RunResult) -> None:
    """Write ``run.json``: counts, exit code and where everything is, for machines."""
    analysis = result.analysis
    summary: dict[str, Any] = {
        "run_id": result.folder.name,
        "tool_version": __version__,
        "exit_code": result.exit_code,
        "complete": result.snapshot.metadata.get("complete", False),
        "requests": result.snapshot.metadata.get("requests", {}),
    }
    if analysis is not None:
        summary["findings_by_severity"] = analysis.findings["severity"].value_counts().to_dict()
        summary["findings_by_rule"] = analysis.findings["rule"].value_counts().to_dict()
        summary["planned_actions"] = len(analysis.plan.actions)
    summary["deliveries"] = len(result.deliveries)
    write_json(result.folder / RUN_FILE, summary)
