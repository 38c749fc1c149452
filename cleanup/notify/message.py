"""Turn a digest into an ``EmailMessage``: templates, headers, and sanitising of remote text.

Names and addresses come from Dataverse, where anyone who can edit a user or a team can put
anything in them. Nothing remote reaches a header unsanitised: control, format and line
separator characters are removed, addresses are validated with ``email.headerregistry``, and
``policy.default`` encodes non-ASCII (RFC 2047) and folds long lines.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import datetime
from email import policy
from email.errors import HeaderParseError, MessageError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

from cleanup import __version__

if TYPE_CHECKING:
    from jinja2 import Environment

    from cleanup.notify.digest import Digest
    from cleanup.notify.settings import NotifySettings

TEMPLATES = {
    "owner": ("email_owner.html.j2", "email_owner.txt.j2"),
    "fallback": ("email_owner.html.j2", "email_owner.txt.j2"),
    "admin": ("email_admin.html.j2", "email_admin.txt.j2"),
}
FAILURE_TEMPLATE = "email_failure.txt.j2"
FROM_NAME = "connref-cleanup"
INTENDED_HEADER = "X-Connref-Intended-To"
DIGEST_HEADER = "X-Connref-Digest"
RUN_HEADER = "X-Connref-Run"
MAX_NAME = 80
MAX_SUBJECT_PART = 60
# Line/paragraph separators and NEL break lines in some clients; Cc/Cf include CR, LF, NUL
# and bidi overrides that can disguise a name.
_STRIP_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")


def clean_text(value: Any, max_len: int = MAX_NAME) -> str:
    """Return ``value`` as one safe line: no control characters, single spaces, bounded."""
    if value is None:
        return ""
    text = "".join(
        " " if unicodedata.category(ch) in _STRIP_CATEGORIES else ch for ch in str(value)
    )
    text = " ".join(text.split())
    if len(text) > max_len:
        text = text[: max_len - 1].rstrip() + "…"
    return text


def clean_address(value: Any) -> str | None:
    """Return a valid ASCII addr-spec (``user@domain``) or None; never raises."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or not text.isascii() or any(ord(ch) < 33 or ord(ch) == 127 for ch in text):
        return None
    if text.count("@") != 1 or text.startswith("@") or text.endswith("@"):
        return None
    try:
        address = Address(addr_spec=text)
    except (ValueError, IndexError, HeaderParseError, MessageError):
        return None
    # A quoted or otherwise rewritten local part is legal but not what an owner typed.
    if address.addr_spec != text or not address.domain or "." in (text[0], text[-1]):
        return None
    return text


def header_address(addr: str, name: str = "") -> Address:
    """Return a header ``Address`` with a sanitised display name."""
    return Address(display_name=clean_text(name), addr_spec=addr)


def message_id(run_id: str, key: str, sender: str) -> str:
    """Return a Message-ID that is the same for every send of one digest in one run.

    A retry after a lost acknowledgement then carries the same id, so the receiving side can
    recognise the duplicate.
    """
    domain = sender.rpartition("@")[2] or "connref-cleanup.invalid"
    local = _ID_UNSAFE.sub("-", f"{run_id}.{key}").strip("-.") or key
    return f"<{local}@{domain}>"


def subject_for(digest: Digest, settings: NotifySettings) -> str:
    """Return the subject line of a digest (one line, remote parts cleaned and bounded)."""
    n_items = len(digest.items)
    envs = len({item.environment_id for item in digest.items})
    things = _plural(n_items, "item")
    where = _plural(envs, "environment")
    if digest.kind == "admin":
        owners = _plural(len(digest.sections), "owner")
        text = f"Connection references: {things} for {owners} in {where}"
    elif digest.kind == "fallback" and digest.owner is not None:
        name = clean_text(digest.owner.name, MAX_SUBJECT_PART)
        text = f"On behalf of {name}: {things} need attention in {where}"
    else:
        text = f"Your connection references: {things} need attention in {where}"
    prefix = clean_text(settings.subject_prefix, MAX_SUBJECT_PART)
    test = "[TEST] " if digest.test_mode else ""
    return " ".join(part for part in (prefix, test + text) if part)


