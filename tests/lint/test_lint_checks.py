"""Each check on tiny hand-written solutions."""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable
from pathlib import Path

from cleanup.lint import lint_solution
from cleanup.lint.checks import LintFinding, LintResult
from cleanup.rules.settings import NamingSettings

SPO = "shared_sharepointonline"
DV = "shared_commondataserviceforapps"
GOOD_SPO = "HR – SharePoint – Service Principal"
GOOD_DV = "HR – Dataverse – User"


def of(result: LintResult, check: str) -> list[LintFinding]:
    """The findings of one check."""
    return [f for f in result.findings if f.check == check]


def test_a_consistent_solution_has_no_findings(
    make_solution: Callable[..., Path], flow_for: Callable[..., str]
) -> None:
    root = make_solution(
        [{"logical": "hr_Spo", "display": GOOD_SPO, "connector": SPO}],
        {"F-1.json": flow_for({"shared_sharepointonline": (SPO, "hr_Spo")})},
    )
    result = lint_solution(root)
    assert result.findings == ()
    assert result.exit_code == 0


def test_unused_is_low_and_mentions_apps_and_bots(make_solution: Callable[..., Path]) -> None:
    root = make_solution([{"logical": "hr_Spo", "display": GOOD_SPO, "connector": SPO}])
    (root / "bots" / "hr_bot").mkdir(parents=True)
    result = lint_solution(root)

    [finding] = of(result, "unused")
    assert (finding.logical_name, finding.severity) == ("hr_Spo", "low")
    assert finding.file == "Other/Customizations.xml"
    assert "Canvas apps and Copilot Studio bots" in finding.detail
    assert "1 bot(s)" in finding.detail
    assert result.exit_code == 1


def test_unused_is_withheld_when_a_flow_cannot_be_read(
    make_solution: Callable[..., Path],
) -> None:
    root = make_solution(
        [{"logical": "hr_Spo", "display": GOOD_SPO, "connector": SPO}],
        {"Broken-1.json": '{"properties": {', "Empty-2.json": b""},
    )
    result = lint_solution(root)

    assert of(result, "unused") == []
    unreadable = of(result, "unreadable-flow")
    assert {f.file for f in unreadable} == {"Workflows/Broken-1.json", "Workflows/Empty-2.json"}
    assert all(f.severity == "medium" for f in unreadable)
    assert "invalid JSON" in next(f for f in unreadable if "Broken" in f.file).detail
    [note] = of(result, "usage-unknown")
    assert note.severity == "info"
    assert "'hr_Spo'" in note.detail


def test_undeclared_is_high_and_lists_every_flow(
    make_solution: Callable[..., Path], flow_for: Callable[..., str]
) -> None:
    flow = flow_for({"shared_sharepointonline": (SPO, "other_Spo")})
    root = make_solution([], {"A-1.json": flow, "B-2.json": flow})
    result = lint_solution(root)

    [finding] = of(result, "undeclared")
    assert (finding.logical_name, finding.severity) == ("other_Spo", "high")
    assert finding.file == "Workflows/A-1.json"
    assert finding.related_files == ("Workflows/A-1.json", "Workflows/B-2.json")
    assert "2 flow(s)" in finding.detail


def test_entries_without_logical_name_are_an_info_note(
    make_solution: Callable[..., Path], flow_for: Callable[..., str]
) -> None:
    root = make_solution(
        [], {"Old-1.json": flow_for({"shared_office365": ("shared_office365", None)})}
    )
    result = lint_solution(root)

    [note] = of(result, "direct-connection")
    assert note.severity == "info"
    assert "uses connections directly, not a connection reference" in note.detail.lower()
    assert "'shared_office365' (Office 365 Outlook)" in note.detail
    assert result.exit_code == 0  # info notes do not count


