"""The simulator in its own process, driven over stdin/stdout by ``benchmarks/run.py``.

Serving large pages costs CPU (row building, ``json.dumps``, TLS). In the benchmark's own
process that work would share the GIL with the client under test and the figures would mix the
two; here the simulator has an interpreter of its own, as a remote service would.

Protocol: the first stdout line is a JSON object with the endpoints, tenant ids and secret; after
that every stdin line is one JSON command and gets one JSON answer line (see ``COMMANDS``).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import random
import resource
import secrets
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cleanup.clients.dataverse import (  # noqa: E402 - after the path setup
    CLOUD_FLOW_FILTER,
    WORKFLOW_COMPONENT_TYPE,
)
from cleanup.simulator.dataverse_tables import ENTITY_SETS  # noqa: E402
from cleanup.simulator.faults import Faults  # noqa: E402
from cleanup.simulator.generator import generate_tenant  # noqa: E402
from cleanup.simulator.messages import utc_now_iso  # noqa: E402
from cleanup.simulator.odata import parse_query  # noqa: E402
from cleanup.simulator.powerapps import DEFAULT_PAGE_SIZE as CONNECTIONS_PAGE  # noqa: E402
from cleanup.simulator.server import Simulator  # noqa: E402
from cleanup.simulator.tenant import Environment, Flow, Tenant  # noqa: E402

# The Dataverse reads of one environment's snapshot: (entity set, $filter). The connection
# reference component type is filled in per environment.
DATAVERSE_READS: tuple[tuple[str, str], ...] = (
    ("connectionreferences", ""),
    ("workflows", CLOUD_FLOW_FILTER),
    ("solutions", ""),
    ("publishers", ""),
    ("solutioncomponentdefinitions", "primaryentityname eq 'connectionreference'"),
    ("solutioncomponents", "componenttype eq {flow} or componenttype eq {reference}"),
    ("systemusers", ""),
    ("teams", ""),
)


def matching_rows(env: Environment, entity_set: str, filter_: str) -> int:
    """How many rows of an entity set the simulator would return for ``$filter``."""
    es = ENTITY_SETS[entity_set]
    params = {"$filter": filter_} if filter_ else {}
    query = parse_query(params, es.columns, es.entity)
    rows = es.build(env)
    return sum(1 for r in rows if query.predicate is None or query.predicate(r))


def lower_bound(tenant: Tenant, page_size: int, bap_page_size: int) -> dict[str, Any]:
    """The fewest requests the paging allows for one full snapshot, per environment and table.

    Every collection costs ``ceil(rows / page)`` requests and at least one (an empty answer is
    still an answer). The filters are the snapshot's own, so the count is of what it must read.
    """
    by_table: Counter[str] = Counter()
    by_environment: dict[str, int] = {}
    rows: Counter[str] = Counter()
    by_table["environments"] = max(1, math.ceil(len(tenant.environments) / bap_page_size))
    for env in tenant.environments:
        if not env.has_dataverse or not env.readable:
            continue
        total = 0
        for entity_set, template in DATAVERSE_READS:
            filter_ = template.format(
                flow=WORKFLOW_COMPONENT_TYPE, reference=env.reference_component_type
            )
            n = matching_rows(env, entity_set, filter_)
            pages = max(1, math.ceil(n / page_size))
            by_table[entity_set] += pages
            rows[entity_set] += n
            total += pages
        pages = max(1, math.ceil(len(env.connections) / CONNECTIONS_PAGE))
        by_table["connections"] += pages
        rows["connections"] += len(env.connections)
        by_environment[env.id] = total + pages
    return {
        "total": sum(by_table.values()),
        "by_table": dict(by_table),
        "by_environment": by_environment,
        "rows": dict(rows),
    }


def flow_listing_bound(tenant: Tenant, page_size: int) -> int:
    """Requests for listing every environment's cloud flow ids (the incremental night's scan)."""
    total = 0
    for env in tenant.environments:
        if env.has_dataverse and env.readable:
            n = matching_rows(env, "workflows", CLOUD_FLOW_FILTER)
            total += max(1, math.ceil(n / page_size))
    return total


def cloud_flows(env: Environment) -> list[Flow]:
    """The environment's cloud flows (category 5, type 1)."""
    return [f for f in env.flows if f.category == 5 and f.type == 1]


