"""The command line: a thin click layer over the library.

Exit codes (stable, documented in the README):
0 clean · 1 error · 2 usage or configuration error · 3 partial (an environment was
incomplete) · 4 findings to act on.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from cleanup import __version__, pipeline
from cleanup.config import RunSettings, Settings, SimulatorSettings, load_settings
from cleanup.errors import CleanupError
from cleanup.findings_io import read_findings
from cleanup.notify.settings import NotifySettings
from cleanup.plan import load_plan
from cleanup.progress import Progress
from cleanup.snapshot.store import load_snapshot

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_CONFIG = "config.toml"
# The demo mails through the in-process simulator's Graph endpoint: captured, never delivered.
DEMO_NOTIFY = NotifySettings(
    enabled=True,
    transport="graph",
    sender="connref-cleanup@contoso.example",
    admin_addresses=("admin@contoso.example",),
)


def handle_errors(func: F) -> F:
    """Turn ``CleanupError`` into a one-line message and its exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except CleanupError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="connref-cleanup")
@click.option(
    "--config",
    "config_path",
    default=DEFAULT_CONFIG,
    envvar="CONNREF_CONFIG",
    show_default=True,
    help="Settings file (TOML). Env: CONNREF_CONFIG.",
)
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress lines on stderr. Default: only when stderr is a terminal.",
)
@click.pass_context
def cli(ctx: click.Context, config_path: str, verbose: int, progress: bool | None) -> None:
    """Find and safely consolidate Power Platform connection references across a tenant.

    Read-only unless you run `apply` with a reviewed plan.
    """
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = {"config_path": config_path, "progress": Progress(progress)}


def settings_from(ctx: click.Context) -> Settings:
    """Load the settings named by --config."""
    return load_settings(ctx.obj["config_path"])


@cli.command()
@click.option("--runs-dir", default="runs", show_default=True, help="Where run folders go.")
@click.pass_context
@handle_errors
def demo(ctx: click.Context, runs_dir: str) -> None:
    """Run the job against the built-in demo tenant (no account needed).

    Starts the simulator in-process, runs the pipeline, and prints the run folder last.
    """
    settings = Settings(
        simulator=SimulatorSettings(enabled=True, tenant="demo"),
        run=RunSettings(runs_dir),
        notify=DEMO_NOTIFY,
    )
    result = pipeline.run_once(settings, ctx.obj["progress"])
    _print_summary(result)
    click.echo(str(result.folder))


def read_options(func: F) -> F:
    """Add --full and --shard, the options of commands that read the tenant."""
    func = click.option(
        "--shard",
        "shard_text",
        metavar="I/N",
        help="Read only the environments of shard I of N (0-based); `merge` combines shards.",
    )(func)
    return click.option(
        "--full",
        is_flag=True,
        help="Read every flow's definition, even where an incremental night would do.",
    )(func)


def shard_from(text: str | None) -> Any:
    """Parse --shard, or None when it was not given."""
    from cleanup.shard import parse_shard

    return parse_shard(text) if text else None


@cli.command()
@read_options
@click.pass_context
@handle_errors
def snapshot(ctx: click.Context, full: bool, shard_text: str | None) -> None:
    """Snapshot every selected environment into a new run folder (read-only)."""
    result = pipeline.run_snapshot(
        settings_from(ctx), ctx.obj["progress"], full=full, shard=shard_from(shard_text)
    )
    _print_summary(result)
    click.echo(str(result.folder))
    sys.exit(result.exit_code)


@cli.command()
@read_options
@click.pass_context
@handle_errors
def run(ctx: click.Context, full: bool, shard_text: str | None) -> None:
    """Run the whole read-only pipeline once and print the run folder.

    With --shard I/N it reads only its share of the environments (snapshot and dependency
    checks, no report or mail); run `merge` on the shard folders afterwards.
    """
    result = pipeline.run_once(
        settings_from(ctx), ctx.obj["progress"], full=full, shard=shard_from(shard_text)
    )
    _print_summary(result)
    if shard_text:
        click.echo(
            "Shard done: `connref-cleanup merge` the shard folders for the report.", err=True
        )
    click.echo(str(result.folder))
    sys.exit(result.exit_code)


