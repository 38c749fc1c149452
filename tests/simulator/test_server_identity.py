"""Identity endpoints, tokens, TLS and authentication of the simulator, with real msal clients."""

from __future__ import annotations

import datetime
import hashlib
import time
from collections.abc import Iterator

import msal
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from test_server_support import (
    CLIENT_ID,
    ENV_A,
    SECRET,
    TENANT_ID,
    api_session,
    build_tenant,
    dv_session,
    token,
)

from cleanup.simulator.faults import Faults
from cleanup.simulator.server import Simulator

POWERAPPS_SCOPE = "https://service.powerapps.com//.default"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(build_tenant(), client_secret=SECRET) as running:
        yield running
        assert running.internal_errors == []


@pytest.fixture
def no_env_ca(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override a session's verify= (msal sets
    # verify on its session), so the test removes them to exercise msal exactly as documented.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def _app(sim: Simulator, credential: object) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        CLIENT_ID,
        client_credential=credential,
        authority=f"{sim.base_url}/{TENANT_ID}",
        instance_discovery=False,
        verify=sim.ca_bundle_path,
    )


def test_discovery_document_points_back_at_the_simulator(sim: Simulator) -> None:
    url = f"{sim.base_url}/{TENANT_ID}/v2.0/.well-known/openid-configuration"
    doc = requests.get(url, verify=sim.ca_bundle_path, timeout=10).json()
    root = f"{sim.base_url}/{TENANT_ID}"
    assert doc["issuer"] == f"{root}/v2.0"
    assert doc["token_endpoint"] == f"{root}/oauth2/v2.0/token"
    assert doc["device_authorization_endpoint"] == f"{root}/oauth2/v2.0/devicecode"
    assert doc["authorization_endpoint"].startswith(root)
    keys = requests.get(doc["jwks_uri"], verify=sim.ca_bundle_path, timeout=10).json()
    assert keys["keys"][0]["kty"] == "RSA"


def test_unknown_tenant_is_refused(sim: Simulator) -> None:
    url = f"{sim.base_url}/not-a-tenant/v2.0/.well-known/openid-configuration"
    response = requests.get(url, verify=sim.ca_bundle_path, timeout=10)
    assert response.status_code == 400
    assert response.json()["error_codes"] == [90002]


def test_msal_client_credentials_token_works_and_is_cached(sim: Simulator, no_env_ca: None) -> None:
    app = _app(sim, SECRET)
    first = app.acquire_token_for_client([POWERAPPS_SCOPE])
    assert first["token_type"] == "Bearer" and first["expires_in"] == 3600
    again = app.acquire_token_for_client([POWERAPPS_SCOPE])
    assert again["token_source"] == "cache"
    headers = {"Authorization": f"Bearer {first['access_token']}"}
    bap = sim.endpoints()["bap"]
    url = f"{bap}/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments"
    response = requests.get(
        url,
        params={"api-version": "2020-10-01"},
        headers=headers,
        verify=sim.ca_bundle_path,
        timeout=10,
    )
    assert response.status_code == 200


def test_msal_bad_secret_and_unknown_scope_are_refused(sim: Simulator, no_env_ca: None) -> None:
    refused = _app(sim, "wrong").acquire_token_for_client([POWERAPPS_SCOPE])
    assert refused["error"] == "invalid_client"
    assert "AADSTS7000215" in refused["error_description"]
    unknown = _app(sim, SECRET).acquire_token_for_client(["https://nowhere.example.com/.default"])
    assert unknown["error"] == "invalid_scope"
    statuses = [r.status for r in sim.request_log if r.path.endswith("/token")]
    assert statuses == [401, 400]


