"""The linter on solutions assembled from real repositories in shared/corpus.

Each expected result below was checked by hand against the files (the customizations'
``<connectionreferences>`` block and each flow's ``properties.connectionReferences``); the
comment on each test says what was seen.
"""

from __future__ import annotations

import codecs
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from cleanup.lint import lint_solution
from cleanup.lint.checks import LintFinding, LintResult

EPIGUARD = "49ochieng__EpiGuard-AI-Powered-Disease-Surveillance-and-Outbreak-Response-Agent-"
SOURCE_CONTROL_HELPER = "microsoft__powerapps-tools__SourceControlHelper-2020"
DEVOPS_KIT = "microsoft__powerapps-tools__DevOpsKitSampleSolution-2020"


def names(result: LintResult, check: str) -> set[str | None]:
    """Logical names of the findings of one check."""
    return {f.logical_name for f in result.findings if f.check == check}


def of(result: LintResult, check: str) -> list[LintFinding]:
    """The findings of one check."""
    return [f for f in result.findings if f.check == check]


def checks(result: LintResult) -> set[str]:
    """Which checks fired."""
    return {f.check for f in result.findings}


def test_source_control_helper_declares_a_reference_it_never_uses(
    assemble: Callable[..., Path],
) -> None:
    # SourceControlHelper (CoE 2020) declares cat_CDS and cat_sharedcommondataservice_e86b0, both
    # shared_commondataservice; its one flow, GetSolutions (UTF-16 LE with BOM), has a single
    # entry shared_commondataservice_1 -> cat_sharedcommondataservice_e86b0.
    root = assemble(SOURCE_CONTROL_HELPER)
    flow = next((root / "Workflows").iterdir())
    assert flow.read_bytes().startswith(codecs.BOM_UTF16_LE)

    result = lint_solution(root)

    assert result.flows_read == 1
    assert names(result, "unused") == {"cat_CDS"}
    assert of(result, "unused")[0].severity == "low"
    assert "Canvas apps and Copilot Studio bots" in of(result, "unused")[0].detail
    assert names(result, "undeclared") == set()
    # Same connector twice: a duplicate pair, reported for each member.
    assert names(result, "duplicate") == {"cat_CDS", "cat_sharedcommondataservice_e86b0"}
    assert all("bound to the same connection" in f.detail for f in of(result, "duplicate"))
    assert result.exit_code == 1


@pytest.mark.parametrize(
    ("repo", "used"),
    [
        # Raw-zip customizations.xml with <Workflows><JsonFileName> but no <connectionreferences>;
        # the flow "Flow" uses new_sharedsharepointonline_733bf (invoker).
        (
            "KarolFilipKozlowski__Power-Automate---Dynamically-email-template",
            "new_sharedsharepointonline_733bf",
        ),
        # Same, for a custom connector (cre80_5Fkursy-20walut-20nbp). This file also carries a
        # canvas app with <ConnectionReferences>{json}</ConnectionReferences>, which must not be
        # read as declarations.
        (
            "KarolFilipKozlowski__Power-Automate---Konektor-api.nbp.pl",
            "new_sharedcre805fkursy20walut20nbp5f9f745961df205669_3c05c",
        ),
    ],
)
def test_karol_flows_use_references_the_solution_never_declares(
    assemble: Callable[..., Path], repo: str, used: str
) -> None:
    # Assembled in the repo's own raw-zip layout (customizations.xml at the root).
    root = assemble(repo, layout="raw")
    result = lint_solution(root)

    assert result.declared == 0
    assert result.customizations_file == "customizations.xml"
    assert names(result, "undeclared") == {used}
    assert of(result, "undeclared")[0].severity == "high"
    # The flow named by <JsonFileName> is present, so usage is complete and nothing else fires.
    assert checks(result) == {"undeclared"}


def test_epiguard_uses_an_undeclared_file_system_reference(assemble: Callable[..., Path]) -> None:
    # EpiGuard declares 11 references; WhenanewemailarrivesV3 uses crc65_sharedfilesystem_03c4b,
    # which is declared nowhere. cr8dc_agent.cr.PhQ4pzYf and cr8dc_epiGuard.cr.5u3XHbAp have no
    # <connectionreferencedisplayname> element. The 4 flows use 9 logical names: the
    # undeclared one and 8 of the 11 declared, leaving 3 Copilot-generated ones unused.
    root = assemble(EPIGUARD)
    result = lint_solution(root)

    assert result.declared == 11
    undeclared = of(result, "undeclared")
    assert [f.logical_name for f in undeclared] == ["crc65_sharedfilesystem_03c4b"]
    assert undeclared[0].file.startswith("Workflows/WhenanewemailarrivesV3-")
    no_name = [f for f in of(result, "bad-name") if "no display name" in f.detail]
    assert {f.logical_name for f in no_name} == {
        "cr8dc_agent.cr.PhQ4pzYf",
        "cr8dc_epiGuard.cr.5u3XHbAp",
    }
    assert names(result, "unused") == {
        "cr8dc_epiGuard.cr.5u3XHbAp",
        "cr8dc_epiGuard.shared_outlook.shared-outlook-d13659a5-6d94-454b-a279-770ee1d33f7c",
        "cr8dc_epiGuard.shared_planner.shared-planner-8ba793e2-de3e-455b-9116-f1e50da3c38f",
    }
    # Three SharePoint references (one of them the nameless agent one) form a duplicate group.
    sharepoint = {f.logical_name for f in of(result, "duplicate") if "(SharePoint)" in f.detail}
    assert sharepoint == {
        "armely_sharedsharepointonline_837e4",
        "cr8dc_agent.cr.PhQ4pzYf",
        "cr8dc_epiGuard.cr.5u3XHbAp",
    }


