"""A seeded generator of large, realistic simulated tenants (for tests and benchmarks).

Same arguments, same tenant: every draw comes from ``random.Random`` instances seeded from the
seed (one per environment, so environments are independent of each other's sizes). The mix of
objects follows the corpus (``/work/shared/corpus/SUMMARY.md``) and DESIGN.md's cases: several
solutions per environment (some managed), references named the way the maker portal names them
(``<prefix>_shared<api>_<5 hex>`` / ``<Connector> <Solution>-<5 hex>``) next to curated names,
duplicates, unused, unbound and personal references, connections in error, flows on, off and
suspended, owners of every kind, and canvas-app dependents.

Two anomalies are placed deterministically so tests can count them exactly:

* in every Dataverse environment with at least ``4`` references, exactly one reference has a
  ``connection_id`` naming a connection that does not exist (``DANGLING_CONNECTION_MARK`` in
  its description);
* in every Dataverse environment with at least ``4`` flows, exactly one flow uses a logical name
  that no reference declares; those names start with ``DANGLING_LOGICAL_NAME_PREFIX``.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cleanup.simulator.flowshapes import (
    CONNECTORS,
    Connector,
    Use,
    build_clientdata,
    custom_connector,
    draw_clientdata_size,
    next_key,
)
from cleanup.simulator.tenant import (
    CANVAS_APP_COMPONENT_TYPE,
    DEFAULT_SOLUTION_ID,
    Connection,
    ConnectionReference,
    Creator,
    Dependent,
    Environment,
    Flow,
    Mailbox,
    Publisher,
    Solution,
    Team,
    Tenant,
    User,
)

DOMAIN = "contoso.example"
ADMIN_MAILBOX = f"admin@{DOMAIN}"
SENDER_MAILBOX = f"connref-cleanup@{DOMAIN}"
CLIENTDATA_SIZES = ("small", "realistic")
ANOMALY_THRESHOLD = 4
DANGLING_CONNECTION_MARK = "[generated: connection does not exist]"
DANGLING_LOGICAL_NAME_PREFIX = "envvar_"
CURATED_SEPARATOR = " – "  # en dash, the recommended convention

_PEOPLE_TEXT = (
    "Adele Vance, Alex Wilber, Megan Bowen, Lee Gu, Nestor Wilke, Isaiah Langer, Grady Archie, "
    "Lidia Holloway, Joni Sherman, Lynne Robbins, Miriam Graham, Patti Fernandez, "
    "Pradeep Gupta, Diego Siciliani, Johanna Lorenz, Henrietta Mueller"
)
_PEOPLE = tuple(_PEOPLE_TEXT.split(", "))
_DISABLED_PERSON = "Dan Jump"
_AREAS_TEXT = (
    "Absence Expense Invoice Onboarding Helpdesk Payroll Procurement Leave Audit Inventory "
    "Recruiting Contracts Travel Facilities Marketing"
)
_AREAS = tuple(_AREAS_TEXT.split())
_SKU_CYCLE = ("Sandbox", "Developer", "Sandbox", "Production", "Developer", "Trial")
_PREFIXES = ("new", "cr94d", "cr8dc", "hr", "fin", "cat", "admin", "mk", "lra", "coi", "pnp")
_CUSTOM_CONNECTORS = (("cre80", "Kursy walut NBP"), ("hr", "Payroll API"), ("tk", "Ticketing API"))
_START = datetime(2020, 1, 1, tzinfo=UTC)
_SPAN_SECONDS = int((datetime(2025, 6, 1, tzinfo=UTC) - _START).total_seconds())


@dataclass
class _Person:
    name: str
    email: str
    aad_id: str
    disabled: bool = False


@dataclass
class _TenantContext:
    """What every environment shares: people, service principals, custom connectors."""

    tenant_id: str
    client_id: str
    size: str
    people: list[_Person]
    service_principals: list[Creator]
    integration_app_id: str
    customs: list[Connector]


def generate_tenant(
    seed: int = 0,
    environments: int = 5,
    flows_per_environment: int = 50,
    references_per_environment: int = 20,
    connections_per_environment: int = 10,
    clientdata_size: str = "small",
    tenant_id: str | None = None,
    client_id: str | None = None,
    no_dataverse_environments: int = 0,
    unreadable_environments: int = 0,
) -> Tenant:
    """Return a realistic tenant; identical for identical arguments.

    Environment 0 is the Default environment and 1 a Production one, the rest cycle through
    Sandbox, Developer, Production and Trial. The last ``no_dataverse_environments`` have no
    Dataverse (connections only) and the ``unreadable_environments`` before them refuse the app.
    """
    _check_arguments(
        environments, clientdata_size, no_dataverse_environments, unreadable_environments
    )
    rng = random.Random(f"connref-cleanup/tenant/{seed}")
    ctx = _tenant_context(rng, tenant_id, client_id, clientdata_size)
    counts = (flows_per_environment, references_per_environment, connections_per_environment)
    org_names: set[str] = set()
    envs = []
    for index in range(environments):
        env_rng = random.Random(f"connref-cleanup/env/{seed}/{index}")
        dataverse = index < environments - no_dataverse_environments
        readable = not (
            dataverse
            and index >= environments - no_dataverse_environments - unreadable_environments
        )
        builder = _EnvironmentBuilder(ctx, env_rng, index, counts, org_names)
        envs.append(builder.build(dataverse, readable))
    mailboxes = [Mailbox(ADMIN_MAILBOX), Mailbox(SENDER_MAILBOX)]
    return Tenant(ctx.tenant_id, ctx.client_id, envs, mailboxes)


def _check_arguments(environments: int, size: str, no_dataverse: int, unreadable: int) -> None:
    if size not in CLIENTDATA_SIZES:
        raise ValueError(f"clientdata_size must be one of {CLIENTDATA_SIZES}, not {size!r}")
    if min(environments, no_dataverse, unreadable) < 0 or no_dataverse + unreadable > environments:
        raise ValueError(
            "need environments >= no_dataverse_environments + unreadable_environments >= 0"
        )


def _tenant_context(
    rng: random.Random, tenant_id: str | None, client_id: str | None, size: str
) -> _TenantContext:
    tenant_id = tenant_id or _guid(rng)
    client_id = client_id or _guid(rng)
    people = [_person(name, rng) for name in _PEOPLE]
    people.append(_person(_DISABLED_PERSON, rng, disabled=True))
    sps = [
        Creator(_guid(rng), name, "ServicePrincipal")
        for name in ("Contoso Automation SP", "Contoso Integration SP")
    ]
    customs = [custom_connector(prefix, name, rng) for prefix, name in _CUSTOM_CONNECTORS]
    return _TenantContext(tenant_id, client_id, size, people, sps, _guid(rng), customs)


def _person(name: str, rng: random.Random, disabled: bool = False) -> _Person:
    email = name.lower().replace(" ", ".") + "@" + DOMAIN
    return _Person(name, email, _guid(rng), disabled)


def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _hex(rng: random.Random, digits: int) -> str:
    return f"{rng.getrandbits(4 * digits):0{digits}x}"


def _timestamp(rng: random.Random, after: str | None = None) -> str:
    start = datetime.fromisoformat(after) if after else _START
    span = max(int((_START + timedelta(seconds=_SPAN_SECONDS) - start).total_seconds()), 1)
    moment = start + timedelta(seconds=rng.randrange(span))
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Plan:
    """Where one reference's usage is headed while flows are being drawn."""

    reference: ConnectionReference
    connector: Connector
    fate: str  # used | unused | dependent
    flows: list[int] = field(default_factory=list)


