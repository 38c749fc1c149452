"""Settings sections for owner emails and the nightly schedule: ``[notify]``, ``[schedule]``.

Frozen dataclasses in the style of ``cleanup.config`` (parsed by its generic loader),
validated in ``__post_init__`` so a bad value fails when the config is loaded, naming the key.
Secrets never live here: the SMTP user name and password come from the environment variables
named by ``smtp_username_env`` / ``smtp_password_env``.

TOML form::

    [notify]
    enabled = true
    transport = "smtp"                    # smtp | graph | none (write .eml files only)
    sender = "connref-cleanup@contoso.com"
    admin_addresses = ["powerplatform-admins@contoso.com"]
    fallback_address = "powerplatform-admins@contoso.com"   # owners without a mailbox
    test_mode = false                     # true: every message goes to the admins only
    opt_out = ["ceo@contoso.com"]         # these owners get no digest (admins still see them)
    smtp_host = "smtp.office365.com"
    smtp_port = 587
    smtp_starttls = true
    smtp_username_env = "CONNREF_SMTP_USERNAME"
    smtp_password_env = "CONNREF_SMTP_PASSWORD"
    max_attempts = 3
    subject_prefix = "[connref-cleanup]"

    [schedule]
    time = "02:00"                        # local time in `timezone`
    timezone = "Europe/Amsterdam"         # IANA name
    apply = false                         # true: apply the night's plan unattended
    lock_file = ""                        # empty: <runs_dir>/.connref-cleanup.lock
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cleanup.errors import ConfigError
from cleanup.notify.message import clean_address

LOCK_FILE_NAME = ".connref-cleanup.lock"
_TIME = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


@dataclass(frozen=True)
class NotifySettings:
    """Who gets which email and how it is delivered."""

    enabled: bool = False
    transport: Literal["smtp", "graph", "none"] = "none"
    sender: str = ""
    admin_addresses: tuple[str, ...] = ()
    fallback_address: str = ""
    test_mode: bool = False
    opt_out: tuple[str, ...] = ()
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_starttls: bool = True
    smtp_username_env: str = "CONNREF_SMTP_USERNAME"
    smtp_password_env: str = "CONNREF_SMTP_PASSWORD"
    smtp_ca_bundle: str = ""  # extra CA (PEM) for a relay with a private CA
    smtp_timeout_seconds: float = 30.0
    max_attempts: int = 3
    retry_backoff_seconds: float = 5.0  # doubled after each failed attempt
    subject_prefix: str = "[connref-cleanup]"

    def __post_init__(self) -> None:
        for name in ("sender", "fallback_address"):
            value = getattr(self, name)
            if value and clean_address(value) is None:
                raise ConfigError(f"'notify.{name}' is not a valid email address: {value!r}.")
        for name in ("admin_addresses", "opt_out"):
            for i, value in enumerate(getattr(self, name)):
                if clean_address(value) is None:
                    raise ConfigError(
                        f"'notify.{name}[{i}]' is not a valid email address: {value!r}."
                    )
        if self.max_attempts < 1:
            raise ConfigError("'notify.max_attempts' must be at least 1.")
        if not 1 <= self.smtp_port <= 65535:
            raise ConfigError("'notify.smtp_port' must be between 1 and 65535.")
        if self.retry_backoff_seconds < 0 or self.smtp_timeout_seconds <= 0:
            raise ConfigError(
                "'notify.retry_backoff_seconds' must be >= 0, 'smtp_timeout_seconds' > 0."
            )
        if any(ch in self.subject_prefix for ch in "\r\n"):
            raise ConfigError("'notify.subject_prefix' must be one line.")
        if self.enabled:
            self._check_enabled()

    def _check_enabled(self) -> None:
        # Checked only when mail is on, so the defaults load without any addresses.
        if not self.sender:
            raise ConfigError("'notify.sender' is required when 'notify.enabled' is true.")
        if not self.admin_addresses:
            raise ConfigError(
                "'notify.admin_addresses' is required when 'notify.enabled' is true: the admin "
                "summary, test mode and owners without a mailbox need somewhere to go."
            )
        if self.transport == "smtp" and not self.smtp_host:
            raise ConfigError("'notify.smtp_host' is required when 'notify.transport' is 'smtp'.")

    @property
    def fallback_recipients(self) -> tuple[str, ...]:
        """Return where mail for owners without a mailbox goes."""
        return (self.fallback_address,) if self.fallback_address else self.admin_addresses


@dataclass(frozen=True)
class ScheduleSettings:
    """When ``connref-cleanup schedule`` runs the job, and whether it may apply."""

    time: str = "02:00"
    timezone: str = "UTC"
    apply: bool = False  # unattended apply only when explicitly switched on
    lock_file: str = ""  # empty: <runs_dir>/.connref-cleanup.lock

    def __post_init__(self) -> None:
        if not _TIME.fullmatch(self.time):
            raise ConfigError(f"'schedule.time' must be HH:MM (24-hour), got {self.time!r}.")
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"'schedule.timezone' {self.timezone!r} is not an IANA time zone name "
                "(for example 'Europe/Amsterdam' or 'UTC')."
            ) from None

    def lock_path(self, runs_dir: str | Path) -> Path:
        """Return the lock file shared by scheduled, manual and apply runs."""
        return Path(self.lock_file) if self.lock_file else Path(runs_dir) / LOCK_FILE_NAME
