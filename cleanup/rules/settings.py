"""Settings sections of the analysis: ``[rules]``, ``[naming]``, ``[exclusions]``, ``[history]``.

Frozen dataclasses in the style of ``cleanup.config`` (typed fields with defaults, parsed by
``cleanup.config._build``), validated in ``__post_init__`` so a bad value fails when the
config is loaded, naming the key. Rule names are checked against the registry later, by
``cleanup.rules.check_rule_names``, because the registry is only complete once every rule
module is imported.

TOML form::

    [rules]
    disable = ["bad-name"]
    production_skus = ["Production"]
    [rules.severity]
    personal-connection = "high"

    [naming]
    convention = "{area} – {connector} – {type}"
    separators = [" – ", " - "]
    [naming.area_map]          # solution unique name or publisher prefix -> area
    CoECore = "CoE"
    admin = "CoE"
    [naming.connector_names]   # API name -> display name
    shared_sql = "Azure SQL"

    [[exclusions.items]]
    environment = "Contoso (Prod)"   # glob on the environment id or display name
    solution = "CoE*"                # glob on the unique name of a solution holding the object
    logical_name = "admin_*"         # glob on the logical name
    rule = "bad-name"                # glob on the rule name
    reason = "The CoE Starter Kit names its own references."
    expires = "2026-06-30"           # optional ISO date; expired entries stop applying

    [history]
    grace_days = 14
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from datetime import date

from cleanup.errors import ConfigError

SEVERITIES = ("info", "low", "medium", "high")
PLACEHOLDERS = ("area", "connector", "type")
DEFAULT_CONVENTION = "{area} – {connector} – {type}"


@dataclass(frozen=True)
class RulesSettings:
    """Which rules run and how severe their findings are."""

    disable: tuple[str, ...] = ()
    severity: dict = field(default_factory=dict)  # rule name -> info | low | medium | high
    production_skus: tuple[str, ...] = ("Production",)

    def __post_init__(self) -> None:
        for rule, level in self.severity.items():
            if level not in SEVERITIES:
                raise ConfigError(
                    f"'rules.severity.{rule}' must be one of {', '.join(SEVERITIES)}; "
                    f"got {level!r}."
                )
        both = sorted(set(self.disable) & set(self.severity))
        if both:
            raise ConfigError(
                f"Rule(s) {', '.join(both)} are both disabled and given a severity in [rules]; "
                "remove one of the two."
            )


@dataclass(frozen=True)
class NamingSettings:
    """The naming convention for connection reference display names."""

    convention: str = DEFAULT_CONVENTION
    separators: tuple[str, ...] = (" – ", " - ")  # accepted between parts; the first is proposed
    area_map: dict = field(default_factory=dict)  # solution unique name or publisher prefix -> area
    connector_names: dict = field(default_factory=dict)  # API name -> display name
    max_length: int = 100  # Dataverse limit of connectionreferencedisplayname

    def __post_init__(self) -> None:
        try:
            names = [f for _, f, _, _ in string.Formatter().parse(self.convention) if f]
        except ValueError as exc:
            raise ConfigError(f"'naming.convention' is not a valid pattern: {exc}.") from None
        unknown = sorted(set(names) - set(PLACEHOLDERS))
        if unknown:
            raise ConfigError(
                f"'naming.convention' uses unknown placeholder(s) {', '.join(unknown)}; "
                f"allowed: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}."
            )
        if not names:
            raise ConfigError("'naming.convention' must contain at least one placeholder.")
        if not self.separators or not all(self.separators):
            raise ConfigError("'naming.separators' must list at least one non-empty separator.")
        for key, table in (("area_map", self.area_map), ("connector_names", self.connector_names)):
            if any(not isinstance(v, str) for v in table.values()):
                raise ConfigError(f"Every value in 'naming.{key}' must be a string.")
        if self.max_length < 10:
            raise ConfigError("'naming.max_length' must be at least 10.")


@dataclass(frozen=True)
class Exclusion:
    """One exclusion: findings it matches are set aside, with its reason, until it expires."""

    reason: str = ""
    environment: str = "*"  # glob on environment id or display name
    solution: str = ""  # glob on a solution unique name; "" = any (or none)
    logical_name: str = "*"  # glob on the object's logical name
    rule: str = "*"  # glob on the rule name
    expires: str = ""  # ISO date; from the day after it, the exclusion no longer applies

    def __post_init__(self) -> None:
        if not self.reason.strip():
            raise ConfigError(
                "Every exclusion needs a 'reason' (it is shown in the report next to what "
                f"it hides): {self.describe()}."
            )
        if (self.environment, self.solution, self.logical_name, self.rule) == ("*", "", "*", "*"):
            raise ConfigError(
                "An exclusion must name an environment, solution, logical_name or rule; "
                f"this one would hide every finding: {self.describe()}."
            )
        if self.expires:
            self.expiry_date()

    def expiry_date(self) -> date | None:
        """Return the expiry as a date (None when it never expires)."""
        if not self.expires:
            return None
        try:
            return date.fromisoformat(self.expires)
        except ValueError:
            raise ConfigError(
                f"Exclusion 'expires' must be an ISO date like 2026-06-30; got {self.expires!r}."
            ) from None

    def describe(self) -> str:
        """Say what the exclusion selects, for messages and the report."""
        parts = [
            f"{name}={value!r}"
            for name, value, default in (
                ("environment", self.environment, "*"),
                ("solution", self.solution, ""),
                ("logical_name", self.logical_name, "*"),
                ("rule", self.rule, "*"),
            )
            if value != default
        ]
        return ", ".join(parts) or "everything"


@dataclass(frozen=True)
class ExclusionSettings:
    """Findings set aside on purpose, each with a reason and an optional expiry."""

    items: tuple[Exclusion, ...] = ()


@dataclass(frozen=True)
class HistorySettings:
    """How earlier runs are used."""

    grace_days: int = 14  # days a reference must stay unused before deletion is proposed

    def __post_init__(self) -> None:
        if self.grace_days < 0:
            raise ConfigError("'history.grace_days' must be 0 or more.")


def glob_regex(pattern: str) -> str:
    """Translate a shell-style glob into a regex for case-insensitive ``str.fullmatch``."""
    # fnmatch.translate adds (?s:...)\Z which pandas' fullmatch does not need; build it plainly.
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return "".join(out)
