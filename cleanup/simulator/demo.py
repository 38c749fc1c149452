"""The demo tenant: small, hand-built, and showing every case of DESIGN.md exactly once or twice.

Ids are ``uuid5`` of a readable name (``demo_id("env/hr")``), connection names the hex of one, so
tests can find any object. Display names use the ``<Area> – <Connector> – <Type>`` convention
(en dash) with the connector words of ``flowshapes.CONNECTORS[...].short_name``.

======================  ==================  ===============================================
case                    environment         objects (logical names unless a flow is named)
======================  ==================  ===============================================
duplicate, auto-named   HR (Production)     hr_AbsenceDataverseSP (survivor candidate: good
                                            name, SP connection, in HRAbsence),
                                            hr_sharedcommondataserviceforapps_4f2a1,
                                            hr_sharedcommondataserviceforapps_9c3e7: one
                                            Dataverse SP connection, three different flows
NOT a duplicate         HR                  hr_HRSiteSharePointSP / hr_ArchiveSharePointSP:
                                            same connector, different connections
duplicate, unbound      Sandbox             mk_sharedapprovals_0c4d1 + mk_sharedapprovals_e7a95
                                            (no connection, same solution ExpenseApp)
duplicate, managed      Finance (managed)   fin_sharedcommondataserviceforapps_a1b2c +
                                            fin_sharedcommondataserviceforapps_d3e4f
unused                  Sandbox             mk_sharedsharepointonline_2b9d0 (the only one)
NOT unused: draft flow  Sandbox             mk_sharedoffice365_6a0f3, used only by the off
                                            flow "Onboarding: welcome mail (draft)"
NOT unused: canvas app  Sandbox             mk_ExpenseDataverseUser, only a Dependent
                                            (canvas app "Expense App")
NOT unused: unknown     Default             new_sharedsharepointonline_5d2e8 has no user, but
                                            flow "Broken export" is invalid JSON, so usage
                                            in Default is unknown
declared, never used    Sandbox             flow "Expense escalation" declares
                                            mk_sharedcommondataserviceforapps_77f3e without an
                                            action (that reference is used by "Expense
                                            approval" anyway)
personal connection     HR (Production)     hr_AbsenceOutlookUser (Adele's connection; name
                                            says User, so only this rule), hr_NotifyTeamsSP
personal (non-prod)     Default, Sandbox    every Default reference; mk_sharedoffice365_6a0f3,
                                            mk_sharedsharepointonline_2b9d0,
                                            mk_ExpenseDataverseUser
unbound, used by flows  HR, Sandbox         hr_LeaveApprovalsSP (flow "Leave request
                                            approval", off); mk_sharedapprovals_0c4d1,
                                            mk_sharedapprovals_e7a95
broken: Error status    HR                  hr_DirectoryUsersSP (SP secret expired)
broken: missing conn    Sandbox             mk_sharedcommondataserviceforapps_77f3e
bad name: auto          Default, HR,        every ``<prefix>_shared<api>_<5 hex>`` reference
                        Finance, Sandbox    whose display name is still generated
bad name: convention    HR                  hr_PayrollSQL "Payroll | SQL Server"
bad name: type lies     HR                  hr_NotifyTeamsSP "… – Service Principal" bound to
                                            Alex's (user) connection
compliant name          HR, Finance,        hr_AbsenceDataverseSP, hr_HRSiteSharePointSP,
                        Sandbox             hr_ArchiveSharePointSP, hr_AbsenceOutlookUser,
                                            hr_DirectoryUsersSP, hr_LeaveApprovalsSP,
                                            fin_InvoicesSharePointSP, mk_ExpenseDataverseUser
hostile text            Default             new_sharedcommondataserviceforapps_8e1f4
                                            "<script>alert(1)</script>";
                                            new_sharedcommondataserviceforapps_c0d9a
                                            "🔌 Dataverse"; flow 'Sync <b>"contacts"</b> & 🔌'
managed environment     Finance             solution FinanceCore (managed): refs and flows
no Dataverse            Field Sales         connections only
unreadable              Legal               readable=False; its duplicate and unused
                                            references must never be reported
invalid clientdata      Default             flow "Broken export" (owner: disabled Dan Jump)
null clientdata         Default             flow "Empty flow" (owner: team without email)
connection: {}          Default             flow "Import contacts", key shared_office365_1
legacy entry shape      Default             flow "Legacy vacation approval (2019)"
owners                  every Dataverse     Adele/Alex/Megan (mailbox), "# HR Integration"
                        environment         (application user), Dan Jump (disabled), team
                                            "Contoso Makers" (no email)
======================  ==================  ===============================================

Corpus shapes also on show: the older ``ApiConnection`` host form ("Payroll export"), invoker
and impersonation entries, one logical name under two keys and a ``-1`` key ("Absence: monthly
report"), a custom connector with ``api.logicalName`` ("Onboarding: create payroll record"),
and a deeply nested action ("Absence: notify manager").
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence

from cleanup.simulator.flowshapes import CONNECTORS, Use, build_clientdata, custom_connector
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

DEMO_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://contoso.example/connref-cleanup/demo")
DOMAIN = "contoso.example"
ADMIN_MAILBOX = f"admin@{DOMAIN}"
SENDER_MAILBOX = f"connref-cleanup@{DOMAIN}"


def demo_id(name: str) -> str:
    """Return the demo's GUID for a readable name (``demo_id("env/hr")``)."""
    return str(uuid.uuid5(DEMO_NAMESPACE, name))


