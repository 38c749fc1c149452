"""Microsoft Entra ID (v2.0 endpoint) fake: OIDC discovery, token endpoint, device code flow.

Access tokens are RS256-signed JWTs (the key set is published at ``jwks_uri``), but the server
also keeps every token it issued so it knows each token's audience, subject, issue time and
expiry exactly; a token it did not issue is refused.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from cleanup.simulator.faults import Faults
from cleanup.simulator.identity_jwt import b64url_json, jwks, sign_jwt
from cleanup.simulator.identity_support import (
    DEVICE_CODE_GRANT,
    GRAPH_RESOURCE,
    POWERAPPS_RESOURCE,
    RESERVED_SCOPES,
    AadError,
    TokenInfo,
    app_resource,
    check_assertion,
    discovery_document,
    missing,
    single_resource,
)
from cleanup.simulator.messages import Request, Response, json_response
from cleanup.simulator.tenant import Tenant

_NS = uuid.UUID("7d3f8d54-3c36-4a43-9a63-2f1b2d7c9e10")


@dataclass
class _DeviceGrant:
    client_id: str
    audience: str
    scopes: list[str]
    user_code: str
    expires_at: float
    user: tuple[str, str] | None = None  # (object id, upn) once approved
    redeemed: bool = False


class Identity:
    """Issues and validates tokens for one tenant and one confidential/public client."""

    device_code_interval = 5  # seconds msal waits between polls (Entra's default)

    def __init__(
        self,
        tenant: Tenant,
        client_secret: str,
        faults: Callable[[], Faults],
        audiences: Callable[[], list[str]],
    ) -> None:
        self.tenant = tenant
        self.client_secret = client_secret
        self._faults = faults
        self._audiences = audiences
        self._lock = threading.Lock()
        self._tokens: dict[str, TokenInfo] = {}
        self._refresh: dict[str, tuple[str, str]] = {}  # refresh token -> (oid, upn)
        self._devices: dict[str, _DeviceGrant] = {}

    # -- routing -------------------------------------------------------------------------
    def handle(self, req: Request, tenant_segment: str, rest: str) -> Response:
        """Serve ``/{tenant}/{rest}``."""
        try:
            if tenant_segment.lower() != self.tenant.tenant_id.lower():
                raise AadError(
                    400, "invalid_tenant", 90002, f"Tenant '{tenant_segment}' not found."
                )
            if req.method == "GET" and rest.rstrip("/") in (
                "v2.0/.well-known/openid-configuration",
                ".well-known/openid-configuration",
            ):
                return json_response(200, discovery_document(req.base_url, self.tenant.tenant_id))
            if req.method == "GET" and rest == "discovery/v2.0/keys":
                return json_response(200, jwks())
            if req.method == "POST" and rest == "oauth2/v2.0/token":
                return self._token(req)
            if req.method == "POST" and rest == "oauth2/v2.0/devicecode":
                return self._devicecode(req)
            raise AadError(404, "invalid_request", 900561, f"Endpoint '{rest}' is not served.")
        except AadError as err:
            return err.response(req.base_url)

    # -- token endpoint ------------------------------------------------------------------
    def _token(self, req: Request) -> Response:
        form = dict(parse_qsl(req.body.decode("utf-8"), keep_blank_values=True))
        grant = form.get("grant_type")
        if not grant:
            raise missing("grant_type")
        if grant == "client_credentials":
            client_id = self._authenticate_client(req, form)
            audience = app_resource(form.get("scope", ""), self._audiences(), self.tenant.tenant_id)
            oid = str(uuid.uuid5(_NS, f"sp:{client_id}"))
            return self._token_response(req, audience, oid, client_id, is_app=True)
        if grant == DEVICE_CODE_GRANT:
            return self._redeem_device_code(req, form)
        if grant == "refresh_token":
            return self._redeem_refresh_token(req, form)
        raise AadError(
            400,
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{grant}'.",
        )

    def _check_client_id(self, client_id: str | None) -> str:
        if not client_id:
            raise missing("client_id")
        if client_id.lower() != self.tenant.client_id.lower():
            raise AadError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.tenant.tenant_id}'. This can happen if the application has not been "
                "installed by the administrator of the tenant or consented to by any user in the "
                "tenant. You may have sent your authentication request to the wrong tenant.",
            )
        return self.tenant.client_id

    def _authenticate_client(self, req: Request, form: dict[str, str]) -> str:
        client_id, secret = form.get("client_id"), form.get("client_secret")
        basic = req.header("authorization")
        if basic.lower().startswith("basic "):
            decoded = base64.b64decode(basic[6:]).decode("utf-8")
            client_id, _, secret = decoded.partition(":")
        client_id = self._check_client_id(client_id)
        if form.get("client_assertion"):
            endpoint = f"{req.base_url}/{self.tenant.tenant_id}/oauth2/v2.0/token"
            check_assertion(form, client_id, endpoint)
        elif secret is None:
            raise AadError(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' "
                "or 'client_secret'.",
            )
        elif not secrets.compare_digest(secret.encode(), self.client_secret.encode()):
            raise AadError(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is "
                "the client secret value, not the client secret ID, for a secret added to app "
                f"'{client_id}'.",
            )
        return client_id

    # -- issuing -----------------------------------------------------------------------------
    def _token_response(
        self,
        req: Request,
        audience: str,
        oid: str,
        client_id: str,
        *,
        is_app: bool,
        upn: str | None = None,
        scopes: list[str] | None = None,
    ) -> Response:
        lifetime = self._faults().token_lifetime_seconds
        now = time.time()
        issuer = f"{req.base_url}/{self.tenant.tenant_id}/v2.0"
        claims = {
            "aud": audience,
            "iss": issuer,
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now + lifetime),
            "appid": client_id,
            "azp": client_id,
            "oid": oid,
            "sub": oid,
            "tid": self.tenant.tenant_id,
            "idtyp": "app" if is_app else "user",
            "uti": secrets.token_urlsafe(16),
            "ver": "2.0",
        }
        if upn:
            claims.update({"upn": upn, "scp": "user_impersonation"})
        token = sign_jwt(claims)
        info = TokenInfo(audience, oid, client_id, now, now + lifetime, is_app, upn)
        with self._lock:
            self._tokens[token] = info
        body: dict[str, object] = {
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": token,
        }
        if not is_app:
            body.update(self._user_extras(req, oid, upn or "", client_id, scopes or [], issuer))
        return json_response(200, body, {"Cache-Control": "no-store"})

    def _user_extras(
        self, req: Request, oid: str, upn: str, client_id: str, scopes: list[str], issuer: str
    ) -> dict[str, object]:
        now = int(time.time())
        extras: dict[str, object] = {
            "scope": " ".join(s for s in scopes if s not in RESERVED_SCOPES)
        }
        extras["client_info"] = b64url_json({"uid": oid, "utid": self.tenant.tenant_id})
        id_claims = {
            "aud": client_id,
            "iss": issuer,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "name": upn.split("@")[0],
            "oid": oid,
            "preferred_username": upn,
            "sub": oid,
            "tid": self.tenant.tenant_id,
            "ver": "2.0",
        }
        extras["id_token"] = sign_jwt(id_claims)
        refresh = secrets.token_urlsafe(32)
        with self._lock:
            self._refresh[refresh] = (oid, upn)
        extras["refresh_token"] = refresh
        return extras

    # -- device code -----------------------------------------------------------------------
    def _devicecode(self, req: Request) -> Response:
        form = dict(parse_qsl(req.body.decode("utf-8"), keep_blank_values=True))
        client_id = self._check_client_id(form.get("client_id"))
        scopes = form.get("scope", "").split()
        audience = self._resource_of(scopes)
        device_code = secrets.token_urlsafe(32)
        user_code = "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(9))
        lifetime = 900
        grant = _DeviceGrant(client_id, audience, scopes, user_code, time.time() + lifetime)
        with self._lock:
            self._devices[device_code] = grant
        uri = f"{req.base_url}/devicelogin"
        return json_response(
            200,
            {
                "user_code": user_code,
                "device_code": device_code,
                "verification_uri": uri,
                "expires_in": lifetime,
                "interval": self.device_code_interval,
                "message": f"To sign in, use a web browser to open the page {uri} and enter the "
                f"code {user_code} to authenticate.",
            },
        )

    def _resource_of(self, scopes: list[str]) -> str:
        wanted = [s for s in scopes if s not in RESERVED_SCOPES]
        return single_resource(wanted, self._audiences(), self.tenant.tenant_id)

    def approve_device_codes(self, upn: str, object_id: str | None = None) -> int:
        """Sign ``upn`` in on every pending device code; returns how many were approved."""
        oid = object_id or str(uuid.uuid5(_NS, f"user:{upn.lower()}"))
        with self._lock:
            pending = [g for g in self._devices.values() if g.user is None and not g.redeemed]
            for grant in pending:
                grant.user = (oid, upn)
        return len(pending)

    def _redeem_device_code(self, req: Request, form: dict[str, str]) -> Response:
        client_id = self._check_client_id(form.get("client_id"))
        code = form.get("device_code") or form.get("code") or ""
        with self._lock:
            grant = self._devices.get(code)
        if grant is None or grant.redeemed:
            raise AadError(
                400,
                "invalid_grant",
                70000,
                "The provided device code is invalid or was already used.",
            )
        if time.time() > grant.expires_at:
            raise AadError(
                400,
                "expired_token",
                70020,
                "The provided value for the input parameter 'device_code' is not valid. "
                "This device code has expired.",
            )
        if grant.user is None:
            raise AadError(
                400,
                "authorization_pending",
                70016,
                "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
            )
        grant.redeemed = True
        oid, upn = grant.user
        return self._token_response(
            req, grant.audience, oid, client_id, is_app=False, upn=upn, scopes=grant.scopes
        )

    def _redeem_refresh_token(self, req: Request, form: dict[str, str]) -> Response:
        client_id = self._check_client_id(form.get("client_id"))
        with self._lock:
            user = self._refresh.get(form.get("refresh_token", ""))
        if user is None:
            raise AadError(
                400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid."
            )
        scopes = form.get("scope", "").split()
        audience = self._resource_of(scopes)
        oid, upn = user
        return self._token_response(
            req, audience, oid, client_id, is_app=False, upn=upn, scopes=scopes
        )

    # -- validation ------------------------------------------------------------------------
    def check(self, token: str | None, audience: str) -> tuple[TokenInfo | None, str]:
        """The token's info if valid for ``audience``, else (None, why) for WWW-Authenticate."""
        if not token:
            return None, "Bearer token is missing."
        with self._lock:
            info = self._tokens.get(token)
        if info is None:
            return None, "The access token is invalid or was not issued by this tenant."
        if info.audience.lower().rstrip("/") != audience.lower().rstrip("/"):
            return None, f"The audience '{info.audience}' is invalid; expected '{audience}'."
        if time.time() >= info.expires_at:
            return None, "The access token has expired."
        revoked = self._faults().revoke_tokens_issued_before
        if revoked is not None and info.issued_at < revoked:
            return None, "The access token has been revoked (issued before the revocation time)."
        return info, ""

    def service_principal_id(self) -> str:
        """The Entra object id of the tenant's service principal (subject of app tokens)."""
        return str(uuid.uuid5(_NS, f"sp:{self.tenant.client_id}"))


__all__ = ["GRAPH_RESOURCE", "POWERAPPS_RESOURCE", "AadError", "Identity", "TokenInfo"]
