"""Benchmark the snapshot against the simulator and against the bounds the platform allows.

    python benchmarks/run.py --size small|large|huge [--latency-ms 40] [--seed N] [--incremental]
                             [--analysis-rows 1000000] [--json figures.json]

Starts the simulator (its own process by default, see ``simproc.py``) with a generated tenant,
the platform's service protection limits on and a per-request latency; runs the job's stages as
``pipeline.run_once`` does (snapshot, dependency checks of the unused candidates, save, analysis,
findings, plan, report), timing each and recording the peak RSS after each; then measures the
bounds and runs the naive reference client (``naive.py``) on the same tenant.

Bounds (README.md explains them):

* requests: per environment, ``ceil(rows / page)`` per table read and at least one per table,
  plus the tenant's environment list pages, plus one dependency check per unused candidate (the
  API has no collection form of RetrieveDependenciesForDelete);
* concurrency: requests x latency / the parallelism that the configured pools and the platform's
  52 concurrent requests per environment allow, or the unavoidable sequential round trips;
* physical: the time this machine needs to receive the very same responses (same URLs and
  headers, keep-alive connections, latency switched off) and parse them with the job's JSON
  parser (``cleanup.json_text.loads``, orjson with a ``json.loads`` fallback): the bodies and
  the clientdata JSON documents inside them (P2), or the bodies alone (P1).

The dependency checks of an environment start as soon as it is read, so the two stages overlap:
the physical bound replays every request of both in one go, and the wall bound is the largest of
that and each stage's concurrency bound. The last line printed is
``RESULT requests_ratio=... wall_ratio=... naive_speedup=... peak_rss_mb=...``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import naive  # noqa: E402 - benchmarks/ is a folder of scripts, not a package
import simproc  # noqa: E402

from cleanup import json_text, pipeline  # noqa: E402
from cleanup.clients.auth import TokenProvider  # noqa: E402
from cleanup.clients.http import VerifyingSession  # noqa: E402
from cleanup.clients.platform import build_clients  # noqa: E402
from cleanup.config import (  # noqa: E402
    EndpointSettings,
    HttpSettings,
    RunSettings,
    Settings,
    TenantSettings,
)
from cleanup.findings_io import write_findings  # noqa: E402
from cleanup.pipeline import PLAN_FILE, analyse, render_run_report  # noqa: E402
from cleanup.plan import save_plan  # noqa: E402
from cleanup.rules import unused_candidates  # noqa: E402
from cleanup.snapshot.collect import TABLES_PER_ENVIRONMENT, take_snapshot  # noqa: E402
from cleanup.snapshot.dependencies import DependencyChecks  # noqa: E402
from cleanup.snapshot.model import Snapshot  # noqa: E402
from cleanup.snapshot.store import load_snapshot, new_run_folder, save_snapshot  # noqa: E402

SECRET_ENV = "CONNREF_BENCH_SECRET"
SIZES: dict[str, dict[str, Any]] = {
    "small": {"environments": 5, "flows": 30, "references": 12, "connections": 6},
    "large": {"environments": 200, "flows": 500, "references": 100, "connections": 10},
    "huge": {"environments": 600, "flows": 500, "references": 100, "connections": 10},
}
NAIVE_ENVIRONMENTS = {"small": None, "large": 8, "huge": 8}  # None: all of them
VOLATILE = {"requests", "seconds"}
# Round trips no amount of parallelism removes: token discovery and the first token, the
# environment list (its pages), an environment's token, then its component type followed by
# its solution components.
SEQUENTIAL_ROUND_TRIPS = 5


# -- the simulator, in its own process or in this one -------------------------------------------
class SubprocessSimulator:
    """``simproc.py`` in a child process, driven over a pipe."""

    def __init__(self, size: dict[str, Any], seed: int, latency_ms: float, clientdata: str):
        command = [sys.executable, str(Path(__file__).with_name("simproc.py"))]
        command += ["--seed", str(seed), "--latency-ms", str(latency_ms)]
        command += ["--clientdata", clientdata]
        for key in ("environments", "flows", "references", "connections"):
            command += [f"--{key}", str(size[key])]
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("the simulator process did not start (see its stderr above)")
        self.hello: dict[str, Any] = json.loads(line)
        self._lock = threading.Lock()

    def call(self, cmd: str, **args: Any) -> Any:
        """Send one command and return the answer."""
        assert self._process.stdin is not None and self._process.stdout is not None
        with self._lock:
            self._process.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
            self._process.stdin.flush()
            return json.loads(self._process.stdout.readline())

    def close(self) -> None:
        """Stop the simulator process."""
        if self._process.poll() is None:
            self.call("quit")
            self._process.wait(timeout=30)


class InProcessSimulator:
    """The simulator on threads of this process (it shares the GIL with the client)."""

    def __init__(self, size: dict[str, Any], seed: int, latency_ms: float, clientdata: str):
        import secrets

        from cleanup.simulator.faults import Faults
        from cleanup.simulator.generator import generate_tenant
        from cleanup.simulator.server import Simulator

        tenant = generate_tenant(
            seed=seed,
            environments=size["environments"],
            flows_per_environment=size["flows"],
            references_per_environment=size["references"],
            connections_per_environment=size["connections"],
            clientdata_size=clientdata,
        )
        gc.freeze()  # as simproc.py does: the tenant is not the client's heap to collect
        secret = secrets.token_urlsafe(24)
        self.sim = Simulator(
            tenant, client_secret=secret, faults=Faults(enforce_limits=True), latency_ms=latency_ms
        ).start()
        self.hello = {
            "endpoints": self.sim.endpoints(),
            "tenant_id": tenant.tenant_id,
            "client_id": tenant.client_id,
            "secret": secret,
            "environments": len(tenant.environments),
            "flows": sum(len(simproc.cloud_flows(e)) for e in tenant.environments),
        }

    def call(self, cmd: str, **args: Any) -> Any:
        """Answer a command like the child process would."""
        if cmd == "rusage":
            return {"peak_rss_mb": 0.0, "user": 0.0, "system": 0.0}
        return json.loads(json.dumps(simproc.run_command(self.sim, {"cmd": cmd, **args})))

    def close(self) -> None:
        """Stop the simulator."""
        self.sim.stop()


# -- the job ------------------------------------------------------------------------------------
def bench_settings(sim: Any, runs_dir: Path, http: HttpSettings) -> Settings:
    """Settings for a tenant that happens to be the simulator (secret from the environment)."""
    os.environ[SECRET_ENV] = sim.hello["secret"]
    tenant = TenantSettings(
        tenant_id=sim.hello["tenant_id"],
        client_id=sim.hello["client_id"],
        auth="client-secret",
        client_secret_env=SECRET_ENV,
    )
    endpoints = EndpointSettings(**sim.hello["endpoints"])
    return Settings(tenant=tenant, endpoints=endpoints, http=http, run=RunSettings(str(runs_dir)))


class Stages:
    """Wall time and peak RSS (so far) after each stage of a night."""

    def __init__(self, mark: Callable[[str], None] | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self.peak_rss_mb: dict[str, float] = {}
        self._mark = mark or (lambda stage: None)
        self._last = time.perf_counter()
        self._mark("start")

    def done(self, stage: str) -> None:
        """Close ``stage``."""
        now = time.perf_counter()
        self.seconds[stage] = now - self._last
        self.peak_rss_mb[stage] = peak_rss_mb()
        self._mark(stage)
        self._last = time.perf_counter()


def peak_rss_mb() -> float:
    """The peak resident set of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_night(
    settings: Settings,
    *,
    full: bool = False,
    analysis: bool = True,
    mark: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """One night of the read-only pipeline, stage by stage as ``pipeline.run_once`` runs them."""
    folder = new_run_folder(settings.run.runs_dir)
    clients = build_clients(settings)
    stages = Stages(mark)
    cpu = _cpu()
    with DependencyChecks(clients) as dependencies:
        workers_cpu = _cpu(resource.RUSAGE_CHILDREN)
        snapshot = take_snapshot(clients, run_id=folder.name, full=full, dependencies=dependencies)
        snapshot_cpu = _cpu() - cpu
        # The parse workers have exited by now; the simulator (also a child) is still running.
        workers_cpu = _cpu(resource.RUSAGE_CHILDREN) - workers_cpu
        stages.done("snapshot")
        candidates = unused_candidates(snapshot)
        checks = dependencies.rows_for(snapshot, candidates)
    stages.done("dependency_checks")
    snapshot = dataclasses.replace(snapshot, dependency_checks=checks)
    save_snapshot(snapshot, folder)
    stages.done("save")
    if analysis:
        analysed = analyse(snapshot, settings, folder)
        stages.done("analyse")
        write_outputs_timed(folder, snapshot, analysed, settings, stages)
    usage = clients.http.usage
    return {
        "folder": folder,
        "snapshot": snapshot,
        "candidates": candidates,
        "seconds": stages.seconds,
        "peak_rss_mb_after": stages.peak_rss_mb,
        "snapshot_cpu": snapshot_cpu,
        "parse_workers": {
            **snapshot.metadata["flow_pages"],
            "cpu_seconds": workers_cpu,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        },
        "requests": sum(usage.requests.values()),
        "snapshot_requests": snapshot.metadata["requests"]["total"],
        "by_table": dict(usage.by_table),
        "bytes": sum(usage.bytes.values()),
        "snapshot_bytes": snapshot.metadata["bytes"],
        "throttled": usage.throttled,
        "modes": snapshot.metadata.get("modes", {}),
        "dependency_checks": dataclasses.asdict(dependencies.counts),
    }


def write_outputs_timed(
    folder: Path, snapshot: Snapshot, analysed: Any, settings: Settings, stages: Stages
) -> None:
    """``pipeline.write_outputs``, one stage at a time."""
    write_findings(folder, analysed.findings, analysed.excluded)
    stages.done("findings")
    save_plan(analysed.plan, folder / PLAN_FILE)
    stages.done("plan")
    render_run_report(folder, snapshot, analysed, settings)
    stages.done("report")


def _cpu(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


# -- bounds ---------------------------------------------------------------------------------------
def concurrency_bound(
    requests_count: int, environments: int, http: HttpSettings, latency_s: float, env_pages: int
) -> float:
    """Seconds the pools and the per-environment limit (52) allow at this latency."""
    per_env = min(http.concurrency_per_environment, TABLES_PER_ENVIRONMENT, 52)
    parallel = max(1, min(http.parallel_environments, environments) * per_env)
    chain = (env_pages - 1 + SEQUENTIAL_ROUND_TRIPS) * latency_s
    return max(requests_count * latency_s / parallel, chain)


def dependency_bound(
    candidates: int, environments: int, http: HttpSettings, latency_s: float
) -> float:
    """Seconds the dependency checks need at least (one round trip each, same limits)."""
    if not candidates:
        return 0.0
    per_env = min(http.concurrency_per_environment, 52)
    parallel = max(1, min(http.parallel_environments, environments) * per_env)
    return max(candidates * latency_s / parallel, latency_s)


def physical_bound(
    sim: Any, settings: Settings, since: int, until: int, threads: int, inner: bool
) -> dict[str, Any]:
    """Receive the same responses again (no latency) and ``json.loads`` them; time it."""
    entries = sim.call("requests", since=since, until=until)
    base = sim.hello["endpoints"]["bap"].rsplit("/bap", 1)[0]
    tokens = TokenProvider(settings.tenant, settings.endpoints, secret=sim.hello["secret"])
    prefer = f'odata.maxpagesize={settings.http.page_size},odata.include-annotations="*"'
    jobs = []
    for entry in entries:
        url = f"{base}{quote(entry['path'], safe='/()=,@$:')}"
        url += f"?{entry['query']}" if entry["query"] else ""
        if entry["service"] == "dataverse":
            scope = base + entry["path"].split("/api/data/", 1)[0] + "/.default"
            headers = {"Prefer": prefer, "Accept": "application/json"}
        else:
            scope, headers = settings.endpoints.powerapps_scope, {}
        jobs.append((url, scope, headers))
    for scope in {job[1] for job in jobs}:
        tokens.token(scope)  # tokens are not part of receiving the bytes
    received: Counter[str] = Counter()
    parse_seconds = [0.0] * threads
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        # The job's session class: it reads the environment once, not on every request.
        session = VerifyingSession(settings.endpoints.ca_bundle)
        try:
            for url, scope, headers in jobs[n::threads]:
                body = session.get(
                    url, headers={"Authorization": f"Bearer {tokens.token(scope)}", **headers}
                ).content
                started = time.thread_time()
                parse(body, inner)
                parse_seconds[n] += time.thread_time() - started
                received["bytes"] += len(body)
                received["requests"] += 1
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    sim.call("latency", ms=0)
    try:
        started = time.perf_counter()
        pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        seconds = time.perf_counter() - started
    finally:
        sim.call("latency", ms=sim.hello["latency_ms"])
    if errors:
        raise errors[0]
    return {
        "threads": threads,
        "inner": inner,
        "seconds": seconds,
        "parse_cpu_seconds": sum(parse_seconds),
        "bytes": received["bytes"],
        "requests": received["requests"],
    }


def parse(body: bytes, inner: bool) -> None:
    """Parse a response body and, with ``inner``, every clientdata document in it.

    With the parser the job uses (``cleanup.json_text.loads``), so the bound stays the bound.
    """
    doc = json_text.loads(body)
    if not inner or not isinstance(doc, dict):
        return
    for row in doc.get("value") or []:
        text = row.get("clientdata") if isinstance(row, dict) else None
        if isinstance(text, str) and text:
            with contextlib.suppress(ValueError):
                json_text.loads(text)


# -- comparisons and the analysis at scale ------------------------------------------------------
def differing_tables(one: Snapshot, two: Snapshot) -> list[str]:
    """Names of the tables that differ between two snapshots (row order and timing aside)."""
    differ = []
    for name, a in one.tables().items():
        b = two.tables()[name]
        if name == "dependency_checks":
            continue  # asked after the snapshot, for the candidates of each run
        cols = [c for c in a.columns if c not in VOLATILE]
        left = a[cols].astype(str).sort_values(cols).reset_index(drop=True)
        right = b[cols].astype(str).sort_values(cols).reset_index(drop=True)
        if not left.equals(right):
            differ.append(name)
    return differ


TILED_ID_COLUMNS = (
    "environment_id",
    "flow_id",
    "flow_unique_id",
    "reference_id",
    "connection_id",
    "solution_id",
    "object_id",
)


def tile_snapshot(snapshot: Snapshot, min_usages: int) -> Snapshot:
    """Copies of every environment until the usages table has ``min_usages`` rows.

    Each copy gets its own environment, flow, reference, connection and solution ids, as the
    environments of a real tenant have; names and owners repeat, as they do across dev/test/prod.
    """
    import pandas as pd

    copies = max(1, math.ceil(min_usages / max(1, len(snapshot.usages))))
    tables = {}
    for name, frame in snapshot.tables().items():
        parts = [frame]
        id_columns = [col for col in TILED_ID_COLUMNS if col in frame]
        for n in range(1, copies):
            part = frame.assign(**{col: frame[col] + f"-copy{n}" for col in id_columns})
            if name == "environments":
                part = part.assign(display_name=frame["display_name"] + f" (copy {n})")
            parts.append(part)
        tables[name] = pd.concat(parts, ignore_index=True)
    return Snapshot.from_tables(tables, dict(snapshot.metadata))


@contextlib.contextmanager
def timed(module: Any, name: str) -> Iterator[list[float]]:
    """Inside the block, add the wall seconds of each call of ``module.name`` to the list."""
    original = getattr(module, name)
    seconds = [0.0]

    def measured(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds[0] += time.perf_counter() - started

    setattr(module, name, measured)
    try:
        yield seconds
    finally:
        setattr(module, name, original)


def analysis_child(folder: str, rows: int) -> dict[str, Any]:
    """In a child process: analysis and outputs of the snapshot in ``folder`` tiled to ``rows``."""
    big = tile_snapshot(load_snapshot(folder), rows)
    gc.collect()
    result: dict[str, Any] = {
        "usages": len(big.usages),
        "flows": len(big.flows),
        "references": len(big.references),
        "environments": len(big.environments),
        "peak_rss_mb_before": peak_rss_mb(),
    }
    with tempfile.TemporaryDirectory(prefix="connref-analysis-") as runs:
        settings = Settings(run=RunSettings(runs))
        out = new_run_folder(runs)
        stages = Stages()
        with timed(pipeline, "build_plan") as plan_seconds:
            analysed = analyse(big, settings, out)
        stages.done("analyse")
        write_outputs_timed(out, big, analysed, settings, stages)
        # The analyse stage split: rules and consolidation, then the plan built from them.
        seconds = stages.seconds
        seconds = {
            "rules": seconds.pop("analyse") - plan_seconds[0],
            "build_plan": plan_seconds[0],
            **seconds,
        }
        result.update(
            findings=len(analysed.findings),
            seconds=seconds,
            rules_and_report_seconds=seconds["rules"] + seconds["report"],
            peak_rss_mb_after=stages.peak_rss_mb,
            total_seconds=sum(seconds.values()),
            report_mb=(out / "report.html").stat().st_size / 1024 / 1024,
        )
    return result


def analysis_benchmark(
    folder: Path, rows: int, *, timeout_s: float, memory_limit_mb: float
) -> dict[str, Any]:
    """Run ``analysis_child`` in a child process, stopped at a time or memory limit."""
    command = [sys.executable, __file__, "--analysis-of", str(folder), "--analysis-rows", str(rows)]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    peak = 0.0
    outcome = "finished"
    while child.poll() is None:
        peak = max(peak, _rss_of(child.pid))
        if peak > memory_limit_mb:
            outcome = f"stopped: resident memory passed {memory_limit_mb:.0f} MiB"
        elif time.perf_counter() - started > timeout_s:
            outcome = f"stopped: still running after {timeout_s:.0f} s"
        else:
            time.sleep(0.5)
            continue
        child.kill()
        break
    output, _ = child.communicate()
    seconds = time.perf_counter() - started
    if outcome == "finished" and child.returncode == 0 and output.strip():
        return {"outcome": outcome, **json.loads(output.strip().splitlines()[-1])}
    if outcome == "finished":
        outcome = f"failed with exit code {child.returncode}"
    return {"outcome": outcome, "seconds_until_stopped": seconds, "peak_rss_mb_seen": peak}


def _rss_of(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


# -- the benchmark --------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print the figures and the RESULT line; return the figures."""
    args = parse_args(argv)
    if args.analysis_of:
        figures = analysis_child(args.analysis_of, args.analysis_rows)
        print(json.dumps(figures))
        return figures
    size = SIZES[args.size]
    http = HttpSettings(
        parallel_environments=args.parallel_environments,
        concurrency_per_environment=args.concurrency_per_environment,
    )
    started = time.perf_counter()
    say(f"generating the {args.size} tenant and starting the simulator")
    simulator_class = InProcessSimulator if args.in_process else SubprocessSimulator
    sim = simulator_class(size, args.seed, args.latency_ms, args.clientdata)
    sim.hello["latency_ms"] = args.latency_ms
    figures: dict[str, Any] = {
        "size": args.size,
        "tenant": {**size, "clientdata": args.clientdata, "flows_total": sim.hello["flows"]},
        "latency_ms": args.latency_ms,
        "simulator": "in-process" if args.in_process else "subprocess",
        "http": dataclasses.asdict(http),
        "machine": machine(),
        "setup_seconds": time.perf_counter() - started,
    }
    with contextlib.ExitStack() as stack:
        stack.callback(sim.close)
        runs_dir = args.runs_dir or stack.enter_context(
            tempfile.TemporaryDirectory(prefix="connref-bench-")
        )
        settings = bench_settings(sim, Path(runs_dir), http)
        figures.update(benchmark(sim, settings, args))
    report(figures)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str), encoding="utf-8")
    return figures


def say(message: str) -> None:
    """A progress line on stderr (the figures go to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def benchmark(sim: Any, settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """Night one, bounds, naive client, optional incremental night and the analysis at scale."""
    out: dict[str, Any] = {}
    marks: dict[str, int] = {}
    latency = args.latency_ms / 1000.0
    say("night 1: snapshot, dependency checks, save, analysis, findings, plan, report")
    night = run_night(settings, mark=lambda stage: marks.update({stage: sim.call("log_length")}))
    served = sim.call("summary", since=marks["start"])
    bound = sim.call("bound", page_size=settings.http.page_size)
    snapshot = night["snapshot"]
    candidates = len(night["candidates"])
    read_envs = int((snapshot.environments["status"] != "skipped").sum())
    env_pages = bound["by_table"].get("environments", 1)
    seconds = night["seconds"]
    api_seconds = seconds["snapshot"] + seconds["dependency_checks"]
    conc = concurrency_bound(
        night["snapshot_requests"], read_envs, settings.http, latency, env_pages
    )
    conc_deps = dependency_bound(candidates, read_envs, settings.http, latency)
    out["night"] = {
        key: night[key]
        for key in (
            "seconds",
            "peak_rss_mb_after",
            "snapshot_cpu",
            "parse_workers",
            "requests",
            "snapshot_requests",
            "by_table",
            "bytes",
            "snapshot_bytes",
            "throttled",
            "modes",
            "dependency_checks",
        )
    }
    out["night"].update(
        candidates=candidates,
        flows=len(snapshot.flows),
        usages=len(snapshot.usages),
        references=len(snapshot.references),
        complete=snapshot.metadata.get("complete"),
        api_seconds=api_seconds,
        # This process's peak plus every parse worker at its peak at once: an upper bound.
        peak_rss_mb=max(night["peak_rss_mb_after"].values()) + _workers_rss(night),
        snapshot_peak_rss_mb=night["peak_rss_mb_after"]["snapshot"],
    )
    out["served"] = served
    out["lower_bound"] = {
        "paging": bound,
        "dependency_checks": candidates,
        "requests": bound["total"] + candidates,
        "concurrency_seconds": {"snapshot": conc, "dependency_checks": conc_deps},
    }
    say(f"night 1 took {api_seconds:.1f} s in the API stages; measuring the physical bound")
    # The stages overlap (dependency checks start as environments finish), so the physical
    # bound is one replay of every request of both, and each stage alone bounds the pair too.
    since, until = marks["start"], marks["dependency_checks"]
    physical = {
        variant: min(
            (
                physical_bound(sim, settings, since, until, args.physical_threads, inner)
                for _ in range(args.physical_repeats)
            ),
            key=lambda run: run["seconds"],
        )
        for variant, inner in (("p2", True), ("p1", False))
    }
    out["physical"] = physical
    bounds = {variant: max(conc, conc_deps, run["seconds"]) for variant, run in physical.items()}
    out["ratios"] = {
        "requests_ratio": night["requests"] / out["lower_bound"]["requests"],
        "snapshot_requests_ratio": night["snapshot_requests"] / bound["total"],
        "wall_ratio": api_seconds / bounds["p2"],
        "wall_ratio_p1": api_seconds / bounds["p1"],
        "bound_seconds": bounds["p2"],
        "bound_seconds_p1": bounds["p1"],
    }
    say("naive client")
    out["naive"] = run_naive(sim, settings, night, args, api_seconds)
    out["simulator_rusage"] = sim.call("rusage")
    if args.incremental:
        say("incremental night, then a full night to compare")
        out["incremental"] = incremental_nights(sim, settings, night, args, bound)
    if args.analysis_rows:
        say(f"analysis and outputs of {args.analysis_rows} usage rows (child process)")
        out["analysis"] = analysis_benchmark(
            night["folder"],
            args.analysis_rows,
            timeout_s=args.analysis_timeout,
            memory_limit_mb=args.analysis_memory_mb,
        )
    return out


def run_naive(
    sim: Any, settings: Settings, night: dict[str, Any], args: argparse.Namespace, ours: float
) -> dict[str, Any]:
    """The naive client on a sample of environments, extrapolated to all (it is sequential)."""
    limit = args.naive_environments
    if limit is None:
        limit = NAIVE_ENVIRONMENTS[args.size]
    envs = night["snapshot"].environments
    readable = envs.loc[envs["status"] != "skipped", "environment_id"].tolist()
    limit = min(limit or len(readable), len(readable))
    candidates: dict[str, list[str]] = {}
    pairs = night["candidates"][["environment_id", "reference_id"]].itertuples(index=False)
    for env_id, ref_id in pairs:
        candidates.setdefault(env_id, []).append(ref_id)
    log_start = sim.call("log_length")
    result = naive.run_naive(
        settings.tenant,
        settings.endpoints,
        secret=sim.hello["secret"],
        limit=limit,
        candidates=candidates,
    )
    served = sim.call("summary", since=log_start)
    env_requests = result.requests["environments"]
    scale = len(readable) / result.environments
    estimated_seconds = result.seconds * scale
    estimated_requests = env_requests + (result.total_requests - env_requests) * scale
    return {
        "environments_measured": result.environments,
        "environments_total": len(readable),
        "seconds_measured": result.seconds,
        "seconds_estimated": estimated_seconds,
        "requests_measured": result.total_requests,
        "requests_estimated": round(estimated_requests),
        "bytes_measured": result.bytes,
        "bytes_estimated": round(result.bytes * scale),
        "by_table": dict(result.requests),
        "throttled": served["throttled"],
        "flows": result.flows,
        "usages": result.usages,
        "speedup": estimated_seconds / ours,
    }


def incremental_nights(
    sim: Any,
    settings: Settings,
    first: dict[str, Any],
    args: argparse.Namespace,
    bound: dict[str, Any],
) -> dict[str, Any]:
    """Change a share of the flows, run an incremental night, then a full one to compare."""
    changes = sim.call("change", fraction=args.changed, seed=args.seed)
    log_start = sim.call("log_length")
    second = run_night(settings, analysis=False)
    served = sim.call("summary", since=log_start)
    full = run_night(settings, full=True, analysis=False)
    listing = sim.call("listing_bound", page_size=settings.http.page_size)
    # The flows page of each environment becomes an id listing, plus one page of changed flows
    # in each environment that has any (fewer than a page of them, at 1 %).
    expected = (
        bound["total"]
        - bound["by_table"]["workflows"]
        + listing
        + changes.get("environments_changed", 0)
    )
    return {
        "changes": changes,
        "modes": second["modes"],
        "snapshot_requests": second["snapshot_requests"],
        "snapshot_requests_bound": expected,
        "snapshot_bytes": second["snapshot_bytes"],
        # Snapshot and dependency checks overlap: their sum is the night's time at the API.
        "api_seconds": second["seconds"]["snapshot"] + second["seconds"]["dependency_checks"],
        "snapshot_peak_rss_mb": second["peak_rss_mb_after"]["snapshot"],
        "by_table": second["by_table"],
        "throttled": served["throttled"],
        "full_snapshot_requests": full["snapshot_requests"],
        "full_snapshot_bytes": full["snapshot_bytes"],
        "full_api_seconds": full["seconds"]["snapshot"] + full["seconds"]["dependency_checks"],
        "listing_requests_bound": listing,
        "full_requests_bound": bound["total"],
        "tables_differing_from_full": differing_tables(second["snapshot"], full["snapshot"]),
    }


def _workers_rss(night: dict[str, Any]) -> float:
    workers = night["parse_workers"]
    used = workers["pages_in_workers"] > 0
    return workers["processes"] * workers["peak_rss_mb"] if used else 0.0


def machine() -> dict[str, Any]:
    """This machine, for the figures table."""
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": sys.platform,
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory"] = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    return info


def report(figures: dict[str, Any]) -> None:
    """Print the figures for a person, then the RESULT line."""
    night, bound, ratios = figures["night"], figures["lower_bound"], figures["ratios"]
    naive_figures, physical = figures["naive"], figures["physical"]
    mb = 1024 * 1024
    print(f"== connref-cleanup benchmark: size {figures['size']} {figures['tenant']}")
    print(f"   latency {figures['latency_ms']} ms, limits on, simulator {figures['simulator']}")
    print(f"   machine {figures['machine']}")
    print(f"   http {figures['http']}")
    print("\nrequests per table              ours  lower bound  naive (est.)")
    tables = sorted(set(night["by_table"]) | set(bound["paging"]["by_table"]))
    naive_tables = naive_figures["by_table"]
    scale = naive_figures["environments_total"] / max(1, naive_figures["environments_measured"])
    for table in tables:
        ours = night["by_table"].get(table, 0)
        low = bound["paging"]["by_table"].get(table)
        if table == "RetrieveDependenciesForDelete":
            low = bound["dependency_checks"]
        naive_n = naive_tables.get(table, 0) * (1 if table == "environments" else scale)
        if table == "workflows":
            naive_n += naive_tables.get("workflows(id)", 0) * scale
        low_text = "-" if low is None else str(low)
        print(f"  {table:30} {ours:6} {low_text:>12} {naive_n:>13.0f}")
    print(
        f"  {'total':30} {night['requests']:6} {bound['requests']:>12} "
        f"{naive_figures['requests_estimated']:>13}"
    )
    snapshot_mib = night["snapshot_bytes"] / mb
    print(f"\nbytes received: {night['bytes'] / mb:.1f} MiB (snapshot {snapshot_mib:.1f} MiB)")
    print("wall seconds by stage: " + _pairs(night["seconds"], "{:.2f}"))
    print("peak RSS (MiB) after each stage: " + _pairs(night["peak_rss_mb_after"], "{:.0f}"))
    workers = night["parse_workers"]
    print(
        f"snapshot CPU of this process: {night['snapshot_cpu']:.2f} s; flow pages parsed in "
        f"{workers['processes']} worker process(es): {workers['pages_in_workers']} "
        f"({workers['cpu_seconds']:.2f} s CPU, peak RSS {workers['peak_rss_mb']:.0f} MiB each), "
        f"in the reading threads: {workers['pages_in_thread']}"
    )
    print(
        f"flows {night['flows']}, usages {night['usages']}, references {night['references']}, "
        f"unused candidates {night['candidates']}, complete {night['complete']}"
    )
    served = figures["served"]
    print(
        f"429 answers: job {night['throttled']}, simulator log {served['throttled']}; "
        f"statuses {served['statuses']}; peak concurrency in one environment "
        f"{served['peak_concurrency']}"
    )
    print(f"simulator process: {figures['simulator_rusage']}")
    conc = bound["concurrency_seconds"]
    print("\nbounds")
    print(f"  requests (paging + one per candidate): {bound['requests']}")
    print(f"  concurrency at {figures['latency_ms']} ms: " + _pairs(conc, "{:.2f} s"))
    for name, run in physical.items():
        what = "bodies + clientdata JSON" if run["inner"] else "bodies only"
        print(
            f"  physical {name} ({what}, {run['threads']} connections): {run['seconds']:.2f} s "
            f"(parse CPU {run['parse_cpu_seconds']:.2f} s, {run['bytes'] / mb:.1f} MiB, "
            f"{run['requests']} requests)"
        )
    print(
        f"  bound (max of the concurrency bounds and the physical one): "
        f"P2 {ratios['bound_seconds']:.2f} s, P1 {ratios['bound_seconds_p1']:.2f} s"
    )
    deps = night["dependency_checks"]
    print(
        f"\nAPI wall (snapshot + dependency checks): {night['api_seconds']:.2f} s; candidates "
        f"asked while reading {deps['early']}, after {deps['late']}, unneeded {deps['unneeded']}"
    )
    print(
        f"requests ratio {ratios['requests_ratio']:.3f} (snapshot alone "
        f"{ratios['snapshot_requests_ratio']:.3f}); wall ratio {ratios['wall_ratio']:.2f} against "
        f"P2, {ratios['wall_ratio_p1']:.2f} against P1"
    )
    print(
        f"naive: {naive_figures['environments_measured']} of "
        f"{naive_figures['environments_total']} environments in "
        f"{naive_figures['seconds_measured']:.1f} s -> {naive_figures['seconds_estimated']:.1f} s "
        f"for all, {naive_figures['requests_estimated']} requests; speedup "
        f"{naive_figures['speedup']:.1f}x"
    )
    if "incremental" in figures:
        inc = figures["incremental"]
        print(
            f"\nincremental night after {inc['changes']}: modes {inc['modes']}, "
            f"{inc['snapshot_requests']} requests (bound {inc['snapshot_requests_bound']}), "
            f"{inc['snapshot_bytes'] / mb:.2f} MiB, {inc['api_seconds']:.2f} s at the API; a full "
            f"night: {inc['full_snapshot_requests']} requests, "
            f"{inc['full_snapshot_bytes'] / mb:.1f} MiB, {inc['full_api_seconds']:.2f} s; "
            f"tables differing from the full read: {inc['tables_differing_from_full'] or 'none'}"
        )
    if "analysis" in figures:
        a = figures["analysis"]
        if a["outcome"] != "finished":
            print(f"\nanalysis at scale: {a}")
        else:
            print(
                f"\nanalysis of {a['usages']} usage rows ({a['flows']} flows, "
                f"{a['references']} references, {a['environments']} environments, "
                f"{a['findings']} findings): {_pairs(a['seconds'], '{:.1f} s')}; rules and "
                f"report {a['rules_and_report_seconds']:.1f} s; total "
                f"{a['total_seconds']:.1f} s; peak RSS {max(a['peak_rss_mb_after'].values()):.0f}"
                f" MiB; report.html {a['report_mb']:.0f} MiB"
            )
    print(
        f"RESULT requests_ratio={ratios['requests_ratio']:.3f} "
        f"wall_ratio={ratios['wall_ratio']:.2f} naive_speedup={naive_figures['speedup']:.1f} "
        f"peak_rss_mb={night['peak_rss_mb']:.0f}"
    )


def _pairs(mapping: dict[str, float], fmt: str) -> str:
    return ", ".join(f"{key} {fmt.format(value)}" for key, value in mapping.items())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--latency-ms", type=float, default=40.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--clientdata", choices=("small", "realistic"), default="realistic")
    parser.add_argument("--in-process", action="store_true", help="simulator in this process")
    parser.add_argument(
        "--parallel-environments", type=int, default=HttpSettings.parallel_environments
    )
    parser.add_argument(
        "--concurrency-per-environment", type=int, default=HttpSettings.concurrency_per_environment
    )
    parser.add_argument("--physical-threads", type=int, default=8)
    parser.add_argument(
        "--physical-repeats", type=int, default=2, help="replays per bound; the fastest counts"
    )
    parser.add_argument("--naive-environments", type=int, default=None)
    parser.add_argument("--incremental", action="store_true", help="measure a second night")
    parser.add_argument("--changed", type=float, default=0.01, help="share of flows changed")
    parser.add_argument("--analysis-rows", type=int, default=0)
    parser.add_argument("--analysis-timeout", type=float, default=900.0)
    parser.add_argument("--analysis-memory-mb", type=float, default=12 * 1024)
    parser.add_argument("--analysis-of", default="", help=argparse.SUPPRESS)
    parser.add_argument("--runs-dir", default="")
    parser.add_argument("--json", default="")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main()
