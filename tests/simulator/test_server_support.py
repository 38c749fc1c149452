"""Shared helpers for the simulator server tests: a small hand-built tenant and HTTP helpers.

Imported by the ``test_server_*`` modules (pytest puts this folder on ``sys.path``). It holds no
tests itself.
"""

from __future__ import annotations

import json
from typing import Any

import requests

from cleanup.simulator.server import Simulator
from cleanup.simulator.tenant import (
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

TENANT_ID = "11111111-1111-1111-1111-111111111111"
CLIENT_ID = "22222222-2222-2222-2222-222222222222"
SECRET = "s3cret"
ENV_A = "aaaaaaaa-0000-0000-0000-000000000001"
ENV_NO_DV = "bbbbbbbb-0000-0000-0000-000000000002"
ENV_LOCKED = "cccccccc-0000-0000-0000-000000000003"
CORE_SOLUTION = "50000000-0000-0000-0000-000000000001"
MANAGED_SOLUTION = "50000000-0000-0000-0000-000000000002"
DV = "/providers/Microsoft.PowerApps/apis/shared_commondataserviceforapps"
O365 = "/providers/Microsoft.PowerApps/apis/shared_office365"
APP_USER = "a0000000-0000-0000-0000-000000000001"
MAKER = "a0000000-0000-0000-0000-000000000002"
TEAM = "a0000000-0000-0000-0000-000000000003"


def ref_id(n: int) -> str:
    """The id of reference ``cr<n>`` in environment A."""
    return f"c0000000-0000-0000-0000-00000000000{n}"


def flow_id(n: int) -> str:
    """The id of flow ``f<n>`` in environment A."""
    return f"f0000000-0000-0000-0000-00000000000{n}"


def clientdata(keys: dict[str, str]) -> str:
    """A minimal clientdata naming ``{key: logical name}`` connection references."""
    refs = {
        key: {
            "api": {"name": key.rstrip("_0123456789")},
            "connection": {"connectionReferenceLogicalName": name},
            "runtimeSource": "embedded",
        }
        for key, name in keys.items()
    }
    return json.dumps({"properties": {"connectionReferences": refs, "definition": {}}})


def _references() -> list[ConnectionReference]:
    def ref(n: int, name: str, connector: str, connection: str | None, **kw: Any) -> Any:
        return ConnectionReference(
            id=ref_id(n),
            logical_name=name,
            display_name=f"Ref {n}",
            connector_id=connector,
            connection_id=connection,
            owner_id=MAKER,
            version=2000 + n,
            **kw,
        )

    return [
        ref(
            1,
            "new_sharedcommondataserviceforapps_1a2b3",
            DV,
            "conn-dv-sp",
            solution_ids=[CORE_SOLUTION],
        ),
        ref(2, "new_sharedoffice365_4c5d6", O365, "conn-o365-user"),
        ref(3, "new_DataverseUnbound", DV, None),
        ref(4, "mgd_ManagedRef", DV, "conn-dv-sp", is_managed=True, solution_id=MANAGED_SOLUTION),
        ref(5, "new_UsedByCanvas", O365, "conn-o365-user"),
        ref(6, "new_Unused", DV, "conn-dv-sp", owner_type="team"),
    ]


def _flows() -> list[Flow]:
    return [
        Flow(
            id=flow_id(1),
            name="Active flow",
            clientdata=clientdata(
                {
                    "shared_commondataserviceforapps": "new_sharedcommondataserviceforapps_1a2b3",
                    "shared_office365": "new_sharedoffice365_4c5d6",
                }
            ),
            state=1,
            status=2,
            owner_id=MAKER,
            version=3001,
            solution_ids=[CORE_SOLUTION],
        ),
        Flow(
            id=flow_id(2),
            name="Draft flow",
            clientdata=clientdata({"shared_commondataserviceforapps": "new_DataverseUnbound"}),
            owner_id=MAKER,
            version=3002,
        ),
        Flow(
            id=flow_id(3),
            name="Managed flow",
            clientdata=clientdata({"shared_commondataserviceforapps": "mgd_ManagedRef"}),
            is_managed=True,
            owner_id=MAKER,
            version=3003,
            solution_id=MANAGED_SOLUTION,
        ),
    ]


def _connections() -> list[Connection]:
    sp = Creator(
        id="e0000000-0000-0000-0000-000000000001",
        display_name="Cleanup SPN",
        type="ServicePrincipal",
    )
    maker = Creator(
        id="e0000000-0000-0000-0000-000000000002",
        display_name="Maker",
        email="maker@contoso.com",
        user_principal_name="maker@contoso.com",
    )
    return [
        Connection(
            "conn-dv-sp",
            "shared_commondataserviceforapps",
            "Dataverse SP",
            sp,
            parameter_set="oauthSP",
        ),
        Connection("conn-o365-user", "shared_office365", "Outlook", maker),
        Connection(
            "conn-broken",
            "shared_office365",
            "Broken",
            maker,
            status="Error",
            error_code="Unauthenticated",
            error_message="Token expired",
        ),
    ]


def build_tenant(extra_envs: int = 0) -> Tenant:
    """Three environments (Dataverse, no Dataverse, not readable) plus ``extra_envs`` empty ones."""
    env_a = Environment(
        id=ENV_A,
        display_name="Contoso Dev",
        org_name="orga",
        is_default=True,
        sku="Default",
        users=[
            User(APP_USER, "# Cleanup", application_id=CLIENT_ID, access_mode=4),
            User(
                MAKER,
                "Maker",
                email="maker@contoso.com",
                domain_name="maker@contoso.com",
                aad_object_id="e0000000-0000-0000-0000-000000000002",
            ),
        ],
        teams=[Team(TEAM, "Owners", email="")],
        connections=_connections(),
        publishers=[Publisher("90000000-0000-0000-0000-000000000001", "contoso", "Contoso", "new")],
        solutions=[
            Solution(
                CORE_SOLUTION,
                "CoreSolution",
                "Core",
                publisher_id="90000000-0000-0000-0000-000000000001",
            ),
            Solution(MANAGED_SOLUTION, "ManagedSol", "Managed", is_managed=True),
        ],
        references=_references(),
        flows=_flows(),
        dependents=[
            Dependent("new_UsedByCanvas", 300, "d0000000-0000-0000-0000-000000000001", "App")
        ],
    )
    envs = [
        env_a,
        Environment(id=ENV_NO_DV, display_name="Teams only", has_dataverse=False, sku="Teams"),
        Environment(id=ENV_LOCKED, display_name="Locked", org_name="orglocked", readable=False),
    ]
    envs += [
        Environment(
            id=f"dddddddd-0000-0000-0000-{i:012d}", display_name=f"Extra {i}", org_name=f"orgx{i}"
        )
        for i in range(extra_envs)
    ]
    return Tenant(TENANT_ID, CLIENT_ID, envs, [Mailbox("noreply@contoso.com")])


def token(sim: Simulator, scope: str) -> str:
    """An app token for ``scope`` straight from the token endpoint."""
    response = requests.post(
        f"{sim.base_url}/{TENANT_ID}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
            "scope": scope,
        },
        verify=sim.ca_bundle_path,
        timeout=10,
    )
    response.raise_for_status()
    return response.json()["access_token"]


def _session(sim: Simulator) -> requests.Session:
    session = requests.Session()
    # REQUESTS_CA_BUNDLE (set on many CI images) would override session.verify otherwise.
    session.trust_env = False
    session.verify = sim.ca_bundle_path
    return session


def dv_session(sim: Simulator, env: Environment | None = None) -> tuple[requests.Session, str]:
    """A session authorised for environment A's Dataverse, and its Web API root URL."""
    env = env or sim.tenant.environment(ENV_A)
    instance = sim.instance_url(env)
    session = _session(sim)
    session.headers["Authorization"] = f"Bearer {token(sim, instance.rstrip('/') + '/.default')}"
    return session, f"{instance}api/data/v9.2/"


def api_session(sim: Simulator, scope: str) -> requests.Session:
    """A session with a bearer token for ``scope``."""
    session = _session(sim)
    session.headers["Authorization"] = f"Bearer {token(sim, scope)}"
    return session
