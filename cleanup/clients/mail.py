"""Mail transports' common contract, and Microsoft Graph ``sendMail`` over ``HttpClient``.

``POST {graph}/v1.0/users/{sender}/sendMail`` with application permission Mail.Send; Graph
answers 202 with an empty body. The message is converted from the ``EmailMessage`` written
to the run folder, so what was previewed or stored is what is sent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import quote

from cleanup.clients.http import HttpClient, TokenSource
from cleanup.config import EndpointSettings, HttpSettings
from cleanup.errors import ApiError, AuthError, CleanupError

GRAPH_TAG = "graph-mail"
# Graph accepts only custom headers named X-...; Auto-Submitted cannot be carried this way.
FORWARDED_HEADER_PREFIX = "x-connref-"
# One retry layer is enough: delivery retries with its own backoff and records each attempt.
MAIL_HTTP_RETRIES = 1


class MailError(CleanupError):
    """A message could not be delivered; ``transient`` says whether trying again may help."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class Transport(Protocol):
    """Sends one finished message to explicit envelope recipients."""

    name: str

    def send(self, message: EmailMessage, recipients: Sequence[str]) -> None:
        """Send ``message`` to ``recipients``; raise ``MailError`` on failure."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class GraphMailTransport:
    """Send mail as ``sender`` with Graph ``sendMail``, through a mail-only ``HttpClient``."""

    name = "graph"

    def __init__(self, http: HttpClient, *, graph_url: str, scope: str, sender: str) -> None:
        self._http = http
        self._scope = scope
        self._url = f"{graph_url.rstrip('/')}/v1.0/users/{quote(sender, safe='@')}/sendMail"

    @classmethod
    def create(
        cls,
        tokens: TokenSource,
        endpoints: EndpointSettings,
        http_settings: HttpSettings,
        *,
        sender: str,
    ) -> GraphMailTransport:
        """Build the transport with its own ``HttpClient`` (sharing the token source)."""
        # A dedicated client: sending mail is not a tenant write, so it may POST while every
        # Dataverse client stays read-only. Its writes_enabled() flag is per client, so
        # enabling it here can never let a concurrent snapshot request write.
        settings = dataclasses.replace(http_settings, max_retries=MAIL_HTTP_RETRIES)
        http = HttpClient(settings, tokens, ca_bundle=endpoints.ca_bundle)
        return cls(http, graph_url=endpoints.graph, scope=endpoints.graph_scope, sender=sender)

    def send(self, message: EmailMessage, recipients: Sequence[str]) -> None:
        """POST the message to sendMail; raise ``MailError`` on failure."""
        body = graph_payload(message, recipients)
        try:
            with self._http.writes_enabled():
                self._http.send("POST", self._url, scope=self._scope, tag=GRAPH_TAG, json_body=body)
        except AuthError as exc:
            raise MailError(f"Graph sendMail: {exc}", transient=False) from None
        except ApiError as exc:
            transient = exc.status is None or exc.status == 429 or exc.status >= 500
            raise MailError(f"Graph sendMail: {exc}", transient=transient) from None

    def close(self) -> None:
        """Close the HTTP session."""
        self._http.session.close()


def graph_payload(message: EmailMessage, recipients: Sequence[str]) -> dict[str, Any]:
    """Return the sendMail request body for a message (HTML body, named recipients)."""
    names = _display_names(message)
    html = message.get_body(preferencelist=("html",))
    plain = message.get_body(preferencelist=("plain",))
    if html is not None:
        body = {"contentType": "HTML", "content": html.get_content()}
    else:
        text = plain.get_content() if plain is not None else ""
        body = {"contentType": "Text", "content": text}
    headers = [
        {"name": name, "value": str(value)}
        for name, value in message.items()
        if name.lower().startswith(FORWARDED_HEADER_PREFIX)
    ]
    graph_message: dict[str, Any] = {
        "subject": str(message["Subject"] or ""),
        "body": body,
        "toRecipients": [_recipient(addr, names.get(addr.casefold(), "")) for addr in recipients],
    }
    if headers:
        graph_message["internetMessageHeaders"] = headers
    return {"message": graph_message, "saveToSentItems": False}


def _display_names(message: EmailMessage) -> dict[str, str]:
    header = message["To"]
    if header is None:
        return {}
    return {a.addr_spec.casefold(): a.display_name for a in header.addresses}


def _recipient(address: str, name: str) -> dict[str, Any]:
    entry: dict[str, str] = {"address": address}
    if name:
        entry["name"] = name
    return {"emailAddress": entry}
