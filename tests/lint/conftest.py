"""Fixtures for the solution linter: the shared corpus and solution folders built in tmp_path."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CONNECTOR = "/providers/Microsoft.PowerApps/apis/"


def _corpus_path() -> Path:
    configured = os.environ.get("CONNREF_CORPUS")
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "corpus"


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The shared corpus; a missing corpus fails the test, because CI always has it."""
    path = _corpus_path()
    if not (path / "MANIFEST.tsv").is_file():
        pytest.fail(
            f"corpus not found at {path} (no MANIFEST.tsv). Set CONNREF_CORPUS to the folder "
            "holding MANIFEST.tsv, customizations/, flows/ and settings/, or put shared/corpus "
            "beside the repository.",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def manifest(corpus: Path) -> list[dict[str, str]]:
    """MANIFEST.tsv rows as dicts."""
    lines = (corpus / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]


def _solution_root(repo_path: str) -> str:
    """The folder of a solution in its repo, from its customizations path."""
    low = repo_path.lower()
    for tail in ("other/customizations.xml", "customizations.xml"):
        if low.endswith(tail):
            return repo_path[: -len(tail)]
    raise ValueError(repo_path)


@pytest.fixture
def assemble(corpus: Path, manifest: list[dict[str, str]], tmp_path: Path) -> Callable[..., Path]:
    """Build a solution folder from a corpus customizations file and that solution's flows.

    The flows are the MANIFEST rows of the same repo under ``<solution folder>/Workflows/``,
    so a repo with several solutions contributes only the right ones.
    """

    def build(name: str, *, layout: str = "pac") -> Path:
        local = f"customizations/{name}__customizations.xml"
        row = next(r for r in manifest if r["local_file"] == local)
        prefix = (_solution_root(row["path"]) + "workflows/").lower()
        dest = tmp_path / name
        target = (
            dest / "Other" / "Customizations.xml"
            if layout == "pac"
            else dest / "customizations.xml"
        )
        target.parent.mkdir(parents=True)
        shutil.copyfile(corpus / local, target)
        (dest / "Workflows").mkdir()
        flows = [
            f
            for f in manifest
            if f["repo"] == row["repo"]
            and f["kind"].startswith("flow")
            and f["path"].lower().startswith(prefix)
        ]
        for flow in flows:
            basename = flow["path"].rsplit("/", 1)[1]
            shutil.copyfile(corpus / flow["local_file"], dest / "Workflows" / basename)
        return dest

    return build


def customizations_xml(refs: list[dict[str, Any]], *, extra: str = "") -> str:
    """A small Customizations.xml declaring ``refs`` (logical, display, connector)."""
    items = []
    for ref in refs:
        display = ref.get("display")
        name = (
            ""
            if display is None
            else f"<connectionreferencedisplayname>{display}</connectionreferencedisplayname>"
        )
        connector = ref.get("connector")
        connector_xml = (
            "" if connector is None else f"<connectorid>{CONNECTOR}{connector}</connectorid>"
        )
        items.append(
            f'<connectionreference connectionreferencelogicalname="{ref["logical"]}">'
            f"{name}{connector_xml}<iscustomizable>1</iscustomizable>"
            "<statecode>0</statecode><statuscode>1</statuscode></connectionreference>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<ImportExportXml>'
        f"{extra}<connectionreferences>{''.join(items)}</connectionreferences></ImportExportXml>"
    )


def flow_json(refs: dict[str, tuple[str, str | None]], *, dangling: str | None = None) -> str:
    """A cloud flow whose connectionReferences map key -> (connector, logical name or None)."""
    entries = {
        key: {
            "api": {"name": connector},
            "connection": {"connectionReferenceLogicalName": logical} if logical else {},
            "runtimeSource": "embedded",
        }
        for key, (connector, logical) in refs.items()
    }
    actions = {
        f"Action_{i}": {
            "type": "OpenApiConnection",
            "inputs": {"host": {"apiId": "", "connectionName": key, "operationId": "Op"}},
        }
        for i, key in enumerate([*refs, *([dangling] if dangling else [])])
    }
    definition = {"$schema": "", "contentVersion": "1.0.0.0", "parameters": {}, "triggers": {}}
    definition["actions"] = actions
    doc = {"properties": {"connectionReferences": entries, "definition": definition}}
    return json.dumps({**doc, "schemaVersion": "1.0.0.0"})


@pytest.fixture
def make_solution(tmp_path: Path) -> Callable[..., Path]:
    """Write a tiny pac-layout solution: declared refs and flows (name -> JSON text or bytes)."""

    def build(
        refs: list[dict[str, Any]],
        flows: dict[str, str | bytes] | None = None,
        *,
        name: str = "sol",
        extra: str = "",
    ) -> Path:
        root = tmp_path / name
        (root / "Other").mkdir(parents=True)
        (root / "Other" / "Customizations.xml").write_text(
            customizations_xml(refs, extra=extra), encoding="utf-8"
        )
        (root / "Workflows").mkdir()
        for file_name, content in (flows or {}).items():
            path = root / "Workflows" / file_name
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        return root

    return build


@pytest.fixture
def xml_for() -> Callable[..., str]:
    """``customizations_xml`` for tests that write the file themselves."""
    return customizations_xml


@pytest.fixture
def flow_for() -> Callable[..., str]:
    """``flow_json`` for tests."""
    return flow_json