def test_eromerof_uses_coe_references_declared_in_another_solution(
    assemble: Callable[..., Path],
) -> None:
    # CloudFlow_coe declares erf_CustomCoEPowerAutomateAPI (webcontents) and
    # erf_sharedoffice365_ab739; its three flows also use the CoE Core's
    # admin_CoECoreDataverseEnvRequest, admin_CoECorePowerAutomateManagement and
    # admin_sharedcommondataserviceforapps_98924, which that other solution declares.
    result = lint_solution(assemble("eromerof__CloudFlow_coe"))

    assert names(result, "undeclared") == {
        "admin_CoECoreDataverseEnvRequest",
        "admin_CoECorePowerAutomateManagement",
        "admin_sharedcommondataserviceforapps_98924",
    }
    env_request = next(
        f for f in of(result, "undeclared") if f.logical_name == "admin_CoECoreDataverseEnvRequest"
    )
    # AlertWhenCloudFlowFails and AlertWhenCloudFlowsisoff both use it.
    assert len(env_request.related_files) == 2
    assert "another solution" in env_request.detail
    assert names(result, "unused") == set()


def test_philguth_trimmed_copy_without_declaration(assemble: Callable[..., Path]) -> None:
    # A TRIMMED copy: no <?xml?> declaration, no BOM, root line + <connectionreferences> only.
    # It declares trz_TargetSQL90; the three flows use four envvar_* names instead.
    root = assemble("philguth__delta-flows-framework__Other")
    assert not (root / "Other" / "Customizations.xml").read_bytes().startswith(b"<?xml")
    result = lint_solution(root)

    assert names(result, "unused") == {"trz_TargetSQL90"}
    assert names(result, "undeclared") == {
        "envvar_SourceDatabaseConnection",
        "envvar_DataverseConnection",
        "envvar_TargetDatabaseConnection_SQL83",
        "envvar_TargetDatabaseConnection_SQL90",
    }


@pytest.mark.parametrize(
    "repo",
    [
        # Leave request app: 6 references (approvals, Dataverse, Outlook, Users, SharePoint,
        # Teams), all used by its 4 flows, one per connector; the display names are the
        # portal's "<connector> LeaveRequestApp-<hex>" so only bad-name fires.
        "biancadevera__leave-request-app",
        # Business Approvals Kit: 25 flows use all 6 declared references, one per connector;
        # names like "Business Approval Kit | Dataverse" use a pipe, so bad-name fires.
        "microsoft__powercat-business-approvals-kit",
    ],
)
def test_clean_solutions_report_nothing_but_names(assemble: Callable[..., Path], repo: str) -> None:
    result = lint_solution(assemble(repo))

    assert result.declared == 6
    assert checks(result) == {"bad-name"}
    assert len(of(result, "bad-name")) == 6


def test_business_approvals_kit_settings_agree(assemble: Callable[..., Path], corpus: Path) -> None:
    # BusinessApprovalKit/config/Prod/deploymentSettings.json lists the same 6 logical names
    # with the same ConnectorIds (ALM Accelerator style, with ConnectionOwner and #{...}# tokens).
    settings = (
        corpus / "settings" / "microsoft__powercat-business-approvals-kit__BusinessApprovalKit"
        "__deploymentSettings.json"
    )
    result = lint_solution(
        assemble("microsoft__powercat-business-approvals-kit"), settings_files=[settings]
    )

    assert not any(f.check.startswith("settings-") for f in result.findings)


def test_agent_review_tool_settings_miss_its_reference(
    assemble: Callable[..., Path], corpus: Path
) -> None:
    # AgentReviewTool declares only cat_AgentReviewToolDataverseConnectionRef (used by its one
    # flow), but its config/Prod/deploymentSettings.json lists three Copilot Studio Accelerator
    # references instead: a settings file copied from the other solution.
    settings = (
        corpus / "settings" / "microsoft__Power-CAT-Copilot-Studio-Kit__AgentReviewTool"
        "__deploymentSettings.json"
    )
    result = lint_solution(
        assemble("microsoft__Power-CAT-Copilot-Studio-Kit"), settings_files=[settings]
    )

    missing = of(result, "settings-missing")
    assert [f.logical_name for f in missing] == ["cat_AgentReviewToolDataverseConnectionRef"]
    assert missing[0].severity == "high"
    assert missing[0].file == str(settings)
    assert "1 flow(s) use it" in missing[0].detail
    assert names(result, "settings-extra") == {
        "cat_CopilotStudioAcceleratorDataverse",
        "cat_CopilotStudioAcceleratorPowerPlatformforAdmins",
        "cat_DataverseIndexerSharePoint",
    }


