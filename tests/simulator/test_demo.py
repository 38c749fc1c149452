"""The demo tenant shows every case of DESIGN.md, exactly where its docstring table says."""

from __future__ import annotations

import json
import re

import pytest

from cleanup.simulator import demo
from cleanup.simulator.demo import (
    DEMO_CLIENT_ID,
    DEMO_TENANT_ID,
    ENV_DEFAULT,
    ENV_FIELD,
    ENV_FINANCE,
    ENV_HR,
    ENV_LEGAL,
    ENV_SANDBOX,
    MISSING_CONNECTION,
    demo_tenant,
)
from cleanup.simulator.tenant import (
    CANVAS_APP_COMPONENT_TYPE,
    load_tenant,
    save_tenant,
    tenant_to_dict,
)
from cleanup.snapshot.clientdata import parse_clientdata

CONVENTION = re.compile(
    r"^(?P<area>[^–|]+) – (?P<connector>[^–|]+) – (?P<type>Service Principal|User)$"
)
AUTO_NAME = re.compile(r"^[a-z0-9]+_shared[a-z0-9]+_([0-9a-f]{5})$")
DV, OUTLOOK, SP, TEAMS, APPROVALS, USERS, SQL = (
    "shared_commondataserviceforapps",
    "shared_office365",
    "shared_sharepointonline",
    "shared_teams",
    "shared_approvals",
    "shared_office365users",
    "shared_sql",
)

# flow name -> (key, logical name, connector, runtime source, actions naming the key)
EXPECTED_USES = {
    "Send weekly status": [(OUTLOOK, "new_sharedoffice365_3b7c2", OUTLOOK, "embedded", 3)],
    "Import contacts": [
        (DV, "new_sharedcommondataserviceforapps_8e1f4", DV, "embedded", 2),
        ("shared_office365_1", None, OUTLOOK, "embedded", 1),
    ],
    'Sync <b>"contacts"</b> & 🔌': [
        (DV, "new_sharedcommondataserviceforapps_c0d9a", DV, "embedded", 2)
    ],
    "Legacy vacation approval (2019)": [("shared_office365_1", None, OUTLOOK, "invoker", 2)],
    "Absence: notify manager": [
        (DV, "hr_AbsenceDataverseSP", DV, "embedded", 2),
        (SP, "hr_HRSiteSharePointSP", SP, "embedded", 1),
        (OUTLOOK, "hr_AbsenceOutlookUser", OUTLOOK, "embedded", 1),
        (USERS, "hr_DirectoryUsersSP", USERS, "invoker", 1),
    ],
    "Absence: sync calendar": [
        (DV, "hr_sharedcommondataserviceforapps_4f2a1", DV, "embedded", 3),
        (TEAMS, "hr_NotifyTeamsSP", TEAMS, "embedded", 1),
    ],
    "Absence: monthly report": [
        (DV, "hr_sharedcommondataserviceforapps_9c3e7", DV, "embedded", 1),
        (DV + "-1", "hr_sharedcommondataserviceforapps_9c3e7", DV, "embedded", 2),
        (SP, "hr_ArchiveSharePointSP", SP, "embedded", 1),
    ],
    "Payroll export": [(SQL, "hr_PayrollSQL", SQL, "embedded", 2)],
    "Leave request approval": [(APPROVALS, "hr_LeaveApprovalsSP", APPROVALS, "embedded", 1)],
    "Invoice approval": [
        (DV, "fin_sharedcommondataserviceforapps_a1b2c", DV, "embedded", 2),
        (SP, "fin_InvoicesSharePointSP", SP, "embedded", 1),
    ],
    "Invoice reminder": [(DV, "fin_sharedcommondataserviceforapps_d3e4f", DV, "embedded", 1)],
    "Onboarding: welcome mail (draft)": [
        (OUTLOOK, "mk_sharedoffice365_6a0f3", OUTLOOK, "embedded", 2)
    ],
    "Expense approval": [
        (APPROVALS, "mk_sharedapprovals_e7a95", APPROVALS, "embedded", 1),
        (DV, "mk_sharedcommondataserviceforapps_77f3e", DV, "embedded", 2),
    ],
    "Expense escalation": [
        (APPROVALS, "mk_sharedapprovals_0c4d1", APPROVALS, "embedded", 1),
        (DV, "mk_sharedcommondataserviceforapps_77f3e", DV, "embedded", 0),
    ],
    "Onboarding: create payroll record": [
        (demo.PAYROLL_API.api, demo.PAYROLL_REFERENCE, demo.PAYROLL_API.api, "invoker", 1)
    ],
    "Contract review": [(DV, "legal_sharedcommondataserviceforapps_aa111", DV, "embedded", 1)],
}
UNPARSABLE = {"Broken export": "invalid-json", "Empty flow": "empty"}