def demo_connection_name(name: str) -> str:
    """Return the demo's connection name (32 hex, as the platform writes them) for a name."""
    return uuid.uuid5(DEMO_NAMESPACE, f"connection/{name}").hex


DEMO_TENANT_ID = demo_id("tenant")
DEMO_CLIENT_ID = demo_id("app/connref-cleanup")
HR_INTEGRATION_APP_ID = demo_id("app/hr-integration")
ENV_DEFAULT = f"Default-{DEMO_TENANT_ID}"
ENV_HR = demo_id("env/hr")
ENV_FINANCE = demo_id("env/finance")
ENV_SANDBOX = demo_id("env/sandbox")
ENV_FIELD = demo_id("env/field")
ENV_LEGAL = demo_id("env/legal")
MISSING_CONNECTION = demo_connection_name("sandbox/deleted-dataverse")  # exists nowhere

DATAVERSE = "shared_commondataserviceforapps"
OUTLOOK = "shared_office365"
SHAREPOINT = "shared_sharepointonline"
TEAMS = "shared_teams"
APPROVALS = "shared_approvals"
USERS = "shared_office365users"
SQL = "shared_sql"
PAYROLL_API = custom_connector("mk", "Payroll API", random.Random("demo/payroll-api"))
# the maker portal's name for it: api name without "shared_" and hyphens, plus 5 hex
PAYROLL_REFERENCE = f"mk_shared{PAYROLL_API.api.removeprefix('shared_').replace('-', '')}_4c8a2"

ON, OFF = 1, 0
CREATED = "2024-02-05T10:11:12Z"
MODIFIED = "2024-06-01T08:00:00Z"


# -- people ----------------------------------------------------------------------------------

_PEOPLE = {  # key: (full name, email, disabled)
    "adele": ("Adele Vance", f"adele.vance@{DOMAIN}", False),
    "alex": ("Alex Wilber", f"alex.wilber@{DOMAIN}", False),
    "megan": ("Megan Bowen", f"megan.bowen@{DOMAIN}", False),
    "dan": ("Dan Jump", f"dan.jump@{DOMAIN}", True),
}
_SERVICE_PRINCIPAL = Creator(
    demo_id("sp/contoso-automation"), "Contoso Automation SP", "ServicePrincipal"
)


def _creator(person: str) -> Creator:
    name, email, _ = _PEOPLE[person]
    return Creator(demo_id(f"aad/{person}"), name, "User", email, email)


def _users(env: str, readable: bool) -> list[User]:
    """Systemusers of one environment: ids differ per environment, Entra ids do not.

    The job's own application user exists only where the job can read (``readable``).
    """
    users = [
        User(
            demo_id(f"{env}/user/{key}"),
            name,
            email,
            email,
            demo_id(f"aad/{key}"),
            is_disabled=disabled,
        )
        for key, (name, email, disabled) in _PEOPLE.items()
    ]
    apps = [("hr-integration", "# HR Integration", HR_INTEGRATION_APP_ID)]
    if readable:
        apps.insert(0, ("connref-cleanup", "# connref-cleanup", DEMO_CLIENT_ID))
    for key, name, app_id in apps:
        users.append(
            User(
                demo_id(f"{env}/user/{key}"),
                name,
                "",
                f"{key}@{DOMAIN}",
                demo_id(f"aad/{key}"),
                application_id=app_id,
                access_mode=4,
            )
        )
    return users


