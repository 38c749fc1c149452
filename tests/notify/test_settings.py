"""The [notify] section: loadable by the generic config loader, validated when loaded."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from cleanup.config import _build  # the loader every section goes through
from cleanup.errors import ConfigError
from cleanup.notify.settings import NotifySettings, ScheduleSettings

TOML = """
[notify]
enabled = true
transport = "smtp"
sender = "connref-cleanup@contoso.com"
admin_addresses = ["admins@contoso.com"]
fallback_address = "pp@contoso.com"
test_mode = true
opt_out = ["ceo@contoso.com"]
smtp_host = "smtp.contoso.com"
smtp_port = 587
max_attempts = 5
retry_backoff_seconds = 1

[schedule]
time = "02:30"
timezone = "Europe/Amsterdam"
apply = false
"""


def test_the_documented_toml_loads() -> None:
    raw = tomllib.loads(TOML)
    notify = _build(NotifySettings, raw["notify"], "notify.")
    schedule = _build(ScheduleSettings, raw["schedule"], "schedule.")
    assert notify.admin_addresses == ("admins@contoso.com",)
    assert notify.opt_out == ("ceo@contoso.com",)
    assert notify.retry_backoff_seconds == 1.0
    assert notify.fallback_recipients == ("pp@contoso.com",)
    assert schedule.apply is False


def test_defaults_are_off_and_valid() -> None:
    assert NotifySettings().enabled is False
    assert NotifySettings().transport == "none"
    assert ScheduleSettings().apply is False


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"transport": "sendgrid"}, "must be one of smtp, graph, none"),
        ({"sender": "not an address"}, "'notify.sender' is not a valid email address"),
        ({"admin_addresses": ["ok@contoso.com", "x\r\nBcc: y@z.com"]}, "admin_addresses[1]"),
        ({"enabled": True, "admin_addresses": ["a@contoso.com"]}, "'notify.sender' is required"),
        ({"enabled": True, "sender": "s@contoso.com"}, "'notify.admin_addresses' is required"),
        (
            {
                "enabled": True,
                "sender": "s@contoso.com",
                "admin_addresses": ["a@contoso.com"],
                "transport": "smtp",
            },
            "'notify.smtp_host' is required",
        ),
        ({"max_attempts": 0}, "at least 1"),
        ({"subject_prefix": "a\nBcc: x"}, "one line"),
        ({"smtp_pasword_env": "X"}, "Did you mean 'smtp_password_env'?"),
    ],
)
def test_bad_settings_are_named(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _build(NotifySettings, raw, "notify.")
    assert message in str(err.value)
