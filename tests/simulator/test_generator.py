"""The seeded tenant generator and the clientdata shapes it builds."""

from __future__ import annotations

import json
import random
import re
import statistics
from collections import Counter
from pathlib import Path

import pytest

from cleanup.simulator.flowshapes import (
    CONNECTORS,
    CORPUS_SIZE_QUANTILES,
    Use,
    build_clientdata,
    custom_connector,
    draw_clientdata_size,
    next_key,
)
from cleanup.simulator.generator import (
    ADMIN_MAILBOX,
    ANOMALY_THRESHOLD,
    DANGLING_CONNECTION_MARK,
    DANGLING_LOGICAL_NAME_PREFIX,
    SENDER_MAILBOX,
    generate_tenant,
)
from cleanup.simulator.tenant import (
    load_tenant,
    save_tenant,
    tenant_from_dict,
    tenant_to_dict,
)
from cleanup.snapshot.clientdata import parse_clientdata

DOCS = Path(__file__).resolve().parents[2] / "docs" / "tenant-format.md"
REQUIRED_ENTRY_KEYS = {"api", "connection", "runtimeSource"}
CORPUS_SHAPES = (
    "apiconnection",
    "legacy",
    "nameless",
    "impersonation",
    "child-flow",
    "declared-only",
    "unused",
)
AUTO_NAME = re.compile(r"^[a-z0-9]+_shared[a-z0-9]+_([0-9a-f]{5})$")


def as_json(tenant) -> str:
    return json.dumps(tenant_to_dict(tenant), sort_keys=True)


@pytest.fixture(scope="module")
def tenant():
    return generate_tenant(
        seed=11,
        environments=6,
        flows_per_environment=80,
        no_dataverse_environments=1,
        unreadable_environments=1,
    )


def dataverse_envs(tenant):
    return [e for e in tenant.environments if e.has_dataverse]


# -- determinism and knobs ---------------------------------------------------------------------


def test_same_seed_same_tenant_and_different_seed_different_tenant():
    one = generate_tenant(seed=3, environments=3, flows_per_environment=15)
    two = generate_tenant(seed=3, environments=3, flows_per_environment=15)
    other = generate_tenant(seed=4, environments=3, flows_per_environment=15)
    assert as_json(one) == as_json(two)
    assert as_json(one) != as_json(other)


def test_environments_do_not_depend_on_how_many_follow():
    few = generate_tenant(seed=5, environments=2, flows_per_environment=10)
    more = generate_tenant(seed=5, environments=4, flows_per_environment=10)
    assert tenant_to_dict(few)["environments"] == tenant_to_dict(more)["environments"][:2]


def test_counts_and_environment_kinds_follow_the_knobs():
    tenant = generate_tenant(
        seed=1,
        environments=7,
        flows_per_environment=13,
        references_per_environment=9,
        connections_per_environment=4,
        tenant_id="11111111-2222-4333-8444-555555555555",
        client_id="99999999-2222-4333-8444-555555555555",
        no_dataverse_environments=2,
        unreadable_environments=1,
    )
    assert tenant.tenant_id == "11111111-2222-4333-8444-555555555555"
    assert tenant.client_id == "99999999-2222-4333-8444-555555555555"
    envs = tenant.environments
    assert len(envs) == 7
    assert envs[0].id == f"Default-{tenant.tenant_id}"
    assert (envs[0].sku, envs[0].is_default) == ("Default", True)
    assert envs[1].sku == "Production"
    assert {e.sku for e in envs[2:]} >= {"Sandbox", "Developer"}
    assert [e.has_dataverse for e in envs] == [True] * 5 + [False] * 2
    assert [e.readable for e in envs] == [True] * 4 + [False] + [True] * 2
    for env in envs:
        assert len(env.connections) == 4
        assert env.reference_component_type == 10091
        if env.has_dataverse:
            assert (len(env.flows), len(env.references)) == (13, 9)
        else:
            assert not (env.flows or env.references or env.users or env.solutions)
    assert len({e.org_name for e in envs}) == len(envs)
    assert len({e.id for e in envs}) == len(envs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"clientdata_size": "huge"},
        {"environments": 2, "no_dataverse_environments": 2, "unreadable_environments": 1},
        {"unreadable_environments": -1},
    ],
)
def test_bad_knobs_are_refused(kwargs):
    with pytest.raises(ValueError):
        generate_tenant(**kwargs)


def test_realistic_sizes_follow_the_corpus_distribution():
    tenant = generate_tenant(
        seed=2, environments=3, flows_per_environment=300, clientdata_size="realistic"
    )
    small = generate_tenant(seed=2, environments=3, flows_per_environment=300)
    sizes = sorted(len(f.clientdata.encode()) for e in tenant.environments for f in e.flows)
    corpus = dict(CORPUS_SIZE_QUANTILES)
    for q in (0.5, 0.75, 0.9):
        got = sizes[int(q * len(sizes))]
        assert 0.8 * corpus[q] < got < 1.25 * corpus[q], (q, got, corpus[q])
    small_sizes = [len(f.clientdata) for e in small.environments for f in e.flows]
    assert statistics.median(small_sizes) < 4000 < statistics.median(sizes)