@pytest.fixture(scope="module")
def tenant():
    return demo_tenant()


def env(tenant, env_id):
    return tenant.environment(env_id)


def ref(tenant, env_id, logical_name):
    return next(r for r in env(tenant, env_id).references if r.logical_name == logical_name)


def flow(tenant, env_id, name):
    return next(f for f in env(tenant, env_id).flows if f.name == name)


def connection_of(tenant, env_id, reference):
    return next(
        (c for c in env(tenant, env_id).connections if c.name == reference.connection_id), None
    )


def usage(tenant, env_id):
    """Logical name -> [(flow, action count)] for every flow that parses."""
    out: dict[str, list] = {}
    for f in env(tenant, env_id).flows:
        for r in parse_clientdata(f.clientdata).references:
            out.setdefault(r.logical_name, []).append((f, r.action_count))
    return out


def unreadable_flows(tenant, env_id):
    return [f for f in env(tenant, env_id).flows if parse_clientdata(f.clientdata).status != "ok"]


# -- the tenant as a whole -----------------------------------------------------------------------


def test_identity_mailboxes_and_environments(tenant):
    assert (tenant.tenant_id, tenant.client_id) == (DEMO_TENANT_ID, DEMO_CLIENT_ID)
    assert [m.address for m in tenant.mailboxes] == [
        "admin@contoso.example",
        "connref-cleanup@contoso.example",
    ]
    envs = {e.id: e for e in tenant.environments}
    assert list(envs) == [ENV_DEFAULT, ENV_HR, ENV_FINANCE, ENV_SANDBOX, ENV_FIELD, ENV_LEGAL]
    assert f"Default-{DEMO_TENANT_ID}" == ENV_DEFAULT
    assert [e.sku for e in envs.values()] == [
        "Default",
        "Production",
        "Production",
        "Sandbox",
        "Trial",
        "Production",
    ]
    assert [e.id for e in envs.values() if e.is_default] == [ENV_DEFAULT]
    assert [e.id for e in envs.values() if not e.has_dataverse] == [ENV_FIELD]
    assert [e.id for e in envs.values() if not e.readable] == [ENV_LEGAL]
    assert env(tenant, ENV_LEGAL).has_dataverse and env(tenant, ENV_LEGAL).references
    assert env(tenant, ENV_FIELD).connections and not env(tenant, ENV_FIELD).references
    assert len({e.org_name for e in envs.values()}) == len(envs)
    assert {e.reference_component_type for e in envs.values()} == {10091}


def test_fresh_deterministic_copy_that_round_trips(tenant, tmp_path):
    again = demo_tenant()
    assert tenant_to_dict(again) == tenant_to_dict(tenant)
    again.environments.clear()
    assert demo_tenant().environments
    save_tenant(tenant, tmp_path / "demo.json")
    assert tenant_to_dict(load_tenant(tmp_path / "demo.json")) == tenant_to_dict(tenant)