def test_hmcts_settings_miss_two_and_list_one_undeclared(
    assemble: Callable[..., Path], corpus: Path
) -> None:
    # hmcts' deploymentConfig.json (14 entries) against the current src/ solution (15
    # declared): pre__sharedflowmanagement_b1451 and pre__sharedkeyvault_3ed25 are not listed,
    # and pre__DTS_PRE_KeyVault is listed but only the archived solution declares it.
    settings = corpus / "settings" / "hmcts__pre-rec-evidence__deploymentConfig.json"
    result = lint_solution(assemble("hmcts__pre-rec-evidence__src"), settings_files=[settings])

    assert names(result, "settings-missing") == {
        "pre__sharedflowmanagement_b1451",
        "pre__sharedkeyvault_3ed25",
    }
    assert names(result, "settings-extra") == {"pre__DTS_PRE_KeyVault"}
    assert names(result, "settings-connector-mismatch") == set()


def test_ragged_powershell_settings_file_agrees(
    assemble: Callable[..., Path], corpus: Path
) -> None:
    # MYousafTK's settings file has the deep, ragged ConvertTo-Json indent and extra
    # Name{Default,ByLcid} objects; its 5 entries match the 5 declared references.
    settings = (
        corpus
        / "settings"
        / "MYousafTK__Power-Platform-CI-CD-With-DevOps__PowerPlateformCICDwithDevOps.json"
    )
    result = lint_solution(
        assemble("MYousafTK__Power-Platform-CI-CD-With-DevOps"), settings_files=[settings]
    )

    assert not any(f.check.startswith("settings-") for f in result.findings)


def test_utf16_customizations_give_the_same_result(assemble: Callable[..., Path]) -> None:
    # The corpus has no UTF-16 Customizations.xml, so re-encode one (with a matching
    # declaration) and check nothing changes. DevOpsKitSampleSolution: cat_CDS_Current used by
    # DevOpsKitSampleFlow, itself UTF-16.
    root = assemble(DEVOPS_KIT)
    before = lint_solution(root)
    path = root / "Other" / "Customizations.xml"
    text = path.read_bytes().decode("utf-8-sig").replace('encoding="utf-8"', 'encoding="utf-16"')
    path.write_bytes(codecs.BOM_UTF16_LE + text.encode("utf-16-le"))

    after = lint_solution(root)

    assert after.findings == before.findings
    assert after.declared == 1
    assert checks(after) == {"bad-name"}


def test_desktop_flow_is_skipped_with_a_note(assemble: Callable[..., Path], corpus: Path) -> None:
    # A desktop flow JSON (Pavan-kumar-k, 1.5 MB, base64 package) dropped into a clean solution.
    root = assemble(DEVOPS_KIT)
    desktop = (
        corpus
        / "other"
        / "Pavan-kumar-k__Loan-Estimate__LE_WorkFlow-1F5A23DA-CF1D-4182-8A26-1C7C0E3E2685.json"
    )
    shutil.copyfile(desktop, root / "Workflows" / "LE_WorkFlow-1F5A23DA.json")

    result = lint_solution(root)

    notes = of(result, "desktop-flow")
    assert [f.file for f in notes] == ["Workflows/LE_WorkFlow-1F5A23DA.json"]
    assert notes[0].severity == "info"
    assert result.flows_read == 1
    assert checks(result) == {"bad-name", "desktop-flow"}


def test_every_corpus_solution_lints_and_declares_what_the_manifest_says(
    corpus: Path, manifest: list[dict[str, str]], assemble: Callable[..., Path]
) -> None:
    # Smoke test over all 75 customizations: no crash, the declared count matches the
    # manifest's note, and every finding names a logical name the files actually contain.
    cases = [r for r in manifest if r["kind"] == "customizations"]
    assert len(cases) == 75
    for row in cases:
        name = (
            row["local_file"].removeprefix("customizations/").removesuffix("__customizations.xml")
        )
        root = assemble(name)
        result = lint_solution(root)
        match = re.search(r"(\d+) connection references", row["notes"])
        expected = int(match.group(1)) if match else 0
        assert result.declared == expected, name
        assert result.exit_code in (0, 1)
        files = [root / "Other" / "Customizations.xml", *(root / "Workflows").iterdir()]
        text = "".join(_decode(p.read_bytes()) for p in files)
        for finding in result.findings:
            assert finding.logical_name is None or finding.logical_name in text, name


def _decode(raw: bytes) -> str:
    return raw.decode("utf-16") if raw.startswith(codecs.BOM_UTF16_LE) else raw.decode("utf-8-sig")