def test_size_draws_stay_within_the_corpus_range():
    rng = random.Random(0)
    draws = [draw_clientdata_size(rng) for _ in range(5000)]
    assert min(draws) >= CORPUS_SIZE_QUANTILES[0][1]
    assert max(draws) <= CORPUS_SIZE_QUANTILES[-1][1]
    assert abs(statistics.median(draws) - dict(CORPUS_SIZE_QUANTILES)[0.5]) < 800


# -- integrity ---------------------------------------------------------------------------------


def test_every_clientdata_is_a_solution_flow_document(tenant):
    for env in dataverse_envs(tenant):
        for flow in env.flows:
            doc = json.loads(flow.clientdata)
            assert set(doc) == {"properties", "schemaVersion"}
            props = doc["properties"]
            assert isinstance(props["connectionReferences"], dict)
            definition = props["definition"]
            assert {"$schema", "contentVersion", "parameters", "triggers", "actions"} <= set(
                definition
            )
            assert "$authentication" in definition["parameters"]
            assert len(definition["triggers"]) == 1
            for entry in props["connectionReferences"].values():
                assert_entry_shape(entry)


def assert_entry_shape(entry: dict) -> None:
    if "tier" in entry:  # legacy {connectionName, source, id, tier}
        assert set(entry) == {"connectionName", "source", "id", "tier"}
        assert entry["source"] in ("Embedded", "Invoker")
        return
    assert REQUIRED_ENTRY_KEYS <= set(entry) <= REQUIRED_ENTRY_KEYS | {"impersonation"}
    assert entry["runtimeSource"] in ("embedded", "invoker")
    assert set(entry["connection"]) <= {"connectionReferenceLogicalName"}
    assert entry["api"]["name"].startswith("shared_")


def test_every_flow_parses_and_names_only_declared_references(tenant):
    dangling = Counter()
    for env in dataverse_envs(tenant):
        declared = {r.logical_name for r in env.references}
        for flow in env.flows:
            parsed = parse_clientdata(flow.clientdata)
            assert parsed.status == "ok", parsed.error
            assert parsed.dangling_keys == ()
            for ref in parsed.references:
                assert ref.connector and ref.connector.startswith("shared_")
                assert ref.runtime_source in ("embedded", "invoker")
                if ref.logical_name is None or ref.logical_name in declared:
                    continue
                assert ref.logical_name.startswith(DANGLING_LOGICAL_NAME_PREFIX)
                dangling[env.id] += 1
    expected = {e.id: 1 for e in dataverse_envs(tenant) if len(e.flows) >= ANOMALY_THRESHOLD}
    assert dict(dangling) == expected


def test_bindings_point_at_existing_connections_except_the_deliberate_ones(tenant):
    broken = Counter()
    for env in dataverse_envs(tenant):
        names = {c.name for c in env.connections}
        connectors = {c.name: c.connector for c in env.connections}
        for ref in env.references:
            if ref.connection_id is None:
                continue
            if ref.connection_id in names:
                assert ref.connector_id.endswith("/" + connectors[ref.connection_id])
                continue
            assert ref.description == DANGLING_CONNECTION_MARK
            broken[env.id] += 1
    assert dict(broken) == {e.id: 1 for e in dataverse_envs(tenant)}


def test_owners_and_solutions_resolve(tenant):
    for env in dataverse_envs(tenant):
        owners = {(u.id, "systemuser") for u in env.users} | {(t.id, "team") for t in env.teams}
        solutions = {s.id: s for s in env.solutions}
        for row in [*env.references, *env.flows]:
            assert (row.owner_id, row.owner_type) in owners
            assert all(s in solutions for s in row.solution_ids)
            managed = bool(row.solution_ids) and solutions[row.solution_ids[0]].is_managed
            assert row.is_managed == managed
            if managed:
                assert row.solution_id == row.solution_ids[0]
        logical_names = [r.logical_name for r in env.references]
        assert len(set(logical_names)) == len(logical_names)
        assert {d.reference_logical_name for d in env.dependents} <= set(logical_names)


def test_round_trip_through_a_file(tenant, tmp_path):
    path = tmp_path / "tenant.json"
    save_tenant(tenant, path)
    assert as_json(load_tenant(path)) == as_json(tenant)


def test_the_documented_example_loads():
    text = DOCS.read_text(encoding="utf-8")
    example = re.search(r"## Example.*?```json\n(.*?)```", text, re.S).group(1)
    loaded = tenant_from_dict(json.loads(example))
    flow = loaded.environments[0].flows[0]
    parsed = parse_clientdata(flow.clientdata)
    assert parsed.status == "ok"
    assert [r.logical_name for r in parsed.references] == [
        loaded.environments[0].references[0].logical_name
    ]


# -- realism -----------------------------------------------------------------------------------


