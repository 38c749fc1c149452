"""Tokens per resource via msal; msal's error dictionaries become ``AuthError``.

Secrets come from an environment variable or a file named in the config, never from the
config itself, and are never logged or put into an exception message.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from pathlib import Path
from typing import Any

import msal
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key

from cleanup.clients.http import VerifyingSession
from cleanup.config import EndpointSettings, TenantSettings
from cleanup.errors import AuthError, ConfigError


class TokenProvider:
    """Acquire and cache app-only (or device-code) tokens, one per resource scope."""

    def __init__(
        self,
        tenant: TenantSettings,
        endpoints: EndpointSettings,
        *,
        secret: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self._tenant = tenant
        self._authority = f"{endpoints.authority_host.rstrip('/')}/{tenant.tenant_id}"
        self._verify: str | bool = endpoints.ca_bundle or True
        self._timeout = timeout
        self._secret_override = secret
        self._app: msal.ClientApplication | None = None
        self._lock = threading.Lock()
        self._scope_locks: dict[str, threading.Lock] = {}

    def token(self, scope: str) -> str:
        """Return a bearer token for ``scope`` (from msal's cache when still valid)."""
        with self._lock:
            app = self._application()
            scope_lock = self._scope_locks.setdefault(scope, threading.Lock())
        if isinstance(app, msal.ConfidentialClientApplication):
            # One lock per scope: a new environment's first token (a network round trip) must
            # not stall every other environment's requests; msal's token cache is thread-safe.
            with scope_lock:
                result = app.acquire_token_for_client(scopes=[scope])
        else:
            with self._lock:  # device code: one sign-in prompt at a time
                result = self._device_code_token(app, scope)
        if "access_token" not in result:
            raise AuthError(_explain(result, scope))
        return str(result["access_token"])

    def invalidate(self, scope: str) -> None:
        """Drop cached access tokens for ``scope`` so the next call asks the identity provider."""
        with self._lock:
            if self._app is None:
                return
            if isinstance(self._app, msal.ConfidentialClientApplication):
                # App-only tokens are cheap to re-acquire; dropping all of them is the one
                # removal msal documents, and a revoked token is rarely revoked alone.
                self._app.remove_tokens_for_client()
                return
            cache = self._app.token_cache
            for item in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
                if scope.lower() in str(item.get("target", "")).lower().split():
                    cache.remove_at(item)

    def _application(self) -> msal.ClientApplication:
        if self._app is None:
            self._app = self._build_application()
        return self._app

    def _build_application(self) -> msal.ClientApplication:
        common: dict[str, Any] = {
            "authority": self._authority,
            "instance_discovery": False,
            "http_client": VerifyingSession(self._verify),
            "timeout": self._timeout,
        }
        try:
            if self._tenant.auth == "device-code":
                return msal.PublicClientApplication(self._tenant.client_id, **common)
            return msal.ConfidentialClientApplication(
                self._tenant.client_id, client_credential=self._credential(), **common
            )
        except ValueError as exc:
            raise AuthError(
                f"Could not reach the identity provider at {self._authority}: {exc} "
                "Check tenant.tenant_id and endpoints.authority_host."
            ) from None

    def _credential(self) -> str | dict[str, str]:
        if self._secret_override is not None:
            return self._secret_override
        if self._tenant.auth == "certificate":
            return certificate_credential(
                self._tenant.certificate_file, self._tenant.certificate_password_env
            )
        return client_secret(self._tenant)

    def _device_code_token(self, app: msal.ClientApplication, scope: str) -> dict[str, Any]:
        assert isinstance(app, msal.PublicClientApplication)
        accounts = app.get_accounts()
        if accounts:
            cached = app.acquire_token_silent([scope], account=accounts[0])
            if cached and "access_token" in cached:
                return cached
        flow = app.initiate_device_flow(scopes=[scope])
        if "user_code" not in flow:
            return flow
        print(flow["message"], file=sys.stderr, flush=True)
        return app.acquire_token_by_device_flow(flow)


def client_secret(tenant: TenantSettings) -> str:
    """Read the client secret from the configured environment variable or file."""
    if tenant.client_secret_file:
        try:
            secret = Path(tenant.client_secret_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"Cannot read tenant.client_secret_file {tenant.client_secret_file}: "
                f"{exc.strerror}."
            ) from None
    else:
        secret = os.environ.get(tenant.client_secret_env, "")
    if not secret:
        where = tenant.client_secret_file or f"the environment variable {tenant.client_secret_env}"
        raise ConfigError(
            f"No client secret found in {where}. Set it, or use auth = 'certificate'."
        )
    return secret


def certificate_credential(path: str, password_env: str) -> dict[str, str]:
    """Build msal's certificate credential from a PEM file holding the key and certificate."""
    try:
        pem = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Cannot read tenant.certificate_file {path}: {exc.strerror}.") from None
    start = pem.find("-----BEGIN CERTIFICATE-----")
    if start < 0 or "PRIVATE KEY-----" not in pem:
        raise ConfigError(
            f"{path} must be a PEM file with both the private key and the certificate "
            "(convert a .pfx with: openssl pkcs12 -in cert.pfx -out cert.pem -nodes)."
        )
    cert_pem = pem[start : pem.find("-----END CERTIFICATE-----", start) + 25]
    _require_rsa_key(pem, path, os.environ.get(password_env, "") if password_env else "")
    der = x509.load_pem_x509_certificate(cert_pem.encode()).public_bytes(Encoding.DER)
    credential = {
        "private_key": pem,
        "thumbprint": hashlib.sha1(der).hexdigest().upper(),  # noqa: S324 - Entra's x5t is SHA-1
        "public_certificate": cert_pem,
    }
    if password_env:
        credential["passphrase"] = os.environ.get(password_env, "")
    return credential


def _require_rsa_key(pem: str, path: str, password: str) -> None:
    # Entra ID signs client assertions with RS256 only; an EC key would fail deep inside msal.
    try:
        key = load_pem_private_key(pem.encode(), password.encode() or None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"Cannot read the private key in {path}: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(
            f"The private key in {path} is {type(key).__name__}; Entra ID needs an RSA key."
        )


def _explain(result: dict[str, Any], scope: str) -> str:
    error = result.get("error", "unknown_error")
    description = str(result.get("error_description", "")).splitlines()[0:1]
    hint = {
        "invalid_client": "the client secret or certificate is wrong or expired",
        "unauthorized_client": "the app registration is not enabled for this tenant",
        "invalid_scope": "the resource is unknown: check the endpoints in config.toml",
        "invalid_request": "check tenant.tenant_id and tenant.client_id",
    }.get(error, "see the description")
    text = description[0] if description else ""
    return f"Could not get a token for {scope}: {error} ({hint}). {text}".strip()
