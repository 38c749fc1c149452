"""Authentication with real msal against the simulator's identity provider."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import trustme

from cleanup.clients.auth import TokenProvider, certificate_credential
from cleanup.config import EndpointSettings, TenantSettings
from cleanup.errors import AuthError, ConfigError
from cleanup.simulator.demo import demo_tenant
from tests.conftest import SECRET


def endpoints(sim) -> EndpointSettings:
    return EndpointSettings(**sim.endpoints())


def tenant_settings(sim, **kw) -> TenantSettings:
    return TenantSettings(tenant_id=sim.tenant.tenant_id, client_id=sim.tenant.client_id, **kw)


def test_client_secret_from_the_environment(start_simulator, secret_env) -> None:
    sim = start_simulator(demo_tenant())
    tokens = TokenProvider(
        tenant_settings(sim, client_secret_env="CONNREF_TEST_SECRET"), endpoints(sim)
    )
    first = tokens.token(sim.endpoints()["graph_scope"])
    assert first and tokens.token(sim.endpoints()["graph_scope"]) == first  # cached
    tokens.invalidate(sim.endpoints()["graph_scope"])
    assert tokens.token(sim.endpoints()["graph_scope"]) != first  # asked again after a 401


def test_wrong_secret_is_a_clear_error_without_the_secret(start_simulator, monkeypatch) -> None:
    sim = start_simulator(demo_tenant())
    monkeypatch.setenv("CONNREF_TEST_SECRET", "wrong-secret-canary")
    tokens = TokenProvider(
        tenant_settings(sim, client_secret_env="CONNREF_TEST_SECRET"), endpoints(sim)
    )
    with pytest.raises(AuthError, match="invalid_client") as err:
        tokens.token(sim.endpoints()["graph_scope"])
    assert "wrong-secret-canary" not in str(err.value)
    assert "secret or certificate is wrong" in str(err.value)


def test_missing_secret_names_the_variable(start_simulator, monkeypatch) -> None:
    sim = start_simulator(demo_tenant())
    monkeypatch.delenv("NO_SUCH_SECRET_VAR", raising=False)
    tokens = TokenProvider(
        tenant_settings(sim, client_secret_env="NO_SUCH_SECRET_VAR"), endpoints(sim)
    )
    with pytest.raises(ConfigError, match="NO_SUCH_SECRET_VAR"):
        tokens.token(sim.endpoints()["graph_scope"])


def test_secret_file(start_simulator, tmp_path: Path) -> None:
    sim = start_simulator(demo_tenant())
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n", encoding="utf-8")
    tokens = TokenProvider(
        tenant_settings(sim, client_secret_file=str(secret_file)), endpoints(sim)
    )
    assert tokens.token(sim.endpoints()["graph_scope"])


def test_certificate_credential(start_simulator, tmp_path: Path) -> None:
    sim = start_simulator(demo_tenant())
    cert = trustme.CA().issue_cert("connref.example", key_type=trustme.KeyType.RSA)
    pem = tmp_path / "app.pem"
    pem.write_bytes(cert.private_key_pem.bytes() + cert.cert_chain_pems[0].bytes())
    credential = certificate_credential(str(pem), "")
    assert len(credential["thumbprint"]) == 40
    tokens = TokenProvider(
        tenant_settings(sim, auth="certificate", certificate_file=str(pem)), endpoints(sim)
    )
    assert tokens.token(sim.endpoints()["graph_scope"])


def test_elliptic_curve_key_is_refused(tmp_path: Path) -> None:
    cert = trustme.CA(key_type=trustme.KeyType.ECDSA).issue_cert("x.example")
    pem = tmp_path / "ec.pem"
    pem.write_bytes(cert.private_key_pem.bytes() + cert.cert_chain_pems[0].bytes())
    with pytest.raises(ConfigError, match="needs an RSA key"):
        certificate_credential(str(pem), "")


def test_certificate_file_without_a_key_is_refused(tmp_path: Path) -> None:
    pem = tmp_path / "cert-only.pem"
    pem.write_bytes(trustme.CA().issue_cert("x.example").cert_chain_pems[0].bytes())
    with pytest.raises(ConfigError, match="private key and the certificate"):
        certificate_credential(str(pem), "")


def test_device_code(start_simulator, capsys) -> None:
    sim = start_simulator(demo_tenant())
    sim.identity.device_code_interval = 0
    tokens = TokenProvider(tenant_settings(sim, auth="device-code"), endpoints(sim))

    def approve_soon() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not sim.approve_device_codes():
            time.sleep(0.05)

    approver = threading.Thread(target=approve_soon)
    approver.start()
    token = tokens.token(sim.endpoints()["graph_scope"])
    approver.join()
    assert token
    assert "code" in capsys.readouterr().err.lower()  # the sign-in instructions were shown
