"""Layouts, encodings, malformed input: a finding for a bad flow, exit 2 for bad input."""

from __future__ import annotations

import codecs
import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from cleanup.lint import LintInputError, lint_solution, main_lint
from cleanup.lint.solution import decode_xml

SPO = "shared_sharepointonline"
GOOD = "HR – SharePoint – User"
U16_DECL = '<?xml version="1.0" encoding="utf-16"?><a/>'
CP1252_DECL = '<?xml version="1.0" encoding="windows-1252"?><a>é</a>'


def _run(path: Path, settings: list[Path] | None = None, fmt: str = "text") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main_lint(path, settings or [], fmt, None, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_missing_folder_is_exit_2(tmp_path: Path) -> None:
    code, out, err = _run(tmp_path / "nope")
    assert code == 2
    assert "does not exist" in err
    assert out == ""


def test_folder_without_customizations_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "Workflows").mkdir()
    code, out, err = _run(tmp_path, fmt="json")
    assert code == 2
    assert "No Other/Customizations.xml" in err
    assert json.loads(out)["error"].startswith("No Other/Customizations.xml")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"<ImportExportXml><connectionreferences>", "not well-formed"),
        (b"", "not well-formed"),
        (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><ImportExportXml>&a;'
            b"</ImportExportXml>",
            "DOCTYPE",
        ),
        (b'<?xml version="1.0" encoding="no-such-codec"?><a/>', "unknown encoding"),
        (b"<ImportExportXml>\xff\xfe\xfa</ImportExportXml>", "cannot be decoded"),
    ],
)
def test_unreadable_customizations_is_exit_2(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "Other").mkdir()
    (tmp_path / "Other" / "Customizations.xml").write_bytes(content)
    with pytest.raises(LintInputError, match=message):
        lint_solution(tmp_path)
    assert _run(tmp_path)[0] == 2


def test_zip_file_is_refused_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "Sol_1_0_0_1.zip"
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(LintInputError, match="pac solution unpack"):
        lint_solution(path)


def test_file_names_are_matched_without_case(
    tmp_path: Path, xml_for: Callable[..., str], flow_for: Callable[..., str]
) -> None:
    root = tmp_path / "sol"
    (root / "other").mkdir(parents=True)
    (root / "other" / "CUSTOMIZATIONS.XML").write_text(
        xml_for([{"logical": "hr_Spo", "display": GOOD, "connector": SPO}]), encoding="utf-8"
    )
    (root / "workflows").mkdir()
    (root / "workflows" / "F-1.JSON").write_text(flow_for({"a": (SPO, "hr_Spo")}))
    result = lint_solution(root)
    assert result.customizations_file == "other/CUSTOMIZATIONS.XML"
    assert (result.flows_read, result.findings) == (1, ())


def test_path_may_name_the_customizations_file(
    make_solution: Callable[..., Path], flow_for: Callable[..., str]
) -> None:
    root = make_solution(
        [{"logical": "hr_Spo", "display": GOOD, "connector": SPO}],
        {"F-1.json": flow_for({"a": (SPO, "hr_Spo")})},
    )
    result = lint_solution(root / "Other" / "Customizations.xml")
    assert (result.flows_read, result.findings) == (1, ())


