"""Microsoft Graph ``user: sendMail`` (API notes §9.1): validates, answers 202, keeps the mail."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from cleanup.simulator.identity import GRAPH_RESOURCE
from cleanup.simulator.messages import Call, Request, Response, json_response
from cleanup.simulator.tenant import Tenant

_PATH = re.compile(r"^/graph/v1\.0/users/(?P<user>[^/]+)/sendMail$", re.IGNORECASE)
_ADDRESS = re.compile(r"^[^@\s<>\"(),;:\\\[\]]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$")


class GraphError(Exception):
    """A Graph error (status, code, message)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Graph:
    """Accepts mail from the tenant's mailboxes and records it in ``sent_mail``."""

    def __init__(self, tenant: Tenant, record: Callable[[dict[str, Any]], None]) -> None:
        self.tenant = tenant
        self._record = record

    def resolve(self, req: Request) -> Call | None:
        """A Call for ``POST /graph/v1.0/users/{id|upn}/sendMail``, or None."""
        match = _PATH.match(req.path)
        if match is None:
            return None
        user = unquote(match.group("user"))

        def handler(r: Request, _info: Any) -> Response:
            return self._serve(r, user)

        return Call("graph", handler, GRAPH_RESOURCE, None, "sendMail")

    def _serve(self, req: Request, user: str) -> Response:
        try:
            if req.method != "POST":
                raise GraphError(405, "Request_BadRequest", f"{req.method} is not supported here.")
            sender = next(
                (m.address for m in self.tenant.mailboxes if m.address.lower() == user.lower()),
                None,
            )
            if sender is None:
                raise GraphError(
                    404, "ErrorInvalidUser", f"The requested user '{user}' is invalid."
                )
            message, save = _validate(req)
        except GraphError as err:
            return _graph_error(req, err)
        self._record({"sender": sender, "message": message, "saveToSentItems": save})
        return Response(202, b"", {})


def _graph_error(req: Request, err: GraphError) -> Response:
    inner = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": req.request_id,
        "client-request-id": req.header("client-request-id") or req.request_id,
    }
    body = {"error": {"code": err.code, "message": err.message, "innerError": inner}}
    return json_response(err.status, body)


def _bad(message: str, code: str = "ErrorInvalidRequest") -> GraphError:
    return GraphError(400, code, message)


def _validate(req: Request) -> tuple[dict[str, Any], Any]:
    try:
        body = req.json()
    except (ValueError, UnicodeError):
        raise _bad(
            "Unable to read JSON request payload. Please ensure Content-Type header is set and "
            "payload is of valid JSON format.",
            "BadRequest",
        ) from None
    if not isinstance(body, dict) or not isinstance(body.get("message"), dict):
        raise _bad("Empty Payload. JSON content expected.", "BadRequest")
    message = body["message"]
    subject = message.get("subject")
    if not isinstance(subject, str):
        raise _bad("The message subject must be a string.")
    if "\r" in subject or "\n" in subject:
        raise _bad("The message subject must not contain line breaks.")
    _validate_body(message.get("body"))
    recipients = message.get("toRecipients")
    if not isinstance(recipients, list) or not recipients:
        raise _bad(
            "At least one recipient isn't valid., A message can't be sent because it contains "
            "no recipients.",
            "ErrorInvalidRecipients",
        )
    for field in ("toRecipients", "ccRecipients", "bccRecipients", "replyTo"):
        _validate_recipients(message.get(field), field)
    _validate_attachments(message.get("attachments"))
    save = body.get("saveToSentItems", True)
    if save not in (True, False, "true", "false", "True", "False"):
        raise _bad(f"Invalid value '{save}' for saveToSentItems.", "RequestBodyRead")
    return message, save


def _validate_body(body: Any) -> None:
    if not isinstance(body, dict):
        raise _bad("The message body is required.")
    content_type = body.get("contentType", "Text")
    if not isinstance(content_type, str) or content_type.lower() not in ("text", "html"):
        raise _bad(f"Requested value '{content_type}' was not found.", "RequestBodyRead")
    if not isinstance(body.get("content", ""), str):
        raise _bad("The message body content must be a string.", "RequestBodyRead")


def _validate_recipients(value: Any, field: str) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        raise _bad(f"'{field}' must be a collection.", "RequestBodyRead")
    for entry in value:
        address = entry.get("emailAddress", {}).get("address") if isinstance(entry, dict) else None
        if not isinstance(address, str) or not _ADDRESS.match(address):
            raise _bad(
                f"At least one recipient isn't valid., Recipient '{address}' isn't resolved. "
                "All recipients must be resolved before a message can be submitted.",
                "ErrorInvalidRecipients",
            )


def _validate_attachments(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        raise _bad("'attachments' must be a collection.", "RequestBodyRead")
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise _bad("Each attachment needs a name.", "RequestBodyRead")
        if item.get("@odata.type") != "#microsoft.graph.fileAttachment":
            raise _bad("Only #microsoft.graph.fileAttachment attachments are supported.")
        try:
            base64.b64decode(str(item.get("contentBytes", "")), validate=True)
        except (binascii.Error, ValueError):
            raise _bad(
                "Invalid base64 string for MIME content.", "ErrorMimeContentInvalidBase64String"
            ) from None
