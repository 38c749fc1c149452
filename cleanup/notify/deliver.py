"""Deliver digests: write each message as ``.eml`` first, send it, record what happened.

Mail is a side channel: a failed send is retried with backoff, recorded in
``<run>/emails/deliveries.json``, and never fails the run. SMTP uses the standard library
(STARTTLS by default, credentials from the environment); Graph ``sendMail`` lives in
``cleanup.clients.mail``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import smtplib
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cleanup.clients.mail import GraphMailTransport, MailError, Transport
from cleanup.errors import ConfigError
from cleanup.notify.digest import Digest, PlanSteps, build_digests
from cleanup.notify.message import (
    DIGEST_HEADER,
    INTENDED_HEADER,
    build_failure_message,
    build_message,
    recipients_of,
    template_environment,
)
from cleanup.notify.settings import NotifySettings

if TYPE_CHECKING:
    import pandas as pd

    from cleanup.clients.http import TokenSource
    from cleanup.config import Settings
    from cleanup.snapshot.model import Snapshot

log = logging.getLogger(__name__)

EMAILS_DIR = "emails"
PREVIEW_DIR = "preview"
DELIVERIES_FILE = "deliveries.json"
MAX_BACKOFF_SECONDS = 300.0
SENT = "sent"
FAILED = "failed"
NOT_SENT = "not-sent"  # transport "none": written to disk only
PREVIEW = "preview"


@dataclass(frozen=True)
class Outgoing:
    """A finished message and where it is stored."""

    key: str
    kind: str
    filename: str
    message: EmailMessage

    @property
    def recipients(self) -> list[str]:
        """Return the envelope recipients (the To addresses)."""
        return recipients_of(self.message)

    @property
    def intended_to(self) -> list[str]:
        """Return where the message would go outside test mode."""
        header = self.message[INTENDED_HEADER]
        if header is None:
            return self.recipients
        return [part.strip() for part in str(header).split(",") if "@" in part]


@dataclass(frozen=True)
class DeliveryResult:
    """What happened to one message."""

    key: str
    kind: str
    file: str
    to: tuple[str, ...]
    intended_to: tuple[str, ...]
    subject: str
    status: str  # sent | failed | not-sent | preview
    attempts: int
    transport: str
    error: str = ""
    finished_at: str = ""


class SmtpTransport:
    """Send over SMTP with STARTTLS; one connection reused, reopened after an error."""

    name = "smtp"

    def __init__(
        self,
        settings: NotifySettings,
        *,
        ssl_context: ssl.SSLContext | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._settings = settings
        self._context = ssl_context
        self._environ = os.environ if environ is None else environ
        self._smtp: smtplib.SMTP | None = None

    def send(self, message: EmailMessage, recipients: Sequence[str]) -> None:
        """Send one message to ``recipients``; raise ``MailError`` on failure."""
        try:
            refused = self._connection().send_message(
                message, from_addr=self._settings.sender, to_addrs=list(recipients)
            )
        except smtplib.SMTPRecipientsRefused as exc:
            self._reset()
            codes = [code for code, _ in exc.recipients.values()]
            raise MailError(
                f"SMTP refused every recipient: {_describe_refused(exc.recipients)}",
                transient=all(400 <= code < 500 for code in codes),
            ) from None
        except smtplib.SMTPResponseException as exc:
            self._reset()
            detail = _text(exc.smtp_error)
            raise MailError(
                f"SMTP {exc.smtp_code} {detail}".strip(), transient=400 <= exc.smtp_code < 500
            ) from None
        except MailError:
            self._reset()
            raise
        except ssl.SSLCertVerificationError as exc:
            self._reset()
            raise MailError(
                f"TLS certificate of the SMTP server rejected: {exc}", transient=False
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            self._reset()
            raise MailError(f"SMTP: {type(exc).__name__}: {exc}", transient=True) from None
        if refused:
            # Others got it already: trying again would send them a duplicate.
            raise MailError(f"SMTP refused {_describe_refused(refused)}", transient=False)

    def close(self) -> None:
        """Say QUIT if connected."""
        if self._smtp is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._smtp.quit()
            self._smtp = None

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is None:
            self._smtp = self._open()
        return self._smtp

    def _open(self) -> smtplib.SMTP:
        s = self._settings
        smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds)
        try:
            smtp.ehlo()
            if s.smtp_starttls:
                if not smtp.has_extn("starttls"):
                    raise MailError(
                        f"{s.smtp_host}:{s.smtp_port} does not offer STARTTLS; refusing to send "
                        "in clear text (set notify.smtp_starttls = false only for a local relay).",
                        transient=False,
                    )
                smtp.starttls(context=self._context or self._default_context())
                smtp.ehlo()
            self._login(smtp)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _login(self, smtp: smtplib.SMTP) -> None:
        s = self._settings
        username = self._environ.get(s.smtp_username_env, "") if s.smtp_username_env else ""
        if not username:
            return
        password = self._environ.get(s.smtp_password_env, "") if s.smtp_password_env else ""
        if not password:
            raise MailError(
                f"SMTP user name is set ({s.smtp_username_env}) but the password variable "
                f"{s.smtp_password_env} is empty.",
                transient=False,
            )
        if not s.smtp_starttls:
            raise MailError("Refusing to send SMTP credentials without STARTTLS.", transient=False)
        smtp.login(username, password)

    def _default_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self._settings.smtp_ca_bundle or None)

    def _reset(self) -> None:
        if self._smtp is not None:
            with contextlib.suppress(OSError):
                self._smtp.close()
            self._smtp = None


# --- composing and storing --------------------------------------------------------------


def compose(
    digests: Sequence[Digest], settings: NotifySettings, *, run_id: str, now: datetime
) -> list[Outgoing]:
    """Build the message of every digest."""
    env = template_environment()
    return [
        Outgoing(
            d.key,
            d.kind,
            d.filename,
            build_message(d, settings, run_id=run_id, now=now, env=env),
        )
        for d in digests
    ]


def write_eml(outgoing: Outgoing, folder: Path) -> Path:
    """Write one message atomically as ``folder/<filename>``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / outgoing.filename
    tmp = folder / f".{outgoing.filename}.tmp"
    tmp.write_bytes(outgoing.message.as_bytes(policy=policy.SMTP))
    os.replace(tmp, path)
    return path