def test_the_mix_has_every_case_the_rules_look_for(tenant):
    envs = dataverse_envs(tenant)
    refs = [r for e in envs for r in e.references]
    conns = {c.name: c for e in envs for c in e.connections}
    users = [u for e in envs for u in e.users]
    flows = [f for e in envs for f in e.flows]
    auto = [r for r in refs if AUTO_NAME.match(r.logical_name)]
    assert len(auto) > len(refs) / 3
    generated_display = [
        r for r in auto if r.display_name.endswith("-" + AUTO_NAME.match(r.logical_name)[1])
    ]
    assert generated_display
    assert any(" – " in r.display_name for r in refs)
    assert any(r.connection_id is None for r in refs)
    assert any(r.is_managed for r in refs) and any(f.is_managed for f in flows)
    assert any(r.custom_connector_id for r in refs)
    bound = Counter(
        (e.id, r.connector_id, r.connection_id)
        for e in envs
        for r in e.references
        if r.connection_id
    )
    assert max(bound.values()) >= 2  # duplicates
    creators = {conns[r.connection_id].created_by.type for r in refs if r.connection_id in conns}
    assert creators == {"User", "ServicePrincipal"}
    assert all(
        c.parameter_set == "oauthSP"
        for c in conns.values()
        if c.created_by.type == "ServicePrincipal"
    )
    assert any(c.status == "Error" for c in conns.values())
    assert {f.state for f in flows} >= {0, 1}
    for env in envs:
        job = [u for u in env.users if u.application_id == tenant.client_id]
        assert len(job) == (1 if env.readable else 0)
    assert any(u.is_disabled for u in users)
    assert all(t.email == "" for e in envs for t in e.teams)
    assert {f.owner_type for f in flows} == {"systemuser", "team"}
    assert any(e.dependents for e in envs)
    assert all(len(e.solutions) >= 2 for e in envs)
    assert [m.address for m in tenant.mailboxes] == [ADMIN_MAILBOX, SENDER_MAILBOX]


def test_usage_mix_has_unused_references_and_corpus_shapes(tenant):
    shapes = Counter()
    for env in dataverse_envs(tenant):
        used = set()
        for flow in env.flows:
            text = flow.clientdata
            shapes["apiconnection"] += "@parameters('$connections')" in text
            shapes["legacy"] += '"tier":"NotSpecified"' in text
            shapes["nameless"] += '"connection":{}' in text
            shapes["impersonation"] += '"impersonation"' in text
            shapes["child-flow"] += '"workflowReferenceName"' in text
            parsed = parse_clientdata(text)
            shapes["declared-only"] += any(r.action_count == 0 for r in parsed.references)
            used |= {r.logical_name for r in parsed.references}
        dependents = {d.reference_logical_name for d in env.dependents}
        shapes["unused"] += sum(
            1 for r in env.references if r.logical_name not in used | dependents
        )
    assert [k for k in CORPUS_SHAPES if not shapes[k]] == [], shapes


# -- flowshapes --------------------------------------------------------------------------------


def random_uses(rng: random.Random) -> list[Use]:
    taken: set[str] = set()
    custom = custom_connector("cre80", "Kursy walut NBP", rng)
    uses = []
    for _ in range(rng.randint(0, 5)):
        connector = rng.choice([*CONNECTORS.values(), custom])
        entry = rng.choice(("modern", "modern", "impersonation", "legacy"))
        uses.append(
            Use(
                key=next_key(connector.api, taken, rng.choice("_-")),
                logical_name=None if entry == "legacy" else f"new_x{rng.randrange(10**6)}",
                connector=connector.api,
                runtime_source=rng.choice(("embedded", "invoker")),
                action_count=rng.randint(0, 6),
                entry=entry,
                api_logical_name=connector.api_logical_name,
                host=rng.choice(("openapi", "apiconnection")),
            )
        )
    return uses


@pytest.mark.parametrize("seed", range(40))
def test_built_clientdata_parses_back_to_its_uses(seed):
    rng = random.Random(seed)
    uses = random_uses(rng)
    text = build_clientdata(uses, rng, size=rng.choice((0, 5000)), deep=seed % 4 == 0)
    parsed = parse_clientdata(text)
    assert parsed.status == "ok"
    assert [
        (r.key, r.logical_name, r.connector, r.runtime_source, r.action_count)
        for r in parsed.references
    ] == [(u.key, u.logical_name, u.connector, u.runtime_source, u.action_count) for u in uses]


def test_deep_flows_reach_max_depth_and_custom_connectors_have_no_api_id():
    rng = random.Random(1)
    custom = custom_connector("hr", "Payroll API", rng)
    use = Use(custom.api, "hr_payroll", custom.api, api_logical_name=custom.api_logical_name)
    text = build_clientdata([use], rng, deep=True, max_depth=6)
    assert parse_clientdata(text).max_depth >= 6
    doc = json.loads(text)
    entry = doc["properties"]["connectionReferences"][custom.api]
    assert entry["api"]["logicalName"] == "hr_5FPayroll-20API"
    assert '"apiId":""' in text


def test_keys_follow_the_designer():
    taken: set[str] = set()
    api = "shared_office365"
    keys = [next_key(api, taken), next_key(api, taken), next_key(api, taken, "-")]
    assert keys == ["shared_office365", "shared_office365_1", "shared_office365-1"]