class _EnvironmentBuilder:
    """Builds one environment from its own random stream."""

    def __init__(
        self,
        ctx: _TenantContext,
        rng: random.Random,
        index: int,
        counts: tuple[int, int, int],
        org_names: set[str],
    ) -> None:
        self.ctx = ctx
        self.rng = rng
        self.index = index
        self.flow_count, self.reference_count, self.connection_count = counts
        self.org_names = org_names
        self.owners: list[tuple[str, str]] = []
        self.owner_weights: list[int] = []
        self.logical_names: set[str] = set()

    # -- environment shell -------------------------------------------------------------------

    def build(self, dataverse: bool, readable: bool) -> Environment:
        env = self._shell(dataverse, readable)
        env.connections = [self._connection() for _ in range(self.connection_count)]
        if not dataverse:
            return env
        self._people(env, readable)
        self._solutions(env)
        plans = [self._reference(env, i) for i in range(self.reference_count)]
        env.references = [p.reference for p in plans]
        env.flows = self._flows(env, plans)
        env.dependents = self._dependents(plans)
        return env

    def _shell(self, dataverse: bool, readable: bool) -> Environment:
        rng, index = self.rng, self.index
        env_id = f"Default-{self.ctx.tenant_id}" if index == 0 else _guid(rng)
        if index == 0:
            sku, name = "Default", "Contoso (default)"
        else:
            sku = "Production" if index == 1 else _SKU_CYCLE[(index - 2) % len(_SKU_CYCLE)]
            area = _AREAS[index % len(_AREAS)]
            name = f"Contoso {area} {sku} {index:03d}"
        return Environment(
            id=env_id,
            display_name=name,
            sku=sku,
            is_default=index == 0,
            has_dataverse=dataverse,
            org_name=self._org_name(),
            readable=readable,
            location=rng.choice(("unitedstates", "europe", "unitedkingdom")),
            created_time=_timestamp(rng),
        )

    def _org_name(self) -> str:
        name = f"org{_hex(self.rng, 8)}"
        while name in self.org_names:
            name = f"org{_hex(self.rng, 8)}"
        self.org_names.add(name)
        return name

    # -- identities ---------------------------------------------------------------------------

    def _people(self, env: Environment, readable: bool) -> None:
        rng, ctx = self.rng, self.ctx
        active = [p for p in ctx.people if not p.disabled]
        chosen = rng.sample(active, rng.randint(5, min(10, len(active))))
        disabled = ctx.people[-1]
        users = [(self._user(p), 12) for p in chosen]
        users.append((self._user(disabled, is_disabled=True), 6))
        if readable:  # "unreadable" means the job's application user is not in there
            users.append((self._app_user("connref-cleanup", ctx.client_id), 2))
        users.append((self._app_user("Contoso Integration", ctx.integration_app_id), 8))
        for user, weight in users:
            env.users.append(user)
            self._add_owner(user.id, "systemuser", weight)
        team = Team(_guid(rng), f"{env.display_name} Makers", aad_object_id=_guid(rng))
        env.teams.append(team)
        self._add_owner(team.id, "team", 10)

    def _user(self, person: _Person, is_disabled: bool = False) -> User:
        return User(
            _guid(self.rng),
            person.name,
            person.email,
            person.email,
            person.aad_id,
            is_disabled=is_disabled,
        )

    def _app_user(self, name: str, application_id: str) -> User:
        """An application user: no mailbox, non-interactive access mode (4)."""
        domain_name = f"{name.replace(' ', '').lower()}@{DOMAIN}"
        return User(
            _guid(self.rng),
            f"# {name}",
            "",
            domain_name,
            _guid(self.rng),
            application_id=application_id,
            access_mode=4,
        )

    def _add_owner(self, owner_id: str, owner_type: str, weight: int) -> None:
        self.owners.append((owner_id, owner_type))
        self.owner_weights.append(weight)

    def _owner(self) -> tuple[str, str]:
        return self.rng.choices(self.owners, weights=self.owner_weights)[0]

    # -- connections ---------------------------------------------------------------------------

    def _connector(self) -> Connector:
        rng = self.rng
        if rng.random() < 0.04:
            return rng.choice(self.ctx.customs)
        catalogue = list(CONNECTORS.values())
        return rng.choices(catalogue, weights=[c.weight for c in catalogue])[0]

    def _connection(self) -> Connection:
        rng, ctx = self.rng, self.ctx
        connector = self._connector()
        service_principal = rng.random() < 0.35
        if service_principal:
            creator = rng.choice(ctx.service_principals)
            display = f"{connector.display_name} ({creator.display_name})"
        else:
            person = rng.choice(ctx.people)
            creator = Creator(person.aad_id, person.name, "User", person.email, person.email)
            display = person.email
        name = _hex(rng, 32)
        if rng.random() < 0.1:
            stem = ("shared-" + connector.api.removeprefix("shared_"))[:20]
            name = f"{stem}-{_guid(rng)}"
        created = _timestamp(rng)
        connection = Connection(
            name=name,
            connector=connector.api,
            display_name=display,
            created_by=creator,
            created_time=created,
            last_modified_time=_timestamp(rng, created),
            parameter_set="oauthSP" if service_principal else "",
        )
        roll = rng.random()
        if roll < 0.08:
            connection.status = "Error"
            connection.error_code = "Unauthorized"
            connection.error_message = (
                "The refresh token has expired due to inactivity. Re-authenticate the connection."
            )
        elif roll < 0.1:
            connection.status = "Unauthenticated"
        return connection

    # -- solutions -----------------------------------------------------------------------------

    def _solutions(self, env: Environment) -> None:
        rng = self.rng
        prefixes = rng.sample(_PREFIXES, 2)
        env.publishers = [
            Publisher(_guid(rng), f"{prefix}publisher", f"{prefix.upper()} Publisher", prefix)
            for prefix in prefixes
        ]
        managed = self._managed_solution_count(env)
        areas = rng.sample(_AREAS, rng.randint(2, 4) + managed)
        for n, area in enumerate(areas):
            publisher = env.publishers[n % len(env.publishers)]
            env.solutions.append(
                Solution(
                    id=_guid(rng),
                    unique_name=f"{area}App" if n % 2 else f"{area}Core",
                    friendly_name=f"{area} {'App' if n % 2 else 'Core'}",
                    is_managed=n >= len(areas) - managed,
                    version=f"{rng.randint(1, 3)}.{rng.randint(0, 9)}.0.{rng.randint(0, 40)}",
                    publisher_id=publisher.id,
                )
            )

    def _managed_solution_count(self, env: Environment) -> int:
        """Production gets imported (managed) solutions; makers' Default environment does not."""
        if env.is_default:
            return 0
        return self.rng.randint(1, 2) if env.sku == "Production" else self.rng.randint(0, 1)

    def _publisher(self, env: Environment, solution: Solution | None) -> Publisher:
        if solution is None:
            return env.publishers[0]
        return next(p for p in env.publishers if p.id == solution.publisher_id)

    def _solution(self, env: Environment, none_weight: float) -> Solution | None:
        """Draw a solution, or None for components that live only in the Default solution."""
        rng = self.rng
        if rng.random() < none_weight:
            return None
        return rng.choice(env.solutions)

    # -- references ----------------------------------------------------------------------------

    def _reference(self, env: Environment, index: int) -> _Plan:
        rng = self.rng
        solution = self._solution(env, 0.5 if env.is_default else 0.1)
        connection, connector, connection_id = self._binding(env, index)
        publisher = self._publisher(env, solution)
        logical_name, display_name = self._names(publisher.prefix, connector, solution, connection)
        created = _timestamp(rng)
        owner_id, owner_type = self._owner()
        managed = solution is not None and solution.is_managed
        reference = ConnectionReference(
            id=_guid(rng),
            logical_name=logical_name,
            display_name=display_name,
            connector_id=connector.connector_id,
            connection_id=connection_id,
            description=DANGLING_CONNECTION_MARK if index == self._dangling_index() else None,
            is_managed=managed,
            is_customizable=not managed or rng.random() < 0.5,
            owner_id=owner_id,
            owner_type=owner_type,
            created_on=created,
            modified_on=_timestamp(rng, created),
            version=rng.randint(100_000, 9_999_999),
            solution_id=solution.id if managed else DEFAULT_SOLUTION_ID,
            solution_ids=self._membership(env, solution),
            custom_connector_id=_guid(rng) if connector.is_custom else None,
        )
        fate = rng.choices(("used", "unused", "dependent"), weights=(85, 10, 5))[0]
        if index == self._dangling_index():
            fate = "used"  # keep the broken binding visible to the flows rules
        return _Plan(reference, connector, fate)

    def _dangling_index(self) -> int:
        return 3 if self.reference_count >= ANOMALY_THRESHOLD else -1

    def _binding(
        self, env: Environment, index: int
    ) -> tuple[Connection | None, Connector, str | None]:
        """Pick the connection a reference is bound to (None: unbound or dangling)."""
        rng = self.rng
        if index == self._dangling_index():
            return None, self._connector(), _hex(rng, 32)
        if not env.connections or rng.random() < 0.1:
            return None, self._connector(), None
        connection = rng.choice(env.connections)
        return connection, self._connector_by_api(connection.connector), connection.name

    def _connector_by_api(self, api: str) -> Connector:
        if api in CONNECTORS:
            return CONNECTORS[api]
        return next(c for c in self.ctx.customs if c.api == api)

    def _membership(self, env: Environment, solution: Solution | None) -> list[str]:
        if solution is None:
            return []
        others = [s.id for s in env.solutions if s.id != solution.id and not s.is_managed]
        if others and not solution.is_managed and self.rng.random() < 0.05:
            return [solution.id, self.rng.choice(others)]
        return [solution.id]

    def _names(
        self,
        prefix: str,
        connector: Connector,
        solution: Solution | None,
        connection: Connection | None,
    ) -> tuple[str, str]:
        """Return (logical name, display name) in one of the styles seen in the corpus."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.65:
            return self._auto_names(prefix, connector, solution, plain_display=roll >= 0.57)
        area = rng.choice(_AREAS)
        if roll < 0.9:
            is_sp = connection is None or connection.created_by.type == "ServicePrincipal"
            if rng.random() < 0.1:
                is_sp = not is_sp  # the type word lies
            kind = "Service Principal" if is_sp else "User"
            display = CURATED_SEPARATOR.join((area, connector.short_name, kind))
        else:
            display = rng.choice(
                (
                    f"{area} - {connector.short_name}",
                    f"{area} | {connector.short_name}",
                    f"🔌 {connector.short_name} Connection",
                    f"{area}{connector.short_name.replace(' ', '')}",
                )
            )
        stem = f"{prefix}_{area}{connector.short_name.replace(' ', '')}"
        return self._unique(stem), display

    def _auto_names(
        self, prefix: str, connector: Connector, solution: Solution | None, plain_display: bool
    ) -> tuple[str, str]:
        flat = connector.api.removeprefix("shared_").replace("-", "")
        while True:
            suffix = _hex(self.rng, 5)
            logical_name = f"{prefix}_shared{flat}_{suffix}"
            if logical_name not in self.logical_names:
                break
        self.logical_names.add(logical_name)
        if plain_display:
            return logical_name, connector.display_name
        where = solution.unique_name if solution else "Default"
        return logical_name, f"{connector.display_name} {where}-{suffix}"

    def _unique(self, stem: str) -> str:
        name, n = stem, 1
        while name in self.logical_names:
            n += 1
            name = f"{stem}{n}"
        self.logical_names.add(name)
        return name

    # -- flows -----------------------------------------------------------------------------------

    def _flows(self, env: Environment, plans: list[_Plan]) -> list[Flow]:
        rng = self.rng
        solutions = [self._flow_solution(env) for _ in range(self.flow_count)]
        connectionless = {j for j in range(self.flow_count) if rng.random() < 0.1}
        self._assign(plans, solutions, connectionless)
        by_flow: list[list[_Plan]] = [[] for _ in range(self.flow_count)]
        for plan in plans:
            for j in plan.flows:
                by_flow[j].append(plan)
        dangling_flow = 0 if self.flow_count >= ANOMALY_THRESHOLD else -1
        ids = [_guid(rng) for _ in range(self.flow_count)]
        return [
            self._flow(env, ids, j, solutions[j], by_flow[j], plans, j == dangling_flow)
            for j in range(self.flow_count)
        ]

    def _flow_solution(self, env: Environment) -> Solution | None:
        return self._solution(env, 0.6 if env.is_default else 0.1)

    def _assign(
        self, plans: list[_Plan], solutions: list[Solution | None], connectionless: set[int]
    ) -> None:
        """Give every used reference one or more flows, preferring flows of its own solution."""
        rng = self.rng
        candidates = [j for j in range(self.flow_count) if j not in connectionless]
        if not candidates:
            return
        by_solution: dict[str | None, list[int]] = {}
        for j in candidates:
            by_solution.setdefault(_solution_id(solutions[j]), []).append(j)
        used = [p for p in plans if p.fate == "used"]
        for plan in used:
            home = by_solution.get(
                plan.reference.solution_ids[0] if plan.reference.solution_ids else None
            )
            while True:
                pool = home if home and rng.random() < 0.8 else candidates
                plan.flows.append(rng.choice(pool))
                if rng.random() >= 0.35:
                    break
        busy = {j for plan in used for j in plan.flows}
        for j in candidates:
            if j not in busy and used:
                rng.choice(used).flows.append(j)

    def _flow(
        self,
        env: Environment,
        ids: list[str],
        j: int,
        solution: Solution | None,
        plans: list[_Plan],
        all_plans: list[_Plan],
        dangling: bool,
    ) -> Flow:
        rng = self.rng
        uses = self._uses(env, solution, plans, all_plans, dangling)
        size = draw_clientdata_size(rng) if self.ctx.size == "realistic" else 0
        clientdata = build_clientdata(
            uses, rng, size=size, deep=rng.random() < 0.05, child_flows=ids[:j][:5]
        )
        blocked = dangling or any(p.reference.connection_id is None for p in plans)
        state = 0 if blocked else rng.choices((1, 0, 2), weights=(75, 20, 5))[0]
        owner_id, owner_type = self._owner()
        managed = solution is not None and solution.is_managed
        created = _timestamp(rng)
        return Flow(
            id=ids[j],
            name=self._flow_name(plans),
            clientdata=clientdata,
            unique_id=_guid(rng),
            state=state,
            status=state + 1,
            is_managed=managed,
            owner_id=owner_id,
            owner_type=owner_type,
            created_on=created,
            modified_on=_timestamp(rng, created),
            version=rng.randint(100_000, 9_999_999),
            solution_id=solution.id if managed else DEFAULT_SOLUTION_ID,
            solution_ids=[solution.id] if solution else [],
            description=rng.choice((None, None, "Created by the generator.")),
        )

    def _uses(
        self,
        env: Environment,
        solution: Solution | None,
        plans: list[_Plan],
        all_plans: list[_Plan],
        dangling: bool,
    ) -> list[Use]:
        rng = self.rng
        taken: set[str] = set()
        style = "-" if rng.random() < 0.1 else "_"
        host = "apiconnection" if rng.random() < 0.1 else "openapi"
        uses = [self._use(p.connector, p.reference.logical_name, taken, style, host) for p in plans]
        if plans and rng.random() < 0.05:  # one logical name under two keys
            uses.append(
                self._use(plans[0].connector, plans[0].reference.logical_name, taken, style, host)
            )
        used = [p for p in all_plans if p.fate == "used" and p.flows]
        if used and uses and rng.random() < 0.03:  # declared but never used (DL-Recruiter)
            extra = rng.choice(used)
            uses.append(
                self._use(
                    extra.connector, extra.reference.logical_name, taken, style, host, count=0
                )
            )
        if dangling:
            uses.append(
                self._use(
                    CONNECTORS["shared_sql"],
                    f"{DANGLING_LOGICAL_NAME_PREFIX}TargetDatabaseConnection",
                    taken,
                    style,
                    host,
                )
            )
        if solution is None and env.is_default and rng.random() < 0.25:
            uses.append(self._nameless_use(taken))
        return uses

    def _use(
        self,
        connector: Connector,
        logical_name: str | None,
        taken: set[str],
        style: str,
        host: str,
        count: int | None = None,
    ) -> Use:
        rng = self.rng
        if count is None:
            count = 1 + min(int(rng.expovariate(0.4)), 14)
        invoker = rng.random() < 0.09
        return Use(
            key=next_key(connector.api, taken, style),
            logical_name=logical_name,
            connector=connector.api,
            runtime_source="invoker" if invoker else "embedded",
            action_count=count,
            entry="impersonation" if rng.random() < 0.04 else "modern",
            api_logical_name=connector.api_logical_name,
            host=host,
        )

    def _nameless_use(self, taken: set[str]) -> Use:
        """A connection used directly, from before connection references (no logical name)."""
        rng = self.rng
        connector = rng.choice(
            (CONNECTORS["shared_office365"], CONNECTORS["shared_sharepointonline"])
        )
        entry = "legacy" if rng.random() < 0.5 else "modern"
        return Use(
            next_key(connector.api, taken),
            None,
            connector.api,
            entry=entry,
            action_count=1 + rng.randrange(3),
        )

    def _flow_name(self, plans: list[_Plan]) -> str:
        rng = self.rng
        area = rng.choice(_AREAS)
        subject = plans[0].connector.short_name if plans else "child flow"
        return rng.choice(
            (
                f"{area}: notify owner",
                f"When a new {area.lower()} request is created -> {subject}",
                f"Daily {area.lower()} report",
                f"Sync {area.lower()} records to {subject}",
                f"{area} – Genehmigung anfordern",
                f"Copy of {area} approval",
            )
        )

    # -- dependents -------------------------------------------------------------------------------

    def _dependents(self, plans: list[_Plan]) -> list[Dependent]:
        rng = self.rng
        out = []
        for plan in plans:
            if plan.fate == "dependent" or (plan.fate == "used" and rng.random() < 0.05):
                out.append(
                    Dependent(
                        reference_logical_name=plan.reference.logical_name,
                        component_type=CANVAS_APP_COMPONENT_TYPE,
                        object_id=_guid(rng),
                        name=f"{rng.choice(_AREAS)} App",
                    )
                )
        return out


def _solution_id(solution: Solution | None) -> str | None:
    return solution.id if solution else None