def test_duplicates_name_each_other_and_say_connections_are_unknown(
    make_solution: Callable[..., Path], flow_for: Callable[..., str]
) -> None:
    refs = [
        {"logical": "hr_SpoA", "display": GOOD_SPO, "connector": SPO},
        {"logical": "hr_SpoB", "display": "HR – SharePoint – User", "connector": SPO},
        {"logical": "hr_Dv", "display": GOOD_DV, "connector": DV},
    ]
    flow = flow_for(
        {
            "shared_sharepointonline": (SPO, "hr_SpoA"),
            "shared_sharepointonline_1": (SPO, "hr_SpoB"),
            "shared_commondataserviceforapps": (DV, "hr_Dv"),
        }
    )
    result = lint_solution(make_solution(refs, {"F-1.json": flow}))

    dup = {f.logical_name: f for f in of(result, "duplicate")}
    assert set(dup) == {"hr_SpoA", "hr_SpoB"}
    assert "'hr_SpoB'" in dup["hr_SpoA"].detail
    assert "check whether they are bound to the same connection" in dup["hr_SpoA"].detail
    assert dup["hr_SpoA"].severity == "medium"


def test_a_reference_declared_twice(make_solution: Callable[..., Path]) -> None:
    ref = {"logical": "hr_Spo", "display": GOOD_SPO, "connector": SPO}
    result = lint_solution(make_solution([ref, {**ref, "logical": "HR_SPO"}]))
    twice = [f for f in of(result, "duplicate") if "Declared 2 times" in f.detail]
    assert [f.logical_name for f in twice] == ["hr_Spo"]


def test_bad_names_with_area_from_the_publisher_prefix(
    make_solution: Callable[..., Path], flow_for: Callable[..., str]
) -> None:
    refs = [
        {
            "logical": "hr_sharedsharepointonline_1a2b3",
            "display": "SharePoint Sol-1a2b3",
            "connector": SPO,
        },
        {"logical": "hr_Dv", "display": GOOD_DV, "connector": DV},
        {"logical": "hr_Nameless", "connector": DV},
    ]
    flow = flow_for(
        {
            "a": (SPO, "hr_sharedsharepointonline_1a2b3"),
            "b": (DV, "hr_Dv"),
            "c": (DV, "hr_Nameless"),
        }
    )
    naming = NamingSettings(area_map={"hr": "Absence"})
    result = lint_solution(make_solution(refs, {"F-1.json": flow}), naming=naming)

    bad = {f.logical_name: f for f in of(result, "bad-name")}
    assert set(bad) == {"hr_sharedsharepointonline_1a2b3", "hr_Nameless"}
    assert "auto-generated" in bad["hr_sharedsharepointonline_1a2b3"].detail
    assert (
        "'Absence – SharePoint – Unbound'" in bad["hr_sharedsharepointonline_1a2b3"].suggested_fix
    )
    assert "'Service Principal' or 'User'" in bad["hr_sharedsharepointonline_1a2b3"].suggested_fix
    assert "no display name" in bad["hr_Nameless"].detail
    # Offline there is no identity, so no name can lie about its type: all low.
    assert all(f.severity == "low" for f in bad.values())


def test_flow_connector_differs_from_declaration(
    make_solution: Callable[..., Path], flow_for: Callable[..., str]
) -> None:
    root = make_solution(
        [{"logical": "hr_Spo", "display": GOOD_SPO, "connector": SPO}],
        {"F-1.json": flow_for({"shared_office365": ("shared_office365", "hr_Spo")})},
    )
    [finding] = of(lint_solution(root), "flow-connector-mismatch")
    assert finding.severity == "high"
    assert "'shared_office365'" in finding.detail


def test_dangling_key(make_solution: Callable[..., Path], flow_for: Callable[..., str]) -> None:
    flow = flow_for({"shared_sharepointonline": (SPO, "hr_Spo")}, dangling="shared_office365")
    root = make_solution(
        [{"logical": "hr_Spo", "display": GOOD_SPO, "connector": SPO}], {"F-1.json": flow}
    )
    [finding] = of(lint_solution(root), "dangling-key")
    assert finding.file == "Workflows/F-1.json"
    assert "'shared_office365'" in finding.detail


