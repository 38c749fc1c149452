"""A small two-environment snapshot with every kind of owner, and a real local SMTP server."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pandas as pd
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from cleanup import schemas
from cleanup.notify.settings import NotifySettings
from cleanup.snapshot.model import Snapshot

PROD, DEV = "env-prod", "env-dev"
SENDER = "connref-cleanup@contoso.com"
ADMINS = ("admins@contoso.com", "ops@contoso.com")
FALLBACK = "pp-fallback@contoso.com"
EVIL_NAME = "Evil\r\nBcc: victim@example.com"


def _owner(env: str, owner_id: str, name: str, email: str | None, **kw: Any) -> dict[str, Any]:
    row = {
        "environment_id": env,
        "owner_id": owner_id,
        "owner_type": "systemuser",
        "name": name,
        "email": email,
        "domain_name": email,
        "aad_object_id": f"aad-{name.split()[0].lower()}",
        "is_application_user": False,
        "is_disabled": False,
        "can_receive_mail": email is not None,
    }
    row.update(kw)
    return row


OWNERS = [
    # Alice owns references in both environments; her address differs only in case.
    _owner(PROD, "u-alice-p", "Alice Adams", "Alice.Adams@Contoso.com"),
    _owner(DEV, "u-alice-d", "Alice Adams", "alice.adams@contoso.com"),
    _owner(PROD, "u-bot", "Flow Bot", None, is_application_user=True, aad_object_id="sp-1"),
    _owner(
        PROD,
        "u-dave",
        "Dave Disabled",
        "dave@contoso.com",
        is_disabled=True,
        can_receive_mail=False,
    ),
    _owner(DEV, "t-fin", "Finance Team", None, owner_type="team", aad_object_id="grp-fin"),
    _owner(PROD, "u-evil", EVIL_NAME, "evil@contoso.com"),
    _owner(DEV, "u-oscar", "Oscar Optout", "oscar@contoso.com"),
    _owner(DEV, "u-zoe", "Zoë 🚀 Émoji", "zoe@contoso.com"),
]


def _finding(env: str, ref: str, owner: str | None, rule: str = "unused", **kw: Any) -> dict:
    row = {
        "rule": rule,
        "severity": "medium",
        "environment_id": env,
        "environment_name": {PROD: "Contoso (Prod)", DEV: "Contoso (Dev)"}[env],
        "object_type": "reference",
        "object_id": f"id-{ref}",
        "logical_name": ref,
        "display_name": ref.replace("_", " ").title(),
        "owner_id": owner,
        "owner_name": None,
        "detail": f"{ref} is not used by any flow.",
        "suggested_fix": "Delete it after the grace period.",
    }
    row.update(kw)
    return row


FINDINGS = [
    _finding(
        PROD,
        "new_alice_sp",
        "u-alice-p",
        rule="personal-connection",
        severity="high",
        detail="Bound to Alice's own connection.",
    ),
    _finding(PROD, "new_alice_sp", "u-alice-p"),
    _finding(DEV, "new_alice_dv", "u-alice-d"),
    _finding(PROD, "new_bot_ref", "u-bot"),
    _finding(PROD, "new_dave_ref", "u-dave"),
    _finding(DEV, "new_fin_ref", "t-fin"),
    _finding(PROD, "new_evil_ref", "u-evil", display_name="<script>alert(1)</script>"),
    _finding(DEV, "new_oscar_ref", "u-oscar"),
    _finding(DEV, "new_zoe_ref", "u-zoe", display_name="Zoë's 🚀 reference"),
    _finding(PROD, "new_ghost_ref", "u-ghost", owner_name="Former Employee"),
    _finding(
        DEV,
        "",
        None,
        rule="incomplete",
        object_type="environment",
        object_id=DEV,
        logical_name=None,
        display_name="Contoso (Dev)",
        detail="3 flows unreadable.",
    ),
]

FLOWS = [
    {"environment_id": PROD, "flow_id": "f-1", "name": "Invoice approval", "state": 1},
    {"environment_id": PROD, "flow_id": "f-2", "name": "<b>Nightly</b> sync", "state": 0},
]
USAGES = [
    {"environment_id": PROD, "flow_id": "f-1", "key": "k1", "logical_name": "NEW_ALICE_SP"},
    {"environment_id": PROD, "flow_id": "f-2", "key": "k1", "logical_name": "new_alice_sp"},
    {"environment_id": PROD, "flow_id": "f-2", "key": "k2", "logical_name": "new_alice_sp"},
]
ENVIRONMENTS = [
    {"environment_id": PROD, "display_name": "Contoso (Prod)", "status": "complete"},
    {"environment_id": DEV, "display_name": "Contoso (Dev)", "status": "incomplete"},
]


def make_snapshot() -> Snapshot:
    """Return the test snapshot (owners, flows, usages, environments)."""
    tables = {
        "owners": schemas.frame_from_rows(OWNERS, schemas.OWNERS),
        "flows": schemas.frame_from_rows(FLOWS, schemas.FLOWS),
        "usages": schemas.frame_from_rows(USAGES, schemas.USAGES),
        "environments": schemas.frame_from_rows(ENVIRONMENTS, schemas.ENVIRONMENTS),
    }
    return Snapshot.from_tables(tables, {"run_id": "20250101T020000Z"})


def make_findings() -> pd.DataFrame:
    """Return the test findings."""
    return schemas.frame_from_rows(FINDINGS, schemas.FINDINGS)


def make_settings(**kw: Any) -> NotifySettings:
    """Return mail settings for the tests (SMTP on loopback, no backoff)."""
    values: dict[str, Any] = {
        "enabled": True,
        "transport": "smtp",
        "sender": SENDER,
        "admin_addresses": ADMINS,
        "fallback_address": FALLBACK,
        "opt_out": ("OSCAR@contoso.com",),
        "smtp_host": "127.0.0.1",
        "smtp_port": 25,
        "smtp_starttls": False,
        "retry_backoff_seconds": 0.0,
        "smtp_username_env": "",
        "smtp_password_env": "",
    }
    values.update(kw)
    return NotifySettings(**values)


@pytest.fixture
def snapshot() -> Snapshot:
    return make_snapshot()


@pytest.fixture
def findings() -> pd.DataFrame:
    return make_findings()


def free_port() -> int:
    """Return a loopback port that was free a moment ago (aiosmtpd cannot bind port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Received:
    """One message as the SMTP server got it."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = BytesParser(policy=policy.default).parsebytes(self.raw)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Recorder:
    """An aiosmtpd handler that stores envelopes, or answers DATA with scripted errors."""

    received: list[Received] = field(default_factory=list)
    data_replies: list[str] = field(default_factory=list)  # consumed one per DATA
    data_calls: int = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.data_calls += 1
        if self.data_replies:
            return self.data_replies.pop(0)
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        self.received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), raw))
        return "250 OK"


@dataclass
class SmtpServer:
    """A running local SMTP server."""

    port: int
    recorder: Recorder
    controller: Controller

    @property
    def received(self) -> list[Received]:
        return self.recorder.received


@pytest.fixture
def start_smtp() -> Iterator[Callable[..., SmtpServer]]:
    """Start aiosmtpd servers on loopback for a test (keyword arguments go to its SMTP)."""
    running: list[Controller] = []

    def start(**smtp_kwargs: Any) -> SmtpServer:
        recorder = Recorder()
        port = free_port()
        controller = Controller(recorder, hostname="127.0.0.1", port=port, **smtp_kwargs)
        controller.start()
        running.append(controller)
        return SmtpServer(port, recorder, controller)

    yield start
    for controller in running:
        controller.stop()


@pytest.fixture
def smtp_server(start_smtp: Callable[..., SmtpServer]) -> SmtpServer:
    """A plain (no TLS) local SMTP server."""
    return start_smtp()
