"""pac-style deployment settings: content after the plan, and file names safe from remote data."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import ClassVar

import pytest

from cleanup.report.settings_json import (
    INDEX_FILE,
    MAX_FILE_NAME,
    SETTINGS_DIR,
    deleted_references,
    deployment_settings,
    settings_file_name,
    settings_text,
    write_deployment_settings,
)
from tests.report.conftest import (
    BROKEN,
    CONNECTOR_ID,
    HOSTILE,
    PROD,
    SKIPPED,
    FakePlan,
    make_proposals,
    make_snapshot,
)

SAFE = re.compile(r"^[A-Za-z0-9._-]+$")
HOSTILE_NAMES = [
    "../../etc/passwd",
    "..",
    ".",
    "CON",
    "nul",
    "COM1",
    "🚀🚀🚀",
    "",
    None,
    "a" * 500,
    "Prod/Env\\x\x00y",
    "Ünïcödé Prödüctïön",
    "名前",
    "<script>alert(1)</script>",
    " leading and trailing ",
    "-.-._-",
]


def logical_names(settings):
    return [r["LogicalName"] for r in settings["ConnectionReferences"]]


def test_settings_list_what_remains_after_the_plan():
    out = deployment_settings(make_snapshot(), make_proposals(), FakePlan())
    assert set(out) == {PROD, HOSTILE}  # complete environments only
    assert list(out[PROD]) == ["EnvironmentVariables", "ConnectionReferences"]
    assert out[PROD]["EnvironmentVariables"] == []
    # r1 is deleted by the plan; the survivor r2 and the untouched r3 remain.
    assert logical_names(out[PROD]) == ["contoso_AbsenceDataverseSP", "contoso_SharePoint"]
    first = out[PROD]["ConnectionReferences"][0]
    assert first == {
        "LogicalName": "contoso_AbsenceDataverseSP",
        "ConnectionId": "conn-1",
        "ConnectorId": CONNECTOR_ID,
    }


def test_unbound_reference_has_an_empty_connection_id():
    out = deployment_settings(make_snapshot())
    sharepoint = [r for r in out[PROD]["ConnectionReferences"] if r["ConnectionId"] == ""]
    assert [r["LogicalName"] for r in sharepoint] == ["contoso_SharePoint"]


def test_without_a_plan_nothing_or_the_deletable_leftovers_go():
    assert len(deployment_settings(make_snapshot())[PROD]["ConnectionReferences"]) == 3
    assert deleted_references(make_proposals()) == {(PROD, "r1")}
    blocked = make_proposals()
    blocked.leftovers.loc[:, "deletable"] = False
    assert deleted_references(blocked) == set()


def test_only_delete_actions_remove_references():
    assert deleted_references(plan=FakePlan()) == {(PROD, "r1")}
    assert deleted_references(plan=FakePlan(actions=())) == set()
    as_dicts = {
        "actions": [{"type": "delete-reference", "environment_id": PROD, "reference_id": "r2"}]
    }
    assert deleted_references(plan=as_dicts) == {(PROD, "r2")}


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_file_names_are_safe(name):
    file_name = settings_file_name(name, "00000000-0000-0000-0000-000000000001")
    assert SAFE.match(file_name), file_name
    assert len(file_name) <= MAX_FILE_NAME
    assert file_name.endswith(".json") and not file_name.startswith((".", "-"))
    assert ".." not in file_name and "/" not in file_name and "\\" not in file_name
    assert file_name != INDEX_FILE


def test_file_names_are_stable_and_distinct_per_environment():
    a = settings_file_name("Contoso Production", "env-a")
    assert a == settings_file_name("Contoso Production", "env-a")
    assert a != settings_file_name("Contoso Production", "env-b")
    assert re.fullmatch(r"Contoso-Production-[0-9a-f]{10}\.json", a)
    assert settings_file_name("CON", "x").startswith("CON-")  # never the bare device name
    assert settings_file_name("🚀", "x").startswith("environment-")


def test_write_stays_inside_the_folder(tmp_path):
    snap = make_snapshot()
    envs = snap.environments.copy()
    envs.loc[envs["environment_id"] == HOSTILE, "display_name"] = "../../etc/passwd"
    snap = type(snap)(**{**snap.tables(), "environments": envs}, metadata={})
    written = write_deployment_settings(snap, tmp_path, make_proposals(), FakePlan())
    folder = (tmp_path / SETTINGS_DIR).resolve()
    assert len(written) == 2
    for path in written:
        assert path.resolve().parent == folder
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [INDEX_FILE, *(p.name for p in written)]
    )
    index = json.loads((folder / INDEX_FILE).read_text(encoding="utf-8"))
    by_env = {row["environment_id"]: row for row in index}
    assert set(by_env) == {PROD, HOSTILE} and BROKEN not in by_env and SKIPPED not in by_env
    assert by_env[HOSTILE]["display_name"] == "../../etc/passwd"
    assert by_env[HOSTILE]["file"].startswith("etc-passwd-")
    prod = json.loads((folder / by_env[PROD]["file"]).read_text(encoding="utf-8"))
    assert logical_names(prod) == ["contoso_AbsenceDataverseSP", "contoso_SharePoint"]


@pytest.mark.parametrize("name", [n for n in HOSTILE_NAMES if n is not None])
def test_settings_text_is_what_json_writes(name):
    # The fast layout of a settings file must match json.dumps(indent=2) byte for byte.
    snap = make_snapshot()
    refs = snap.references.copy()
    refs.loc[refs["reference_id"] == "r2", "logical_name"] = name
    refs.loc[refs["reference_id"] == "r3", "connection_id"] = f"{name}\u2028\t\"'"
    snap = type(snap)(**{**snap.tables(), "references": refs}, metadata={})
    out = deployment_settings(snap, make_proposals(), FakePlan())
    for settings in out.values():
        assert settings_text(settings) == json.dumps(settings, indent=2)
    empty = {"EnvironmentVariables": [], "ConnectionReferences": []}
    assert settings_text(empty) == json.dumps(empty, indent=2)
    odd = {
        "EnvironmentVariables": [],
        "ConnectionReferences": [dict.fromkeys(["LogicalName", "ConnectionId", "ConnectorId"], 1)],
    }
    assert settings_text(odd) == json.dumps(odd, indent=2)


@dataclass(frozen=True, slots=True)
class SlottedDelete:
    """Like the plan's actions: slots, and the kind fixed by the class."""

    kind: ClassVar[str] = "delete-reference"
    environment_id: str
    reference_id: str


