"""Messages: exact headers, sanitised remote text, escaped HTML, encoded subjects."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pandas as pd
import pytest

from cleanup.notify.deliver import compose
from cleanup.notify.digest import build_digests
from cleanup.notify.message import (
    INTENDED_HEADER,
    build_failure_message,
    clean_address,
    clean_text,
    message_id,
)
from cleanup.snapshot.model import Snapshot
from tests.notify.conftest import ADMINS, SENDER, make_settings

NOW = datetime(2025, 1, 2, 2, 0, 5, tzinfo=UTC)
RUN = "20250102T020000Z"
OWNER_HEADERS = {
    "From",
    "To",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "Auto-Submitted",
    "X-Auto-Response-Suppress",
    "X-Connref-Digest",
    "X-Connref-Run",
    "MIME-Version",
    "Content-Type",
}


def messages(findings: pd.DataFrame, snapshot: Snapshot, **kw: object) -> dict[str, EmailMessage]:
    digests = build_digests(findings, snapshot, make_settings(**kw))
    out = compose(digests, make_settings(**kw), run_id=RUN, now=NOW)
    return {o.filename: reparse(o.message) for o in out}


def reparse(msg: EmailMessage) -> EmailMessage:
    parsed = BytesParser(policy=policy.default).parsebytes(msg.as_bytes(policy=policy.SMTP))
    assert isinstance(parsed, EmailMessage)
    return parsed


def by_to(msgs: dict[str, EmailMessage], address: str) -> EmailMessage:
    (found,) = [m for m in msgs.values() if address in str(m["To"])]
    return found


def test_owner_message_has_exactly_the_intended_headers(
    findings: pd.DataFrame, snapshot: Snapshot
) -> None:
    msg = by_to(messages(findings, snapshot), "Alice.Adams@Contoso.com")
    assert set(msg.keys()) == OWNER_HEADERS
    assert str(msg["From"]) == f"connref-cleanup <{SENDER}>"
    assert str(msg["To"]) == "Alice Adams <Alice.Adams@Contoso.com>"
    assert [a.addr_spec for a in msg["Reply-To"].addresses] == list(ADMINS)
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Date"].datetime == NOW
    assert msg["Subject"] == (
        "[connref-cleanup] Your connection references: 2 items need attention in 2 environments"
    )
    assert msg["Message-ID"] == message_id(RUN, msg["X-Connref-Digest"], SENDER)
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]


def test_header_injection_in_a_display_name_is_neutralised(
    findings: pd.DataFrame, snapshot: Snapshot
) -> None:
    msg = by_to(messages(findings, snapshot), "evil@contoso.com")
    assert msg["Bcc"] is None
    assert [a.addr_spec for a in msg["To"].addresses] == ["evil@contoso.com"]
    assert msg["To"].addresses[0].display_name == "Evil Bcc: victim@example.com"
    raw = msg.as_bytes()
    assert b"\nBcc:" not in raw and b"\r\nBcc" not in raw


def test_remote_names_are_escaped_in_html_and_plain_in_text(
    findings: pd.DataFrame, snapshot: Snapshot
) -> None:
    msg = by_to(messages(findings, snapshot), "evil@contoso.com")
    body = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    assert "<script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "<script>alert(1)</script>" in text
    assert "&lt;" not in text


def test_emoji_subject_and_names_are_encoded_and_decode_back(
    findings: pd.DataFrame, snapshot: Snapshot
) -> None:
    out = compose(
        build_digests(findings, snapshot, make_settings(subject_prefix="🚨 [connref] " + "x" * 40)),
        make_settings(),
        run_id=RUN,
        now=NOW,
    )
    zoe = next(o for o in out if "zoe" in o.filename)
    raw = zoe.message.as_bytes(policy=policy.SMTP)
    assert raw.isascii()
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    parsed = reparse(zoe.message)
    assert parsed["To"].addresses[0].display_name == "Zoë 🚀 Émoji"
    assert "Zoë's 🚀 reference" in html.unescape(parsed.get_body(("html",)).get_content())


def test_long_subject_is_one_line_after_decoding(
    findings: pd.DataFrame, snapshot: Snapshot
) -> None:
    prefix = "🚨 " + "très long préfixe " * 3
    out = compose(
        build_digests(findings, snapshot, make_settings()),
        make_settings(subject_prefix=prefix),
        run_id=RUN,
        now=NOW,
    )
    for outgoing in out:
        subject = reparse(outgoing.message)["Subject"]
        assert "\n" not in subject and "\r" not in subject
        assert subject.startswith("🚨 très long")


def test_fallback_message_says_on_behalf_of(findings: pd.DataFrame, snapshot: Snapshot) -> None:
    msgs = [m for m in messages(findings, snapshot).values() if "Flow Bot" in m["Subject"]]
    (msg,) = msgs
    assert msg["Subject"].startswith("[connref-cleanup] On behalf of Flow Bot:")
    assert "On behalf of Flow Bot" in msg.get_body(("html",)).get_content()
    assert "ON BEHALF OF Flow Bot" in msg.get_body(("plain",)).get_content()


def test_test_mode_notes_the_intended_recipient(findings: pd.DataFrame, snapshot: Snapshot) -> None:
    msgs = messages(findings, snapshot, test_mode=True)
    for msg in msgs.values():
        assert [a.addr_spec for a in msg["To"].addresses] == list(ADMINS)
        assert msg["Subject"].startswith("[connref-cleanup] [TEST] ")
    alice = next(m for m in msgs.values() if "Alice" in m.get_body(("plain",)).get_content())
    assert alice[INTENDED_HEADER] == "Alice.Adams@Contoso.com"
    assert "would go to: Alice.Adams@Contoso.com" in alice.get_body(("plain",)).get_content()


def test_admin_summary_lists_every_owner(findings: pd.DataFrame, snapshot: Snapshot) -> None:
    admin = next(m for n, m in messages(findings, snapshot).items() if n.startswith("admin-"))
    assert [a.addr_spec for a in admin["To"].addresses] == list(ADMINS)
    assert admin["Reply-To"] is None
    text = admin.get_body(("plain",)).get_content()
    for name in ("Alice Adams", "Flow Bot", "Oscar Optout", "Former Employee", "Finance Team"):
        assert name in text
    assert "opted out" in text
    assert "3 flows unreadable." in text


def test_failure_message() -> None:
    msg = build_failure_message(
        make_settings(),
        error="ApiError: boom\r\nBcc: x@y.com",
        traceback_text="Traceback...",
        when=NOW,
    )
    parsed = reparse(msg)
    assert parsed["Bcc"] is None
    assert parsed["Subject"].startswith("[connref-cleanup] Nightly run failed: ApiError: boom")
    assert "Traceback..." in parsed.get_content()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("alice@contoso.com", "alice@contoso.com"),
        (" alice@contoso.com ", "alice@contoso.com"),
        ("alice@contoso.com\r\nBcc: x@y.com", None),
        ("Alice <alice@contoso.com>", None),
        ("alice", None),
        ("alice@", None),
        ("a,b@contoso.com", None),
        ("jörg@contoso.com", None),
        ('"quoted"@contoso.com', None),
        (None, None),
        (42, None),
    ],
)
def test_clean_address(value: object, expected: str | None) -> None:
    assert clean_address(value) == expected


def test_clean_text_removes_controls_and_bidi_overrides() -> None:
    assert clean_text("a\r\nb\tc\u202ed\u2028e\x00f") == "a b c d e f"
    assert clean_text("x" * 100, 10) == "x" * 9 + "…"
    assert clean_text(None) == ""
