"""Delivery to a real local SMTP server (aiosmtpd): recipients, retries, STARTTLS, records."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pandas as pd
import pytest
import trustme
from aiosmtpd.smtp import AuthResult, LoginPassword

from cleanup.clients.mail import MailError
from cleanup.errors import ConfigError
from cleanup.notify.deliver import (
    DELIVERIES_FILE,
    EMAILS_DIR,
    Outgoing,
    SmtpTransport,
    compose,
    deliver_all,
    mail_failure,
    notify_run,
    read_deliveries,
)
from cleanup.notify.digest import build_digests
from cleanup.notify.settings import NotifySettings
from cleanup.snapshot.model import Snapshot
from tests.notify.conftest import ADMINS, FALLBACK, SENDER, SmtpServer, free_port, make_settings

NOW = datetime(2025, 1, 2, 2, 0, tzinfo=UTC)
RUN = "20250102T020000Z"
# Who must get exactly one message each, and how many items it lists.
EXPECTED_RECIPIENTS = [
    ("Alice.Adams@Contoso.com",),
    ("evil@contoso.com",),
    ("zoe@contoso.com",),
    (FALLBACK,),  # Flow Bot
    (FALLBACK,),  # Dave Disabled
    (FALLBACK,),  # Finance Team
    (FALLBACK,),  # Former Employee
    ADMINS,
]


def outgoing(
    findings: pd.DataFrame, snapshot: Snapshot, settings: NotifySettings
) -> list[Outgoing]:
    return compose(build_digests(findings, snapshot, settings), settings, run_id=RUN, now=NOW)


def send_all(
    findings: pd.DataFrame,
    snapshot: Snapshot,
    settings: NotifySettings,
    run: Path,
    sleeps: list[float] | None = None,
    **transport_kw: object,
) -> list:
    transport = SmtpTransport(settings, **transport_kw)  # type: ignore[arg-type]
    try:
        return deliver_all(
            outgoing(findings, snapshot, settings),
            run,
            transport,
            settings,
            sleep=(sleeps.append if sleeps is not None else lambda _s: None),
        )
    finally:
        transport.close()


def test_every_owner_gets_exactly_one_message_with_exact_headers(
    findings: pd.DataFrame, snapshot: Snapshot, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    settings = make_settings(smtp_port=smtp_server.port)
    results = send_all(findings, snapshot, settings, tmp_path)
    assert [r.status for r in results] == ["sent"] * len(results)
    received = smtp_server.received
    # Envelope recipients are exactly the To header, message by message.
    envelopes = sorted(tuple(r.rcpt_tos) for r in received)
    assert envelopes == sorted(EXPECTED_RECIPIENTS)
    for r in received:
        msg = r.message
        assert r.mail_from == SENDER
        assert [a.addr_spec for a in msg["To"].addresses] == r.rcpt_tos
        assert msg["Cc"] is None and msg["Bcc"] is None
        assert msg["Auto-Submitted"] == "auto-generated"
        assert msg["From"].addresses[0].addr_spec == SENDER
    subjects = sorted(r.message["Subject"] for r in received if r.rcpt_tos == [FALLBACK])
    assert [s.split(":")[0] for s in subjects] == [
        "[connref-cleanup] On behalf of Dave Disabled",
        "[connref-cleanup] On behalf of Finance Team",
        "[connref-cleanup] On behalf of Flow Bot",
        "[connref-cleanup] On behalf of Former Employee",
    ]
    alice = next(r.message for r in received if r.rcpt_tos == ["Alice.Adams@Contoso.com"])
    assert "2 items need attention in 2 environments" in alice["Subject"]


def test_nothing_reaches_the_injected_bcc(
    findings: pd.DataFrame, snapshot: Snapshot, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    send_all(findings, snapshot, make_settings(smtp_port=smtp_server.port), tmp_path)
    all_rcpts = [addr for r in smtp_server.received for addr in r.rcpt_tos]
    assert "victim@example.com" not in all_rcpts
    evil = next(r for r in smtp_server.received if r.rcpt_tos == ["evil@contoso.com"])
    assert b"\nBcc:" not in evil.raw
    assert evil.message["To"].addresses[0].display_name == "Evil Bcc: victim@example.com"


def test_test_mode_sends_everything_to_the_admins(
    findings: pd.DataFrame, snapshot: Snapshot, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    settings = make_settings(smtp_port=smtp_server.port, test_mode=True)
    results = send_all(findings, snapshot, settings, tmp_path)
    assert len(smtp_server.received) == len(EXPECTED_RECIPIENTS)
    assert {tuple(r.rcpt_tos) for r in smtp_server.received} == {ADMINS}
    intended = sorted(str(r.message["X-Connref-Intended-To"]) for r in smtp_server.received)
    assert intended == sorted(", ".join(t) for t in EXPECTED_RECIPIENTS)
    assert sorted(r.intended_to for r in results) == sorted(EXPECTED_RECIPIENTS)


def test_opted_out_owner_receives_nothing(
    findings: pd.DataFrame, snapshot: Snapshot, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    send_all(findings, snapshot, make_settings(smtp_port=smtp_server.port), tmp_path)
    assert all("oscar@contoso.com" not in r.rcpt_tos for r in smtp_server.received)
    admin = next(r.message for r in smtp_server.received if tuple(r.rcpt_tos) == ADMINS)
    assert "Oscar Optout" in admin.get_body(("plain",)).get_content()


def test_eml_files_and_deliveries_record(
    findings: pd.DataFrame, snapshot: Snapshot, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    results = send_all(findings, snapshot, make_settings(smtp_port=smtp_server.port), tmp_path)
    folder = tmp_path / EMAILS_DIR
    files = sorted(p.name for p in folder.glob("*.eml"))
    assert files == sorted(r.file for r in results)
    record = json.loads((folder / DELIVERIES_FILE).read_text())
    assert len(record["deliveries"]) == len(results)
    assert {e["status"] for e in record["deliveries"]} == {"sent"}
    # The stored file is the message that was sent.
    alice = next(r for r in results if r.to == ("Alice.Adams@Contoso.com",))
    stored = (folder / alice.file).read_bytes()
    sent = next(x for x in smtp_server.received if x.rcpt_tos == ["Alice.Adams@Contoso.com"])
    assert stored.replace(b"\r\n", b"\n").strip() == sent.raw.replace(b"\r\n", b"\n").strip()


def test_eml_is_written_before_sending(
    findings: pd.DataFrame, snapshot: Snapshot, tmp_path: Path
) -> None:
    seen: list[bool] = []

    class Checking:
        name = "check"

        def send(self, message: EmailMessage, recipients: Sequence[str]) -> None:
            key = str(message["X-Connref-Digest"])
            seen.append(any(key[:10] in p.name for p in (tmp_path / EMAILS_DIR).glob("*.eml")))

        def close(self) -> None:
            pass

    settings = make_settings()
    deliver_all(outgoing(findings, snapshot, settings), tmp_path, Checking(), settings)
    assert seen and all(seen)


def test_refused_connection_is_retried_recorded_and_never_raises(
    findings: pd.DataFrame, snapshot: Snapshot, tmp_path: Path
) -> None:
    settings = make_settings(smtp_port=free_port(), max_attempts=3, retry_backoff_seconds=2.0)
    sleeps: list[float] = []
    results = send_all(findings, snapshot, settings, tmp_path, sleeps)
    assert {r.status for r in results} == {"failed"}
    assert {r.attempts for r in results} == {3}
    assert all("ConnectionRefusedError" in r.error for r in results)
    assert sleeps[:2] == [2.0, 4.0]  # backoff doubles per attempt
    record = read_deliveries(tmp_path)
    assert {e["status"] for e in record} == {"failed"}
    assert len(list((tmp_path / EMAILS_DIR).glob("*.eml"))) == len(results)


def test_451_is_retried_then_succeeds(
    findings: pd.DataFrame, snapshot: Snapshot, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    smtp_server.recorder.data_replies = ["451 4.3.0 Try again later"]
    results = send_all(findings, snapshot, make_settings(smtp_port=smtp_server.port), tmp_path)
    assert [r.attempts for r in results][0] == 2
    assert {r.status for r in results} == {"sent"}
    assert len(smtp_server.received) == len(results)


def test_451_every_time_gives_up_after_max_attempts(
    findings: pd.DataFrame, snapshot: Snapshot, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    smtp_server.recorder.data_replies = ["451 4.3.0 Try again later"] * 100
    settings = make_settings(smtp_port=smtp_server.port, max_attempts=2)
    results = send_all(findings, snapshot, settings, tmp_path)
    assert {(r.status, r.attempts) for r in results} == {("failed", 2)}
    assert "451" in results[0].error
    assert smtp_server.received == []


def test_550_is_permanent_and_not_retried(
    findings: pd.DataFrame, snapshot: Snapshot, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    smtp_server.recorder.data_replies = ["550 5.7.1 Relaying denied"]
    results = send_all(findings, snapshot, make_settings(smtp_port=smtp_server.port), tmp_path)
    assert (results[0].status, results[0].attempts) == ("failed", 1)
    assert "550" in results[0].error
    assert all(r.status == "sent" for r in results[1:])


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def test_starttls_with_credentials_from_the_environment(
    findings: pd.DataFrame,
    snapshot: Snapshot,
    start_smtp: Callable[..., SmtpServer],
    tmp_path: Path,
    ca: trustme.CA,
) -> None:
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:  # noqa: ANN001
        assert isinstance(auth_data, LoginPassword)
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"pa55")

    server = start_smtp(
        tls_context=tls_server_context(ca),
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    )
    settings = make_settings(
        smtp_port=server.port,
        smtp_starttls=True,
        smtp_username_env="SMTP_USER",
        smtp_password_env="SMTP_PASS",
    )
    env = {"SMTP_USER": "mailer", "SMTP_PASS": "pa55"}
    results = send_all(
        findings, snapshot, settings, tmp_path, ssl_context=client_context(ca), environ=env
    )
    assert {r.status for r in results} == {"sent"}
    assert len(server.received) == len(results)
    assert logins == [(b"mailer", b"pa55")]  # one connection, reused for every message


def test_untrusted_certificate_is_a_permanent_failure(
    findings: pd.DataFrame,
    snapshot: Snapshot,
    start_smtp: Callable[..., SmtpServer],
    tmp_path: Path,
    ca: trustme.CA,
) -> None:
    server = start_smtp(tls_context=tls_server_context(ca), require_starttls=True)
    settings = make_settings(smtp_port=server.port, smtp_starttls=True)
    results = send_all(findings, snapshot, settings, tmp_path)  # default trust store
    assert {(r.status, r.attempts) for r in results} == {("failed", 1)}
    assert "certificate" in results[0].error
    assert server.received == []


def test_no_clear_text_when_starttls_is_missing(
    findings: pd.DataFrame, snapshot: Snapshot, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    settings = make_settings(smtp_port=smtp_server.port, smtp_starttls=True)
    results = send_all(findings, snapshot, settings, tmp_path)
    assert {(r.status, r.attempts) for r in results} == {("failed", 1)}
    assert "does not offer STARTTLS" in results[0].error
    assert smtp_server.received == []


def test_credentials_are_never_sent_without_starttls(smtp_server: SmtpServer) -> None:
    settings = make_settings(
        smtp_port=smtp_server.port, smtp_username_env="U", smtp_password_env="P"
    )
    transport = SmtpTransport(settings, environ={"U": "mailer", "P": "secret"})
    msg = EmailMessage()
    msg["To"] = "a@contoso.com"
    with pytest.raises(MailError, match="without STARTTLS") as err:
        transport.send(msg, ["a@contoso.com"])
    assert not err.value.transient
    assert "secret" not in str(err.value)


def test_notify_run_preview_writes_and_prints_but_sends_nothing(
    findings: pd.DataFrame,
    snapshot: Snapshot,
    smtp_server: SmtpServer,
    tmp_path: Path,
) -> None:
    settings = make_settings(smtp_port=smtp_server.port)
    lines: list[str] = []
    transport = SmtpTransport(settings)
    results = notify_run(
        tmp_path,
        settings,
        transport=transport,
        findings=findings,
        snapshot=snapshot,
        preview=True,
        now=NOW,
        echo=lines.append,
    )
    assert smtp_server.received == []
    assert {r.status for r in results} == {"preview"}
    assert len(list((tmp_path / EMAILS_DIR / "preview").glob("*.eml"))) == len(results)
    assert not (tmp_path / EMAILS_DIR / DELIVERIES_FILE).exists()
    assert any(
        line.startswith("would send") and "Alice.Adams@Contoso.com" in line for line in lines
    )


def test_notify_run_resends_only_what_was_not_sent(
    findings: pd.DataFrame, snapshot: Snapshot, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    smtp_server.recorder.data_replies = ["550 5.7.1 Relaying denied"]
    settings = make_settings(smtp_port=smtp_server.port)
    first = send_all(findings, snapshot, settings, tmp_path)
    failed = [r for r in first if r.status == "failed"]
    assert len(failed) == 1
    # `connref-cleanup notify RUN`: no findings given, the stored .eml files are sent again.
    transport = SmtpTransport(settings)
    again = notify_run(tmp_path, settings, transport=transport, echo=lambda _l: None)
    transport.close()
    assert [(r.key, r.status) for r in again] == [(failed[0].key, "sent")]
    assert {e["status"] for e in read_deliveries(tmp_path)} == {"sent"}
    assert len(read_deliveries(tmp_path)) == len(first)


def test_notify_run_refuses_when_mail_is_off(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="enabled"):
        notify_run(tmp_path, NotifySettings(), echo=lambda _l: None)


def test_a_failed_night_is_mailed_to_the_admins(smtp_server: SmtpServer, tmp_path: Path) -> None:
    settings = make_settings(smtp_port=smtp_server.port)
    transport = SmtpTransport(settings)
    result = mail_failure(
        RuntimeError("token endpoint down"),
        "Traceback: ...",
        settings,
        transport,
        tmp_path,
        now=NOW,
    )
    transport.close()
    assert result is not None and result.status == "sent"
    (received,) = smtp_server.received
    assert tuple(received.rcpt_tos) == ADMINS
    assert "Nightly run failed: RuntimeError: token endpoint down" in received.message["Subject"]
    assert "Traceback: ..." in received.message.get_content()
    assert (tmp_path / result.file).is_file()


def test_failure_mail_is_skipped_when_mail_is_off(tmp_path: Path) -> None:
    assert mail_failure(ValueError("x"), "", NotifySettings(), None, tmp_path) is None
