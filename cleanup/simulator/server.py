"""The simulator: one HTTPS listener serving identity, BAP, Power Apps, Dataverse and Graph.

Usage::

    with Simulator(tenant, client_secret="s3cret") as sim:
        sim.endpoints()  # authority host, service roots, scopes, CA bundle
"""

from __future__ import annotations

import threading
import time
from typing import Any

from cleanup.simulator.bap import Bap
from cleanup.simulator.dataverse import Dataverse, instance_url
from cleanup.simulator.dataverse_rules import index_dependencies
from cleanup.simulator.faults import FaultRule, Faults, Limiter
from cleanup.simulator.graph import Graph
from cleanup.simulator.identity import GRAPH_RESOURCE, Identity, TokenInfo
from cleanup.simulator.messages import (
    Call,
    Request,
    RequestRecord,
    Response,
    error_response,
    json_response,
)
from cleanup.simulator.powerapps import PowerApps
from cleanup.simulator.tenant import Environment, Tenant
from cleanup.simulator.tls import ServerTls, make_server_tls
from cleanup.simulator.transport import SimulatorHttpServer

POWERAPPS_SCOPE = "https://service.powerapps.com//.default"
GRAPH_SCOPE = f"{GRAPH_RESOURCE}/.default"
_REQUEST_ID_HEADERS = {
    "dataverse": ("x-ms-service-request-id", "REQ_ID"),
    "bap": ("x-ms-request-id", "x-ms-correlation-request-id"),
    "powerapps": ("x-ms-request-id", "x-ms-correlation-request-id"),
    "identity": ("x-ms-request-id",),
    "graph": ("request-id",),
}
_DEFAULT_FAULTS = {
    401: ("InvalidAuthenticationToken", "The access token is invalid."),
    403: ("Forbidden", "The caller is not allowed to perform this operation."),
    404: ("NotFound", "The requested resource was not found."),
    429: ("TooManyRequests", "Too many requests. Retry after the interval in Retry-After."),
    500: ("InternalServerError", "An unexpected error occurred."),
    502: ("BadGateway", "The upstream service answered with an invalid response."),
    503: ("ServiceUnavailable", "The service is temporarily unavailable."),
    504: ("GatewayTimeout", "The upstream service did not answer in time."),
}
_DATAVERSE_FAULTS = {
    403: ("0x80072560", "The user is not a member of the organization."),
    429: (
        "0x80072322",
        "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
    ),
    500: ("0x80040216", "An unexpected error occurred."),
}