@cli.command()
@click.argument("folders", nargs=-1, type=click.Path(exists=True, file_okay=False))
@click.option(
    "--from",
    "from_dir",
    type=click.Path(file_okay=False),
    help="Take the newest folder of every shard under this runs folder.",
)
@click.option("--shards", type=click.IntRange(min=1), help="How many shards (with --from).")
@click.option("--no-mail", is_flag=True, help="Write the report but mail nobody.")
@click.pass_context
@handle_errors
def merge(
    ctx: click.Context,
    folders: tuple[str, ...],
    from_dir: str | None,
    shards: int | None,
    no_mail: bool,
) -> None:
    """Merge shard run folders into one run: rules, plan, report and owner mail, as `run` does.

    Name the shard folders, or use --from RUNS --shards N for the newest folder of each shard.
    A shard without a folder leaves its environments incomplete (unknown, never unused).
    """
    from cleanup.shard import latest_shard_runs

    if bool(folders) == bool(from_dir) or bool(from_dir) != bool(shards):
        raise click.UsageError("Pass shard folders, or --from RUNS_DIR with --shards N.")
    chosen = list(folders) if folders else latest_shard_runs(from_dir, shards)
    if not chosen:
        raise CleanupError(f"No run folder of a {shards}-shard run under {from_dir}.")
    result = pipeline.merge_shards(
        settings_from(ctx), chosen, ctx.obj["progress"], send_mail=not no_mail
    )
    _print_summary(result)
    click.echo(str(result.folder))
    sys.exit(result.exit_code)


@cli.command()
@click.argument("run_folder", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--preview", is_flag=True, help="Write the messages and say who gets what; send none."
)
@click.option("--resend", is_flag=True, help="Send again messages already recorded as sent.")
@click.pass_context
@handle_errors
def notify(ctx: click.Context, run_folder: str, preview: bool, resend: bool) -> None:
    """Send (or preview) a past run's owner digests and admin summary."""
    from cleanup.notify.deliver import notify_run, open_transport

    settings = settings_from(ctx)
    folder = Path(run_folder)
    snapshot = load_snapshot(folder)
    findings = read_findings(folder)
    the_plan = load_plan(folder / pipeline.PLAN_FILE)
    with (
        pipeline.mail_tenant(settings, preview) as (mail_settings, tokens),
        open_transport(mail_settings, settings.notify, tokens=tokens) as transport,
    ):
        results = notify_run(
            folder,
            settings.notify,
            transport=transport,
            findings=findings,
            snapshot=snapshot,
            plan_steps=pipeline.plan_steps(the_plan),
            preview=preview,
            resend_sent=resend,
            echo=click.echo,
        )
    failed = [r for r in results if r.status == "failed"]
    click.echo(f"{len(results)} messages, {len(failed)} failed.", err=True)
    sys.exit(1 if failed else 0)


@cli.command("schedule")
@click.option("--once", is_flag=True, help="Run tonight's job now, once, and exit.")
@click.pass_context
@handle_errors
def schedule_command(ctx: click.Context, once: bool) -> None:
    """Run the read-only pipeline every night at [schedule] time in [schedule] timezone.

    A failing night is logged and mailed to the admins, and the loop goes on. It never overlaps
    itself, a manual run or an apply (a file lock), and applies only if [schedule] apply = true.
    """
    from cleanup.notify.deliver import failure_mailer
    from cleanup.scheduler import next_run, nightly_job, run_forever

    settings = settings_from(ctx)
    job = nightly_job(
        lambda: pipeline.run_once(settings, ctx.obj["progress"]).exit_code,
        lambda: unattended_apply(settings),
        settings.schedule,
    )
    if once:
        sys.exit(job())
    when = next_run(settings.schedule, datetime.now(UTC))
    click.echo(f"Next run: {when.isoformat()} ({settings.schedule.timezone}). Ctrl-C stops.")
    run_forever(
        job,
        settings.schedule,
        lock_file=settings.schedule.lock_path(settings.run.runs_dir),
        on_failure=failure_mailer(settings, settings.notify) if settings.notify.enabled else None,
    )


def unattended_apply(settings: Settings) -> int:
    """Apply the newest run's plan without a prompt (only when [schedule] apply = true)."""
    from cleanup.apply import apply_plan

    runs = sorted(p for p in Path(settings.run.runs_dir).glob("*/plan.json"))
    if not runs:
        raise CleanupError("No plan to apply: no run folder holds a plan.json.")
    return apply_plan(runs[-1], settings, assume_yes=True).exit_code