def owner(env: str, key: str) -> str:
    """Return the systemuser (or, for ``"makers"``, team) id of a demo owner in an environment."""
    return demo_id(f"{env}/team/makers" if key == "makers" else f"{env}/user/{key}")


def _owner_type(key: str) -> str:
    return "team" if key == "makers" else "systemuser"


def _shell(
    key: str,
    env_id: str,
    name: str,
    sku: str,
    is_default: bool = False,
    has_dataverse: bool = True,
    readable: bool = True,
) -> Environment:
    env = Environment(
        id=env_id,
        display_name=name,
        sku=sku,
        is_default=is_default,
        has_dataverse=has_dataverse,
        org_name=f"contoso{key}",
        readable=readable,
        created_time="2023-03-01T00:00:00Z",
    )
    if has_dataverse:
        env.users = _users(key, readable)
        env.teams = [
            Team(owner(key, "makers"), "Contoso Makers", aad_object_id=demo_id("aad/makers"))
        ]
    return env


# -- builders --------------------------------------------------------------------------------


def _connection(env: str, name: str, connector: str, by: str, **extra: str) -> Connection:
    """A connection created by a person key ("adele") or "sp" (service principal)."""
    sp = by == "sp"
    creator = _SERVICE_PRINCIPAL if sp else _creator(by)
    display = creator.display_name if sp else creator.email
    return Connection(
        name=demo_connection_name(f"{env}/{name}"),
        connector=connector,
        display_name=display,
        created_by=creator,
        created_time=CREATED,
        last_modified_time=MODIFIED,
        parameter_set="oauthSP" if sp else "",
        **extra,
    )


def _reference(
    env: str,
    logical_name: str,
    display_name: str,
    connector: str,
    connection: Connection | str | None,
    solution: Solution | None,
    by: str = "adele",
) -> ConnectionReference:
    """A reference; ``connection`` is a Connection, a raw connectionid, or None (unbound)."""
    connection_id = connection.name if isinstance(connection, Connection) else connection
    managed = solution is not None and solution.is_managed
    return ConnectionReference(
        id=demo_id(f"{env}/reference/{logical_name}"),
        logical_name=logical_name,
        display_name=display_name,
        connector_id=f"/providers/Microsoft.PowerApps/apis/{connector}",
        connection_id=connection_id,
        is_managed=managed,
        is_customizable=not managed,
        owner_id=owner(env, by),
        owner_type=_owner_type(by),
        created_on=CREATED,
        modified_on=MODIFIED,
        solution_id=solution.id if managed else DEFAULT_SOLUTION_ID,
        solution_ids=[solution.id] if solution else [],
        custom_connector_id=None
        if connector in CONNECTORS
        else demo_id(f"{env}/connector/{connector}"),
    )


def _flow(
    env: str,
    name: str,
    uses: Sequence[Use],
    solution: Solution | None,
    by: str,
    state: int = ON,
    clientdata: str | None = "",
    deep: bool = False,
) -> Flow:
    """A cloud flow; ``clientdata`` "" means "build it from ``uses``"."""
    if clientdata == "":
        clientdata = build_clientdata(uses, random.Random(f"demo/{env}/{name}"), deep=deep)
    managed = solution is not None and solution.is_managed
    return Flow(
        id=demo_id(f"{env}/flow/{name}"),
        name=name,
        clientdata=clientdata,
        unique_id=demo_id(f"{env}/flow-unique/{name}"),
        state=state,
        status=state + 1,
        is_managed=managed,
        owner_id=owner(env, by),
        owner_type=_owner_type(by),
        created_on=CREATED,
        modified_on=MODIFIED,
        solution_id=solution.id if managed else DEFAULT_SOLUTION_ID,
        solution_ids=[solution.id] if solution else [],
    )