@dataclass(frozen=True, slots=True)
class SlottedRename:
    kind: ClassVar[str] = "rename-reference"
    environment_id: str
    reference_id: str


class OwnKind:
    """An action whose instances carry their own kind (the class attribute is a default)."""

    kind = "rename-reference"

    def __init__(self, kind: str, reference_id: str) -> None:
        self.kind, self.environment_id, self.reference_id = kind, PROD, reference_id


def test_deletes_are_found_whether_the_class_or_the_action_says_so():
    actions = [
        SlottedDelete(PROD, "r1"),
        SlottedRename(PROD, "r2"),
        OwnKind("delete-reference", "r3"),
        OwnKind("rename-reference", "r4"),
        SlottedDelete(PROD, ""),  # no reference: nothing to delete
        {"kind": "Delete", "environment_id": PROD, "object_id": "r5"},
    ]
    assert deleted_references(plan={"actions": actions}) == {
        (PROD, "r1"),
        (PROD, "r3"),
        (PROD, "r5"),
    }


@pytest.mark.parametrize("name", ['Ünïcödé "x" \\ \t', "名前", ""])
def test_written_files_are_the_settings_as_json(tmp_path, name):
    # The files are laid out column-wise; they must read as json.dumps of deployment_settings.
    snap = make_snapshot()
    refs = snap.references.copy()
    refs.loc[refs["reference_id"] == "r2", "logical_name"] = name
    refs.loc[refs["reference_id"] == "r3", "connector_id"] = None
    snap = type(snap)(**{**snap.tables(), "references": refs}, metadata={})
    expected = deployment_settings(snap, make_proposals(), FakePlan())
    write_deployment_settings(snap, tmp_path, make_proposals(), FakePlan())
    folder = tmp_path / SETTINGS_DIR
    index = json.loads((folder / INDEX_FILE).read_text(encoding="utf-8"))
    assert [row["environment_id"] for row in index] == sorted(expected)
    for row in index:
        text = (folder / row["file"]).read_text(encoding="utf-8")
        assert text == json.dumps(expected[row["environment_id"]], indent=2) + "\n"