class Simulator:
    """A local HTTPS fake of the Microsoft APIs the job calls, over a live, mutable tenant."""

    def __init__(
        self,
        tenant: Tenant,
        client_secret: str = "s3cret",
        faults: Faults | None = None,
        latency_ms: float = 0.0,
        port: int = 0,
        host: str = "127.0.0.1",
    ) -> None:
        self.tenant = tenant
        self.faults = faults if faults is not None else Faults()
        self.latency_ms = latency_ms
        self.host, self.port = host, port
        self.request_log: list[RequestRecord] = []
        self.sent_mail: list[dict[str, Any]] = []
        self.unmanaged_layers: set[str] = set()
        self.internal_errors: list[str] = []  # tracebacks of simulator bugs (answered 500)
        self._log_lock = threading.Lock()
        self._data_lock = threading.RLock()
        self._limiter = Limiter()
        self._tls: ServerTls | None = None
        self._server: SimulatorHttpServer | None = None
        self._thread: threading.Thread | None = None
        self.identity = Identity(tenant, client_secret, lambda: self.faults, self._audiences)
        self.dataverse = Dataverse(tenant, lambda: self.faults, self.unmanaged_layers)
        self.bap = Bap(tenant, lambda: self.faults)
        self.powerapps = PowerApps(tenant, lambda: self.faults)
        self.graph = Graph(tenant, self._record_mail)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, port: int | None = None) -> Simulator:
        """Bind (port 0 = any free port), serve HTTPS on a background thread."""
        if self._server is not None:
            return self
        index_dependencies(self.tenant.environments)
        self._tls = make_server_tls()
        server = SimulatorHttpServer((self.host, self.port if port is None else port), self)
        server.ssl_context = self._tls.context
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"simulator-{self.port}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and delete the CA file."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._tls is not None:
            self._tls.cleanup()
        self._server, self._thread, self._tls = None, None, None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses ---------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """``https://127.0.0.1:<port>``."""
        return f"https://{self.host}:{self.port}"

    @property
    def ca_bundle_path(self) -> str:
        """Path of the PEM file of the generated CA (only while running)."""
        if self._tls is None:
            raise RuntimeError("the simulator is not running; call start() first")
        return self._tls.ca_bundle_path

    def instance_url(self, env: Environment) -> str:
        """The Dataverse instance URL of an environment, with trailing slash."""
        return instance_url(env, self.base_url)

    def endpoints(self) -> dict[str, str]:
        """Everything a client needs to point at the simulator instead of the cloud."""
        return {
            "authority_host": self.base_url,
            "bap": f"{self.base_url}/bap",
            "powerapps": f"{self.base_url}/powerapps",
            "powerapps_scope": POWERAPPS_SCOPE,
            "graph": f"{self.base_url}/graph",
            "graph_scope": GRAPH_SCOPE,
            "ca_bundle": self.ca_bundle_path,
        }

    # -- test helpers ------------------------------------------------------------------------
    def reset_log(self) -> None:
        """Forget the recorded requests."""
        with self._log_lock:
            self.request_log.clear()

    def expire_all_tokens(self) -> None:
        """Revoke every token issued so far (they answer 401 from now on)."""
        self.faults.revoke_tokens_issued_before = time.time()

    def approve_device_codes(
        self, upn: str = "admin@contoso.com", object_id: str | None = None
    ) -> int:
        """Complete every pending device-code sign-in as ``upn``; returns how many."""
        return self.identity.approve_device_codes(upn, object_id)

    def peak_concurrency(self, environment_id: str | None = None) -> int:
        """The most simultaneous Dataverse requests seen per (subject, environment)."""
        return self._limiter.peak(environment_id)

    def _audiences(self) -> list[str]:
        return [
            self.instance_url(e).rstrip("/") for e in self.tenant.environments if e.has_dataverse
        ]

    def _record_mail(self, mail: dict[str, Any]) -> None:
        with self._log_lock:
            self.sent_mail.append(mail)

    def record(self, entry: RequestRecord) -> None:
        """Append to the request log (called by the HTTP layer)."""
        with self._log_lock:
            self.request_log.append(entry)

    # -- dispatch ----------------------------------------------------------------------------
    def route(self, req: Request) -> Call:
        """Which service serves the request."""
        first = req.path.split("/", 2)[1] if req.path.count("/") >= 1 else ""
        call: Call | None
        if first == "dv":
            call = self.dataverse.resolve(req)
        elif first == "bap":
            call = self.bap.resolve(req)
        elif first == "powerapps":
            call = self.powerapps.resolve(req)
        elif first == "graph":
            call = self.graph.resolve(req)
        else:
            rest = req.path.split("/", 2)[2] if req.path.count("/") >= 2 else ""
            table = rest.rstrip("/").rsplit("/", 1)[-1] or None
            call = Call("identity", lambda r, i: self.identity.handle(r, first, rest), table=table)
        if call is None:
            service = first if first in _REQUEST_ID_HEADERS else "identity"
            call = Call(service, lambda r, i: _no_route(r, service))
        return call

    def route_fallback(self, req: Request) -> Call:
        """A Call for logging a request whose routing itself failed."""
        first = req.path.split("/", 2)[1] if req.path.count("/") >= 1 else ""
        service = first if first in _REQUEST_ID_HEADERS else "identity"
        return Call(service, lambda r, i: _no_route(r, service))

    def dispatch(self, req: Request, call: Call) -> Response:
        """Answer one request: fault rules, authentication, limits, latency, the handler."""
        rule = self.faults.take_rule(
            call.service, call.environment_id, req.method, req.path, call.page
        )
        if rule is not None and not rule.after_processing:
            time.sleep(rule.delay_seconds)
            if _has_effect(rule):
                return self._finish(req, call, self._fault_response(req, call, rule))
        response = self._process(req, call)
        if rule is not None and rule.after_processing:
            time.sleep(rule.delay_seconds)
            if _has_effect(rule):
                response = self._fault_response(req, call, rule)
        return self._finish(req, call, response)

    def _process(self, req: Request, call: Call) -> Response:
        info: TokenInfo | None = None
        if call.audience is not None:
            info, why = self.identity.check(req.bearer_token(), call.audience)
            if info is None:
                return self._unauthorized(call, why)
        key = (info.subject, call.environment_id or "") if call.limited and info else None
        if key is not None:
            throttle = self._limiter.enter(key, self.faults)
            if throttle is not None:
                headers = {"Retry-After": str(throttle.retry_after)}
                return error_response(429, throttle.code, throttle.message, headers)
        try:
            delay = (self.latency_ms + self.faults.latency_ms) / 1000.0
            if delay > 0:
                time.sleep(delay)
            with self._data_lock:
                response = call.handler(req, info)
            if key is not None:
                remaining = self._limiter.remaining(key, self.faults)
                response.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] = str(remaining)
            return response
        finally:
            if key is not None:
                self._limiter.leave(key)

    def _unauthorized(self, call: Call, why: str) -> Response:
        authorize = f"{self.base_url}/{self.tenant.tenant_id}/oauth2/authorize"
        challenge = f'Bearer authorization_uri="{authorize}", error="invalid_token"'
        if call.audience:
            challenge += f', resource_id="{call.audience}"'
        challenge += f', error_description="{why}"'
        return error_response(
            401, "InvalidAuthenticationToken", why, {"WWW-Authenticate": challenge}
        )

    def _fault_response(self, req: Request, call: Call, rule: FaultRule) -> Response:
        if rule.drop_connection:
            return Response(0, drop_connection=True)
        status = rule.status if rule.status is not None else 200
        headers: dict[str, str] = {}
        if rule.retry_after is not None:
            headers["Retry-After"] = f"{rule.retry_after:g}"
        if status == 401:
            headers["WWW-Authenticate"] = (
                f'Bearer error="invalid_token", resource_id="{call.audience}"'
            )
        if rule.body is not None:
            headers["Content-Type"] = "application/json; charset=utf-8"
            return Response(status, rule.body.encode("utf-8"), headers)
        if call.service == "identity":
            body = {
                "error": "temporarily_unavailable",
                "error_description": f"AADSTS50196: {status}",
            }
            return json_response(status, body, headers)
        table = _DATAVERSE_FAULTS if call.service == "dataverse" else {}
        code, message = table.get(status) or _DEFAULT_FAULTS.get(
            status, (f"Http{status}", "Fault.")
        )
        return error_response(status, code, message, headers)

    def _finish(self, req: Request, call: Call, response: Response) -> Response:
        for name in _REQUEST_ID_HEADERS[call.service]:
            response.headers.setdefault(name, req.request_id)
        if call.service == "graph":
            response.headers["client-request-id"] = (
                req.header("client-request-id") or req.request_id
            )
        return response


def _has_effect(rule: FaultRule) -> bool:
    return rule.status is not None or rule.body is not None or rule.drop_connection


def _no_route(req: Request, service: str) -> Response:
    if service == "graph":
        body = {
            "error": {
                "code": "BadRequest",
                "message": f"Resource not found for the segment '{req.path}'.",
            }
        }
        return json_response(404, body)
    return error_response(404, "NotFound", f"No route for {req.method} {req.path}.")