def _solution(
    env: str, unique_name: str, friendly: str, publisher: Publisher, managed: bool = False
) -> Solution:
    return Solution(
        demo_id(f"{env}/solution/{unique_name}"),
        unique_name,
        friendly,
        is_managed=managed,
        version="2.3.0.0" if managed else "1.0.0.0",
        publisher_id=publisher.id,
    )


def _publisher(env: str, prefix: str, name: str) -> Publisher:
    return Publisher(demo_id(f"{env}/publisher/{prefix}"), f"{prefix}publisher", name, prefix)


# -- environments -----------------------------------------------------------------------------


def _default_environment() -> Environment:
    """Personal productivity: no solutions, personal connections, hostile and unreadable flows."""
    e = "default"
    env = _shell(e, ENV_DEFAULT, "Contoso (default)", "Default", is_default=True)
    outlook = _connection(e, "outlook-adele", OUTLOOK, "adele")
    dv_megan = _connection(e, "dataverse-megan", DATAVERSE, "megan")
    dv_adele = _connection(e, "dataverse-adele", DATAVERSE, "adele")
    sharepoint = _connection(e, "sharepoint-adele", SHAREPOINT, "adele")
    env.connections = [outlook, dv_megan, dv_adele, sharepoint]
    env.references = [
        _reference(
            e,
            "new_sharedoffice365_3b7c2",
            "Office 365 Outlook Default-3b7c2",
            OUTLOOK,
            outlook,
            None,
        ),
        # hostile text: must come out escaped everywhere
        _reference(
            e,
            "new_sharedcommondataserviceforapps_8e1f4",
            "<script>alert(1)</script>",
            DATAVERSE,
            dv_megan,
            None,
            by="megan",
        ),
        _reference(
            e, "new_sharedcommondataserviceforapps_c0d9a", "🔌 Dataverse", DATAVERSE, dv_adele, None
        ),
        # nobody uses it, but "Broken export" cannot be read: unknown, never "unused"
        _reference(
            e,
            "new_sharedsharepointonline_5d2e8",
            "SharePoint Default-5d2e8",
            SHAREPOINT,
            sharepoint,
            None,
        ),
    ]
    env.flows = [
        _flow(
            e,
            "Send weekly status",
            [Use(OUTLOOK, "new_sharedoffice365_3b7c2", OUTLOOK, action_count=3)],
            None,
            "adele",
        ),
        # connection: {} (a connection used directly, no logical name)
        _flow(
            e,
            "Import contacts",
            [
                Use(
                    DATAVERSE, "new_sharedcommondataserviceforapps_8e1f4", DATAVERSE, action_count=2
                ),
                Use("shared_office365_1", None, OUTLOOK),
            ],
            None,
            "megan",
        ),
        _flow(
            e,
            'Sync <b>"contacts"</b> & 🔌',
            [
                Use(
                    DATAVERSE, "new_sharedcommondataserviceforapps_c0d9a", DATAVERSE, action_count=2
                ),
            ],
            None,
            "alex",
        ),
        # the older entry shape {connectionName, source, id, tier}
        _flow(
            e,
            "Legacy vacation approval (2019)",
            [
                Use("shared_office365_1", None, OUTLOOK, "invoker", 2, entry="legacy"),
            ],
            None,
            "alex",
            state=OFF,
        ),
        _flow(
            e,
            "Broken export",
            [],
            None,
            "dan",
            clientdata='{"properties":{"connectionReferences":{"shared_sharepointonline":',
        ),
        _flow(e, "Empty flow", [], None, "makers", state=OFF, clientdata=None),
    ]
    return env


