"""Benchmark the snapshot against the simulator and against the bounds the platform allows.

    python benchmarks/run.py --size small|large|huge [--latency-ms 40] [--seed N] [--incremental]
                             [--analysis-rows 1000000] [--json figures.json]

Starts the simulator (its own process by default, see ``simproc.py``) with a generated tenant,
the platform's service protection limits on and a per-request latency; runs the job's stages
(snapshot, dependency checks of unused candidates, save, analysis, report) timing each; then
measures the bounds and runs the naive reference client (``naive.py``) on the same tenant.

Bounds (see README.md for the reasoning):

* requests: per environment, ``ceil(rows / page)`` per table read, at least one per table, plus
  the tenant's environment list pages, plus one dependency check per unused candidate (the API
  has no collection form of RetrieveDependenciesForDelete);
* concurrency: requests x latency / the parallelism the configured pools and the per-environment
  limit allow (plus the unavoidable sequential round trips);
* physical: the time this machine needs to receive the same responses (same URLs, same headers,
  keep-alive, latency switched off) and ``json.loads`` them: the response bodies and the
  clientdata JSON documents inside them (P2), and the bodies alone (P1).

The last line is ``RESULT requests_ratio=... wall_ratio=... naive_speedup=... peak_rss_mb=...``.
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
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import naive  # noqa: E402 - benchmarks/ is a folder of scripts, not a package
import simproc  # noqa: E402

from cleanup.clients.auth import TokenProvider  # noqa: E402
from cleanup.clients.platform import build_clients  # noqa: E402
from cleanup.config import (  # noqa: E402
    EndpointSettings,
    HttpSettings,
    RunSettings,
    Settings,
    TenantSettings,
)
from cleanup.pipeline import analyse, write_outputs  # noqa: E402
from cleanup.rules import unused_candidates  # noqa: E402
from cleanup.snapshot.collect import (  # noqa: E402
    TABLES_PER_ENVIRONMENT,
    check_dependencies,
    take_snapshot,  # noqa: E402
)
from cleanup.snapshot.model import Snapshot  # noqa: E402
from cleanup.snapshot.store import new_run_folder, save_snapshot  # noqa: E402

SECRET_ENV = "CONNREF_BENCH_SECRET"
SIZES: dict[str, dict[str, Any]] = {
    "small": {"environments": 5, "flows": 30, "references": 12, "connections": 6},
    "large": {"environments": 200, "flows": 500, "references": 100, "connections": 10},
    "huge": {"environments": 600, "flows": 500, "references": 100, "connections": 10},
}
NAIVE_ENVIRONMENTS = {"small": None, "large": 8, "huge": 8}  # None: all of them
VOLATILE = {"requests", "seconds"}
SEQUENTIAL_ROUND_TRIPS = 2  # per environment: component type, then solution components


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


def run_night(settings: Settings, *, full: bool = False, analysis: bool = True) -> dict[str, Any]:
    """One run of the read-only pipeline's stages (as ``pipeline.run_once``), timed one by one."""
    folder = new_run_folder(settings.run.runs_dir)
    clients = build_clients(settings)
    cpu0, t0 = _cpu(), time.perf_counter()
    snapshot = take_snapshot(clients, run_id=folder.name, full=full)
    t1 = time.perf_counter()
    snapshot_cpu = _cpu() - cpu0
    candidates = unused_candidates(snapshot)
    checks = check_dependencies(clients, snapshot, candidates)
    t2 = time.perf_counter()
    snapshot = dataclasses.replace(snapshot, dependency_checks=checks)
    save_snapshot(snapshot, folder)
    t3 = time.perf_counter()
    times = {"snapshot": t1 - t0, "dependency_checks": t2 - t1, "save": t3 - t2}
    if analysis:
        result = analyse(snapshot, settings, folder)
        t4 = time.perf_counter()
        write_outputs(folder, snapshot, result, settings)
        times.update(analyse=t4 - t3, report=time.perf_counter() - t4)
    usage = clients.http.usage
    return {
        "folder": folder,
        "snapshot": snapshot,
        "candidates": candidates,
        "seconds": times,
        "snapshot_cpu": snapshot_cpu,
        "requests": sum(usage.requests.values()),
        "snapshot_requests": snapshot.metadata["requests"]["total"],
        "by_table": dict(usage.by_table),
        "bytes": sum(usage.bytes.values()),
        "snapshot_bytes": snapshot.metadata["bytes"],
        "throttled": usage.throttled,
        "modes": snapshot.metadata.get("modes", {}),
    }


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- bounds ---------------------------------------------------------------------------------------
def concurrency_bound(
    requests_count: int, environments: int, http: HttpSettings, latency_s: float, env_pages: int
) -> float:
    """Seconds the pools and the per-environment limit (52) allow at this latency."""
    per_env = min(http.concurrency_per_environment, TABLES_PER_ENVIRONMENT, 52)
    parallel = max(1, min(http.parallel_environments, environments) * per_env)
    chain = (env_pages + SEQUENTIAL_ROUND_TRIPS) * latency_s
    return max(requests_count * latency_s / parallel, chain)


