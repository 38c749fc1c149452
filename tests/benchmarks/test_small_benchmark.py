"""The benchmark's small size in CI: request counts (never times), so a regression fails the build.

Counts are exact: the snapshot must cost the paging lower bound (one request per page of each
table, per environment, plus the environment list), the dependency checks one request per unused
candidate, an incremental night one id listing per environment plus one fetch per environment
with a changed flow, and the naive client one request per flow on top of its table reads.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
TABLE_READS = 9  # Dataverse tables (8) + connections, per environment, one page each here


def load_benchmark() -> Any:
    spec = importlib.util.spec_from_file_location("connref_benchmark_run", BENCHMARKS / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    bench = load_benchmark()
    out = tmp_path_factory.mktemp("bench")
    return bench.main(
        [
            "--size",
            "small",
            "--latency-ms",
            "0",
            "--incremental",
            "--analysis-rows",
            "2000",
            "--runs-dir",
            str(out / "runs"),
            "--json",
            str(out / "figures.json"),
        ]
    )


def test_snapshot_costs_exactly_the_paging_lower_bound(figures):
    night, bound = figures["night"], figures["lower_bound"]
    environments = figures["tenant"]["environments"]
    assert night["complete"] is True
    assert night["snapshot_requests"] == bound["paging"]["total"]
    assert bound["paging"]["total"] == 1 + TABLE_READS * environments
    for table, pages in bound["paging"]["by_table"].items():
        assert night["by_table"][table] == pages, table
    assert night["by_table"].get("RetrieveDependenciesForDelete", 0) == night["candidates"]
    # Every candidate was asked about while other environments were still being read.
    assert night["candidates"] > 0
    assert night["dependency_checks"] == {"early": night["candidates"], "late": 0, "unneeded": 0}
    assert night["requests"] == bound["requests"]
    assert figures["ratios"]["requests_ratio"] == 1.0


def test_no_429_and_concurrency_within_the_limit(figures):
    assert figures["night"]["throttled"] == 0
    assert figures["served"]["throttled"] == 0
    assert set(figures["served"]["statuses"]) == {"200"}
    assert figures["served"]["peak_concurrency"] <= figures["http"]["concurrency_per_environment"]


def test_naive_client_costs_one_request_per_flow_more(figures):
    naive, night = figures["naive"], figures["night"]
    assert naive["environments_measured"] == figures["tenant"]["environments"]
    assert naive["flows"] == night["flows"]
    assert naive["usages"] == night["usages"]
    assert naive["by_table"]["workflows(id)"] == night["flows"]
    assert naive["requests_measured"] == night["requests"] + night["flows"]
    assert naive["throttled"] == 0


def test_incremental_night_reads_only_changed_flows(figures):
    inc, bound = figures["incremental"], figures["lower_bound"]["paging"]
    environments = figures["tenant"]["environments"]
    assert inc["tables_differing_from_full"] == []
    assert inc["modes"] == {"incremental": environments}
    assert inc["changes"]["changed"] == environments  # 1 % of 30 flows rounds up to one each
    # The flow page of each environment becomes an id listing, plus one fetch of its change.
    assert inc["listing_requests_bound"] == bound["by_table"]["workflows"]
    assert inc["snapshot_requests"] == bound["total"] + environments
    assert inc["snapshot_requests"] == inc["snapshot_requests_bound"]
    assert inc["by_table"]["workflows"] == 2 * environments
    assert inc["full_snapshot_requests"] == bound["total"]
    assert inc["snapshot_bytes"] * 3 < inc["full_snapshot_bytes"]
    assert inc["throttled"] == 0


def test_physical_bound_fetches_the_same_requests_and_bytes(figures):
    physical, night = figures["physical"], figures["night"]
    for variant in ("p1", "p2"):
        replay = physical[variant]
        assert replay["requests"] == night["requests"]
        assert replay["requests"] == night["snapshot_requests"] + night["candidates"]
        assert replay["bytes"] == night["bytes"]


def test_analysis_at_scale_and_memory_are_measured(figures):
    analysis = figures["analysis"]
    assert analysis["outcome"] == "finished"
    assert analysis["usages"] >= 2000
    stages = {"rules", "build_plan", "findings", "plan", "report"}
    assert set(analysis["seconds"]) == stages
    assert analysis["total_seconds"] == sum(analysis["seconds"].values())
    assert analysis["rules_and_report_seconds"] < analysis["total_seconds"]
    assert figures["night"]["peak_rss_mb"] >= figures["night"]["snapshot_peak_rss_mb"] > 0
