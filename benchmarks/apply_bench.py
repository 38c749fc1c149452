"""Benchmark ``apply`` on a generated plan of about 1,000 actions against the simulator.

    python benchmarks/apply_bench.py [--actions 1000] [--latency-ms 40] [--concurrency 1 4 8]
                                     [--on-share 0.5] [--json figures.json]

The tenant has one environment: a surviving connection reference and ``L`` duplicates of it
(same connector, same connection), and ``N`` cloud flows each using one duplicate, a share of
them on. The real pipeline plans it (``N`` rewires + ``L`` deletes, ``N + L`` = ``--actions``),
then ``apply`` runs it once per ``--concurrency`` value on a fresh copy of the tenant. The
simulator runs in its own process (as a remote service would, so its CPU does not share the
client's GIL), with the Dataverse service protection limits on and ``--latency-ms`` per request.

For each run it reports the requests by method, the writes, the wall time, the client's CPU
time, and the latency bound: the requests apply must make, times the latency, divided by the
objects in flight (apply changes one flow with a chain of dependent requests: read, off, patch,
on, verify; so one object is never faster than its chain).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cleanup.apply import ApplySettings, apply_plan  # noqa: E402 - after the path setup
from cleanup.config import (  # noqa: E402
    EndpointSettings,
    HttpSettings,
    RunSettings,
    Settings,
    TenantSettings,
)
from cleanup.pipeline import run_once  # noqa: E402
from cleanup.plan import PlanSettings, load_plan  # noqa: E402

SECRET_ENV = "CONNREF_BENCH_SECRET"
SECRET = "apply-bench-secret"
TENANT_ID = "5a1e0000-0000-4000-8000-000000000001"
CLIENT_ID = "5a1e0000-0000-4000-8000-000000000002"
ENV_ID = "5a1e0000-0000-4000-8000-000000000003"
DATAVERSE = "shared_commondataserviceforapps"


# ---------------------------------------------------------------------------------------------
# The simulator process


def build_tenant(flows: int, leftovers: int, on_share: float) -> Any:
    """One environment: a survivor, ``leftovers`` duplicates, ``flows`` flows using them."""
    import random

    from cleanup.simulator.flowshapes import Use, build_clientdata
    from cleanup.simulator.tenant import (
        Connection,
        ConnectionReference,
        Creator,
        Environment,
        Flow,
        Tenant,
        User,
    )

    rng = random.Random(42)
    creator = Creator("5a1e0000-0000-4000-8000-0000000000c1", "Automation", "ServicePrincipal")
    conn = Connection("b" * 32, DATAVERSE, "SP", creator, parameter_set="oauthSP")
    connector = f"/providers/Microsoft.PowerApps/apis/{DATAVERSE}"
    names = ["bench_DataverseSP"] + [
        f"new_sharedcommondataserviceforapps_{i:05x}" for i in range(1, leftovers + 1)
    ]
    displays = ["Bench – Dataverse – Service Principal"] + [f"Dup {i}" for i in names[1:]]
    refs = [
        ConnectionReference(_guid(1, i), n, d, connector, conn.name)
        for i, (n, d) in enumerate(zip(names, displays, strict=True))
    ]
    flow_rows = []
    for i in range(flows):
        uses = [Use(DATAVERSE, names[1 + i % leftovers], DATAVERSE, action_count=2)]
        on = rng.random() < on_share
        data = build_clientdata(uses, random.Random(i))
        flow_rows.append(Flow(_guid(2, i), f"Flow {i}", data, state=int(on), status=int(on) + 1))
    app = User(_guid(3, 0), "# connref-cleanup", application_id=CLIENT_ID, access_mode=4)
    env = Environment(ENV_ID, "Bench", org_name="bench", users=[app], connections=[conn])
    env.references, env.flows = refs, flow_rows
    return Tenant(TENANT_ID, CLIENT_ID, [env])


def _guid(kind: int, n: int) -> str:
    return f"5a1e{kind:04d}-0000-4000-8000-{n:012d}"


def serve(pipe: Pipe, flows: int, leftovers: int, on_share: float, latency_ms: float) -> None:
    """Run the simulator until told to stop; answer "stats" with the request log summary."""
    from cleanup.simulator.faults import Faults
    from cleanup.simulator.server import Simulator

    tenant = build_tenant(flows, leftovers, on_share)
    faults = Faults(enforce_limits=True)
    with Simulator(tenant, SECRET, faults=faults, latency_ms=latency_ms) as sim:
        pipe.send(sim.endpoints())
        while True:
            command = pipe.recv()
            if command == "reset-log":
                sim.reset_log()
                pipe.send("ok")
            elif command == "stats":
                pipe.send(_stats(sim))
            else:
                pipe.send("bye")
                return


def _stats(sim: Any) -> dict[str, Any]:
    log = [r for r in sim.request_log if r.service == "dataverse"]
    env = sim.tenant.environments[0]
    return {
        "by_method": dict(Counter(r.method for r in log)),
        "by_status": dict(Counter(str(r.status) for r in log)),
        "throttled": sum(1 for r in log if r.status == 429),
        "flows_on": sum(1 for f in env.flows if f.state == 1),
        "references": len(env.references),
        "server_ms": round(sum(r.duration_ms for r in log), 1),
    }


class SimProcess:
    """The simulator in a child process."""

    def __init__(self, flows: int, leftovers: int, on_share: float, latency_ms: float) -> None:
        self.pipe, child = mp.Pipe()
        args = (child, flows, leftovers, on_share, latency_ms)
        self.process = mp.get_context("spawn").Process(target=serve, args=args, daemon=True)
        self.process.start()
        self.endpoints: dict[str, str] = self.pipe.recv()

    def call(self, command: str) -> Any:
        """Send one command and return its answer."""
        self.pipe.send(command)
        return self.pipe.recv()

    def stop(self) -> None:
        """Stop the simulator process."""
        self.call("stop")
        self.process.join(10)


# ---------------------------------------------------------------------------------------------
# The client side


def settings_for(endpoints: dict[str, str], runs: Path, concurrency: int) -> Settings:
    """Settings pointing at the simulator (the secret comes from the environment)."""
    tenant = TenantSettings(TENANT_ID, CLIENT_ID, "client-secret", SECRET_ENV)
    http = HttpSettings(concurrency_per_environment=max(8, concurrency))
    plan = PlanSettings(max_actions_per_environment=100_000)
    return Settings(
        tenant=tenant,
        endpoints=EndpointSettings(**endpoints),
        http=http,
        run=RunSettings(str(runs)),
        plan=plan,
    )


def one_run(args: argparse.Namespace, concurrency: int, root: Path) -> dict[str, Any]:
    """Plan a fresh tenant and apply it at one concurrency; return the figures."""
    leftovers = max(1, round(args.actions * args.leftover_share))
    flows = args.actions - leftovers
    sim = SimProcess(flows, leftovers, args.on_share, args.latency_ms)
    try:
        settings = settings_for(sim.endpoints, root / f"runs-{concurrency}", concurrency)
        started = time.perf_counter()
        run = run_once(settings, send_mail=False)
        plan_seconds = time.perf_counter() - started
        plan = load_plan(run.folder / "plan.json")
        flows_on_before = sim.call("stats")["flows_on"]
        sim.call("reset-log")
        limits = ApplySettings(
            allow_delete=True,
            allow_all_environments=True,
            max_actions_per_run=100_000,
            max_actions_per_environment=100_000,
            concurrency=concurrency,
        )
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        with timed_fsync() as fsyncs:
            result = apply_plan(run.folder, settings, assume_yes=True, apply_settings=limits)
        wall = time.perf_counter() - started
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        stats = sim.call("stats")
    finally:
        sim.stop()
    requests = sum(stats["by_method"].values())
    latency_bound = requests * args.latency_ms / 1000 / concurrency
    return {
        "concurrency": concurrency,
        "actions": len(plan.actions),
        "rewires": sum(a.kind == "rewire-flow-key" for a in plan.actions),
        "deletes": sum(a.kind == "delete-reference" for a in plan.actions),
        "plan_seconds": round(plan_seconds, 2),
        "outcomes": result.counts(),
        "exit_code": result.exit_code,
        "requests": requests,
        "requests_by_method": stats["by_method"],
        "writes": result.requests.get("writes"),
        "throttled": stats["throttled"],
        "wall_seconds": round(wall, 2),
        "ms_per_action": round(wall * 1000 / max(1, len(plan.actions)), 1),
        "client_cpu_seconds": round(
            (cpu_after.ru_utime - cpu.ru_utime) + (cpu_after.ru_stime - cpu.ru_stime), 2
        ),
        "latency_bound_seconds": round(latency_bound, 2),
        "server_seconds": round(stats["server_ms"] / 1000, 2),
        "server_ms_per_request_beyond_latency": round(
            stats["server_ms"] / max(1, requests) - args.latency_ms, 2
        ),
        "fsyncs": fsyncs["count"],
        "fsync_seconds": round(fsyncs["seconds"], 2),
        "phase_seconds": phase_seconds(result.folder / "journal.jsonl"),
        "wall_over_latency_bound": round(wall / latency_bound, 2) if latency_bound else None,
        "flows_on_before": flows_on_before,
        "flows_on_after": stats["flows_on"],
        "references_left": stats["references"],
    }


@contextlib.contextmanager
def timed_fsync() -> Iterator[dict[str, float]]:
    """Count and time every fsync the apply makes (journal records, backups, directories)."""
    figures = {"count": 0, "seconds": 0.0}
    real = os.fsync

    def fsync(fd: int) -> None:
        started = time.perf_counter()
        real(fd)
        figures["count"] += 1
        figures["seconds"] += time.perf_counter() - started

    os.fsync = fsync  # type: ignore[assignment]
    try:
        yield figures
    finally:
        os.fsync = real  # type: ignore[assignment]


def phase_seconds(journal: Path) -> dict[str, float]:
    """Seconds per phase (flows, deletes), from the journal's own timestamps."""
    marks = []
    for line in journal.read_text().splitlines():
        record = json.loads(line)
        if record["event"] in ("phase", "finished"):
            marks.append((record.get("step") or "end", datetime.fromisoformat(record["ts"])))
    return {
        name: round((marks[i + 1][1] - when).total_seconds(), 2)
        for i, (name, when) in enumerate(marks[:-1])
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one RESULT line per concurrency."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actions", type=int, default=1000)
    parser.add_argument("--leftover-share", type=float, default=0.1)
    parser.add_argument("--on-share", type=float, default=0.5)
    parser.add_argument("--latency-ms", type=float, default=40.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ[SECRET_ENV] = SECRET
    figures = []
    with tempfile.TemporaryDirectory(prefix="apply-bench-") as tmp:
        for concurrency in args.concurrency:
            row = one_run(args, concurrency, Path(tmp))
            figures.append(row)
            print(
                "RESULT "
                + " ".join(
                    f"{k}={row[k]}"
                    for k in (
                        "concurrency",
                        "actions",
                        "requests",
                        "writes",
                        "wall_seconds",
                        "ms_per_action",
                        "latency_bound_seconds",
                        "wall_over_latency_bound",
                        "client_cpu_seconds",
                        "fsync_seconds",
                        "server_ms_per_request_beyond_latency",
                        "throttled",
                        "exit_code",
                    )
                ),
                flush=True,
            )
    if args.json:
        args.json.write_text(
            json.dumps({"args": vars(args) | {"json": str(args.json)}, "runs": figures}, indent=2)
        )
    else:
        print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