def _hr_environment() -> Environment:
    """Production: the duplicate group, naming cases, personal, broken and unbound references."""
    e = "hr"
    env = _shell(e, ENV_HR, "Contoso HR", "Production")
    hr = _publisher(e, "hr", "Contoso HR")
    absence = _solution(e, "HRAbsence", "HR Absence", hr)
    core = _solution(e, "HRCore", "HR Core", hr)
    env.publishers, env.solutions = [hr], [absence, core]
    dataverse = _connection(e, "dataverse-sp", DATAVERSE, "sp")
    site = _connection(e, "sharepoint-site-sp", SHAREPOINT, "sp")
    archive = _connection(e, "sharepoint-archive-sp", SHAREPOINT, "sp")
    outlook = _connection(e, "outlook-adele", OUTLOOK, "adele")
    teams = _connection(e, "teams-alex", TEAMS, "alex")
    sql = _connection(e, "sql-sp", SQL, "sp")
    users = _connection(
        e,
        "users-sp",
        USERS,
        "sp",
        status="Error",
        error_code="Unauthorized",
        error_message="The client secret of the service principal has expired.",
    )
    env.connections = [dataverse, site, archive, outlook, teams, sql, users]

    def ref(
        ln: str, display: str, api: str, conn: Connection | None, solution: Solution = absence
    ) -> ConnectionReference:
        return _reference(e, ln, display, api, conn, solution)

    env.references = [
        # duplicates: one connection, three references; the first is the survivor candidate
        ref(
            "hr_AbsenceDataverseSP", "Absence – Dataverse – Service Principal", DATAVERSE, dataverse
        ),
        ref(
            "hr_sharedcommondataserviceforapps_4f2a1",
            "Microsoft Dataverse HRAbsence-4f2a1",
            DATAVERSE,
            dataverse,
        ),
        ref(
            "hr_sharedcommondataserviceforapps_9c3e7",
            "Microsoft Dataverse HRAbsence-9c3e7",
            DATAVERSE,
            dataverse,
        ),
        # same connector, different connections: legitimate, not a duplicate
        ref("hr_HRSiteSharePointSP", "HR Site – SharePoint – Service Principal", SHAREPOINT, site),
        ref(
            "hr_ArchiveSharePointSP",
            "Archive – SharePoint – Service Principal",
            SHAREPOINT,
            archive,
        ),
        # personal connection in production (the name is honest about it)
        ref("hr_AbsenceOutlookUser", "Absence – Office 365 Outlook – User", OUTLOOK, outlook),
        # the type word lies: says Service Principal, bound to Alex's connection
        ref("hr_NotifyTeamsSP", "Notify – Teams – Service Principal", TEAMS, teams),
        # curated, but not the convention
        ref("hr_PayrollSQL", "Payroll | SQL Server", SQL, sql, core),
        # broken: the connection is in Error
        ref(
            "hr_DirectoryUsersSP", "Directory – Office 365 Users – Service Principal", USERS, users
        ),
        # unbound, and a flow uses it
        ref("hr_LeaveApprovalsSP", "Leave – Approvals – Service Principal", APPROVALS, None, core),
    ]
    env.flows = [
        _flow(
            e,
            "Absence: notify manager",
            [
                Use(DATAVERSE, "hr_AbsenceDataverseSP", DATAVERSE, action_count=2),
                Use(SHAREPOINT, "hr_HRSiteSharePointSP", SHAREPOINT),
                Use(OUTLOOK, "hr_AbsenceOutlookUser", OUTLOOK),
                Use(USERS, "hr_DirectoryUsersSP", USERS, "invoker"),
            ],
            absence,
            "adele",
            deep=True,
        ),
        _flow(
            e,
            "Absence: sync calendar",
            [
                Use(
                    DATAVERSE, "hr_sharedcommondataserviceforapps_4f2a1", DATAVERSE, action_count=3
                ),
                Use(TEAMS, "hr_NotifyTeamsSP", TEAMS, entry="impersonation"),
            ],
            absence,
            "hr-integration",
        ),
        # one logical name under two keys, and a "-1" key
        _flow(
            e,
            "Absence: monthly report",
            [
                Use(DATAVERSE, "hr_sharedcommondataserviceforapps_9c3e7", DATAVERSE),
                Use(
                    "shared_commondataserviceforapps-1",
                    "hr_sharedcommondataserviceforapps_9c3e7",
                    DATAVERSE,
                    action_count=2,
                ),
                Use(SHAREPOINT, "hr_ArchiveSharePointSP", SHAREPOINT),
            ],
            absence,
            "makers",
        ),
        # the older ApiConnection host form
        _flow(
            e,
            "Payroll export",
            [
                Use(SQL, "hr_PayrollSQL", SQL, action_count=2, host="apiconnection"),
            ],
            core,
            "alex",
        ),
        _flow(
            e,
            "Leave request approval",
            [
                Use(APPROVALS, "hr_LeaveApprovalsSP", APPROVALS),
            ],
            core,
            "dan",
            state=OFF,
        ),
    ]
    return env