def load_stored(run_folder: str | Path) -> list[Outgoing]:
    """Read the messages a run stored in ``<run>/emails/`` (to send them again)."""
    folder = Path(run_folder) / EMAILS_DIR
    out = []
    for path in sorted(folder.glob("*.eml")):
        message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        assert isinstance(message, EmailMessage)
        kind = path.name.partition("-")[0]
        key = str(message[DIGEST_HEADER] or path.stem)
        out.append(Outgoing(key, kind, path.name, message))
    return out


def read_deliveries(run_folder: str | Path) -> list[dict[str, Any]]:
    """Return the recorded deliveries of a run (empty when none were recorded)."""
    path = Path(run_folder) / EMAILS_DIR / DELIVERIES_FILE
    if not path.is_file():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    return list(data.get("deliveries", []))


# --- delivery ---------------------------------------------------------------------------


def deliver_all(
    messages: Sequence[Outgoing],
    run_folder: str | Path,
    transport: Transport | None,
    settings: NotifySettings,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[DeliveryResult]:
    """Write every message as .eml, then send each (transport None: write only); never raises."""
    folder = Path(run_folder) / EMAILS_DIR
    for outgoing in messages:
        write_eml(outgoing, folder)
    results: list[DeliveryResult] = []
    for outgoing in messages:
        if transport is None:
            result = _result(outgoing, NOT_SENT, 0, "none", "", clock())
        else:
            result = _send_with_retries(outgoing, transport, settings, sleep, clock)
        results.append(result)
        _record(folder, results)  # after every message: a crash leaves an accurate record
    return results


def _send_with_retries(
    outgoing: Outgoing,
    transport: Transport,
    settings: NotifySettings,
    sleep: Callable[[float], None],
    clock: Callable[[], datetime],
) -> DeliveryResult:
    error = ""
    attempt = 0
    for attempt in range(1, settings.max_attempts + 1):
        try:
            transport.send(outgoing.message, outgoing.recipients)
        except MailError as exc:
            error, transient = str(exc), exc.transient
        except Exception as exc:  # noqa: BLE001 - a bug in one send must not stop the rest
            log.exception("unexpected error sending %s", outgoing.filename)
            error, transient = f"{type(exc).__name__}: {exc}", False
        else:
            log.info("sent %s to %s", outgoing.filename, ", ".join(outgoing.recipients))
            return _result(outgoing, SENT, attempt, transport.name, "", clock())
        log.warning("sending %s failed (attempt %d): %s", outgoing.filename, attempt, error)
        if not transient or attempt == settings.max_attempts:
            break
        sleep(min(MAX_BACKOFF_SECONDS, settings.retry_backoff_seconds * 2 ** (attempt - 1)))
    return _result(outgoing, FAILED, attempt, transport.name, error, clock())


def _result(
    outgoing: Outgoing, status: str, attempts: int, transport: str, error: str, when: datetime
) -> DeliveryResult:
    return DeliveryResult(
        key=outgoing.key,
        kind=outgoing.kind,
        file=outgoing.filename,
        to=tuple(outgoing.recipients),
        intended_to=tuple(outgoing.intended_to),
        subject=str(outgoing.message["Subject"] or ""),
        status=status,
        attempts=attempts,
        transport=transport,
        error=error,
        finished_at=when.isoformat(timespec="seconds"),
    )


def _record(folder: Path, results: Sequence[DeliveryResult]) -> None:
    """Merge results into deliveries.json by digest key (a re-send replaces older entries)."""
    path = folder / DELIVERIES_FILE
    previous = read_deliveries(folder.parent)  # folder is <run>/emails
    fresh = {r.key for r in results}
    entries = [e for e in previous if e.get("key") not in fresh]
    entries += [asdict(r) for r in results]
    entries.sort(key=lambda e: (e.get("kind", ""), e.get("file", "")))
    tmp = folder / f".{DELIVERIES_FILE}.tmp"
    tmp.write_text(json.dumps({"deliveries": entries}, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def _describe_refused(refused: Mapping[str, tuple[int, bytes]]) -> str:
    return "; ".join(
        f"{addr} ({code} {_text(msg)})" for addr, (code, msg) in sorted(refused.items())
    )


def _text(reply: bytes | str | None) -> str:
    if isinstance(reply, bytes):
        return reply.decode("utf-8", "replace")
    return reply or ""


# --- entry points -----------------------------------------------------------------------


@contextmanager
def open_transport(
    settings: Settings, notify: NotifySettings, *, tokens: TokenSource | None = None
) -> Iterator[Transport | None]:
    """Yield the configured transport (None for "none"), closed afterwards."""
    transport: Transport | None
    if notify.transport == "smtp":
        transport = SmtpTransport(notify)
    elif notify.transport == "graph":
        if tokens is None:
            from cleanup.clients.auth import TokenProvider

            tokens = TokenProvider(settings.tenant, settings.endpoints)
        transport = GraphMailTransport.create(
            tokens, settings.endpoints, settings.http, sender=notify.sender
        )
    else:
        transport = None
    try:
        yield transport
    finally:
        if transport is not None:
            transport.close()


def notify_run(
    run_folder: str | Path,
    settings: NotifySettings,
    *,
    transport: Transport | None = None,
    findings: pd.DataFrame | None = None,
    snapshot: Snapshot | None = None,
    plan_steps: PlanSteps | None = None,
    preview: bool = False,
    resend_sent: bool = False,
    now: datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
    echo: Callable[[str], None] = print,
) -> list[DeliveryResult]:
    """Send (or preview) a run's owner digests and admin summary; never raises on a failed send.

    With ``findings``, digests are built afresh (from ``snapshot``, loaded from the run folder
    when omitted); without, the messages the run stored in ``emails/`` are used as they are.
    Preview writes the messages to ``emails/preview/`` and prints who would get what.
    Messages already recorded as sent are skipped unless ``resend_sent``.
    """
    if not settings.enabled:
        raise ConfigError("Owner emails are off: set [notify] enabled = true (and an address).")
    folder = Path(run_folder)
    now = now or datetime.now(UTC)
    messages = _messages_for(folder, settings, findings, snapshot, plan_steps, now)
    if preview:
        return _preview(messages, folder, now, echo)
    if not resend_sent:
        sent = {e["key"] for e in read_deliveries(folder) if e.get("status") == SENT}
        skipped = [m for m in messages if m.key in sent]
        if skipped:
            echo(f"{len(skipped)} message(s) already sent; pass resend to send them again.")
        messages = [m for m in messages if m.key not in sent]
    results = deliver_all(messages, folder, transport, settings, sleep=sleep)
    for result in results:
        echo(_line(result))
    return results


def _messages_for(
    folder: Path,
    settings: NotifySettings,
    findings: pd.DataFrame | None,
    snapshot: Snapshot | None,
    plan_steps: PlanSteps | None,
    now: datetime,
) -> list[Outgoing]:
    if findings is None:
        stored = load_stored(folder)
        if not stored:
            raise ConfigError(
                f"{folder / EMAILS_DIR} holds no messages; run the job again to build them."
            )
        return stored
    if snapshot is None:
        from cleanup.snapshot.store import load_snapshot

        snapshot = load_snapshot(folder)
    digests = build_digests(findings, snapshot, settings, plan_steps=plan_steps)
    return compose(digests, settings, run_id=folder.name, now=now)


def _preview(
    messages: Sequence[Outgoing], folder: Path, now: datetime, echo: Callable[[str], None]
) -> list[DeliveryResult]:
    # A separate folder: a preview must never overwrite what a run actually sent.
    target = folder / EMAILS_DIR / PREVIEW_DIR
    results = []
    for outgoing in messages:
        write_eml(outgoing, target)
        result = _result(outgoing, PREVIEW, 0, "none", "", now)
        results.append(result)
        echo(_line(result, Path(EMAILS_DIR) / PREVIEW_DIR / outgoing.filename))
    return results


def _line(result: DeliveryResult, path: Path | None = None) -> str:
    status = {PREVIEW: "would send", SENT: "sent", FAILED: "FAILED"}.get(result.status, "written")
    to = ", ".join(result.to) or "(nobody)"
    extra = (
        f" [intended for {', '.join(result.intended_to)}]"
        if result.intended_to != result.to
        else ""
    )
    error = f" — {result.error}" if result.error else ""
    where = f" -> {path}" if path else ""
    return f"{status:<10} {result.kind:<8} {to}{extra}: {result.subject}{error}{where}"


def mail_failure(
    exc: BaseException,
    traceback_text: str,
    settings: NotifySettings,
    transport: Transport | None,
    folder: str | Path,
    *,
    now: datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryResult | None:
    """Tell the admins a scheduled night failed: write the .eml into ``folder``, then send."""
    if not settings.enabled or not settings.admin_addresses:
        return None
    now = now or datetime.now(UTC)
    error = f"{type(exc).__name__}: {exc}"
    message = build_failure_message(settings, error=error, traceback_text=traceback_text, when=now)
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    outgoing = Outgoing(f"failure-{stamp}", "failure", f"failure-{stamp}.eml", message)
    write_eml(outgoing, Path(folder))
    if transport is None:
        return _result(outgoing, NOT_SENT, 0, "none", "", now)
    return _send_with_retries(outgoing, transport, settings, sleep, lambda: now)


def failure_mailer(
    settings: Settings, notify: NotifySettings, *, tokens: TokenSource | None = None
) -> Callable[[BaseException, str], None]:
    """Return the scheduler's ``on_failure`` callback: mail the night's error to the admins."""
    folder = Path(settings.run.runs_dir) / "failures"

    def on_failure(exc: BaseException, traceback_text: str) -> None:
        with open_transport(settings, notify, tokens=tokens) as transport:
            result = mail_failure(exc, traceback_text, notify, transport, folder)
        if result is not None and result.status == FAILED:
            log.error("could not mail the failure to the admins: %s", result.error)

    return on_failure