def test_every_flow_parses_to_the_expected_references(tenant):
    seen = set()
    for e in tenant.environments:
        for f in e.flows:
            seen.add(f.name)
            parsed = parse_clientdata(f.clientdata)
            if f.name in UNPARSABLE:
                assert parsed.status == UNPARSABLE[f.name]
                continue
            assert parsed.status == "ok", (f.name, parsed.error)
            assert parsed.dangling_keys == ()
            got = [
                (r.key, r.logical_name, r.connector, r.runtime_source, r.action_count)
                for r in parsed.references
            ]
            assert got == EXPECTED_USES[f.name], f.name
    assert seen == set(EXPECTED_USES) | set(UNPARSABLE)


def test_every_name_in_the_docstring_table_exists(tenant):
    names = set(re.findall(r"\b(?:hr|fin|mk|new|legal)_[A-Za-z0-9_]+", demo.__doc__))
    flows = {" ".join(n.split()) for n in re.findall(r'flow "([^"]+)"', demo.__doc__)}
    all_refs = {r.logical_name for e in tenant.environments for r in e.references}
    all_flows = {f.name for e in tenant.environments for f in e.flows}
    assert names and names <= all_refs, names - all_refs
    assert flows and flows <= all_flows, flows - all_flows


def test_bindings_and_names_are_consistent(tenant):
    for e in tenant.environments:
        names = {c.name for c in e.connections}
        declared = {r.logical_name for r in e.references}
        for r in e.references:
            assert r.connection_id in names or r.connection_id in (None, MISSING_CONNECTION)
        for f in e.flows:
            lns = {r.logical_name for r in parse_clientdata(f.clientdata).references}
            assert lns - {None} <= declared


# -- duplicates --------------------------------------------------------------------------------


def test_auto_named_duplicates_with_a_survivor_candidate(tenant):
    group = [
        ref(tenant, ENV_HR, ln)
        for ln in (
            "hr_AbsenceDataverseSP",
            "hr_sharedcommondataserviceforapps_4f2a1",
            "hr_sharedcommondataserviceforapps_9c3e7",
        )
    ]
    assert len({(r.connector_id, r.connection_id) for r in group}) == 1
    assert group[0].connection_id is not None
    used = usage(tenant, ENV_HR)
    users = [{f.name for f, _ in used[r.logical_name]} for r in group]
    assert all(len(u) == 1 for u in users) and len(set.union(*users)) == 3
    survivor = group[0]
    assert CONVENTION.match(survivor.display_name)
    conn = connection_of(tenant, ENV_HR, survivor)
    assert (conn.created_by.type, conn.parameter_set) == ("ServicePrincipal", "oauthSP")
    assert all(AUTO_NAME.match(r.logical_name) for r in group[1:])
    solution = next(s for s in env(tenant, ENV_HR).solutions if s.unique_name == "HRAbsence")
    assert all(r.solution_ids == [solution.id] for r in group)
    # nothing else in HR shares a connector and a connection
    keys = [(r.connector_id, r.connection_id) for r in env(tenant, ENV_HR).references]
    assert sorted(k for k in keys if keys.count(k) > 1) == sorted(
        [(group[0].connector_id, group[0].connection_id)] * 3
    )


def test_same_connector_different_connections_is_not_a_duplicate(tenant):
    site = ref(tenant, ENV_HR, "hr_HRSiteSharePointSP")
    archive = ref(tenant, ENV_HR, "hr_ArchiveSharePointSP")
    assert site.connector_id == archive.connector_id
    assert site.connection_id != archive.connection_id
    assert connection_of(tenant, ENV_HR, site) and connection_of(tenant, ENV_HR, archive)


def test_two_unbound_references_in_one_solution_are_duplicates(tenant):
    a = ref(tenant, ENV_SANDBOX, "mk_sharedapprovals_0c4d1")
    b = ref(tenant, ENV_SANDBOX, "mk_sharedapprovals_e7a95")
    assert a.connection_id is None and b.connection_id is None
    assert a.connector_id == b.connector_id and a.solution_ids == b.solution_ids != []