def _finance_environment() -> Environment:
    """Production with a managed solution: managed references and flows, a managed duplicate."""
    e = "finance"
    env = _shell(e, ENV_FINANCE, "Contoso Finance", "Production")
    fin = _publisher(e, "fin", "Contoso Finance")
    core = _solution(e, "FinanceCore", "Finance Core", fin, managed=True)
    env.publishers, env.solutions = [fin], [core]
    dataverse = _connection(e, "dataverse-sp", DATAVERSE, "sp")
    sharepoint = _connection(e, "sharepoint-sp", SHAREPOINT, "sp")
    env.connections = [dataverse, sharepoint]
    env.references = [
        # managed duplicate pair: report it, never change it here ("fix in the source")
        _reference(
            e,
            "fin_sharedcommondataserviceforapps_a1b2c",
            "Microsoft Dataverse FinanceCore-a1b2c",
            DATAVERSE,
            dataverse,
            core,
        ),
        _reference(
            e,
            "fin_sharedcommondataserviceforapps_d3e4f",
            "Microsoft Dataverse FinanceCore-d3e4f",
            DATAVERSE,
            dataverse,
            core,
        ),
        _reference(
            e,
            "fin_InvoicesSharePointSP",
            "Invoices – SharePoint – Service Principal",
            SHAREPOINT,
            sharepoint,
            core,
        ),
    ]
    env.flows = [
        _flow(
            e,
            "Invoice approval",
            [
                Use(
                    DATAVERSE, "fin_sharedcommondataserviceforapps_a1b2c", DATAVERSE, action_count=2
                ),
                Use(SHAREPOINT, "fin_InvoicesSharePointSP", SHAREPOINT),
            ],
            core,
            "hr-integration",
        ),
        _flow(
            e,
            "Invoice reminder",
            [
                Use(DATAVERSE, "fin_sharedcommondataserviceforapps_d3e4f", DATAVERSE),
            ],
            core,
            "alex",
        ),
    ]
    return env


