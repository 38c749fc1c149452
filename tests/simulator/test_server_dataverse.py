"""Dataverse Web API reads: paging, $select, $filter, keys, annotations, functions."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from test_server_support import (
    CORE_SOLUTION,
    ENV_A,
    ENV_LOCKED,
    MAKER,
    SECRET,
    build_tenant,
    dv_session,
    flow_id,
    ref_id,
)

from cleanup.simulator.server import Simulator


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(build_tenant(), client_secret=SECRET) as running:
        yield running
        assert running.internal_errors == []


def _values(session, url, **kw) -> list[dict]:  # type: ignore[no-untyped-def]
    response = session.get(url, timeout=10, **kw)
    assert response.status_code == 200, response.text
    return response.json()["value"]


def test_paging_with_maxpagesize_returns_every_row_once(sim: Simulator) -> None:
    session, api = dv_session(sim)
    prefer = {"Prefer": "odata.maxpagesize=2"}
    url: str | None = f"{api}connectionreferences?$select=connectionreferencelogicalname"
    seen: list[str] = []
    pages = 0
    while url:
        response = session.get(url, headers=prefer, timeout=10)
        assert response.headers["Preference-Applied"] == "odata.maxpagesize=2"
        body = response.json()
        assert body["@odata.context"].endswith(
            "$metadata#connectionreferences(connectionreferencelogicalname)"
        )
        assert len(body["value"]) <= 2
        seen += [row["connectionreferenceid"] for row in body["value"]]
        url = body.get("@odata.nextLink")
        if url:
            token = parse_qs(urlsplit(url).query)["$skiptoken"][0]
            assert not token.isdigit()
        pages += 1
    assert sorted(seen) == sorted(ref_id(n) for n in range(1, 7))
    assert pages == 3


def test_tampered_next_link_is_refused(sim: Simulator) -> None:
    session, api = dv_session(sim)
    first = session.get(
        f"{api}workflows?$select=name", headers={"Prefer": "odata.maxpagesize=1"}, timeout=10
    )
    tampered = first.json()["@odata.nextLink"].replace("$select=name", "$select=name,category")
    response = session.get(tampered, headers={"Prefer": "odata.maxpagesize=1"}, timeout=10)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "0x80060888"


def test_top_without_maxpagesize_has_no_next_link(sim: Simulator) -> None:
    session, api = dv_session(sim)
    body = session.get(f"{api}connectionreferences?$top=2", timeout=10).json()
    assert len(body["value"]) == 2 and "@odata.nextLink" not in body


def test_select_returns_only_those_columns_plus_key_and_etag(sim: Simulator) -> None:
    session, api = dv_session(sim)
    rows = _values(session, f"{api}workflows?$select=name,statecode")
    assert set(rows[0]) == {"@odata.etag", "name", "statecode", "workflowid"}
    assert rows[0]["@odata.etag"] == 'W/"3001"'


def test_unknown_select_column_is_400(sim: Simulator) -> None:
    session, api = dv_session(sim)
    response = session.get(f"{api}connectionreferences?$select=nope", timeout=10)
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "0x80060888",
        "message": "Could not find a property named 'nope' on type "
        "'Microsoft.Dynamics.CRM.connectionreference'.",
    }


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("category eq 5 and type eq 1", {1, 2, 3}),
        ("statecode eq 1", {1}),
        ("ismanaged eq true", {3}),
        ("not (statecode eq 1)", {2, 3}),
        ("name eq 'DRAFT FLOW' or name eq 'Managed flow'", {2, 3}),
        (f"workflowid eq {flow_id(2)}", {2}),
        (f"_ownerid_value eq {MAKER}", {1, 2, 3}),
        ("description eq null", {1, 2, 3}),
        ("description ne null", set()),
        ("modifiedon ge 2024-01-01T00:00:00Z and modifiedon lt 2025-01-01T00:00:00Z", {1, 2, 3}),
        ("(statecode eq 0 and ismanaged eq false) or versionnumber gt 3002", {2, 3}),
        ("name eq 'it''s'", set()),
    ],
)
def test_supported_filters(sim: Simulator, expression: str, expected: set[int]) -> None:
    session, api = dv_session(sim)
    rows = _values(session, f"{api}workflows", params={"$filter": expression, "$select": "name"})
    assert {row["workflowid"] for row in rows} == {flow_id(n) for n in expected}


@pytest.mark.parametrize(
    "expression",
    [
        "contains(name,'flow')",
        "startswith(name,'A')",
        "nope eq 1",
        "statecode add 1 eq 2",
        "name eq 5",
        "statecode eq '1'",
        "workflowid eq 'f0000000-0000-0000-0000-000000000001'",
        "statecode eq",
        "statecode eq 1 and",
        "(statecode eq 1",
        "name eq category",
        "iscustomizable/Value eq true",
        "ismanaged",
    ],
)
def test_unsupported_filters_are_400(sim: Simulator, expression: str) -> None:
    session, api = dv_session(sim)
    response = session.get(f"{api}workflows", params={"$filter": expression}, timeout=10)
    assert response.status_code == 400, expression
    assert response.json()["error"]["code"] == "0x80060888"


def test_lambda_filter_and_unknown_options_are_400(sim: Simulator) -> None:
    session, api = dv_session(sim)
    lambda_filter = {"$filter": "solutioncomponents/any(c:c/componenttype eq 29)"}
    assert session.get(f"{api}workflows", params=lambda_filter, timeout=10).status_code == 400
    assert session.get(f"{api}workflows?$skip=1", timeout=10).status_code == 400
    assert session.get(f"{api}workflows?$expand=ownerid", timeout=10).status_code == 400


def test_orderby_and_count(sim: Simulator) -> None:
    session, api = dv_session(sim)
    body = session.get(
        f"{api}workflows?$orderby=name desc&$count=true&$select=name", timeout=10
    ).json()
    assert [r["name"] for r in body["value"]] == ["Managed flow", "Draft flow", "Active flow"]
    assert body["@odata.count"] == 3


def test_get_by_key_and_missing_key(sim: Simulator) -> None:
    session, api = dv_session(sim)
    row = session.get(
        f"{api}connectionreferences({ref_id(1)})?$select=connectionid", timeout=10
    ).json()
    assert row["connectionid"] == "conn-dv-sp" and row["@odata.etag"] == 'W/"2001"'
    assert row["@odata.context"].endswith("connectionreferences(connectionid)/$entity")
    missing = "c0000000-0000-0000-0000-0000000000ff"
    response = session.get(f"{api}connectionreferences({missing})", timeout=10)
    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "0x80040217",
        "message": f"connectionreference With Id = {missing} Does Not Exist",
    }


def test_full_row_shape_and_annotations(sim: Simulator) -> None:
    session, api = dv_session(sim)
    headers = {"Prefer": 'odata.include-annotations="*"'}
    row = session.get(f"{api}connectionreferences({ref_id(6)})", headers=headers, timeout=10).json()
    assert row["iscustomizable"] == {
        "Value": True,
        "CanBeChanged": True,
        "ManagedPropertyLogicalName": "iscustomizableanddeletable",
    }
    assert row["_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "team"
    assert row["statecode@OData.Community.Display.V1.FormattedValue"] == "Active"
    assert row["overwritetime"] == "1900-01-01T00:00:00Z"
    plain = session.get(f"{api}connectionreferences({ref_id(6)})", timeout=10).json()
    assert not any("@Microsoft" in key for key in plain)


def test_solutions_components_and_definitions(sim: Simulator) -> None:
    session, api = dv_session(sim)
    definitions = _values(
        session,
        f"{api}solutioncomponentdefinitions",
        params={
            "$filter": "primaryentityname eq 'connectionreference'",
            "$select": "solutioncomponenttype",
        },
    )
    assert definitions[0]["solutioncomponenttype"] == 10091
    members = _values(
        session,
        f"{api}solutioncomponents",
        params={"$filter": f"_solutionid_value eq {CORE_SOLUTION}"},
    )
    assert {(m["objectid"], m["componenttype"]) for m in members} == {
        (ref_id(1), 10091),
        (flow_id(1), 29),
    }
    solutions = {s["uniquename"] for s in _values(session, f"{api}solutions")}
    assert {"CoreSolution", "ManagedSol", "Default"} <= solutions
    assert len(_values(session, f"{api}systemusers")) == 2
    assert _values(session, f"{api}teams")[0]["emailaddress"] is None


def test_who_am_i_and_unreadable_environment(sim: Simulator) -> None:
    session, api = dv_session(sim)
    assert (
        session.get(f"{api}WhoAmI", timeout=10).json()["UserId"]
        == "a0000000-0000-0000-0000-000000000001"
    )
    locked, locked_api = dv_session(sim, sim.tenant.environment(ENV_LOCKED))
    response = locked.get(f"{locked_api}workflows", timeout=10)
    assert response.status_code == 403
    assert response.json()["error"] == {
        "code": "0x80072560",
        "message": "The user is not a member of the organization.",
    }


def test_dependencies_both_forms(sim: Simulator) -> None:
    session, api = dv_session(sim)
    alias = _values(
        session,
        f"{api}RetrieveDependenciesForDelete(ObjectId=@p1,ComponentType=@p2)",
        params={"@p1": ref_id(1), "@p2": "10091"},
    )
    inline = _values(
        session, f"{api}RetrieveDependenciesForDelete(ObjectId={ref_id(1)},ComponentType=10091)"
    )
    assert alias == inline
    assert [(d["dependentcomponentobjectid"], d["dependentcomponenttype"]) for d in alias] == [
        (flow_id(1), 29)
    ]
    assert alias[0]["requiredcomponentobjectid"] == ref_id(1)
    canvas = _values(
        session, f"{api}RetrieveDependentComponents(ObjectId={ref_id(5)},ComponentType=10091)"
    )
    assert [d["dependentcomponenttype"] for d in canvas] == [300]
    required = _values(
        session, f"{api}RetrieveRequiredComponents(ObjectId={flow_id(1)},ComponentType=29)"
    )
    assert {d["requiredcomponentobjectid"] for d in required} == {ref_id(1), ref_id(2)}
    posted = session.post(
        f"{api}RetrieveDependenciesForDelete(ObjectId={ref_id(1)},ComponentType=10091)", timeout=10
    )
    assert posted.status_code == 404
    assert "No HTTP resource was found" in posted.json()["error"]["message"]


def test_unknown_entity_set_and_org(sim: Simulator) -> None:
    session, api = dv_session(sim)
    assert session.get(f"{api}accounts", timeout=10).status_code == 404
    other = api.replace("/dv/orga/", "/dv/nosuchorg/")
    assert session.get(f"{other}workflows", timeout=10).status_code == 404
    log = [r for r in sim.request_log if r.table == "accounts"]
    assert log and log[0].environment_id == ENV_A and log[0].service == "dataverse"
