"""The apply report: JSON for machines, escaped HTML with what needs attention on top, mail."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from cleanup.apply.outcomes import ActionOutcome, ApplyResult
from cleanup.apply.report import deliver_report, render_html, write_reports
from cleanup.config import Settings
from cleanup.notify.settings import NotifySettings
from tests.notify.conftest import SmtpServer

HOSTILE = '<script>alert(1)</script> "flow" & 🔌'


def result(folder: Path, *statuses: str) -> ApplyResult:
    outcomes = [
        ActionOutcome(
            f"rw-{i}", "rewire-flow-key", "env-1", f"id-{i}", f"flow '{HOSTILE}'", s, "why"
        )
        for i, s in enumerate(statuses)
    ]
    return ApplyResult(
        folder=folder,
        mode="apply",
        plan_run_id="20261126T000000Z",
        plan_hash="sha256:abc",
        started_at="2026-11-26T00:00:00+00:00",
        finished_at="2026-11-26T00:01:00+00:00",
        outcomes=outcomes,
        planned=len(outcomes),
        requests={"total": 10, "writes": 3, "throttled": 0},
        who={"user": "<b>ops</b>", "host": "h", "client_id": "c"},
    )


def test_html_is_escaped_and_puts_attention_first(tmp_path: Path) -> None:
    html = render_html(result(tmp_path, "done", "left-off", "drift"))
    assert "<script>alert(1)</script>" not in html and "<b>ops</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    attention = html.index("1 item needs attention")
    assert attention < html.index("Outcomes") and "left-off" in html[attention:]


def test_json_report_has_counts_exit_code_and_attention(tmp_path: Path) -> None:
    json_path, html_path = write_reports(result(tmp_path, "done", "rolled-back"), tmp_path, "apply")
    data = json.loads(json_path.read_text())
    assert data["exit_code"] == 1 and data["counts"] == {"done": 1, "rolled-back": 1}
    assert [o["status"] for o in data["attention"]] == ["rolled-back"]
    assert html_path.name == "apply-report.html"


def test_exit_codes() -> None:
    folder = Path(".")
    assert result(folder, "done", "already-done").exit_code == 0
    assert result(folder, "done", "skipped").exit_code == 3
    assert result(folder, "done", "failed").exit_code == 1
    partial = result(folder, "done")
    partial.planned = 2
    assert partial.exit_code == 3


def mail_settings(port: int) -> Settings:
    notify = NotifySettings(
        enabled=True,
        transport="smtp",
        sender="connref@contoso.example",
        admin_addresses=("admins@contoso.example",),
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_starttls=False,
        smtp_username_env="",
        smtp_password_env="",
        retry_backoff_seconds=0.0,
    )
    return Settings(notify=notify)


def test_the_report_is_mailed_to_the_admins(
    start_smtp: Callable[..., SmtpServer], tmp_path: Path
) -> None:
    server = start_smtp()
    deliver_report(result(tmp_path, "left-off"), tmp_path, mail_settings(server.port), "apply")
    (received,) = server.received
    assert received.rcpt_tos == ["admins@contoso.example"]
    message = received.message
    assert "ATTENTION" in message["Subject"]
    assert (tmp_path / "emails" / "apply-report.eml").is_file()


def test_a_failed_mail_does_not_raise(tmp_path: Path) -> None:
    from tests.notify.conftest import free_port

    deliver_report(result(tmp_path, "done"), tmp_path, mail_settings(free_port()), "apply")
    records = json.loads((tmp_path / "emails" / "deliveries.json").read_text())
    assert records["deliveries"][0]["status"] == "failed"