def _sandbox_environment() -> Environment:
    """Sandbox: the unused cases, unbound duplicates, a missing connection, a custom connector."""
    e = "sandbox"
    env = _shell(e, ENV_SANDBOX, "Maker Sandbox", "Sandbox")
    mk = _publisher(e, "mk", "Contoso Makers")
    expense = _solution(e, "ExpenseApp", "Expense App", mk)
    onboarding = _solution(e, "Onboarding", "Onboarding", mk)
    env.publishers, env.solutions = [mk], [expense, onboarding]
    sharepoint = _connection(e, "sharepoint-alex", SHAREPOINT, "alex")
    outlook = _connection(e, "outlook-megan", OUTLOOK, "megan")
    dataverse = _connection(e, "dataverse-megan", DATAVERSE, "megan")
    payroll = _connection(e, "payroll-api-sp", PAYROLL_API.api, "sp")
    env.connections = [sharepoint, outlook, dataverse, payroll]
    env.references = [
        # unused: no flow, no dependent
        _reference(
            e,
            "mk_sharedsharepointonline_2b9d0",
            "SharePoint Onboarding-2b9d0",
            SHAREPOINT,
            sharepoint,
            onboarding,
            by="alex",
        ),
        # used only by a draft (off) flow: not unused
        _reference(
            e,
            "mk_sharedoffice365_6a0f3",
            "Office 365 Outlook Onboarding-6a0f3",
            OUTLOOK,
            outlook,
            onboarding,
            by="megan",
        ),
        # used only by a canvas app: not unused
        _reference(
            e,
            "mk_ExpenseDataverseUser",
            "Expense – Dataverse – User",
            DATAVERSE,
            dataverse,
            expense,
            by="megan",
        ),
        # two unbound references, same connector, same solution: duplicates
        _reference(
            e,
            "mk_sharedapprovals_0c4d1",
            "Approvals ExpenseApp-0c4d1",
            APPROVALS,
            None,
            expense,
            by="megan",
        ),
        _reference(
            e,
            "mk_sharedapprovals_e7a95",
            "Approvals ExpenseApp-e7a95",
            APPROVALS,
            None,
            expense,
            by="megan",
        ),
        # bound to a connection that does not exist
        _reference(
            e,
            "mk_sharedcommondataserviceforapps_77f3e",
            "Microsoft Dataverse ExpenseApp-77f3e",
            DATAVERSE,
            MISSING_CONNECTION,
            expense,
            by="megan",
        ),
        _reference(
            e,
            PAYROLL_REFERENCE,
            "Payroll API Onboarding-4c8a2",
            PAYROLL_API.api,
            payroll,
            onboarding,
            by="alex",
        ),
    ]
    env.flows = [
        _flow(
            e,
            "Onboarding: welcome mail (draft)",
            [
                Use(OUTLOOK, "mk_sharedoffice365_6a0f3", OUTLOOK, action_count=2),
            ],
            onboarding,
            "megan",
            state=OFF,
        ),
        _flow(
            e,
            "Expense approval",
            [
                Use(APPROVALS, "mk_sharedapprovals_e7a95", APPROVALS),
                Use(
                    DATAVERSE, "mk_sharedcommondataserviceforapps_77f3e", DATAVERSE, action_count=2
                ),
            ],
            expense,
            "megan",
            state=OFF,
        ),
        # declares a reference but no action uses its key (the DL-Recruiter case)
        _flow(
            e,
            "Expense escalation",
            [
                Use(APPROVALS, "mk_sharedapprovals_0c4d1", APPROVALS),
                Use(
                    DATAVERSE, "mk_sharedcommondataserviceforapps_77f3e", DATAVERSE, action_count=0
                ),
            ],
            expense,
            "alex",
            state=OFF,
        ),
        # custom connector: api.logicalName, apiId "" in actions, invoker
        _flow(
            e,
            "Onboarding: create payroll record",
            [
                Use(
                    PAYROLL_API.api,
                    PAYROLL_REFERENCE,
                    PAYROLL_API.api,
                    "invoker",
                    api_logical_name=PAYROLL_API.api_logical_name,
                ),
            ],
            onboarding,
            "alex",
        ),
    ]
    env.dependents = [
        Dependent(
            "mk_ExpenseDataverseUser",
            CANVAS_APP_COMPONENT_TYPE,
            demo_id(f"{e}/canvasapp/expense-app"),
            "Expense App",
        ),
    ]
    return env


def _field_environment() -> Environment:
    """No Dataverse: only connections exist; the job skips it."""
    env = _shell("field", ENV_FIELD, "Field Sales (no Dataverse)", "Trial", has_dataverse=False)
    env.connections = [_connection("field", "outlook-adele", OUTLOOK, "adele")]
    return env


def _legal_environment() -> Environment:
    """The app user is not in this environment (403): nothing here may be reported."""
    e = "legal"
    env = _shell(e, ENV_LEGAL, "Contoso Legal", "Production", readable=False)
    dataverse = _connection(e, "dataverse-adele", DATAVERSE, "adele")
    env.connections = [dataverse]
    env.references = [
        _reference(
            e,
            "legal_sharedcommondataserviceforapps_aa111",
            "Microsoft Dataverse Default-aa111",
            DATAVERSE,
            dataverse,
            None,
        ),
        _reference(
            e,
            "legal_sharedcommondataserviceforapps_bb222",
            "Microsoft Dataverse Default-bb222",
            DATAVERSE,
            dataverse,
            None,
        ),
    ]
    env.flows = [
        _flow(
            e,
            "Contract review",
            [
                Use(DATAVERSE, "legal_sharedcommondataserviceforapps_aa111", DATAVERSE),
            ],
            None,
            "adele",
        ),
    ]
    return env


def demo_tenant() -> Tenant:
    """Return the hand-built demo tenant (a fresh copy each call)."""
    environments = [
        _default_environment(),
        _hr_environment(),
        _finance_environment(),
        _sandbox_environment(),
        _field_environment(),
        _legal_environment(),
    ]
    return Tenant(
        DEMO_TENANT_ID,
        DEMO_CLIENT_ID,
        environments,
        [Mailbox(ADMIN_MAILBOX), Mailbox(SENDER_MAILBOX)],
    )