def test_case_only_difference_is_matched_with_a_note(
    make_solution: Callable[..., Path], flow_for: Callable[..., str]
) -> None:
    root = make_solution(
        [{"logical": "hr_SharePoint", "display": GOOD_SPO, "connector": SPO}],
        {"F-1.json": flow_for({"k": (SPO, "HR_SHAREPOINT")})},
    )
    result = lint_solution(root)
    assert {f.check for f in result.findings} == {"case-mismatch"}
    assert result.exit_code == 0


def test_canvas_app_connection_references_are_not_declarations(
    make_solution: Callable[..., Path], flow_for: Callable[..., str]
) -> None:
    canvas = json.dumps(
        {"8852b8fa": {"id": "/providers/microsoft.powerapps/apis/shared_office365users"}}
    )
    extra = (
        "<CanvasApps><CanvasApp><Name>app</Name>"
        f"<ConnectionReferences>{canvas}</ConnectionReferences></CanvasApp></CanvasApps>"
    )
    root = make_solution(
        [{"logical": "hr_Spo", "display": GOOD_SPO, "connector": SPO}], extra=extra
    )
    result = lint_solution(root)

    assert result.declared == 1
    [unused] = of(result, "unused")
    assert "1 canvas app(s)" in unused.detail


def test_extra_elements_and_nested_custom_connector_id(tmp_path: Path) -> None:
    # <customconnectorid><connectorid>GUID</connectorid></customconnectorid> must not replace
    # the reference's own connectorid; element order varies and unknown elements are ignored.
    root = tmp_path / "sol"
    (root / "Other").mkdir(parents=True)
    (root / "Other" / "Customizations.xml").write_text(
        "<ImportExportXml><connectionreferences>"
        '<connectionreference connectionreferencelogicalname="hr_Custom">'
        "<description>text</description>"
        "<connectorid>/providers/Microsoft.PowerApps/apis/shared_hr-5fapi-5f123</connectorid>"
        "<customconnectorid><connectorid>8e8f2ece-3d1f-44b3-8a76-1e1bc5fa8567</connectorid>"
        "</customconnectorid><promptingbehavior>0</promptingbehavior>"
        "<connectionreferencedisplayname>HR – HR API – User</connectionreferencedisplayname>"
        "</connectionreference></connectionreferences></ImportExportXml>",
        encoding="utf-8",
    )
    settings = tmp_path / "s.json"
    settings.write_text(
        json.dumps(
            {
                "ConnectionReferences": [
                    {
                        "LogicalName": "hr_Custom",
                        "ConnectionId": "",
                        "ConnectorId": "/providers/Microsoft.PowerApps/apis/shared_hr-5fapi-5f123",
                    }
                ]
            }
        ),
        encoding="utf-8",
    )
    result = lint_solution(root, settings_files=[settings])

    # The settings agree, so the connector was read from the outer <connectorid>.
    assert {f.check for f in result.findings} == {"unused", "bad-name"}
    [name] = [f for f in result.findings if f.check == "bad-name"]
    assert "the connector is shared_hr-5fapi-5f123" in name.detail


def _settings(
    path: Path, entries: list[dict], *, encoding: str = "utf-8", bom: bytes = b""
) -> Path:
    text = json.dumps({"EnvironmentVariables": [], "ConnectionReferences": entries}, indent=7)
    path.write_bytes(bom + text.encode(encoding))
    return path