def test_managed_environment_with_a_managed_duplicate_pair(tenant):
    fin = env(tenant, ENV_FINANCE)
    assert [s.is_managed for s in fin.solutions] == [True]
    assert all(r.is_managed and not r.is_customizable for r in fin.references)
    assert all(f.is_managed for f in fin.flows)
    assert all(r.solution_id == fin.solutions[0].id for r in [*fin.references, *fin.flows])
    a = ref(tenant, ENV_FINANCE, "fin_sharedcommondataserviceforapps_a1b2c")
    b = ref(tenant, ENV_FINANCE, "fin_sharedcommondataserviceforapps_d3e4f")
    assert (a.connector_id, a.connection_id) == (b.connector_id, b.connection_id)


# -- usage ---------------------------------------------------------------------------------------


def test_unused_fires_only_on_the_sandbox_sharepoint_reference(tenant):
    unused = []
    for e in tenant.environments:
        if not (e.has_dataverse and e.readable) or unreadable_flows(tenant, e.id):
            continue
        used = set(usage(tenant, e.id)) | {d.reference_logical_name for d in e.dependents}
        unused += [(e.id, r.logical_name) for r in e.references if r.logical_name not in used]
    assert unused == [(ENV_SANDBOX, "mk_sharedsharepointonline_2b9d0")]


def test_reference_used_only_by_a_draft_flow(tenant):
    users = usage(tenant, ENV_SANDBOX)["mk_sharedoffice365_6a0f3"]
    assert [(f.name, f.state, f.status) for f, _ in users] == [
        ("Onboarding: welcome mail (draft)", 0, 1)
    ]


def test_reference_used_only_by_a_canvas_app(tenant):
    assert "mk_ExpenseDataverseUser" not in usage(tenant, ENV_SANDBOX)
    (dependent,) = env(tenant, ENV_SANDBOX).dependents
    assert dependent.reference_logical_name == "mk_ExpenseDataverseUser"
    assert dependent.component_type == CANVAS_APP_COMPONENT_TYPE


def test_usage_in_default_is_unknown_because_one_flow_cannot_be_read(tenant):
    assert "new_sharedsharepointonline_5d2e8" not in usage(tenant, ENV_DEFAULT)
    broken = flow(tenant, ENV_DEFAULT, "Broken export")
    with pytest.raises(json.JSONDecodeError):
        json.loads(broken.clientdata)
    assert flow(tenant, ENV_DEFAULT, "Empty flow").clientdata is None


def test_declared_but_never_used_key(tenant):
    uses = usage(tenant, ENV_SANDBOX)["mk_sharedcommondataserviceforapps_77f3e"]
    assert sorted((f.name, n) for f, n in uses) == [
        ("Expense approval", 2),
        ("Expense escalation", 0),
    ]


# -- bindings --------------------------------------------------------------------------------------


def test_personal_connection_in_production(tenant):
    r = ref(tenant, ENV_HR, "hr_AbsenceOutlookUser")
    assert env(tenant, ENV_HR).sku == "Production"
    assert connection_of(tenant, ENV_HR, r).created_by.type == "User"
    assert CONVENTION.match(r.display_name)["type"] == "User"


def test_unbound_reference_used_by_an_off_flow(tenant):
    r = ref(tenant, ENV_HR, "hr_LeaveApprovalsSP")
    assert r.connection_id is None
    ((f, count),) = usage(tenant, ENV_HR)["hr_LeaveApprovalsSP"]
    assert (f.name, f.state, count) == ("Leave request approval", 0, 1)


