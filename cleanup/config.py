"""Settings: ``config.toml`` parsed once into validated, immutable dataclasses.

Every section is a frozen dataclass; the loader walks the dataclass fields, so an unknown key
or a wrong type is an error that names the key (with "did you mean"), and adding a setting is
adding a typed field with a default. Secrets never live here: the config names the environment
variable or file that holds them.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cleanup.apply.settings import ApplySettings
from cleanup.errors import ConfigError
from cleanup.notify.settings import NotifySettings, ScheduleSettings
from cleanup.plan import PlanSettings
from cleanup.rules.settings import ExclusionSettings, HistorySettings, NamingSettings, RulesSettings
from cleanup.snapshot.settings import SnapshotSettings

PUBLIC_CLOUD_AUTHORITY = "https://login.microsoftonline.com"


@dataclass(frozen=True)
class TenantSettings:
    """Who we are: the Entra tenant and the app registration the job signs in as."""

    tenant_id: str = ""
    client_id: str = ""
    auth: Literal["client-secret", "certificate", "device-code"] = "client-secret"
    client_secret_env: str = "CONNREF_CLIENT_SECRET"
    client_secret_file: str = ""
    certificate_file: str = ""  # PEM with private key and certificate
    certificate_password_env: str = ""


@dataclass(frozen=True)
class EndpointSettings:
    """Service hosts; defaults are the public cloud, override for sovereign clouds."""

    authority_host: str = PUBLIC_CLOUD_AUTHORITY
    bap: str = "https://api.bap.microsoft.com"
    powerapps: str = "https://api.powerapps.com"
    powerapps_scope: str = "https://service.powerapps.com//.default"
    graph: str = "https://graph.microsoft.com"
    graph_scope: str = "https://graph.microsoft.com/.default"
    ca_bundle: str = ""  # extra CA bundle (PEM); verification itself is always on


@dataclass(frozen=True)
class EnvironmentSelection:
    """Which environments to snapshot; names, ids and SKUs match case-insensitively."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    skus: tuple[str, ...] = ()
    skip_without_dataverse: bool = True


@dataclass(frozen=True)
class HttpSettings:
    """How hard and how politely to talk to the APIs."""

    timeout_seconds: float = 60.0
    max_retries: int = 8
    retry_after_cap_seconds: float = 120.0
    retry_budget_seconds: float = 900.0
    backoff_base_seconds: float = 0.5
    page_size: int = 5000
    concurrency_per_environment: int = 8
    parallel_environments: int = 8


@dataclass(frozen=True)
class RunSettings:
    """Where run folders go."""

    runs_dir: str = "runs"


@dataclass(frozen=True)
class SimulatorSettings:
    """Run against the built-in simulator instead of a real tenant (the demo)."""

    enabled: bool = False
    tenant: str = "demo"  # "demo", "generated:<seed>", or a path to a tenant JSON file
    latency_ms: float = 0.0


