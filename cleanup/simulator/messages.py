"""Transport-neutral request/response values shared by the simulated services."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode


@dataclass
class Request:
    """One parsed HTTP request, as the service handlers see it."""

    method: str
    path: str  # percent-decoded path, no query
    raw_path: str  # path as sent, still percent-encoded
    query: str  # raw query string, no leading '?'
    headers: dict[str, str]  # lower-cased names
    body: bytes
    base_url: str
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def params(self) -> dict[str, str]:
        """Query parameters, percent-decoded; the last occurrence of a name wins."""
        return dict(parse_qsl(self.query, keep_blank_values=True))

    def header(self, name: str, default: str = "") -> str:
        """A request header by case-insensitive name."""
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        """The body parsed as JSON (raises ValueError when it is not JSON)."""
        return json.loads(self.body.decode("utf-8") or "null")

    def bearer_token(self) -> str | None:
        """The bearer token of the Authorization header, if any."""
        scheme, _, token = self.header("authorization").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return token.strip() or None


@dataclass
class Response:
    """What a handler answers; the server adds Content-Length and request-id headers."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop_connection: bool = False  # close the socket without answering (fault injection)


JSON_TYPE = "application/json; charset=utf-8"
ODATA_JSON_TYPE = "application/json; odata.metadata=minimal; odata.streaming=true"


def json_response(
    status: int, payload: Any, headers: dict[str, str] | None = None, content_type: str = JSON_TYPE
) -> Response:
    """A JSON response with compact encoding."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    merged = {"Content-Type": content_type}
    merged.update(headers or {})
    return Response(status=status, body=body, headers=merged)


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    """The ``{"error":{"code","message"}}`` body every non-identity service uses."""
    return json_response(status, {"error": {"code": code, "message": message}}, headers)


def utc_now_iso() -> str:
    """The current UTC time as Dataverse writes it (seconds precision, ``Z`` suffix)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class HttpError(Exception):
    """Raised inside a handler to answer with an error response."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def fail(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> HttpError:
    """Build an HttpError with the standard error body (``raise fail(...)``)."""
    return HttpError(error_response(status, code, message, headers))


@dataclass
class Call:
    """How the server should treat one request: who serves it, which token it needs, log tags."""

    service: str  # identity | bap | powerapps | dataverse | graph
    handler: Callable[[Request, Any], Response]  # (request, TokenInfo | None) -> Response
    audience: str | None = None  # required token audience; None = no token needed
    environment_id: str | None = None
    table: str | None = None
    page: int | None = None  # page a paged collection request would return
    limited: bool = False  # subject to the Dataverse service protection limits


def next_link(req: Request, token: str, param: str = "$skiptoken") -> str:
    """The absolute URL of the next page: the same query with ``param`` set to ``token``."""
    pairs = [(k, v) for k, v in parse_qsl(req.query, keep_blank_values=True) if k != param]
    pairs.append((param, token))
    query = urlencode(pairs, quote_via=quote, safe="$,()'=:*@/")
    return f"{req.base_url}{req.raw_path}?{query}"


def encode_offset_token(offset: int, page: int) -> str:
    """An opaque ARM-style skip token (base64 of the position and the page it opens)."""
    raw = json.dumps({"o": offset, "p": page}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_offset_token(token: str) -> tuple[int, int] | None:
    """(offset, page) of a token from ``encode_offset_token``; None when it is not one."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return int(data["o"]), int(data["p"])
    except (ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class RequestRecord:
    """One served request, as recorded in ``Simulator.request_log``."""

    method: str
    path: str
    query: str
    status: int  # 0 when the connection was dropped without an answer
    service: str
    environment_id: str | None
    table: str | None
    bytes_sent: int
    duration_ms: float
    time: float  # epoch seconds at arrival