def dependency_bound(
    candidates: int, environments: int, http: HttpSettings, latency_s: float
) -> float:
    """Seconds the dependency checks need at least (one round trip each, same limits)."""
    if not candidates:
        return 0.0
    workers = min(candidates, http.parallel_environments * http.concurrency_per_environment, 64)
    return math.ceil(candidates / max(1, min(workers, environments * 52))) * latency_s


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
    received = Counter[str]()
    parse_seconds = [0.0] * threads

    def worker(n: int) -> None:
        session = requests.Session()
        for url, scope, headers in jobs[n::threads]:
            # verify per request: a session-level CA would lose to REQUESTS_CA_BUNDLE
            body = session.get(
                url,
                headers={"Authorization": f"Bearer {tokens.token(scope)}", **headers},
                verify=settings.endpoints.ca_bundle,
            ).content
            started = time.thread_time()
            doc = json.loads(body)
            if inner:
                for row in doc.get("value", []) if isinstance(doc, dict) else []:
                    text = row.get("clientdata") if isinstance(row, dict) else None
                    if isinstance(text, str) and text:
                        with contextlib.suppress(ValueError):
                            json.loads(text)
            parse_seconds[n] += time.thread_time() - started
            received["bytes"] += len(body)
            received["requests"] += 1

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
        sim.call("latency", ms=settings_latency(sim))
    return {
        "threads": threads,
        "inner": inner,
        "seconds": seconds,
        "parse_cpu_seconds": sum(parse_seconds),
        "bytes": received["bytes"],
        "requests": received["requests"],
    }


def settings_latency(sim: Any) -> float:
    """The latency the benchmark runs at (restored after the physical measurement)."""
    return float(sim.hello.get("latency_ms", 0.0))


# -- comparisons ----------------------------------------------------------------------------------
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


def tile_snapshot(snapshot: Snapshot, min_usages: int) -> Snapshot:
    """Copies of every environment (ids suffixed) until the usages table has ``min_usages`` rows."""
    import pandas as pd

    copies = max(1, math.ceil(min_usages / max(1, len(snapshot.usages))))
    tables = {}
    for name, frame in snapshot.tables().items():
        parts = [frame]
        for n in range(1, copies):
            part = frame.assign(environment_id=frame["environment_id"] + f"-copy{n}")
            if name == "environments":
                part = part.assign(display_name=frame["display_name"] + f" (copy {n})")
            parts.append(part)
        tables[name] = pd.concat(parts, ignore_index=True)
    return Snapshot.from_tables(tables, dict(snapshot.metadata))


def analysis_benchmark(snapshot: Snapshot, settings: Settings, rows: int) -> dict[str, Any]:
    """Time analysis and report on a snapshot tiled to ``rows`` usage rows."""
    big = tile_snapshot(snapshot, rows)
    with tempfile.TemporaryDirectory(prefix="connref-analysis-") as runs:
        local = dataclasses.replace(settings, run=RunSettings(runs))
        folder = new_run_folder(runs)
        t0 = time.perf_counter()
        result = analyse(big, local, folder)
        t1 = time.perf_counter()
        write_outputs(folder, big, result, local)
        t2 = time.perf_counter()
    return {
        "usages": len(big.usages),
        "flows": len(big.flows),
        "references": len(big.references),
        "environments": len(big.environments),
        "findings": len(result.findings),
        "analyse_seconds": t1 - t0,
        "report_seconds": t2 - t1,
        "total_seconds": t2 - t0,
    }


# -- the benchmark --------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print the figures and the RESULT line; return the figures."""
    args = parse_args(argv)
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
    runs_dir = Path(args.runs_dir or tempfile.mkdtemp(prefix="connref-bench-"))
    try:
        settings = bench_settings(sim, runs_dir, http)
        figures.update(benchmark(sim, settings, args))
    finally:
        sim.close()
    report(figures)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str), encoding="utf-8")
    return figures


