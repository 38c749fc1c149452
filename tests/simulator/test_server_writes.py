"""Dataverse writes and business rules: ETags, deletes, activation, binding, creation."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from test_server_support import (
    CORE_SOLUTION,
    ENV_A,
    SECRET,
    build_tenant,
    clientdata,
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


def _etag(session, url) -> str:  # type: ignore[no-untyped-def]
    return session.get(url, timeout=10).json()["@odata.etag"]


def test_patch_with_matching_etag_bumps_version_and_stale_etag_is_412(sim: Simulator) -> None:
    session, api = dv_session(sim)
    url = f"{api}connectionreferences({ref_id(6)})"
    etag = _etag(session, url)
    ok = session.patch(
        url,
        json={"connectionreferencedisplayname": "Ops – Dataverse – SP"},
        headers={"If-Match": etag},
        timeout=10,
    )
    assert ok.status_code == 204 and ok.headers["OData-EntityId"].endswith(f"({ref_id(6)})")
    row = session.get(url, timeout=10).json()
    assert row["connectionreferencedisplayname"] == "Ops – Dataverse – SP"
    assert row["@odata.etag"] != etag
    assert int(row["@odata.etag"][3:-1]) > 3003  # above every version in the environment
    stale = session.patch(url, json={"description": "x"}, headers={"If-Match": etag}, timeout=10)
    assert stale.status_code == 412
    assert stale.json()["error"] == {
        "code": "0x80060882",
        "message": "The version of the existing record doesn't match the RowVersion property "
        "provided.",
    }
    stale_delete = session.delete(url, headers={"If-Match": etag}, timeout=10)
    assert stale_delete.status_code == 412
    assert (
        session.delete(url, headers={"If-Match": row["@odata.etag"]}, timeout=10).status_code == 204
    )
    assert session.get(url, timeout=10).status_code == 404


def test_patch_return_representation(sim: Simulator) -> None:
    session, api = dv_session(sim)
    response = session.patch(
        f"{api}connectionreferences({ref_id(6)})?$select=description",
        json={"description": "hello"},
        headers={"If-Match": "*", "Prefer": "return=representation"},
        timeout=10,
    )
    assert response.status_code == 200 and response.json()["description"] == "hello"


def test_delete_referenced_reference_is_refused_with_count(sim: Simulator) -> None:
    session, api = dv_session(sim)
    response = session.delete(f"{api}connectionreferences({ref_id(1)})", timeout=10)
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "0x8004f01f",
        "message": f"The connectionreference({ref_id(1)}) component cannot be deleted because "
        "it is referenced by 1 other components. For a list of referenced components, use the "
        "RetrieveDependenciesForDeleteRequest.",
    }
    draft_use = session.delete(f"{api}connectionreferences({ref_id(3)})", timeout=10)
    assert draft_use.json()["error"]["code"] == "0x8004f01f"
    canvas_use = session.delete(f"{api}connectionreferences({ref_id(5)})", timeout=10)
    assert canvas_use.json()["error"]["code"] == "0x8004f01f"


def test_delete_managed_and_active_are_refused(sim: Simulator) -> None:
    session, api = dv_session(sim)
    managed = session.delete(f"{api}workflows({flow_id(3)})", timeout=10)
    assert managed.status_code == 400 and managed.json()["error"]["code"] == "0x8004f038"
    active = session.delete(f"{api}workflows({flow_id(1)})", timeout=10)
    assert active.json()["error"] == {
        "code": "0x8004500f",
        "message": "Cannot delete an active workflow definition.",
    }


def test_rewire_makes_dependencies_disappear_live_then_delete_works(sim: Simulator) -> None:
    session, api = dv_session(sim)
    deps_url = f"{api}RetrieveDependenciesForDelete(ObjectId=@p1,ComponentType=@p2)"
    params = {"@p1": ref_id(2), "@p2": "10091"}
    assert len(session.get(deps_url, params=params, timeout=10).json()["value"]) == 1
    flow_url = f"{api}workflows({flow_id(1)})"
    rewired = clientdata(
        {"shared_commondataserviceforapps": "new_sharedcommondataserviceforapps_1a2b3"}
    )
    etag = _etag(session, flow_url)
    patched = session.patch(
        flow_url, json={"clientdata": rewired}, headers={"If-Match": etag}, timeout=10
    )
    assert patched.status_code == 204, patched.text
    assert session.get(deps_url, params=params, timeout=10).json()["value"] == []
    deleted = session.delete(
        f"{api}connectionreferences({ref_id(2)})", headers={"If-Match": "*"}, timeout=10
    )
    assert deleted.status_code == 204


def test_activation_needs_bound_existing_references(sim: Simulator) -> None:
    session, api = dv_session(sim)
    draft = f"{api}workflows({flow_id(2)})"
    unbound = session.patch(draft, json={"statecode": 1, "statuscode": 2}, timeout=10)
    assert unbound.status_code == 400
    inner = (
        '{"error":{"code":"XrmConnectionReferenceMissingConnection","message":"Connection Id '
        "missing for connection reference logical name 'new_DataverseUnbound'.\"}}"
    )
    assert unbound.json()["error"] == {
        "code": "0x80060467",
        "message": 'Flow client error returned with status code "BadRequest" and details '
        f'"{inner}".',
    }
    missing = clientdata({"shared_commondataserviceforapps": "new_DoesNotExist"})
    assert session.patch(draft, json={"clientdata": missing}, timeout=10).status_code == 204
    response = session.patch(draft, json={"statecode": 1}, timeout=10)
    assert response.status_code == 400 and "new_DoesNotExist" in response.json()["error"]["message"]
    bound = clientdata({"shared_commondataserviceforapps": "new_Unused"})
    ok = session.patch(
        draft, json={"clientdata": bound, "statecode": 1, "statuscode": 2}, timeout=10
    )
    assert ok.status_code == 204
    row = session.get(f"{draft}?$select=statecode,statuscode", timeout=10).json()
    assert (row["statecode"], row["statuscode"]) == (1, 2)
    inconsistent = session.patch(draft, json={"statecode": 0, "statuscode": 2}, timeout=10)
    assert inconsistent.status_code == 400


def test_binding_to_unknown_connection_is_refused(sim: Simulator) -> None:
    session, api = dv_session(sim)
    url = f"{api}connectionreferences({ref_id(3)})"
    response = session.patch(url, json={"connectionid": "conn-o365-user"}, timeout=10)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "0x80040265"
    assert '"code":"ConnectionNotFound"' in error["message"]
    assert (
        "Could not find connection 'conn-o365-user' for API 'shared_commondataserviceforapps'."
        in error["message"]
    )
    assert session.patch(url, json={"connectionid": "conn-dv-sp"}, timeout=10).status_code == 204


def test_invalid_writes_are_refused(sim: Simulator) -> None:
    session, api = dv_session(sim)
    flow_url = f"{api}workflows({flow_id(2)})"
    assert session.patch(flow_url, json={"clientdata": "{not json"}, timeout=10).status_code == 400
    assert session.patch(flow_url, json={"clientdata": {"a": 1}}, timeout=10).status_code == 400
    assert session.patch(flow_url, json={"category": 0}, timeout=10).status_code == 400
    assert session.patch(flow_url, json={"nope": 0}, timeout=10).status_code == 400
    assert (
        session.patch(
            flow_url, data="{", headers={"Content-Type": "application/json"}, timeout=10
        ).status_code
        == 400
    )
    too_long = session.patch(
        f"{api}connectionreferences({ref_id(6)})",
        json={"connectionreferencedisplayname": "x" * 201},
        timeout=10,
    )
    assert too_long.json()["error"]["code"] == "0x80044331"
    assert sim.tenant.environment(ENV_A).flows[1].version == 3002  # nothing was written


def test_writing_a_managed_flow_records_an_unmanaged_layer(sim: Simulator) -> None:
    session, api = dv_session(sim)
    rewired = clientdata({"shared_commondataserviceforapps": "new_Unused"})
    response = session.patch(
        f"{api}workflows({flow_id(3)})", json={"clientdata": rewired}, timeout=10
    )
    assert response.status_code == 204
    assert sim.unmanaged_layers == {flow_id(3)}


def test_owner_can_be_reassigned(sim: Simulator) -> None:
    session, api = dv_session(sim)
    url = f"{api}connectionreferences({ref_id(1)})"
    team = "a0000000-0000-0000-0000-000000000003"
    assert (
        session.patch(url, json={"ownerid@odata.bind": f"/teams({team})"}, timeout=10).status_code
        == 204
    )
    assert sim.tenant.environment(ENV_A).references[0].owner_type == "team"
    unknown = session.patch(
        url,
        json={"ownerid@odata.bind": "/systemusers(a0000000-0000-0000-0000-0000000000ff)"},
        timeout=10,
    )
    assert unknown.status_code == 404


def test_create_reference_in_a_solution_and_duplicates(sim: Simulator) -> None:
    session, api = dv_session(sim)
    body = {
        "connectionreferencelogicalname": "new_Fresh",
        "connectionreferencedisplayname": "Fresh – Dataverse – Service Principal",
        "connectorid": "/providers/Microsoft.PowerApps/apis/shared_commondataserviceforapps",
        "connectionid": "conn-dv-sp",
    }
    created = session.post(
        f"{api}connectionreferences",
        json=body,
        headers={"MSCRM.SolutionUniqueName": "CoreSolution"},
        timeout=10,
    )
    assert created.status_code == 204, created.text
    location = created.headers["OData-EntityId"]
    row = session.get(location, timeout=10).json()
    assert row["connectionreferencelogicalname"] == "new_Fresh"
    members = session.get(
        f"{api}solutioncomponents",
        params={"$filter": f"objectid eq {row['connectionreferenceid']}"},
        timeout=10,
    ).json()["value"]
    assert CORE_SOLUTION in {m["_solutionid_value"] for m in members}
    duplicate = session.post(
        f"{api}connectionreferences",
        json={**body, "connectionreferencelogicalname": "NEW_FRESH"},
        timeout=10,
    )
    assert duplicate.status_code == 400
    assert duplicate.json()["error"] == {
        "code": "0x80040237",
        "message": "A record with matching key values already exists.",
    }
    unknown_connection = session.post(
        f"{api}connectionreferences",
        json={**body, "connectionreferencelogicalname": "new_x", "connectionid": "nope"},
        timeout=10,
    )
    assert unknown_connection.status_code == 400


def test_clientdata_patch_while_on_can_be_refused_by_switch(sim: Simulator) -> None:
    session, api = dv_session(sim)
    sim.faults.reject_clientdata_patch_when_on = True
    data = json.loads(sim.tenant.environment(ENV_A).flows[0].clientdata or "{}")
    response = session.patch(
        f"{api}workflows({flow_id(1)})", json={"clientdata": json.dumps(data)}, timeout=10
    )
    assert response.status_code == 400