def test_settings_missing_extra_mismatch_and_invalid(
    make_solution: Callable[..., Path], flow_for: Callable[..., str], tmp_path: Path
) -> None:
    refs = [
        {"logical": "hr_Spo", "display": GOOD_SPO, "connector": SPO},
        {"logical": "hr_Dv", "display": GOOD_DV, "connector": DV},
        {
            "logical": "hr_Mail",
            "display": "HR – Office 365 Outlook – User",
            "connector": "shared_office365",
        },
    ]
    flow = flow_for(
        {"a": (SPO, "hr_Spo"), "b": (DV, "hr_Dv"), "c": ("shared_office365", "hr_Mail")}
    )
    root = make_solution(refs, {"F-1.json": flow})
    settings = _settings(
        tmp_path / "deploymentSettings.json",
        [
            # Key casing differs from pac's; pac and Dataverse read keys case-insensitively.
            {
                "logicalname": "hr_Spo",
                "connectionid": "",
                "CONNECTORID": "/providers/microsoft.powerapps/apis/shared_sharepointonline",
            },
            {
                "LogicalName": "hr_Dv",
                "ConnectionId": "",
                "ConnectorId": "/providers/Microsoft.PowerApps/apis/shared_sql",
            },
            {
                "LogicalName": "hr_Dv",
                "ConnectionId": "",
                "ConnectorId": "/providers/Microsoft.PowerApps/apis/shared_sql",
            },
            {
                "LogicalName": "old_Gone",
                "ConnectionId": "",
                "ConnectorId": "/providers/Microsoft.PowerApps/apis/shared_rss",
            },
            {"ConnectionId": "x"},
        ],
    )
    result = lint_solution(root, settings_files=[settings])

    assert [f.logical_name for f in of(result, "settings-missing")] == ["hr_Mail"]
    assert '"LogicalName": "hr_Mail"' in of(result, "settings-missing")[0].suggested_fix
    [mismatch] = of(result, "settings-connector-mismatch")
    assert (mismatch.logical_name, mismatch.severity) == ("hr_Dv", "high")
    assert "shared_sql" in mismatch.detail
    assert [f.logical_name for f in of(result, "settings-extra")] == ["old_Gone"]
    invalid = of(result, "settings-invalid")
    assert {f.logical_name for f in invalid} == {"hr_Dv", None}
    assert all(f.file == str(settings) for f in result.findings if f.check.startswith("settings"))


def test_settings_with_bom_utf16_and_repeated_option(
    make_solution: Callable[..., Path], flow_for: Callable[..., str], tmp_path: Path
) -> None:
    refs = [{"logical": "hr_Spo", "display": GOOD_SPO, "connector": SPO}]
    root = make_solution(refs, {"F-1.json": flow_for({"a": (SPO, "hr_Spo")})})
    entry = {
        "LogicalName": "hr_Spo",
        "ConnectionId": "",
        "ConnectorId": f"/providers/Microsoft.PowerApps/apis/{SPO}",
    }
    bom8 = _settings(tmp_path / "a.json", [entry], bom=codecs.BOM_UTF8)
    utf16 = _settings(tmp_path / "b.json", [entry], encoding="utf-16-le", bom=codecs.BOM_UTF16_LE)
    empty = _settings(tmp_path / "c.json", [])

    result = lint_solution(root, settings_files=[bom8, utf16, empty])

    assert result.settings_files == (str(bom8), str(utf16), str(empty))
    assert [(f.check, f.file) for f in result.findings] == [("settings-missing", str(empty))]


def test_settings_glob(
    make_solution: Callable[..., Path], flow_for: Callable[..., str], tmp_path: Path
) -> None:
    refs = [{"logical": "hr_Spo", "display": GOOD_SPO, "connector": SPO}]
    root = make_solution(refs, {"F-1.json": flow_for({"a": (SPO, "hr_Spo")})})
    for env in ("Test", "Prod"):
        (tmp_path / "config" / env).mkdir(parents=True)
        _settings(tmp_path / "config" / env / "deploymentSettings.json", [])

    result = lint_solution(
        root, settings_files=[str(tmp_path / "config" / "*" / "deploymentSettings.json")]
    )

    assert [Path(f).parent.name for f in result.settings_files] == ["Prod", "Test"]
    assert len(of(result, "settings-missing")) == 2
