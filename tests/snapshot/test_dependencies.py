"""Dependency checks asked while the snapshot is read, against the simulator over HTTPS."""

from __future__ import annotations

import pandas as pd
import pytest

from cleanup.clients.dataverse import DEPENDENCY_TABLE
from cleanup.clients.platform import build_clients
from cleanup.rules import unused_candidates
from cleanup.simulator.demo import demo_tenant
from cleanup.snapshot.collect import take_snapshot
from cleanup.snapshot.dependencies import DependencyChecks, check_dependencies, likely_unused
from tests.conftest import settings_for


@pytest.fixture
def demo_clients(start_simulator, secret_env, tmp_path):
    sim = start_simulator(demo_tenant())
    return sim, build_clients(settings_for(sim, tmp_path))


def asked(sim) -> list[str]:
    """The references the simulator was asked RetrieveDependenciesForDelete about, in order."""
    return [r.path for r in sim.request_log if DEPENDENCY_TABLE in r.path]


def test_every_candidate_is_asked_once_while_reading(demo_clients):
    sim, clients = demo_clients
    with DependencyChecks(clients) as checks:
        snapshot = take_snapshot(clients, run_id="early", dependencies=checks)
        candidates = unused_candidates(snapshot)
        early = checks.rows_for(snapshot, candidates)
    assert len(candidates) > 0
    assert checks.counts.early == len(candidates)
    assert (checks.counts.late, checks.counts.unneeded) == (0, 0)
    assert len(asked(sim)) == len(candidates)
    # The snapshot's own request figures leave the other stage's requests out.
    assert DEPENDENCY_TABLE not in snapshot.metadata["requests"]["by_table"]
    sent = sum(clients.http.usage.requests.values())
    assert snapshot.metadata["requests"]["total"] == sent - len(candidates)
    # Asking after the snapshot gives the same table, row for row.
    late = check_dependencies(clients, snapshot, candidates)
    pd.testing.assert_frame_equal(early, late)
    assert early["checked"].all()


def test_a_wrong_guess_costs_a_request_never_a_wrong_answer(demo_clients):
    sim, clients = demo_clients
    snapshot = take_snapshot(clients, run_id="plain")
    candidates = unused_candidates(snapshot)
    refs = snapshot.references
    used = refs.loc[~refs["reference_id"].isin(candidates["reference_id"])].iloc[0]
    env_row = snapshot.environments.set_index("environment_id").loc[used["environment_id"]]
    before = len(asked(sim))
    with DependencyChecks(clients) as checks:
        # Guess one used reference (not a candidate), and none of the real candidates.
        rows = {"references": [{"reference_id": used["reference_id"], "logical_name": "zz"}]}
        checks.start({**env_row.to_dict(), "environment_id": used["environment_id"]}, rows, {})
        got = checks.rows_for(snapshot, candidates)
    assert (checks.counts.early, checks.counts.unneeded) == (0, 1)
    assert checks.counts.late == len(candidates)
    assert len(asked(sim)) - before == len(candidates) + 1
    assert used["reference_id"] not in set(got["reference_id"])
    pd.testing.assert_frame_equal(got, check_dependencies(clients, snapshot, candidates))


ENV = {"environment_id": "e1", "status": "complete"}


def test_likely_unused_on_one_environment():
    rows = {
        "references": [
            {"reference_id": "r1", "logical_name": "cr_Used"},
            {"reference_id": "r2", "logical_name": "cr_unused"},
            {"reference_id": "r3", "logical_name": "cr_orphan_use"},
            {"reference_id": "r4", "logical_name": None},
            {"reference_id": None, "logical_name": "cr_no_id"},
        ],
        "flows": [{"flow_id": "f1", "parse_status": "ok"}],
        "usages": [
            {"flow_id": "f1", "logical_name": "CR_USED"},  # names differ only in case
            {"flow_id": None, "logical_name": "cr_orphan_use"},  # no flow: not a use
        ],
    }
    assert likely_unused(ENV, rows, {}) == ["r2", "r3", "r4"]


def test_nothing_is_likely_unused_where_usage_is_unknown():
    rows = {
        "references": [{"reference_id": "r1", "logical_name": "cr_a"}],
        "flows": [{"flow_id": "f1", "parse_status": "invalid-json"}],
        "usages": [],
    }
    assert likely_unused(ENV, rows, {}) == []
    ok = {**rows, "flows": [{"flow_id": "f1", "parse_status": "ok"}]}
    assert likely_unused({**ENV, "status": "incomplete"}, ok, {}) == []
    assert likely_unused(ENV, ok, {}) == ["r1"]


def test_stored_rows_of_an_incremental_night_count():
    rows = {
        "references": [
            {"reference_id": "r1", "logical_name": "cr_a"},
            {"reference_id": "r2", "logical_name": "cr_b"},
        ],
        "flows": [],
        "usages": [],
    }
    flows = pd.DataFrame({"flow_id": ["f1"], "parse_status": ["ok"]}, dtype="string")
    usages = pd.DataFrame({"flow_id": ["f1"], "logical_name": ["CR_A"]}, dtype="string")
    assert likely_unused(ENV, rows, {"flows": flows, "usages": usages}) == ["r2"]
    broken = flows.assign(parse_status=pd.array([None], dtype="string"))
    assert likely_unused(ENV, rows, {"flows": broken, "usages": usages}) == []