def test_data_xml_side_files_are_not_flows_but_list_them(
    make_solution: Callable[..., Path], flow_for: Callable[..., str]
) -> None:
    # pac writes Workflows/X.json.data.xml beside X.json; a side file without its .json means
    # the checkout is incomplete, so usage is unknown and "unused" is withheld.
    root = make_solution(
        [{"logical": "hr_Spo", "display": GOOD, "connector": SPO}],
        {"F-1.json": flow_for({}), "F-1.json.data.xml": "<Workflow/>", "G-2.json.data.xml": "<x/>"},
    )
    result = lint_solution(root)

    assert result.flows_read == 1
    [missing] = [f for f in result.findings if f.check == "missing-flow-file"]
    assert missing.file == "Workflows/G-2.json"
    assert {f.check for f in result.findings} == {"missing-flow-file", "usage-unknown"}


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "empty"),
        (b"  \r\n", "empty"),
        (b"[1, 2]", "not an object"),
        (b'{"properties": {"definition": {}}}', "neither 'triggers' nor 'actions'"),
        (b'{"a": "\xff\xfe\xfa"}', "cannot be decoded"),
        (codecs.BOM_UTF8 + b'{"properties": ', "invalid JSON"),
    ],
)
def test_bad_flow_files_are_findings_naming_the_file(
    make_solution: Callable[..., Path], content: bytes, problem: str
) -> None:
    root = make_solution([], {"Bad-1.json": content})
    code, out, _ = _run(root)
    result = lint_solution(root)

    [finding] = result.findings
    assert (finding.check, finding.file) == ("unreadable-flow", "Workflows/Bad-1.json")
    assert problem in finding.detail
    assert code == 1
    assert "Workflows/Bad-1.json" in out


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (codecs.BOM_UTF8 + b"<a>\xc3\xa9</a>", "<a>é</a>"),
        (codecs.BOM_UTF16_LE + "<a>é</a>".encode("utf-16-le"), "<a>é</a>"),
        (codecs.BOM_UTF16_BE + "<a>é</a>".encode("utf-16-be"), "<a>é</a>"),
        (U16_DECL.encode("utf-16-le"), U16_DECL),
        (CP1252_DECL.encode("cp1252"), CP1252_DECL),
        # A trimmed copy: no declaration, no BOM.
        (b"<a>\xc3\xa9</a>", "<a>é</a>"),
        # Declared UTF-16 but plainly 8-bit: the bytes win.
        (U16_DECL.encode("ascii"), U16_DECL),
    ],
)
def test_decode_xml(raw: bytes, expected: str) -> None:
    assert decode_xml(raw) == expected


def test_settings_file_problems_are_exit_2(
    make_solution: Callable[..., Path], tmp_path: Path, corpus: Path
) -> None:
    root = make_solution([{"logical": "hr_Spo", "display": GOOD, "connector": SPO}])
    not_json = tmp_path / "bad.json"
    not_json.write_text("{", encoding="utf-8")
    # DL-Recruiter's home-made {"ConnectionIds": {...}} is not the pac format.
    home_made = corpus / "other" / "DL-Recruiter__dl-automation-system__prod.settings.template.json"
    for settings, message in [
        (tmp_path / "absent.json", "Cannot read"),
        (not_json, "not valid JSON"),
        (home_made, "no 'ConnectionReferences' array"),
    ]:
        with pytest.raises(LintInputError, match=message):
            lint_solution(root, settings_files=[settings])
        assert _run(root, [settings])[0] == 2
    with pytest.raises(LintInputError, match="No deployment settings file matches"):
        lint_solution(root, settings_files=[str(tmp_path / "config" / "*.json")])


def test_creator_kit_settings_with_odd_whitespace(
    make_solution: Callable[..., Path], corpus: Path
) -> None:
    # 130 bytes, both arrays empty, odd whitespace: every declared reference is missing.
    settings = (
        corpus
        / "settings"
        / "microsoft__powercat-creator-kit__CreatorKitCore__deploymentSettings.json"
    )
    root = make_solution([{"logical": "hr_Spo", "display": GOOD, "connector": SPO}])
    result = lint_solution(root, settings_files=[settings])
    assert [f.logical_name for f in result.findings if f.check == "settings-missing"] == ["hr_Spo"]


def test_project_folder_with_src_and_solution_xml(
    tmp_path: Path, xml_for: Callable[..., str], flow_for: Callable[..., str]
) -> None:
    # 'pac solution init' layout: <project>/src/Other/{Customizations,Solution}.xml.
    src = tmp_path / "HRProject" / "src"
    (src / "Other").mkdir(parents=True)
    (src / "Other" / "Customizations.xml").write_text(
        xml_for([{"logical": "hr_Spo", "display": "SharePoint", "connector": SPO}]),
        encoding="utf-8",
    )
    (src / "Other" / "Solution.xml").write_text(
        "<ImportExportXml><SolutionManifest><UniqueName>HRAbsence</UniqueName><LocalizedNames>"
        '<LocalizedName description="HR Absence" languagecode="1033" /></LocalizedNames>'
        "<Publisher><UniqueName>hr</UniqueName><LocalizedNames>"
        '<LocalizedName description="HR Publisher" languagecode="1033" /></LocalizedNames>'
        "</Publisher></SolutionManifest></ImportExportXml>",
        encoding="utf-8",
    )
    (src / "Workflows").mkdir()
    (src / "Workflows" / "F-1.json").write_text(flow_for({"a": (SPO, "hr_Spo")}))

    result = lint_solution(tmp_path / "HRProject")

    assert result.solution_name == "HRAbsence"
    [name] = result.findings
    # Without an area_map entry the solution's friendly name is the proposed area.
    assert "'HR Absence – SharePoint – Unbound'" in name.suggested_fix
