"""Entra ID fake, shared parts: token facts, OAuth errors, discovery, scope and assertion checks."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from cleanup.simulator.identity_jwt import decode_unverified
from cleanup.simulator.messages import Response, json_response

RESERVED_SCOPES = {"openid", "profile", "offline_access", "email"}
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
GRAPH_RESOURCE = "https://graph.microsoft.com"
POWERAPPS_RESOURCE = "https://service.powerapps.com/"


@dataclass(frozen=True)
class TokenInfo:
    """What the server knows about an access token it issued."""

    audience: str
    subject: str  # Entra object id of the principal (service principal or user)
    client_id: str
    issued_at: float
    expires_at: float
    is_app: bool
    upn: str | None = None


class AadError(Exception):
    """An OAuth error answered in Entra's format."""

    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.code, self.description = status, error, code, description

    def response(self, base_url: str) -> Response:
        """The error as Entra writes it (``error``, ``error_description`` with AADSTS code...)."""
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
        text = (
            f"AADSTS{self.code}: {self.description}\r\nTrace ID: {trace}\r\nCorrelation ID: {corr}"
        )
        body = {
            "error": self.error,
            "error_description": f"{text}\r\nTimestamp: {stamp}",
            "error_codes": [self.code],
            "timestamp": stamp,
            "trace_id": trace,
            "correlation_id": corr,
            "error_uri": f"{base_url}/error?code={self.code}",
        }
        return json_response(self.status, body, {"Cache-Control": "no-store"})


def missing(name: str) -> AadError:
    """Entra's error for a missing form parameter."""
    return AadError(
        400,
        "invalid_request",
        900144,
        f"The request body must contain the following parameter: '{name}'.",
    )


def discovery_document(base_url: str, tenant_id: str) -> dict[str, object]:
    """The OpenID configuration document."""
    root = f"{base_url}/{tenant_id}"
    return {
        "issuer": f"{root}/v2.0",
        "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
        "token_endpoint": f"{root}/oauth2/v2.0/token",
        "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
        "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
        "jwks_uri": f"{root}/discovery/v2.0/keys",
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "name", "oid", "tid"],
        "tenant_region_scope": "NA",
        "request_uri_parameter_supported": False,
    }


def check_assertion(form: dict[str, str], client_id: str, endpoint: str) -> None:
    """Check a client assertion JWT as Entra does, except for its signature."""
    # The signature is NOT verified against a registered certificate: the simulator has
    # no certificate registry. It checks what Entra checks besides the signature.
    if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
        raise AadError(400, "invalid_request", 50027, "Invalid client_assertion_type.")
    claims = decode_unverified(form["client_assertion"])
    if claims is None:
        raise AadError(401, "invalid_client", 50027, "JWT token is invalid or malformed.")
    audiences = claims.get("aud")
    audiences = audiences if isinstance(audiences, list) else [audiences]
    if endpoint.lower() not in [str(a).lower().rstrip("/") for a in audiences]:
        raise AadError(
            401, "invalid_client", 700212, f"Client assertion audience is not '{endpoint}'."
        )
    if (
        str(claims.get("iss", "")).lower() != client_id.lower()
        or str(claims.get("sub", "")).lower() != client_id.lower()
    ):
        raise AadError(
            401, "invalid_client", 700023, "Client assertion iss and sub must be the client id."
        )
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or exp < time.time():
        raise AadError(
            401,
            "invalid_client",
            700024,
            "Client assertion is not within its valid time range.",
        )


def _canonical(audiences: list[str]) -> dict[str, str]:
    known = [POWERAPPS_RESOURCE, GRAPH_RESOURCE, *audiences]
    return {a.lower().rstrip("/"): a for a in known}


def resource_of_scope(scope: str, audiences: list[str], tenant_id: str) -> str:
    """The audience a scope names (``.../.default``, ``...//.default``, ``.../perm``)."""
    if "://" not in scope:
        return GRAPH_RESOURCE  # a bare permission such as Mail.Send targets Graph
    head, _, _permission = scope.rpartition("/")
    canonical = _canonical(audiences).get(head.lower().rstrip("/"))
    if canonical is None:
        raise AadError(
            400,
            "invalid_scope",
            500011,
            f"The resource principal named {head} was not found in the tenant named "
            f"{tenant_id}. This can happen if the application has not been "
            "installed by the administrator of the tenant or consented to by any user in the "
            "tenant. You might have sent your authentication request to the wrong tenant.",
        )
    return canonical


def single_resource(scopes: list[str], audiences: list[str], tenant_id: str) -> str:
    """The one audience the scopes name (Graph when they name none)."""
    resources = {resource_of_scope(s, audiences, tenant_id) for s in scopes}
    if len(resources) > 1:
        raise AadError(
            400,
            "invalid_scope",
            28000,
            "Provided value for the input parameter scope is not valid because it contains "
            "more than one resource.",
        )
    return resources.pop() if resources else GRAPH_RESOURCE


def app_resource(scope_param: str, audiences: list[str], tenant_id: str) -> str:
    """The audience of a client-credentials ``scope`` (``<resource>/.default`` only)."""
    scopes = [s for s in scope_param.split() if s not in RESERVED_SCOPES]
    if not scopes:
        raise missing("scope")
    for scope in scopes:
        if not scope.endswith("/.default"):
            raise AadError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows "
                "must have a scope value with /.default suffixed to the resource identifier "
                "(application ID URI).",
            )
    return single_resource(scopes, audiences, tenant_id)