@cli.command()
@click.argument("plan_path", type=click.Path(exists=True))
@click.option("--yes", "assume_yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
@handle_errors
def apply(ctx: click.Context, plan_path: str, assume_yes: bool) -> None:
    """Execute exactly a reviewed plan: rewire flows, then delete leftovers.

    Refuses a plan that was altered or made with another config or version; checks the [apply]
    limits before the first write; skips what drifted since the plan; journals and backs up
    every change (undo with `restore`). Without a terminal it needs --yes.
    """
    from cleanup.apply import apply_plan

    result = apply_plan(
        plan_path,
        settings_from(ctx),
        assume_yes=assume_yes,
        interactive=sys.stdin.isatty(),
        confirm=lambda text: click.confirm(text, default=False),
        progress=ctx.obj["progress"],
    )
    _finish_apply(result)


@cli.command()
@click.argument("run_folder", type=click.Path(exists=True, file_okay=False))
@click.pass_context
@handle_errors
def resume(ctx: click.Context, run_folder: str) -> None:
    """Finish an interrupted apply from its journal (turns back on flows it left off)."""
    from cleanup.apply import resume_run

    _finish_apply(resume_run(run_folder, settings_from(ctx), progress=ctx.obj["progress"]))


@cli.command()
@click.argument("run_folder", type=click.Path(exists=True, file_okay=False))
@click.option("--yes", "assume_yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
@handle_errors
def restore(ctx: click.Context, run_folder: str, assume_yes: bool) -> None:
    """Put back every object an apply changed, from its backups (refuses objects edited since)."""
    from cleanup.apply import restore_run

    result = restore_run(
        run_folder,
        settings_from(ctx),
        assume_yes=assume_yes,
        interactive=sys.stdin.isatty(),
        confirm=lambda text: click.confirm(text, default=False),
        progress=ctx.obj["progress"],
    )
    _finish_apply(result)


def _finish_apply(result: Any) -> None:
    counts = ", ".join(f"{n} {status}" for status, n in sorted(result.counts().items()))
    click.echo(f"{result.mode}: {counts or 'nothing to do'}. Report: {result.folder}", err=True)
    for outcome in result.attention:
        click.echo(f"  ATTENTION {outcome.status}: {outcome.name}: {outcome.reason}", err=True)
    sys.exit(result.exit_code)


@cli.group()
def plan() -> None:
    """Inspect plans written by `run`."""


@plan.command("show")
@click.argument("plan_path", type=click.Path(exists=True))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@handle_errors
def plan_show(plan_path: str, fmt: str) -> None:
    """Explain a plan in words (PLAN_PATH: a plan.json or the run folder holding it)."""
    from cleanup.plan import describe

    path = Path(plan_path)
    the_plan = load_plan(path / pipeline.PLAN_FILE if path.is_dir() else path)
    if fmt == "json":
        click.echo(json.dumps(the_plan.to_dict(), indent=2, ensure_ascii=False))
        return
    for line in describe(the_plan):
        click.echo(line)


@cli.command()
@click.argument("run_folder", type=click.Path(exists=True, file_okay=False))
@click.pass_context
@handle_errors
def report(ctx: click.Context, run_folder: str) -> None:
    """Re-render the HTML report and deployment settings of a past run."""
    path = pipeline.rerender(Path(run_folder), settings_from(ctx))
    click.echo(str(path))


@cli.command("lint-solution")
@click.argument("path", type=click.Path(exists=True))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option(
    "--settings",
    "settings_files",
    multiple=True,
    help="A pac deployment settings file (or glob) to check against the solution. Repeatable.",
)
@click.option(
    "--fail-on",
    type=click.Choice(["high", "medium", "low"]),
    default="low",
    show_default=True,
    help="Lowest severity that makes the exit code 1 (info notes never do).",
)
@click.pass_context
@handle_errors
def lint_solution(
    ctx: click.Context, path: str, fmt: str, settings_files: tuple[str, ...], fail_on: str
) -> None:
    """Lint an unpacked solution folder offline (for release pipelines).

    Reports references declared but unused, used but not declared, duplicates, bad names and
    deployment settings files that miss a reference. Exit code 1 when something is found,
    2 when the input cannot be read.
    """
    from cleanup.lint import main_lint

    config_path = Path(ctx.obj["config_path"])
    naming = load_settings(config_path).naming if config_path.is_file() else None
    sys.exit(main_lint(path, settings_files, fmt, naming, fail_on=fail_on))


@cli.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("check")
@click.pass_context
@handle_errors
def config_check(ctx: click.Context) -> None:
    """Validate the config file and say what it will do; changes nothing."""
    settings = settings_from(ctx)
    target = (
        f"the built-in simulator (tenant {settings.simulator.tenant!r})"
        if settings.simulator.enabled
        else f"tenant {settings.tenant.tenant_id} as app {settings.tenant.client_id} "
        f"({settings.tenant.auth})"
    )
    click.echo(f"{settings.source}: OK")
    click.echo(f"  target:       {target}")
    click.echo(f"  environments: {_describe_selection(settings)}")
    click.echo(f"  runs folder:  {settings.run.runs_dir}")
    click.echo(f"  fingerprint:  {settings.fingerprint()}")


def _describe_selection(settings: Settings) -> str:
    sel = settings.environments
    parts = ["all" if not sel.include else "only " + ", ".join(sel.include)]
    if sel.exclude:
        parts.append("except " + ", ".join(sel.exclude))
    if sel.skus:
        parts.append("SKUs " + ", ".join(sel.skus))
    return "; ".join(parts)


@cli.command()
@click.option(
    "--tenant",
    "tenant_spec",
    default="demo",
    show_default=True,
    help="'demo', 'generated:SEED[:ENVIRONMENTS[:FLOWS]]', or a tenant JSON file.",
)
@click.option("--port", default=0, type=int, help="Port to listen on (default: any free port).")
@click.option("--latency-ms", default=0.0, type=float, help="Added latency per request.")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where to write the config, secret file and CA (default: a temporary folder).",
)
@click.option("--for-seconds", type=float, default=None, help="Stop after this long.")
@handle_errors
def simulate(
    tenant_spec: str, port: int, latency_ms: float, state_dir: str | None, for_seconds: float | None
) -> None:
    """Serve a simulated tenant over HTTPS and print the config that points at it."""
    from cleanup.connect import simulated_tenant
    from cleanup.simulator.server import Simulator

    tenant = simulated_tenant(tenant_spec)
    folder = Path(state_dir or tempfile.mkdtemp(prefix="connref-sim-"))
    folder.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(24)
    secret_file = folder / "client-secret"
    secret_file.touch(mode=0o600)
    secret_file.write_text(secret, encoding="utf-8")
    with Simulator(tenant, client_secret=secret, latency_ms=latency_ms, port=port) as sim:
        config_file = folder / "config.toml"
        config_file.write_text(simulator_config(sim.endpoints(), tenant, secret_file), "utf-8")
        click.echo(f"Simulating {len(tenant.environments)} environments at {sim.base_url}")
        click.echo(f"Config: {config_file}  (connref-cleanup --config {config_file} snapshot)")
        click.echo(config_file.read_text(encoding="utf-8"))
        _serve(for_seconds)


def simulator_config(endpoints: dict[str, str], tenant: Any, secret_file: Path) -> str:
    """Return a config.toml that points the job at a running simulator."""
    lines = [
        "[tenant]",
        f'tenant_id = "{tenant.tenant_id}"',
        f'client_id = "{tenant.client_id}"',
        'auth = "client-secret"',
        f'client_secret_file = "{secret_file}"',
        "",
        "[endpoints]",
        *(f'{key} = "{value}"' for key, value in sorted(endpoints.items())),
        "",
    ]
    return "\n".join(lines)


def _serve(for_seconds: float | None) -> None:
    deadline = time.monotonic() + for_seconds if for_seconds else None
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass


def _print_summary(result: pipeline.RunResult) -> None:
    _print_snapshot_summary(result)
    analysis = result.analysis
    if analysis is None:
        return
    severities = analysis.findings["severity"].value_counts()
    counts = ", ".join(f"{severities.get(s, 0)} {s}" for s in ("high", "medium", "low", "info"))
    actions = analysis.plan.actions
    click.echo(f"Findings: {len(analysis.findings)} ({counts}).", err=True)
    click.echo(
        f"Plan: {len(actions)} actions, {len(analysis.plan.skipped)} skipped "
        f"(connref-cleanup plan show {result.folder / pipeline.PLAN_FILE}).",
        err=True,
    )
    click.echo(f"Report: {result.folder / 'report.html'}", err=True)
    if result.deliveries:
        failed = sum(1 for d in result.deliveries if d.status == "failed")
        click.echo(
            f"Emails: {len(result.deliveries)} ({failed} failed), copies in "
            f"{result.folder / 'emails'}",
            err=True,
        )


def _print_snapshot_summary(result: pipeline.RunResult) -> None:
    meta = result.snapshot.metadata
    envs = result.snapshot.environments
    counts = envs["status"].value_counts().to_dict()
    click.echo(
        f"Snapshot: {len(result.snapshot.references)} connection references, "
        f"{len(result.snapshot.flows)} flows in {counts.get('complete', 0)} complete "
        f"environments ({counts.get('incomplete', 0)} incomplete, {counts.get('skipped', 0)} "
        f"skipped); {meta['requests']['total']} requests in {meta['seconds']:.1f} s.",
        err=True,
    )
    for row in envs[envs["status"] == "incomplete"].itertuples():
        click.echo(f"  INCOMPLETE {row.display_name}: {row.status_reason}", err=True)


def main() -> None:
    """Console entry point."""
    os.environ.setdefault("PYTHONIOENCODING", "utf-8")
    cli(prog_name="connref-cleanup")
