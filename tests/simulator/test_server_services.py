"""BAP environment discovery, Power Apps admin connections and Graph sendMail."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_server_support import ENV_A, ENV_NO_DV, SECRET, TENANT_ID, api_session, build_tenant

from cleanup.simulator.server import POWERAPPS_SCOPE, Simulator

ENVS = "/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments"
CONNECTIONS = "/providers/Microsoft.PowerApps/scopes/admin/environments/{env}/connections"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(build_tenant(extra_envs=3), client_secret=SECRET) as running:
        yield running
        assert running.internal_errors == []


def test_bap_lists_every_environment_across_pages(sim: Simulator) -> None:
    sim.faults.bap_page_size = 2
    session = api_session(sim, POWERAPPS_SCOPE)
    url: str | None = (
        f"{sim.endpoints()['bap']}{ENVS}?api-version=2020-10-01&$expand=properties.capacity"
    )
    items: list[dict] = []
    while url:
        response = session.get(url, timeout=10)
        assert response.status_code == 200 and "x-ms-request-id" in response.headers
        items += response.json()["value"]
        url = response.json().get("nextLink")
    assert len(items) == 6 and len({i["name"] for i in items}) == 6
    by_name = {i["name"]: i for i in items}
    env_a = by_name[ENV_A]["properties"]
    assert env_a["linkedEnvironmentMetadata"]["instanceUrl"] == sim.instance_url(
        sim.tenant.environment(ENV_A)
    )
    assert env_a["isDefault"] is True and env_a["environmentSku"] == "Default"
    assert "linkedEnvironmentMetadata" not in by_name[ENV_NO_DV]["properties"]
    assert by_name[ENV_A]["id"] == f"{ENVS}/{ENV_A}"


def test_bap_requires_api_version_and_the_powerapps_audience(sim: Simulator) -> None:
    session = api_session(sim, POWERAPPS_SCOPE)
    assert session.get(f"{sim.endpoints()['bap']}{ENVS}", timeout=10).status_code == 400
    graph = api_session(sim, "https://graph.microsoft.com/.default")
    assert (
        graph.get(f"{sim.endpoints()['bap']}{ENVS}?api-version=2020-10-01", timeout=10).status_code
        == 401
    )
    same_audience = api_session(sim, "https://service.powerapps.com/.default")
    assert same_audience.get(
        f"{sim.endpoints()['bap']}{ENVS}?api-version=2020-10-01", timeout=10
    ).ok


def test_connections_shape_paging_and_connector_filter(sim: Simulator) -> None:
    session = api_session(sim, POWERAPPS_SCOPE)
    base = sim.endpoints()["powerapps"] + CONNECTIONS.format(env=ENV_A)
    first = session.get(f"{base}?api-version=2016-11-01&$top=2", timeout=10).json()
    assert len(first["value"]) == 2
    second = session.get(first["nextLink"], timeout=10).json()
    assert len(second["value"]) == 1 and "nextLink" not in second
    sp = first["value"][0]
    admin_env = f"/providers/Microsoft.PowerApps/scopes/admin/environments/{ENV_A}"
    admin_api = f"{admin_env}/apis/shared_commondataserviceforapps"
    assert sp["name"] == "conn-dv-sp"
    assert sp["id"] == f"{admin_api}/connections/conn-dv-sp"
    assert sp["properties"]["apiId"] == admin_api
    assert sp["properties"]["statuses"] == [{"status": "Connected"}]
    assert sp["properties"]["connectionParametersSet"]["name"] == "oauthSP"
    assert sp["properties"]["createdBy"]["type"] == "ServicePrincipal"
    assert sp["properties"]["createdBy"]["tenantId"] == TENANT_ID
    broken = second["value"][0]["properties"]["statuses"][0]
    assert broken["status"] == "Error" and broken["error"]["code"] == "Unauthenticated"
    per_connector = base.replace("/connections", "/apis/shared_office365/connections")
    names = [
        c["name"]
        for c in session.get(f"{per_connector}?api-version=2016-11-01", timeout=10).json()["value"]
    ]
    assert names == ["conn-o365-user", "conn-broken"]


def test_connections_page_size_override_and_unknown_environment(sim: Simulator) -> None:
    sim.faults.connections_page_size = 1
    session = api_session(sim, POWERAPPS_SCOPE)
    base = sim.endpoints()["powerapps"] + CONNECTIONS.format(env=ENV_A)
    assert len(session.get(f"{base}?api-version=2016-11-01", timeout=10).json()["value"]) == 1
    missing = sim.endpoints()["powerapps"] + CONNECTIONS.format(env="nope")
    response = session.get(f"{missing}?api-version=2016-11-01", timeout=10)
    assert response.status_code == 404 and response.json()["error"]["code"] == "EnvironmentNotFound"


def _mail(**overrides: object) -> dict:
    message = {
        "subject": "Connection reference report",
        "body": {"contentType": "HTML", "content": "<p>hi</p>"},
        "toRecipients": [{"emailAddress": {"address": "owner@contoso.com"}}],
    }
    message.update(overrides)
    return {"message": message, "saveToSentItems": "false"}


def test_send_mail_is_accepted_and_recorded(sim: Simulator) -> None:
    session = api_session(sim, "https://graph.microsoft.com/.default")
    url = f"{sim.endpoints()['graph']}/v1.0/users/noreply@contoso.com/sendMail"
    response = session.post(url, json=_mail(), headers={"client-request-id": "abc"}, timeout=10)
    assert response.status_code == 202 and response.content == b""
    assert response.headers["client-request-id"] == "abc" and response.headers["request-id"]
    assert sim.sent_mail == [
        {"sender": "noreply@contoso.com", "message": _mail()["message"], "saveToSentItems": "false"}
    ]


@pytest.mark.parametrize(
    ("sender", "body", "status", "code"),
    [
        ("someone@contoso.com", _mail(), 404, "ErrorInvalidUser"),
        ("noreply@contoso.com", _mail(toRecipients=[]), 400, "ErrorInvalidRecipients"),
        (
            "noreply@contoso.com",
            _mail(toRecipients=[{"emailAddress": {"address": "not an address"}}]),
            400,
            "ErrorInvalidRecipients",
        ),
        ("noreply@contoso.com", _mail(subject="Hi\r\nBcc: evil@x.com"), 400, "ErrorInvalidRequest"),
        (
            "noreply@contoso.com",
            _mail(body={"contentType": "Markdown", "content": ""}),
            400,
            "RequestBodyRead",
        ),
        ("noreply@contoso.com", {"nomessage": True}, 400, "BadRequest"),
    ],
)
def test_send_mail_rejects_bad_requests(
    sim: Simulator, sender: str, body: dict, status: int, code: str
) -> None:
    session = api_session(sim, "https://graph.microsoft.com/.default")
    response = session.post(
        f"{sim.endpoints()['graph']}/v1.0/users/{sender}/sendMail", json=body, timeout=10
    )
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert sim.sent_mail == []


def test_endpoints_are_exactly_what_the_client_settings_expect(sim: Simulator) -> None:
    endpoints = sim.endpoints()
    assert set(endpoints) == {
        "authority_host",
        "bap",
        "powerapps",
        "powerapps_scope",
        "graph",
        "graph_scope",
        "ca_bundle",
    }
    assert endpoints["authority_host"] == sim.base_url
    assert endpoints["powerapps_scope"] == "https://service.powerapps.com//.default"
    assert endpoints["ca_bundle"] == sim.ca_bundle_path
