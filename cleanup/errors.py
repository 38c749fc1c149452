"""One error hierarchy; every message tells the user what to do next.

CleanupError
├── ConfigError            config.toml or a command-line value is wrong
├── AuthError              a token could not be acquired (msal's error dictionary, explained)
├── ApiError               an API answered with an error status (status, code, URL, request id)
│   └── ThrottledError     429 retries ran out of budget
├── ReadOnlyViolation      a write was attempted outside apply
├── SnapshotError          a snapshot folder is missing, damaged or of the wrong schema
├── PlanError              a plan file is invalid, stale or tampered with
└── SafetyLimitExceeded    an apply would exceed a configured limit
"""

from __future__ import annotations

from typing import Any


class CleanupError(Exception):
    """Base of every error this tool raises on purpose."""

    exit_code = 1


class ConfigError(CleanupError):
    """The configuration is invalid."""

    exit_code = 2


class AuthError(CleanupError):
    """A token could not be acquired."""


class ApiError(CleanupError):
    """An API call failed; carries what a support ticket needs."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        method: str = "GET",
        url: str = "",
        request_id: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.method = method
        self.url = url
        self.request_id = request_id
        parts = [message]
        if status is not None:
            parts.append(f"HTTP {status}")
        if code:
            parts.append(f"code {code}")
        parts.append(f"{method} {url}")
        if request_id:
            parts.append(f"request id {request_id}")
        super().__init__(" | ".join(parts))
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its parts, so an error raised in a worker process reads the same here.
        details = (self.status, self.code, self.method, self.url, self.request_id)
        return (_rebuild_api_error, (type(self), self.message, details))


def _rebuild_api_error(cls: type[ApiError], message: str, details: tuple[Any, ...]) -> ApiError:
    status, code, method, url, request_id = details
    return cls(message, status=status, code=code, method=method, url=url, request_id=request_id)


class ThrottledError(ApiError):
    """The service kept answering 429 beyond the retry budget."""


class ReadOnlyViolation(CleanupError):
    """A write request was attempted while the run is read-only."""


class SnapshotError(CleanupError):
    """A snapshot on disk is missing or does not match the expected schema."""


class PlanError(CleanupError):
    """A plan file cannot be used as it is."""


class SafetyLimitExceeded(CleanupError):
    """An apply would exceed a configured safety limit; nothing was written."""