def test_broken_connections(tenant):
    errored = connection_of(tenant, ENV_HR, ref(tenant, ENV_HR, "hr_DirectoryUsersSP"))
    assert (errored.status, errored.error_code) == ("Error", "Unauthorized")
    missing = ref(tenant, ENV_SANDBOX, "mk_sharedcommondataserviceforapps_77f3e")
    assert missing.connection_id == MISSING_CONNECTION
    assert all(c.name != MISSING_CONNECTION for e in tenant.environments for c in e.connections)
    others = [c for e in tenant.environments for c in e.connections if c is not errored]
    assert all(c.status == "Connected" for c in others)


# -- names ---------------------------------------------------------------------------------------


def test_names_compliant_wrong_and_lying(tenant):
    compliant = {
        ENV_HR: [
            "hr_AbsenceDataverseSP",
            "hr_HRSiteSharePointSP",
            "hr_ArchiveSharePointSP",
            "hr_AbsenceOutlookUser",
            "hr_DirectoryUsersSP",
            "hr_LeaveApprovalsSP",
            "hr_NotifyTeamsSP",  # matches the pattern, but its type word lies
        ],
        ENV_FINANCE: ["fin_InvoicesSharePointSP"],
        ENV_SANDBOX: ["mk_ExpenseDataverseUser"],
    }
    for env_id, names in compliant.items():
        for ln in names:
            r = ref(tenant, env_id, ln)
            kind = CONVENTION.match(r.display_name)["type"]
            conn = connection_of(tenant, env_id, r)
            honest = conn is None or (conn.created_by.type == "ServicePrincipal") == (
                kind == "Service Principal"
            )
            assert honest == (ln != "hr_NotifyTeamsSP"), ln
    wrong = ref(tenant, ENV_HR, "hr_PayrollSQL")
    assert wrong.display_name == "Payroll | SQL Server" and not CONVENTION.match(wrong.display_name)


def test_auto_generated_names(tenant):
    auto = [
        r
        for e in tenant.environments
        if e.readable
        for r in e.references
        if AUTO_NAME.match(r.logical_name)
    ]
    assert len(auto) >= 10
    generated = [
        r for r in auto if r.display_name.endswith("-" + AUTO_NAME.match(r.logical_name)[1])
    ]
    assert "Microsoft Dataverse HRAbsence-4f2a1" in {r.display_name for r in generated}
    custom = ref(tenant, ENV_SANDBOX, demo.PAYROLL_REFERENCE)
    assert custom.custom_connector_id and AUTO_NAME.match(custom.logical_name)


def test_hostile_text(tenant):
    names = {r.display_name for r in env(tenant, ENV_DEFAULT).references}
    assert {"<script>alert(1)</script>", "🔌 Dataverse"} <= names
    assert any("<b>" in f.name for f in env(tenant, ENV_DEFAULT).flows)


# -- owners --------------------------------------------------------------------------------------


def test_owners_of_every_kind(tenant):
    for e in tenant.environments:
        if not e.has_dataverse:
            continue
        users = {u.id: u for u in e.users}
        teams = {t.id: t for t in e.teams}
        job = [u for u in users.values() if u.application_id == DEMO_CLIENT_ID]
        assert len(job) == (1 if e.readable else 0)
        for row in [*e.references, *e.flows]:
            assert row.owner_id in (users if row.owner_type == "systemuser" else teams)
    hr = env(tenant, ENV_HR)
    owners = {f.name: f.owner_id for f in hr.flows}
    users = {u.id: u for u in hr.users}
    assert users[owners["Absence: notify manager"]].email == "adele.vance@contoso.example"
    assert users[owners["Absence: sync calendar"]].application_id
    assert users[owners["Absence: sync calendar"]].email == ""
    assert users[owners["Leave request approval"]].is_disabled
    team_flow = flow(tenant, ENV_HR, "Absence: monthly report")
    assert team_flow.owner_type == "team"
    assert next(t for t in hr.teams if t.id == team_flow.owner_id).email == ""
    default_users = {u.id: u for u in env(tenant, ENV_DEFAULT).users}
    assert default_users[flow(tenant, ENV_DEFAULT, "Broken export").owner_id].is_disabled
