"""The simulated tenant: plain mutable dataclasses, loadable from and savable to JSON.

The JSON file format is the dataclasses below with snake_case keys (see
``docs/tenant-format.md``); omitted keys take the defaults. Timestamps are ISO 8601 UTC strings.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_SOLUTION_ID = "fd140aaf-4df4-11dd-bd17-0019b9312238"
WORKFLOW_COMPONENT_TYPE = 29
CANVAS_APP_COMPONENT_TYPE = 300


@dataclass
class User:
    """A Dataverse systemuser (also an Entra user or, with application_id, an application user)."""

    id: str
    full_name: str
    email: str = ""
    domain_name: str = ""
    aad_object_id: str = ""
    application_id: str | None = None
    is_disabled: bool = False
    access_mode: int = 0


@dataclass
class Team:
    """A Dataverse team; may own rows."""

    id: str
    name: str
    email: str = ""
    aad_object_id: str = ""
    team_type: int = 0


@dataclass
class Creator:
    """Who created a connection (Entra identity)."""

    id: str
    display_name: str
    type: str = "User"  # User | ServicePrincipal
    email: str = ""
    user_principal_name: str = ""


@dataclass
class Connection:
    """A connection in the Power Apps connections API (not solution-aware)."""

    name: str  # what connectionreference.connectionid holds
    connector: str  # shared_xxx
    display_name: str
    created_by: Creator
    status: str = "Connected"  # Connected | Error | Unauthenticated
    error_code: str = ""
    error_message: str = ""
    created_time: str = "2024-01-01T00:00:00Z"
    last_modified_time: str = "2024-01-01T00:00:00Z"
    parameter_set: str = ""  # e.g. "oauthSP" for service principal connections


@dataclass
class Publisher:
    """A solution publisher."""

    id: str
    unique_name: str
    friendly_name: str
    prefix: str


@dataclass
class Solution:
    """A Dataverse solution."""

    id: str
    unique_name: str
    friendly_name: str
    is_managed: bool = False
    version: str = "1.0.0.0"
    publisher_id: str = ""
    is_visible: bool = True


@dataclass
class ConnectionReference:
    """A row of the connectionreference table."""

    id: str
    logical_name: str
    display_name: str
    connector_id: str  # /providers/Microsoft.PowerApps/apis/shared_xxx
    connection_id: str | None = None
    description: str | None = None
    is_managed: bool = False
    is_customizable: bool = True
    owner_id: str = ""
    owner_type: str = "systemuser"
    created_on: str = "2024-01-01T00:00:00Z"
    modified_on: str = "2024-01-01T00:00:00Z"
    version: int = 1000
    solution_id: str = DEFAULT_SOLUTION_ID
    solution_ids: list[str] = field(default_factory=list)  # membership (solutioncomponents)
    custom_connector_id: str | None = None
    statecode: int = 0
    statuscode: int = 1


@dataclass
class Flow:
    """A row of the workflow table (cloud flows are category 5, type 1)."""

    id: str
    name: str
    clientdata: str | None
    unique_id: str = ""
    state: int = 0  # 0 Draft/Off, 1 Activated/On, 2 Suspended
    status: int = 1  # 1 Draft, 2 Activated, 3 CompanyDLPViolation
    is_managed: bool = False
    owner_id: str = ""
    owner_type: str = "systemuser"
    created_on: str = "2024-01-01T00:00:00Z"
    modified_on: str = "2024-01-01T00:00:00Z"
    version: int = 1000
    solution_id: str = DEFAULT_SOLUTION_ID
    solution_ids: list[str] = field(default_factory=list)
    category: int = 5
    type: int = 1
    modern_flow_type: int = 0
    description: str | None = None


@dataclass
class Dependent:
    """A non-flow component that depends on a connection reference (canvas app, bot, ...)."""

    reference_logical_name: str
    component_type: int  # 300 canvas app, ...
    object_id: str
    name: str = ""


@dataclass
class Environment:
    """One Power Platform environment, with or without Dataverse."""

    id: str  # BAP "name": a GUID or Default-<tenant>
    display_name: str
    sku: str = "Sandbox"
    is_default: bool = False
    has_dataverse: bool = True
    org_name: str = ""  # Dataverse domain name; the simulator derives the instance URL from it
    readable: bool = True  # False: the app user is not in this environment (403)
    location: str = "unitedstates"
    created_time: str = "2023-01-01T00:00:00Z"
    reference_component_type: int = 10091
    users: list[User] = field(default_factory=list)
    teams: list[Team] = field(default_factory=list)
    connections: list[Connection] = field(default_factory=list)
    publishers: list[Publisher] = field(default_factory=list)
    solutions: list[Solution] = field(default_factory=list)
    references: list[ConnectionReference] = field(default_factory=list)
    flows: list[Flow] = field(default_factory=list)
    dependents: list[Dependent] = field(default_factory=list)


@dataclass
class Mailbox:
    """A Graph mailbox that may send mail (sendMail is accepted only for these)."""

    address: str


@dataclass
class Tenant:
    """A whole simulated tenant."""

    tenant_id: str
    client_id: str
    environments: list[Environment] = field(default_factory=list)
    mailboxes: list[Mailbox] = field(default_factory=list)

    def environment(self, env_id: str) -> Environment:
        """Return the environment with this id (KeyError if absent)."""
        for env in self.environments:
            if env.id == env_id:
                return env
        raise KeyError(env_id)


def tenant_to_dict(tenant: Tenant) -> dict[str, Any]:
    """Return the JSON-ready form of a tenant."""
    return dataclasses.asdict(tenant)


def tenant_from_dict(data: dict[str, Any]) -> Tenant:
    """Build a tenant from its JSON form, rejecting unknown keys with the path that holds them."""
    return _build(Tenant, data, "tenant")


def load_tenant(path: str | Path) -> Tenant:
    """Read a tenant JSON file."""
    return tenant_from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def save_tenant(tenant: Tenant, path: str | Path) -> None:
    """Write a tenant JSON file."""
    Path(path).write_text(json.dumps(tenant_to_dict(tenant), indent=1), encoding="utf-8")


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _value(hints[key], value, f"{where}.{key}")
    return cls(**kwargs)


def _value(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if origin is list:
        (item,) = typing.get_args(hint)
        return [_value(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value