def change_flows(
    tenant: Tenant, fraction: float, seed: int, *, added: float = 0.0, deleted: float = 0.0
) -> dict[str, int]:
    """Change, add and delete cloud flows the way makers do between two nights.

    A change swaps the flow's clientdata for another flow's of the same environment (so its
    references really change) and bumps ``modified_on`` and ``version`` as Dataverse does.
    """
    rng = random.Random(f"connref-cleanup/bench-mutation/{seed}")
    now = utc_now_iso()
    counts = Counter[str]()
    for env in tenant.environments:
        flows = cloud_flows(env)
        if not env.has_dataverse or len(flows) < 2:
            continue
        picked = rng.sample(flows, max(1, round(len(flows) * fraction)) if fraction else 0)
        for flow in picked:
            donor = rng.choice([f for f in flows if f.clientdata != flow.clientdata] or flows)
            flow.clientdata = donor.clientdata
            flow.modified_on, flow.version = now, flow.version + 1
            counts["changed"] += 1
        counts["environments_changed"] += bool(picked) or bool(added)
        for victim in rng.sample(flows, round(len(flows) * deleted)):
            env.flows.remove(victim)
            counts["deleted"] += 1
        for _ in range(round(len(flows) * added)):
            donor = rng.choice(flows)
            env.flows.append(
                Flow(
                    id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    name=f"{donor.name} (copy)",
                    clientdata=donor.clientdata,
                    owner_id=donor.owner_id,
                    owner_type=donor.owner_type,
                    created_on=now,
                    modified_on=now,
                    version=1,
                )
            )
            counts["added"] += 1
    return dict(counts)


def log_summary(sim: Simulator, since: int) -> dict[str, Any]:
    """Counts of the request log from entry ``since`` on (identity requests apart)."""
    entries = sim.request_log[since:]
    by_table: Counter[str] = Counter()
    bytes_by_table: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    identity = 0
    for entry in entries:
        if entry.service == "identity":
            identity += 1
            continue
        key = str(entry.table)
        by_table[key] += 1
        bytes_by_table[key] += entry.bytes_sent
        statuses[str(entry.status)] += 1
    return {
        "next": since + len(entries),
        "requests": sum(by_table.values()),
        "identity_requests": identity,
        "by_table": dict(by_table),
        "bytes": sum(bytes_by_table.values()),
        "bytes_by_table": dict(bytes_by_table),
        "statuses": dict(statuses),
        "throttled": statuses.get("429", 0),
        "peak_concurrency": sim.peak_concurrency(),
    }


def log_requests(sim: Simulator, since: int, until: int | None = None) -> list[dict[str, Any]]:
    """The successful non-identity GETs among log entries ``since:until``, to fetch again."""
    return [
        {"path": e.path, "query": e.query, "service": e.service, "bytes": e.bytes_sent}
        for e in sim.request_log[since:until]
        if e.service != "identity" and e.method == "GET" and e.status == 200
    ]


def serve(args: argparse.Namespace) -> None:
    """Generate the tenant, start the simulator and answer commands until ``quit``."""
    tenant = generate_tenant(
        seed=args.seed,
        environments=args.environments,
        flows_per_environment=args.flows,
        references_per_environment=args.references,
        connections_per_environment=args.connections,
        clientdata_size=args.clientdata,
    )
    # The tenant lives as long as the process: keep the collector from walking its millions
    # of objects on every full collection (a real service's data is not on its Python heap).
    gc.freeze()
    secret = secrets.token_urlsafe(24)
    faults = Faults(enforce_limits=True)
    sim = Simulator(tenant, client_secret=secret, faults=faults, latency_ms=args.latency_ms)
    sim.start()
    hello = {
        "endpoints": sim.endpoints(),
        "tenant_id": tenant.tenant_id,
        "client_id": tenant.client_id,
        "secret": secret,
        "environments": len(tenant.environments),
        "flows": sum(len(cloud_flows(e)) for e in tenant.environments),
        "clientdata_bytes": sum(
            len(f.clientdata or "") for e in tenant.environments for f in e.flows
        ),
    }
    print(json.dumps(hello), flush=True)
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            command = json.loads(line)
            answer = run_command(sim, command)
            print(json.dumps(answer), flush=True)
            if command["cmd"] == "quit":
                break
    finally:
        sim.stop()


def run_command(sim: Simulator, command: dict[str, Any]) -> Any:
    """Answer one command of the protocol."""
    name = command["cmd"]
    if name == "summary":
        return log_summary(sim, int(command.get("since", 0)))
    if name == "requests":
        return log_requests(sim, int(command.get("since", 0)), command.get("until"))
    if name == "log_length":
        return len(sim.request_log)
    if name == "latency":
        sim.latency_ms = float(command["ms"])
        return sim.latency_ms
    if name == "bound":
        return lower_bound(sim.tenant, int(command["page_size"]), sim.faults.bap_page_size)
    if name == "listing_bound":
        return flow_listing_bound(sim.tenant, int(command["page_size"]))
    if name == "change":
        return change_flows(
            sim.tenant,
            float(command["fraction"]),
            int(command.get("seed", 0)),
            added=float(command.get("added", 0.0)),
            deleted=float(command.get("deleted", 0.0)),
        )
    if name == "rusage":
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "peak_rss_mb": usage.ru_maxrss / 1024,
            "user": usage.ru_utime,
            "system": usage.ru_stime,
        }
    if name == "quit":
        return "bye"
    return {"error": f"unknown command {name!r}"}


def main() -> None:
    """Parse the arguments and serve."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--environments", type=int, required=True)
    parser.add_argument("--flows", type=int, required=True)
    parser.add_argument("--references", type=int, required=True)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--clientdata", choices=("small", "realistic"), default="realistic")
    parser.add_argument("--latency-ms", type=float, default=40.0)
    serve(parser.parse_args())


if __name__ == "__main__":
    main()
