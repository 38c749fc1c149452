"""The apply report: ``<prefix>-report.json`` for machines, ``<prefix>-report.html`` for people.

Both are written into the apply folder at the end of an apply, resume or restore (prefix
``apply`` or ``restore``), and mailed to the admins when ``[notify]`` is on. Mail is a side
channel: a failed send is logged and never changes the result.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from cleanup import __version__
from cleanup.apply.outcomes import ApplyResult
from cleanup.config import Settings
from cleanup.report.render import template_environment

log = logging.getLogger(__name__)

TEMPLATE = "apply_report.html.j2"
TITLES = {"apply": "Apply report", "resume": "Apply report (resumed)", "restore": "Restore report"}


def write_reports(result: ApplyResult, folder: Path, prefix: str) -> tuple[Path, Path]:
    """Write the JSON and HTML reports atomically; return their paths."""
    document = result.to_dict()
    json_path = _write(folder / f"{prefix}-report.json", json.dumps(document, indent=2) + "\n")
    html_path = _write(folder / f"{prefix}-report.html", render_html(result))
    return json_path, html_path


def render_html(result: ApplyResult) -> str:
    """Render the HTML report of one result."""
    template = template_environment().get_template(TEMPLATE)
    return template.render(**_context(result))


def _context(result: ApplyResult) -> dict[str, Any]:
    return {
        "title": TITLES.get(result.mode, "Apply report"),
        "mode": result.mode,
        "plan_run_id": result.plan_run_id,
        "folder_name": result.folder.name,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "who": result.who,
        "attention": result.attention,
        "interrupted": result.interrupted,
        "exit_code": result.exit_code,
        "planned": result.planned,
        "counts": sorted(result.counts().items()),
        "requests": result.requests,
        "outcomes": result.outcomes,
        "tool_version": __version__,
    }


def _write(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def report_message(result: ApplyResult, settings: Settings, prefix: str) -> EmailMessage:
    """Build the admins' mail of one result: a text summary and the HTML report."""
    notify = settings.notify
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = notify.sender
    msg["To"] = ", ".join(notify.admin_addresses)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(result.counts().items())) or "nothing"
    flag = "ATTENTION: " if result.attention else ""
    prefix_text = " ".join(notify.subject_prefix.split())
    msg["Subject"] = f"{prefix_text} {flag}{TITLES.get(result.mode, prefix)}: {counts}".strip()
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Auto-Submitted"] = "auto-generated"
    lines = [f"{TITLES.get(result.mode, prefix)} for plan {result.plan_run_id} ({counts})."]
    lines += [f"NEEDS ATTENTION: {o.name}: {o.reason}" for o in result.attention]
    lines.append(f"Folder: {result.folder}")
    msg.set_content("\n".join(lines) + "\n")
    msg.add_alternative(render_html(result), subtype="html")
    return msg


def deliver_report(result: ApplyResult, folder: Path, settings: Settings, prefix: str) -> None:
    """Mail the report to the admins when notifications are on; never raises."""
    notify = settings.notify
    if not notify.enabled or notify.transport == "none" or not notify.admin_addresses:
        return
    try:
        from cleanup.notify.deliver import Outgoing, deliver_all, open_transport

        message = report_message(result, settings, prefix)
        outgoing = Outgoing(f"{prefix}-{folder.name}", prefix, f"{prefix}-report.eml", message)
        with open_transport(settings, notify) as transport:
            deliver_all([outgoing], folder, transport, notify)
    except Exception:  # noqa: BLE001 - the report is on disk; mail must not change the outcome
        log.exception("could not mail the %s report to the admins", prefix)