def _certificate() -> dict[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cleanup")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    der = cert.public_bytes(serialization.Encoding.DER)
    return {"private_key": pem, "thumbprint": hashlib.sha1(der).hexdigest().upper()}


def test_msal_certificate_assertion_is_accepted(sim: Simulator, no_env_ca: None) -> None:
    result = _app(sim, _certificate()).acquire_token_for_client(
        ["https://graph.microsoft.com/.default"]
    )
    assert "access_token" in result, result


def test_client_assertion_with_wrong_audience_is_refused(sim: Simulator) -> None:
    import base64
    import json

    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    claims = {
        "aud": "https://elsewhere/token",
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "exp": time.time() + 60,
    }
    assertion = f"{part({'alg': 'RS256'})}.{part(claims)}.c2ln"
    response = requests.post(
        f"{sim.base_url}/{TENANT_ID}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
            "scope": POWERAPPS_SCOPE,
        },
        verify=sim.ca_bundle_path,
        timeout=10,
    )
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_device_code_flow_then_silent_token_for_another_resource(
    sim: Simulator, no_env_ca: None
) -> None:
    app = msal.PublicClientApplication(
        CLIENT_ID,
        authority=f"{sim.base_url}/{TENANT_ID}",
        instance_discovery=False,
        verify=sim.ca_bundle_path,
    )
    flow = app.initiate_device_flow(scopes=[POWERAPPS_SCOPE])
    assert flow["user_code"] in flow["message"]
    poll = requests.post(
        f"{sim.base_url}/{TENANT_ID}/oauth2/v2.0/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "client_id": CLIENT_ID,
            "device_code": flow["device_code"],
        },
        verify=sim.ca_bundle_path,
        timeout=10,
    )
    assert poll.status_code == 400 and poll.json()["error"] == "authorization_pending"
    assert sim.approve_device_codes("admin@contoso.com") == 1
    result = app.acquire_token_by_device_flow(flow)
    assert "access_token" in result, result
    (account,) = app.get_accounts()
    assert account["username"] == "admin@contoso.com"
    dataverse_scope = sim.instance_url(sim.tenant.environment(ENV_A)).rstrip("/") + "/.default"
    silent = app.acquire_token_silent([dataverse_scope], account=account)
    assert silent and "access_token" in silent


def test_tls_verifies_with_the_ca_and_fails_without_it(sim: Simulator) -> None:
    url = f"{sim.base_url}/{TENANT_ID}/v2.0/.well-known/openid-configuration"
    assert requests.get(url, verify=sim.ca_bundle_path, timeout=10).status_code == 200
    session = requests.Session()
    session.trust_env = False  # the system CA store only, as a client without the bundle has
    with pytest.raises(requests.exceptions.SSLError):
        session.get(url, timeout=10)


def test_api_requires_a_token_for_its_own_audience(sim: Simulator) -> None:
    _session, api = dv_session(sim)
    no_token = requests.get(f"{api}WhoAmI", verify=sim.ca_bundle_path, timeout=10)
    assert no_token.status_code == 401
    assert no_token.headers["WWW-Authenticate"].startswith("Bearer ")
    wrong = api_session(sim, POWERAPPS_SCOPE).get(f"{api}WhoAmI", timeout=10)
    assert wrong.status_code == 401
    assert "audience" in wrong.headers["WWW-Authenticate"]


def test_revoked_tokens_get_401_and_new_tokens_work(sim: Simulator) -> None:
    session, api = dv_session(sim)
    assert session.get(f"{api}WhoAmI", timeout=10).status_code == 200
    sim.expire_all_tokens()
    assert session.get(f"{api}WhoAmI", timeout=10).status_code == 401
    scope = sim.instance_url(sim.tenant.environment(ENV_A)).rstrip("/") + "/.default"
    session.headers["Authorization"] = f"Bearer {token(sim, scope)}"
    assert session.get(f"{api}WhoAmI", timeout=10).status_code == 200


def test_token_lifetime_comes_from_faults_and_expired_tokens_are_refused() -> None:
    with Simulator(build_tenant(), faults=Faults(token_lifetime_seconds=1)) as sim:
        session, api = dv_session(sim)
        assert session.get(f"{api}WhoAmI", timeout=10).status_code == 200
        time.sleep(1.05)
        expired = session.get(f"{api}WhoAmI", timeout=10)
        assert expired.status_code == 401
        assert "expired" in expired.headers["WWW-Authenticate"]