def say(message: str) -> None:
    """A progress line on stderr (the figures go to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def benchmark(sim: Any, settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """Night one, bounds, naive client, optional incremental night and 1M-row analysis."""
    out: dict[str, Any] = {}
    say("night 1: snapshot, dependency checks, analysis, report")
    latency = args.latency_ms / 1000.0
    log_start = sim.call("log_length")
    night = run_night(settings)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    log_end = sim.call("log_length")
    served = sim.call("summary", since=log_start)
    bound = sim.call("bound", page_size=settings.http.page_size)
    snapshot = night["snapshot"]
    candidates = len(night["candidates"])
    read_envs = int((snapshot.environments["status"] != "skipped").sum())
    env_pages = bound["by_table"].get("environments", 1)
    api_seconds = night["seconds"]["snapshot"] + night["seconds"]["dependency_checks"]
    conc = concurrency_bound(
        night["snapshot_requests"], read_envs, settings.http, latency, env_pages
    )
    conc_deps = dependency_bound(candidates, read_envs, settings.http, latency)
    out["night"] = {
        key: night[key]
        for key in (
            "seconds",
            "snapshot_cpu",
            "requests",
            "snapshot_requests",
            "by_table",
            "bytes",
            "snapshot_bytes",
            "throttled",
            "modes",
        )
    }
    out["night"].update(
        candidates=candidates,
        flows=len(snapshot.flows),
        usages=len(snapshot.usages),
        references=len(snapshot.references),
        complete=snapshot.metadata.get("complete"),
        api_seconds=api_seconds,
        peak_rss_mb=peak_rss,
    )
    out["served"] = served
    out["lower_bound"] = {
        "paging": bound,
        "dependency_checks": candidates,
        "requests": bound["total"] + candidates,
        "concurrency_seconds": conc + conc_deps,
    }
    say(f"night 1 done in {api_seconds:.1f} s (API stages); measuring the physical bound")
    physical = []
    for threads, inner in ((1, True), (4, True), (4, False), (1, False)):
        physical.append(physical_bound(sim, settings, log_start, log_end, threads, inner))
    p2 = min(p["seconds"] for p in physical if p["inner"])
    p1 = min(p["seconds"] for p in physical if not p["inner"])
    out["physical"] = {"runs": physical, "p2_seconds": p2, "p1_seconds": p1}
    bound_seconds = max(conc + conc_deps, p2)
    out["ratios"] = {
        "requests_ratio": night["requests"] / out["lower_bound"]["requests"],
        "snapshot_requests_ratio": night["snapshot_requests"] / bound["total"],
        "wall_ratio": api_seconds / bound_seconds,
        "wall_ratio_p1": api_seconds / max(conc + conc_deps, p1),
        "bound_seconds": bound_seconds,
    }
    say("naive client")
    out["naive"] = run_naive(sim, settings, night, args, api_seconds)
    out["simulator_rusage"] = sim.call("rusage")
    if args.incremental:
        say("incremental night, then a full night to compare")
        out["incremental"] = incremental_nights(sim, settings, night, args)
    if args.analysis_rows:
        say(f"analysis and report of {args.analysis_rows} usage rows")
        out["analysis"] = analysis_benchmark(snapshot, settings, args.analysis_rows)
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
    for env_id, ref_id in night["candidates"][["environment_id", "reference_id"]].itertuples(
        index=False
    ):
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
    sim: Any, settings: Settings, first: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """Change a share of the flows, run an incremental night, then a full one to compare."""
    changes = sim.call("change", fraction=args.changed, seed=args.seed)
    log_start = sim.call("log_length")
    second = run_night(settings, analysis=False)
    served = sim.call("summary", since=log_start)
    full = run_night(settings, full=True, analysis=False)
    bound = sim.call("bound", page_size=settings.http.page_size)
    listing = sim.call("listing_bound", page_size=settings.http.page_size)
    differ = differing_tables(second["snapshot"], full["snapshot"])
    return {
        "changes": changes,
        "modes": second["modes"],
        "snapshot_requests": second["snapshot_requests"],
        "snapshot_bytes": second["snapshot_bytes"],
        "snapshot_seconds": second["seconds"]["snapshot"],
        "by_table": second["by_table"],
        "throttled": served["throttled"],
        "full_snapshot_requests": full["snapshot_requests"],
        "full_snapshot_bytes": full["snapshot_bytes"],
        "full_snapshot_seconds": full["seconds"]["snapshot"],
        "first_snapshot_seconds": first["seconds"]["snapshot"],
        "listing_requests_bound": listing,
        "full_requests_bound": bound["total"],
        "tables_differing_from_full": differ,
    }


def machine() -> dict[str, Any]:
    """This machine, for the figures table."""
    memory = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "memory": memory,
        "cpu": cpu,
        "python": sys.version.split()[0],
        "platform": sys.platform,
    }


def report(figures: dict[str, Any]) -> None:
    """Print the figures for a person, then the RESULT line."""
    night, bound, ratios = figures["night"], figures["lower_bound"], figures["ratios"]
    naive_figures, physical = figures["naive"], figures["physical"]
    mb = 1024 * 1024
    print(f"== connref-cleanup benchmark: size {figures['size']} {figures['tenant']}")
    print(f"   latency {figures['latency_ms']} ms, limits on, simulator {figures['simulator']}")
    print(f"   machine {figures['machine']}")
    print(f"   http {figures['http']}")
    print("\nrequests per table        ours   lower bound   naive (est.)")
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
        print(f"  {table:28} {ours:7} {low if low is not None else '-':>12} {naive_n:>13.0f}")
    print(
        f"  {'total':28} {night['requests']:7} {bound['requests']:>12} "
        f"{naive_figures['requests_estimated']:>13}"
    )
    print(
        f"\nbytes received: {night['bytes'] / mb:.1f} MiB "
        f"(snapshot {night['snapshot_bytes'] / mb:.1f} MiB)"
    )
    seconds = night["seconds"]
    print("wall seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in seconds.items()))
    print(f"snapshot CPU of this process: {night['snapshot_cpu']:.2f} s")
    print(
        f"flows {night['flows']}, usages {night['usages']}, references {night['references']}, "
        f"unused candidates {night['candidates']}, complete {night['complete']}"
    )
    print(
        f"429 answers: job {night['throttled']} (simulator saw {figures['served']['throttled']}), "
        f"peak concurrency per environment {figures['served']['peak_concurrency']}"
    )
    print(
        f"peak RSS of the job: {night['peak_rss_mb']:.0f} MiB; simulator process "
        f"{figures['simulator_rusage']['peak_rss_mb']:.0f} MiB"
    )
    print("\nbounds")
    print(f"  requests (paging + one per candidate): {bound['requests']}")
    print(f"  concurrency at {figures['latency_ms']} ms: {bound['concurrency_seconds']:.2f} s")
    for run in physical["runs"]:
        what = "bodies + clientdata JSON" if run["inner"] else "bodies only"
        print(
            f"  receive + json.loads ({what}, {run['threads']} thread(s)): {run['seconds']:.2f} s "
            f"(json.loads CPU {run['parse_cpu_seconds']:.2f} s, {run['bytes'] / mb:.1f} MiB)"
        )
    print(
        f"  physical bound P2 {physical['p2_seconds']:.2f} s, P1 (bodies only) "
        f"{physical['p1_seconds']:.2f} s"
    )
    print(f"\napi wall (snapshot + dependency checks): {night['api_seconds']:.2f} s")
    print(
        f"requests ratio {ratios['requests_ratio']:.3f} (snapshot alone "
        f"{ratios['snapshot_requests_ratio']:.3f}); wall ratio {ratios['wall_ratio']:.2f} "
        f"(against P1: {ratios['wall_ratio_p1']:.2f})"
    )
    print(
        f"naive: {naive_figures['environments_measured']} of {naive_figures['environments_total']}"
        f" environments in {naive_figures['seconds_measured']:.1f} s -> "
        f"{naive_figures['seconds_estimated']:.1f} s estimated, "
        f"{naive_figures['requests_estimated']} requests; speedup {naive_figures['speedup']:.1f}x"
    )
    if "incremental" in figures:
        inc = figures["incremental"]
        print(
            f"\nincremental night after {inc['changes']}: modes {inc['modes']}, "
            f"{inc['snapshot_requests']} requests, {inc['snapshot_bytes'] / mb:.2f} MiB, "
            f"{inc['snapshot_seconds']:.2f} s (full night: {inc['full_snapshot_requests']} "
            f"requests, {inc['full_snapshot_bytes'] / mb:.1f} MiB, "
            f"{inc['full_snapshot_seconds']:.2f} s); tables differing from a full read: "
            f"{inc['tables_differing_from_full'] or 'none'}"
        )
    if "analysis" in figures:
        a = figures["analysis"]
        print(
            f"\nanalysis of {a['usages']} usage rows ({a['flows']} flows, {a['references']} "
            f"references, {a['environments']} environments): analyse {a['analyse_seconds']:.1f} s"
            f" + outputs/report {a['report_seconds']:.1f} s = {a['total_seconds']:.1f} s"
        )
    print(
        f"RESULT requests_ratio={ratios['requests_ratio']:.3f} "
        f"wall_ratio={ratios['wall_ratio']:.2f}"
        f" naive_speedup={naive_figures['speedup']:.1f} peak_rss_mb={night['peak_rss_mb']:.0f}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--latency-ms", type=float, default=40.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--clientdata", choices=("small", "realistic"), default="realistic")
    parser.add_argument("--in-process", action="store_true", help="simulator on this process")
    parser.add_argument(
        "--parallel-environments", type=int, default=HttpSettings.parallel_environments
    )
    parser.add_argument(
        "--concurrency-per-environment", type=int, default=HttpSettings.concurrency_per_environment
    )
    parser.add_argument("--naive-environments", type=int, default=None)
    parser.add_argument("--incremental", action="store_true", help="measure a second night")
    parser.add_argument("--changed", type=float, default=0.01, help="share of flows changed")
    parser.add_argument("--analysis-rows", type=int, default=0)
    parser.add_argument("--runs-dir", default="")
    parser.add_argument("--json", default="")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main()