@dataclass(frozen=True)
class Settings:
    """The whole configuration."""

    tenant: TenantSettings = field(default_factory=TenantSettings)
    endpoints: EndpointSettings = field(default_factory=EndpointSettings)
    environments: EnvironmentSelection = field(default_factory=EnvironmentSelection)
    http: HttpSettings = field(default_factory=HttpSettings)
    run: RunSettings = field(default_factory=RunSettings)
    simulator: SimulatorSettings = field(default_factory=SimulatorSettings)
    snapshot: SnapshotSettings = field(default_factory=SnapshotSettings)
    rules: RulesSettings = field(default_factory=RulesSettings)
    naming: NamingSettings = field(default_factory=NamingSettings)
    exclusions: ExclusionSettings = field(default_factory=ExclusionSettings)
    history: HistorySettings = field(default_factory=HistorySettings)
    plan: PlanSettings = field(default_factory=PlanSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    apply: ApplySettings = field(default_factory=ApplySettings)
    source: str = ""  # the file the settings came from, for messages

    def secret_variables(self) -> frozenset[str]:
        """Names of the environment variables the settings read secrets from."""
        names = (
            self.tenant.client_secret_env,
            self.tenant.certificate_password_env,
            self.notify.smtp_username_env,
            self.notify.smtp_password_env,
        )
        return frozenset(name for name in names if name)

    def fingerprint(self) -> str:
        """Return a stable hash of every setting, recorded in run metadata and plans."""
        data = dataclasses.asdict(self)
        # Only what shapes the findings and the plan: widening [apply] limits, or changing
        # mail, schedule or how the snapshot is read, must not invalidate a reviewed plan.
        for key in ("source", "apply", "notify", "schedule", "snapshot"):
            data.pop(key, None)
        blob = json.dumps(data, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def load_settings(path: str | Path) -> Settings:
    """Read and validate a config file."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"Config file {path} not found. Pass --config PATH or copy the shipped config.toml."
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}.") from None
    settings = settings_from_dict(raw)
    return dataclasses.replace(settings, source=str(path))


def settings_from_dict(raw: dict[str, Any]) -> Settings:
    """Validate a parsed TOML document into ``Settings``."""
    settings = _build(Settings, {k: v for k, v in raw.items() if k != "source"}, prefix="")
    _check_semantics(settings)
    from cleanup.rules import check_rule_names  # late: the rules package imports this module

    check_rule_names(settings.rules)
    return settings


def _build(cls: type, raw: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or "the top level"
    if not isinstance(raw, dict):
        raise ConfigError(f"[{where}] must be a table, got {type(raw).__name__}.")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    for key in raw:
        if key not in fields:
            raise ConfigError(_unknown_key_message(prefix + key, key, list(fields)))
    values = {}
    for name, value in raw.items():
        values[name] = _coerce(hints[name], value, prefix + name)
    return cls(**values)


def _unknown_key_message(dotted: str, key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"Unknown setting '{dotted}'.{hint} Known keys here: {', '.join(sorted(known))}."


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, prefix=key + ".")
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            hint_text = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"'{key}' must be one of {', '.join(map(str, choices))}; got {value!r}.{hint_text}"
            )
        return value
    if origin is tuple:
        (item_type, _ellipsis) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"'{key}' must be a list, got {_describe(value)}.")
        return tuple(_coerce(item_type, item, f"{key}[{i}]") for i, item in enumerate(value))
    if origin in (types.UnionType, typing.Union):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(options[0], value, key)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"'{key}' must be a number, got {_describe(value)}.")
        return float(value)
    if hint in (bool, int, str):
        if type(value) is not hint:
            noun = {"int": "an integer", "str": "a string", "bool": "true or false"}[hint.__name__]
            raise ConfigError(f"'{key}' must be {noun}, got {_describe(value)}.")
        return value
    if isinstance(hint, type) and hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"'{key}' must be a table, got {_describe(value)}.")
        return value
    raise ConfigError(f"'{key}': unsupported setting type {hint!r}.")  # a bug in a section


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _check_semantics(settings: Settings) -> None:
    http = settings.http
    if not 1 <= http.page_size <= 5000:
        raise ConfigError("'http.page_size' must be between 1 and 5000 (the Dataverse maximum).")
    if http.concurrency_per_environment < 1 or http.parallel_environments < 1:
        raise ConfigError("'http.concurrency_per_environment' and 'parallel_environments' >= 1.")
    if http.concurrency_per_environment > 52:
        raise ConfigError(
            "'http.concurrency_per_environment' must be at most 52, the Dataverse limit of "
            "concurrent requests per user and server."
        )
    if http.timeout_seconds <= 0:
        raise ConfigError("'http.timeout_seconds' must be positive.")
    for name in ("authority_host", "bap", "powerapps", "graph"):
        url = getattr(settings.endpoints, name)
        if not url.startswith("https://"):
            raise ConfigError(f"'endpoints.{name}' must be an https:// URL, got {url!r}.")
    tenant = settings.tenant
    if not settings.simulator.enabled and (not tenant.tenant_id or not tenant.client_id):
        raise ConfigError(
            "'tenant.tenant_id' and 'tenant.client_id' are required unless "
            "'simulator.enabled' is true. See README, 'Pointing it at a real tenant'."
        )
    if (
        tenant.auth == "certificate"
        and not tenant.certificate_file
        and not settings.simulator.enabled
    ):
        raise ConfigError("'tenant.auth' is 'certificate' but 'tenant.certificate_file' is empty.")
