"""``bad-name`` and its value-level core ``check_name``."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleanup.rules import run_rules
from cleanup.rules.naming import check_name, connector_display_name
from cleanup.rules.settings import NamingSettings

NAMING = NamingSettings()
DV = "shared_commondataserviceforapps"
SP = "service-principal"


@pytest.mark.parametrize(
    "name",
    [
        "Absence – Dataverse – Service Principal",
        "Absence - Dataverse - Service Principal",
        "HR - Payroll – Microsoft Dataverse – service principal",
        "Absence – CDS – SPN",
    ],
)
def test_compliant_names(name: str) -> None:
    verdict = check_name(name, "new_absence", DV, SP, "Absence", NAMING)
    assert verdict.compliant, verdict.problems
    assert verdict.proposed == name


@pytest.mark.parametrize(
    ("display", "logical", "connector"),
    [
        ("Microsoft Dataverse Default-46432", "new_sharedcommondataserviceforapps_46432", DV),
        (
            "SharePoint BGV_System-96d5d",
            "cr94d_sharedsharepointonline_96d5d",
            "shared_sharepointonline",
        ),
        (
            "Postman (Independent Publisher) IndependentPublisher-9e557",
            "fa_sharedpostmanip_9e557",
            "shared_postmanip",
        ),
        (
            "SharePoint fca6b06cb5384aff9f0ef75cfde6e478",
            "tk_SharePointfca6b06cb5384aff9f0ef75cfde6e478",
            "shared_sharepointonline",
        ),
    ],
)
def test_auto_generated_names_from_the_corpus(display: str, logical: str, connector: str) -> None:
    verdict = check_name(display, logical, connector, "user", "Area", NAMING)
    assert verdict.auto_generated
    assert not verdict.compliant
    assert "auto-generated" in verdict.problems[0]


def test_a_word_that_happens_to_be_hex_is_not_a_random_suffix() -> None:
    verdict = check_name("Finance Added", "new_finance", DV, "user", "Finance", NAMING)
    assert not verdict.auto_generated


def test_type_word_that_lies_about_the_identity() -> None:
    says_sp = check_name("HR – Dataverse – Service Principal", "new_hr", DV, "user", "HR", NAMING)
    assert says_sp.type_lies
    assert says_sp.proposed == "HR – Dataverse – User"
    says_user = check_name("HR - Dataverse - User", "new_hr", DV, SP, "HR", NAMING)
    assert says_user.type_lies
    assert says_user.proposed == "HR – Dataverse – Service Principal"
    loose = check_name("Dataverse SPN connection", "new_x", DV, "user", "HR", NAMING)
    assert loose.type_lies


def test_office_365_users_is_not_a_user_type_claim() -> None:
    verdict = check_name(
        "HR – Office 365 Users – Service Principal",
        "new_u",
        "shared_office365users",
        SP,
        "HR",
        NAMING,
    )
    assert verdict.compliant


def test_wrong_connector_part_is_named() -> None:
    verdict = check_name("HR – SharePoint – User", "new_hr", DV, "user", "HR", NAMING)
    assert not verdict.compliant
    assert "connector is Dataverse" in " ".join(verdict.problems)
    assert verdict.proposed == "HR – Dataverse – User"


def test_unbound_or_unknown_identity_keeps_the_type_word_or_says_unbound() -> None:
    kept = check_name("HR – Dataverse – Service Principal", "new_hr", DV, None, "HR", NAMING)
    assert kept.compliant
    fresh = check_name("Dataverse stuff", "new_hr", DV, None, "HR", NAMING)
    assert fresh.proposed == "HR – Dataverse – Unbound"


def test_a_person_written_area_is_kept_in_the_proposal() -> None:
    verdict = check_name("DLP Impact Analysis - Dataverse", "autocoe_x", DV, SP, "CoE", NAMING)
    assert verdict.proposed == "DLP Impact Analysis – Dataverse – Service Principal"


def test_configured_convention_and_connector_names() -> None:
    naming = NamingSettings(
        convention="{connector} | {area} | {type}",
        separators=(" | ",),
        connector_names={"shared_sql": "Azure SQL"},
    )
    verdict = check_name("Orders SQL", "new_orders", "shared_sql", SP, "Orders", naming)
    assert verdict.proposed == "Azure SQL | Orders | Service Principal"
    assert check_name(verdict.proposed, "new_orders", "shared_sql", SP, "x", naming).compliant


def test_connector_display_names() -> None:
    assert connector_display_name("shared_commondataserviceforapps") == "Dataverse"
    assert connector_display_name("shared_commondataservice") == "Dataverse (legacy)"
    assert connector_display_name("shared_webcontents") == "HTTP with Microsoft Entra ID"
    assert connector_display_name("SHARED_TEAMS") == "Microsoft Teams"
    assert connector_display_name("shared_custom-5fabc") == "shared_custom-5fabc"
    assert connector_display_name(None) == "Unknown connector"
    assert connector_display_name("shared_sql", {"shared_sql": "Azure SQL"}) == "Azure SQL"


@pytest.mark.parametrize(
    "hostile",
    [
        None,
        "",
        "   ",
        "<script>alert(1)</script>",
        "🔌 🛠️ Microsoft Dataverse Connection",
        "x" * 5000,
        '=HYPERLINK("http://evil")',
        "line\nbreak\x00nul",
        "{area} – {connector} – {type}",
        "((((((((((a+)+)+)+)+)+)+)+)+)+)",
    ],
)
def test_hostile_names_get_a_verdict_and_a_sane_proposal(hostile: str | None) -> None:
    verdict = check_name(hostile, "new_x", DV, "user", "<b>Area</b>", NAMING)
    assert not verdict.compliant
    assert verdict.problems
    assert len(verdict.proposed) <= NAMING.max_length
    assert "\n" not in verdict.proposed and "\x00" not in verdict.proposed


NAMES = st.text(max_size=120)
AREAS = st.one_of(st.none(), st.text(max_size=150))
IDENTITIES = st.sampled_from([None, "user", SP, "unknown"])
CONNECTORS = st.sampled_from([None, DV, "shared_sharepointonline", "shared_teams", "shared_x_1"])


@settings(max_examples=300, deadline=None)
@given(name=NAMES, area=AREAS, identity=IDENTITIES, connector=CONNECTORS)
def test_the_proposal_is_itself_compliant(name, area, identity, connector) -> None:
    verdict = check_name(name, "new_logical", connector, identity, area, NAMING)
    again = check_name(verdict.proposed, "new_logical", connector, identity, area, NAMING)
    assert again.compliant, (verdict.proposed, again.problems)
    assert again.proposed == verdict.proposed


def test_rule_proposes_area_from_map_solution_publisher_or_general(build) -> None:
    snap = build.snapshot(
        references=[
            build.ref(
                "r1",
                "new_sharedcommondataserviceforapps_aaaa1",
                "Microsoft Dataverse Default-aaaa1",
            ),
            build.ref("r2", "contoso_b", "b"),
            build.ref("r3", "admin_c", "c"),
            build.ref("r4", "new_d", "d"),
            build.ref("r5", "fab_e", "e"),
        ],
        solutions=[
            build.solution("s1", "LeaveApp", friendly_name="Leave requests"),
            build.solution("s2", "Payroll", publisher_prefix="pay"),
            build.solution("s3", "NoFriendly", friendly_name=None, publisher_name="Fabrikam"),
            build.solution("s0", "Default"),
        ],
        solution_components=[
            build.member("s1", "r1"),
            build.member("s2", "r2"),
            build.member("s0", "r4"),
            build.member("s3", "r5"),
        ],
    )
    naming = NamingSettings(area_map={"payroll": "Pay", "admin": "CoE"})
    found = build.of_rule(run_rules(snap, SimpleNamespace(naming=naming)), "bad-name")
    proposals = {
        row.object_id: json.loads(row.extra)["proposed_name"] for row in found.itertuples()
    }
    assert proposals == {
        "r1": "Leave requests – Dataverse – Unbound",
        "r2": "Pay – Dataverse – Unbound",
        "r3": "CoE – Dataverse – Unbound",
        "r4": "General – Dataverse – Unbound",
        "r5": "Fabrikam – Dataverse – Unbound",
    }


def test_rule_severity_is_medium_for_lies_and_managed_fix_points_to_source(build) -> None:
    snap = build.snapshot(
        connections=[build.conn("c1", identity="user")],
        references=[
            build.ref("r1", "new_a", "HR – Dataverse – Service Principal", connection_id="c1"),
            build.ref("r2", "new_b", "whatever", is_managed=True),
            build.ref("r3", "new_c", "HR – Dataverse – Unbound"),
        ],
    )
    found = build.of_rule(run_rules(snap), "bad-name").set_index("object_id")
    assert found["severity"].to_dict() == {"r1": "medium", "r2": "low"}
    assert "source environment" in found.at["r2", "suggested_fix"]
