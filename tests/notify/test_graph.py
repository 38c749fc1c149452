"""Graph ``sendMail`` against the simulator: well-formed bodies, recorded failures, read-only."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from cleanup.clients.auth import TokenProvider
from cleanup.clients.http import HttpClient
from cleanup.clients.mail import GraphMailTransport
from cleanup.config import EndpointSettings, HttpSettings, Settings, TenantSettings
from cleanup.errors import ReadOnlyViolation
from cleanup.notify.deliver import compose, deliver_all, open_transport
from cleanup.notify.digest import build_digests
from cleanup.simulator.server import Simulator
from cleanup.simulator.tenant import Mailbox, Tenant
from cleanup.snapshot.model import Snapshot
from tests.conftest import SECRET
from tests.notify.conftest import ADMINS, SENDER, make_settings

NOW = datetime(2025, 1, 2, 2, 0, tzinfo=UTC)
TENANT_ID = "11111111-2222-3333-4444-555555555555"
CLIENT_ID = "66666666-7777-8888-9999-000000000000"


def settings_for_graph(sim: Simulator) -> Settings:
    """Settings pointing at the simulator (only the endpoint fields this version knows)."""
    known = {f.name for f in dataclasses.fields(EndpointSettings)}
    endpoints = EndpointSettings(**{k: v for k, v in sim.endpoints().items() if k in known})
    tenant = TenantSettings(tenant_id=TENANT_ID, client_id=CLIENT_ID)
    return Settings(tenant=tenant, endpoints=endpoints, http=HttpSettings(max_retries=0))


@pytest.fixture
def sim(start_simulator: Callable[..., Simulator], monkeypatch: pytest.MonkeyPatch) -> Simulator:
    # requests lets these override a session's verify= (the simulator's CA bundle).
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    return start_simulator(Tenant(TENANT_ID, CLIENT_ID, [], [Mailbox(SENDER)]))


def graph_transport(sim: Simulator, sender: str = SENDER) -> GraphMailTransport:
    settings = settings_for_graph(sim)
    tokens = TokenProvider(settings.tenant, settings.endpoints, secret=SECRET)
    return GraphMailTransport.create(tokens, settings.endpoints, settings.http, sender=sender)


def test_sendmail_bodies_are_well_formed(
    sim: Simulator, findings: pd.DataFrame, snapshot: Snapshot, tmp_path: Path
) -> None:
    settings = make_settings(transport="graph")
    messages = compose(build_digests(findings, snapshot, settings), settings, run_id="R", now=NOW)
    transport = graph_transport(sim)
    results = deliver_all(messages, tmp_path, transport, settings)
    transport.close()
    assert {r.status for r in results} == {"sent"}
    assert len(sim.sent_mail) == len(messages)
    for sent, outgoing in zip(sim.sent_mail, messages, strict=True):
        assert sent["sender"] == SENDER
        assert sent["saveToSentItems"] is False
        body = sent["message"]
        assert body["subject"] == str(outgoing.message["Subject"])
        assert body["body"]["contentType"] == "HTML"
        assert body["body"]["content"].startswith("<!DOCTYPE html>")
        to = [r["emailAddress"]["address"] for r in body["toRecipients"]]
        assert to == outgoing.recipients
        headers = {h["name"]: h["value"] for h in body["internetMessageHeaders"]}
        assert headers["X-Connref-Digest"] == outgoing.key
    sent_to = {_first_to(m["message"]): m["message"] for m in sim.sent_mail}
    alice = sent_to["Alice.Adams@Contoso.com"]["toRecipients"]
    assert alice == [
        {"emailAddress": {"address": "Alice.Adams@Contoso.com", "name": "Alice Adams"}}
    ]
    admin = sent_to[ADMINS[0]]
    assert [r["emailAddress"]["address"] for r in admin["toRecipients"]] == list(ADMINS)
    assert "&lt;script&gt;" in sent_to["evil@contoso.com"]["body"]["content"]


def _first_to(message: dict) -> str:
    return str(message["toRecipients"][0]["emailAddress"]["address"])


def test_sender_without_mailbox_is_a_recorded_failure(
    sim: Simulator, findings: pd.DataFrame, snapshot: Snapshot, tmp_path: Path
) -> None:
    settings = make_settings(transport="graph", sender="nobody@contoso.com")
    messages = compose(build_digests(findings, snapshot, settings), settings, run_id="R", now=NOW)
    transport = graph_transport(sim, sender="nobody@contoso.com")
    results = deliver_all(messages, tmp_path, transport, settings)
    assert {(r.status, r.attempts) for r in results} == {("failed", 1)}  # 404: not transient
    assert "ErrorInvalidUser" in results[0].error
    assert sim.sent_mail == []


def test_mail_client_posting_leaves_the_tenant_client_read_only(sim: Simulator) -> None:
    settings = settings_for_graph(sim)
    tokens = TokenProvider(settings.tenant, settings.endpoints, secret=SECRET)
    tenant_http = HttpClient(settings.http, tokens, ca_bundle=settings.endpoints.ca_bundle)
    transport = GraphMailTransport.create(tokens, settings.endpoints, settings.http, sender=SENDER)
    with transport._http.writes_enabled(), pytest.raises(ReadOnlyViolation):
        tenant_http.send("POST", f"{settings.endpoints.graph}/x", scope="s")


def test_open_transport_builds_graph_with_the_given_tokens(sim: Simulator) -> None:
    settings = settings_for_graph(sim)
    notify = make_settings(transport="graph")
    tokens = TokenProvider(settings.tenant, settings.endpoints, secret=SECRET)
    with open_transport(settings, notify, tokens=tokens) as transport:
        assert isinstance(transport, GraphMailTransport)
    with open_transport(settings, make_settings(transport="none")) as none:
        assert none is None