def render_bodies(
    digest: Digest, settings: NotifySettings, run_id: str, env: Environment | None = None
) -> tuple[str, str]:
    """Render the HTML and plain-text bodies of a digest."""
    env = env or template_environment()
    html_name, text_name = TEMPLATES[digest.kind]
    context = {
        "digest": digest,
        "run_id": run_id,
        "subject": subject_for(digest, settings),
        "admin_addresses": settings.admin_addresses,
        "tool_version": __version__,
    }
    html = env.get_template(html_name).render(**context)
    text = env.get_template(text_name).render(**context)
    return html, text


def build_message(
    digest: Digest,
    settings: NotifySettings,
    *,
    run_id: str,
    now: datetime,
    env: Environment | None = None,
) -> EmailMessage:
    """Build the complete message (headers, plain-text and HTML parts) for one digest."""
    html, text = render_bodies(digest, settings, run_id, env)
    msg = EmailMessage(policy=policy.default)
    msg["From"] = header_address(settings.sender, FROM_NAME)
    msg["To"] = [_recipient(digest, addr) for addr in digest.to]
    if digest.kind != "admin" and settings.admin_addresses:
        msg["Reply-To"] = [header_address(a) for a in settings.admin_addresses]
    msg["Subject"] = subject_for(digest, settings)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id(run_id, digest.key, settings.sender)
    # RFC 3834: no auto-replies, and Exchange's own flag against out-of-office answers.
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg[DIGEST_HEADER] = digest.key
    msg[RUN_HEADER] = _ID_UNSAFE.sub("-", run_id)
    if digest.test_mode:
        msg[INTENDED_HEADER] = ", ".join(digest.intended_to) or "(nobody)"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg


def build_failure_message(
    settings: NotifySettings,
    *,
    error: str,
    traceback_text: str,
    when: datetime,
    env: Environment | None = None,
) -> EmailMessage:
    """Build the plain-text mail that tells the admins a scheduled night failed."""
    env = env or template_environment()
    text = env.get_template(FAILURE_TEMPLATE).render(
        error=error,
        traceback_text=traceback_text,
        when=when.isoformat(timespec="seconds"),
        tool_version=__version__,
    )
    msg = EmailMessage(policy=policy.default)
    msg["From"] = header_address(settings.sender, FROM_NAME)
    msg["To"] = [header_address(a) for a in settings.admin_addresses]
    prefix = clean_text(settings.subject_prefix, MAX_SUBJECT_PART)
    msg["Subject"] = f"{prefix} Nightly run failed: {clean_text(error, MAX_SUBJECT_PART)}".strip()
    msg["Date"] = format_datetime(when)
    stamp = hashlib.sha256(f"{when.isoformat()}{error}".encode()).hexdigest()[:12]
    msg["Message-ID"] = message_id("failure", stamp, settings.sender)
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(text)
    return msg


def recipients_of(msg: EmailMessage) -> list[str]:
    """Return the envelope recipients of a message: the addresses in its To header."""
    header = msg["To"]
    if header is None:
        return []
    return [addr.addr_spec for addr in header.addresses]


def template_environment() -> Environment:
    """Return the project's one Jinja environment (autoescaped, strict), shared with reports."""
    # Imported here: config imports the notify settings, which import this module, and the
    # report package imports config; a top-level import would be circular.
    from cleanup.report.render import template_environment as shared

    return shared()


def _recipient(digest: Digest, addr: str) -> Address:
    owner = digest.owner
    if digest.kind == "owner" and not digest.test_mode and owner and owner.email == addr:
        return header_address(addr, owner.name)
    return header_address(addr)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
