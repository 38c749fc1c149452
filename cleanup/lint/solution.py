"""Read an unpacked solution folder and pac deployment-settings files, without judging them.

Layouts accepted (file and folder names matched case-insensitively):

* ``pac solution unpack`` / SolutionPackager: ``Other/Customizations.xml``, ``Other/Solution.xml``
  and ``Workflows/<Name>-<GUID>.json`` (the ``*.json.data.xml`` side files are metadata, not
  flows, so only names ending in ``.json`` are read as flows);
* an extracted solution zip: ``customizations.xml`` and ``solution.xml`` at the root and the
  same ``Workflows/`` folder;
* a ``pac solution init`` project folder whose ``src/`` holds the unpacked solution.

Encodings: UTF-8 with or without a BOM, UTF-16/32 with a BOM, UTF-16 without one (recognised by
its NUL bytes), and for XML whatever the ``<?xml … encoding=…?>`` declaration names. Trimmed
copies without a declaration are read as UTF-8.

XML safety: the stdlib ``xml.etree.ElementTree`` (expat) on Python 3.11 never fetches external
entities or DTDs, and expat >= 2.4.1 limits entity expansion. On top of that we refuse any
``<!DOCTYPE``/``<!ENTITY`` outright: a real Customizations.xml never has one, so a file that does
is not one we should read. That is why ``defusedxml`` is not a dependency.

Only ``<connectionreferences>`` directly under the root is read. The canvas-app element
``<CanvasApps><CanvasApp><ConnectionReferences>{json}</ConnectionReferences>`` differs only in
case and position and means something else (the connectors an app uses), so it is never
confused with it.
"""

from __future__ import annotations

import codecs
import glob
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cleanup.errors import CleanupError
from cleanup.snapshot.clientdata import ParsedFlow, decode_flow_file, parse_clientdata

__all__ = [
    "Declaration",
    "FlowFile",
    "LintInputError",
    "SettingsEntry",
    "SettingsFile",
    "Solution",
    "decode_xml",
    "expand_settings_paths",
    "parse_xml_text",
    "read_settings_file",
    "read_solution",
]

FLOW_OK = "cloud-flow"
FLOW_DESKTOP = "desktop-flow"
FLOW_UNREADABLE = "unreadable"

_XML_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF8, "utf-8"),
    # UTF-32 before UTF-16: the UTF-32 LE BOM starts with the UTF-16 LE one.
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# "<?" in UTF-16/32 without a BOM (XML 1.0 appendix F).
_XML_NUL_STARTS: tuple[tuple[bytes, str], ...] = (
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00?\x00", "utf-16-le"),
    (b"\x00<\x00?", "utf-16-be"),
    (b"<\x00", "utf-16-le"),
    (b"\x00<", "utf-16-be"),
)
_DECLARED_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_DTD = re.compile(r"<!(DOCTYPE|ENTITY)", re.IGNORECASE)
_GLOB_CHARS = re.compile(r"[*?\[]")


class LintInputError(CleanupError):
    """The solution folder or a settings file cannot be read at all."""

    exit_code = 2


@dataclass(frozen=True)
class Declaration:
    """One ``<connectionreference>`` the solution declares."""

    logical_name: str
    display_name: str | None
    connector_id: str | None  # "/providers/Microsoft.PowerApps/apis/shared_x"
    connector: str | None  # the API name, "shared_x"
    description: str | None = None


@dataclass(frozen=True)
class FlowFile:
    """One ``Workflows/*.json`` file: a cloud flow we read, a desktop flow, or unreadable."""

    file: str  # relative to the solution folder, with "/"
    kind: str  # FLOW_OK | FLOW_DESKTOP | FLOW_UNREADABLE
    parsed: ParsedFlow | None
    problem: str | None = None


@dataclass(frozen=True)
class Solution:
    """What the linter needs from an unpacked solution folder."""

    root: Path
    customizations_file: str
    unique_name: str | None
    friendly_name: str | None
    declarations: tuple[Declaration, ...]
    flows: tuple[FlowFile, ...]
    missing_flow_files: tuple[str, ...]  # listed in metadata, absent from Workflows/
    canvas_apps: int
    bots: int
    invalid_declarations: tuple[str, ...] = ()


@dataclass(frozen=True)
class SettingsEntry:
    """One ``ConnectionReferences`` entry of a deployment settings file."""

    position: int
    logical_name: str | None
    connector_id: str | None
    connection_id: str | None


@dataclass(frozen=True)
class SettingsFile:
    """A pac deployment settings file, as far as connection references go."""

    file: str
    entries: tuple[SettingsEntry, ...]


def read_solution(path: str | Path) -> Solution:
    """Read an unpacked solution folder; raise LintInputError if it is not one."""
    root = _solution_root(Path(path))
    custom = _customizations_path(root)
    doc = _parse_xml_file(custom, root)
    manifest = _solution_manifest(root)
    declarations, invalid = _declarations(doc)
    flow_paths = _flow_paths(root)
    listed = _listed_flow_files(doc, root)
    present = {p.name.casefold() for p in flow_paths}
    missing = tuple(sorted(n for n in listed if n.casefold() not in present))
    return Solution(
        root=root,
        customizations_file=_rel(custom, root),
        unique_name=manifest.get("unique_name"),
        friendly_name=manifest.get("friendly_name"),
        declarations=declarations,
        flows=tuple(_read_flow(p, root) for p in flow_paths),
        missing_flow_files=missing,
        canvas_apps=_canvas_app_count(doc, root),
        bots=_bot_count(root),
        invalid_declarations=invalid,
    )


def decode_xml(raw: bytes) -> str:
    """Decode XML bytes by BOM, NUL pattern or declared encoding; raise ValueError if impossible."""
    for bom, name in _XML_BOMS:
        if raw.startswith(bom):
            return raw[len(bom) :].decode(name)
    for start, name in _XML_NUL_STARTS:
        if raw.startswith(start):
            return raw.decode(name)
    match = _DECLARED_ENCODING.match(raw[:200])
    encoding = match.group(1).decode("ascii") if match else "utf-8"
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ValueError(f"the XML declaration names an unknown encoding {encoding!r}") from None
    # A declaration saying UTF-16 on bytes without NULs is a lie; trust the bytes.
    if encoding.lower().replace("_", "-").startswith(("utf-16", "utf-32")):
        encoding = "utf-8"
    return raw.decode(encoding)


def expand_settings_paths(patterns: Iterable[str | Path]) -> tuple[Path, ...]:
    """Expand ``--settings`` values: a file as is, a glob to its sorted matches."""
    out: list[Path] = []
    for pattern in patterns:
        text = str(pattern)
        if Path(text).is_file() or not _GLOB_CHARS.search(text):
            out.append(Path(text))
            continue
        matches = sorted(glob.glob(text, recursive=True))
        if not matches:
            raise LintInputError(f"No deployment settings file matches {text!r}.")
        out.extend(Path(m) for m in matches if Path(m).is_file())
    return tuple(dict.fromkeys(out))


def read_settings_file(path: str | Path) -> SettingsFile:
    """Read a pac deployment settings file; raise LintInputError if it is not one."""
    path = Path(path)
    try:
        text = decode_flow_file(path.read_bytes())
        doc = json.loads(text.removeprefix("\ufeff"))
    except OSError as exc:
        raise LintInputError(f"Cannot read deployment settings file {path}: {exc}.") from None
    except ValueError as exc:  # JSONDecodeError and encoding errors alike
        raise LintInputError(f"Deployment settings file {path} is not valid JSON: {exc}.") from None
    refs = _get_folded(doc, "ConnectionReferences") if isinstance(doc, dict) else None
    if not isinstance(refs, list):
        raise LintInputError(
            f"{path} has no 'ConnectionReferences' array, so it is not a pac deployment settings "
            "file (create one with 'pac solution create-settings'). ALM Accelerator "
            "'UserSettings' files and home-made formats are not supported."
        )
    entries = tuple(_settings_entry(i, item) for i, item in enumerate(refs))
    return SettingsFile(file=str(path), entries=entries)


def _settings_entry(position: int, item: Any) -> SettingsEntry:
    if not isinstance(item, dict):
        return SettingsEntry(position, None, None, None)
    return SettingsEntry(
        position,
        _text(_get_folded(item, "LogicalName")),
        _text(_get_folded(item, "ConnectorId")),
        _text(_get_folded(item, "ConnectionId")),
    )


def _get_folded(obj: dict, key: str) -> Any:
    """``obj[key]`` ignoring case, as pac and the Dataverse import do."""
    if key in obj:
        return obj[key]
    folded = key.casefold()
    for name, value in obj.items():
        if isinstance(name, str) and name.casefold() == folded:
            return value
    return None


def _given_root(path: Path) -> Path:
    if not path.exists():
        raise LintInputError(f"{path} does not exist.")
    if path.is_file():
        if path.suffix.lower() == ".zip":
            raise LintInputError(
                f"{path} is a zip file; extract it or run 'pac solution unpack' and lint the "
                "folder."
            )
        if path.name.lower() != "customizations.xml":
            raise LintInputError(f"{path} is a file; give the unpacked solution folder.")
        parent = path.parent
        return parent.parent if parent.name.lower() == "other" else parent
    return path


def _solution_root(path: Path) -> Path:
    """The folder holding Other/ (or customizations.xml); a 'pac solution init' project's src/."""
    root = _given_root(path)
    src = _child(root, "src", want_dir=True)
    if _find_customizations(root) is None and src and _find_customizations(src):
        return src
    return root


def _find_customizations(root: Path) -> Path | None:
    other = _child(root, "other", want_dir=True)
    found = _child(other, "customizations.xml") if other else None
    return found or _child(root, "customizations.xml")


def _customizations_path(root: Path) -> Path:
    found = _find_customizations(root)
    if found is None:
        raise LintInputError(
            f"No Other/Customizations.xml or customizations.xml in {root}. Give the folder "
            "'pac solution unpack' wrote (holding Other/ and Workflows/) or an extracted "
            "solution zip."
        )
    return found


def _child(folder: Path | None, name: str, *, want_dir: bool = False) -> Path | None:
    """The entry of ``folder`` called ``name`` in any case (exact spelling first)."""
    if folder is None or not folder.is_dir():
        return None
    exact = folder / name
    candidates = [exact] if exact.exists() else []
    candidates += sorted(p for p in folder.iterdir() if p.name.lower() == name.lower())
    for candidate in candidates:
        if candidate.is_dir() == want_dir:
            return candidate
    return None


def _children_dirs(folder: Path, name: str) -> list[Path]:
    # On a case-sensitive file system "Workflows" and "workflows" may both exist; read both.
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.lower() == name.lower())


def _parse_xml_file(path: Path, root: Path) -> ET.Element:
    rel = _rel(path, root)
    try:
        text = decode_xml(path.read_bytes())
    except OSError as exc:
        raise LintInputError(f"Cannot read {rel}: {exc}.") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise LintInputError(f"{rel} cannot be decoded: {exc}.") from None
    return parse_xml_text(text, rel)


def parse_xml_text(text: str, name: str) -> ET.Element:
    """Parse XML text, refusing DTDs and entity declarations; raise LintInputError if bad."""
    if _DTD.search(text):
        raise LintInputError(
            f"{name} contains a DOCTYPE or ENTITY declaration; a solution file never does, so it "
            "is not read."
        )
    try:
        return ET.fromstring(text.removeprefix("\ufeff"))
    except ET.ParseError as exc:
        raise LintInputError(f"{name} is not well-formed XML: {exc}.") from None


def _local(tag: Any) -> str:
    """The element name without a namespace ('{ns}name' -> 'name')."""
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _declarations(doc: ET.Element) -> tuple[tuple[Declaration, ...], tuple[str, ...]]:
    out: list[Declaration] = []
    invalid: list[str] = []
    for block in doc:
        # Exact case on purpose: <ConnectionReferences> belongs to canvas apps.
        if _local(block.tag) != "connectionreferences":
            continue
        for position, element in enumerate(block, start=1):
            if _local(element.tag) != "connectionreference":
                continue
            declaration = _declaration(element)
            if declaration is None:
                invalid.append(f"<connectionreference> #{position} has no logical name")
            else:
                out.append(declaration)
    return tuple(out), tuple(invalid)


def _declaration(element: ET.Element) -> Declaration | None:
    logical = _text(element.get("connectionreferencelogicalname"))
    fields = {_local(child.tag).lower(): child for child in element}
    logical = logical or _element_text(fields.get("connectionreferencelogicalname"))
    if logical is None:
        return None
    # Only the direct <connectorid>: custom connectors nest another one, a GUID, under
    # <customconnectorid>.
    connector_id = _element_text(fields.get("connectorid"))
    return Declaration(
        logical_name=logical.strip(),
        display_name=_element_text(fields.get("connectionreferencedisplayname"), strip=False),
        connector_id=connector_id,
        connector=_api_name(connector_id),
        description=_element_text(fields.get("description")),
    )


def _element_text(element: ET.Element | None, *, strip: bool = True) -> str | None:
    if element is None or element.text is None:
        return None
    value = element.text.strip() if strip else element.text
    return value if value.strip() else None


def _api_name(connector_id: str | None) -> str | None:
    if not connector_id:
        return None
    return _text(connector_id.strip().rstrip("/").rpartition("/")[2])


def _solution_manifest(root: Path) -> dict[str, str]:
    """Unique and friendly name from Solution.xml, if there is one we can read."""
    other = _child(root, "other", want_dir=True)
    path = (_child(other, "solution.xml") if other else None) or _child(root, "solution.xml")
    if path is None:
        return {}
    try:
        doc = _parse_xml_file(path, root)
    except LintInputError:
        return {}  # the names only improve messages; a bad Solution.xml is not ours to judge
    manifest = next((e for e in doc.iter() if _local(e.tag) == "SolutionManifest"), None)
    if manifest is None:
        return {}
    out: dict[str, str] = {}
    unique = next((e for e in manifest if _local(e.tag) == "UniqueName"), None)
    if (value := _element_text(unique)) is not None:
        out["unique_name"] = value
    for element in manifest.iter():
        if _local(element.tag) == "LocalizedName" and _text(element.get("description")):
            out["friendly_name"] = element.get("description", "").strip()
            break
    return out


def _flow_paths(root: Path) -> list[Path]:
    paths: list[Path] = []
    for folder in _children_dirs(root, "workflows"):
        paths += [p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(".json")]
    return sorted(paths, key=lambda p: (p.name.lower(), str(p)))


def _read_flow(path: Path, root: Path) -> FlowFile:
    rel = _rel(path, root)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return FlowFile(rel, FLOW_UNREADABLE, None, f"cannot be read: {exc}")
    if not raw.strip():
        return FlowFile(rel, FLOW_UNREADABLE, None, "the file is empty")
    try:
        parsed = parse_clientdata(decode_flow_file(raw))
    except ValueError as exc:
        return FlowFile(rel, FLOW_UNREADABLE, None, f"cannot be decoded: {exc}")
    if parsed.status == "ok":
        return FlowFile(rel, FLOW_OK, parsed)
    if (parsed.error or "").startswith("desktop flow"):
        return FlowFile(rel, FLOW_DESKTOP, parsed, parsed.error)
    return FlowFile(rel, FLOW_UNREADABLE, parsed, parsed.error or parsed.status)


def _listed_flow_files(doc: ET.Element, root: Path) -> set[str]:
    """Flow file names the metadata lists: raw-zip customizations or pac .json.data.xml files."""
    names = {_json_file_name(e) for e in doc.iter() if _local(e.tag) == "JsonFileName"}
    for folder in _children_dirs(root, "workflows"):
        for side in folder.iterdir():
            if side.name.lower().endswith(".json.data.xml"):
                names.add(side.name[: -len(".data.xml")])
    return {n for n in names if n}


def _json_file_name(element: ET.Element) -> str:
    value = (element.text or "").strip().replace("\\", "/")
    return value.rpartition("/")[2]


def _canvas_app_count(doc: ET.Element, root: Path) -> int:
    in_xml = sum(1 for e in doc.iter() if _local(e.tag) == "CanvasApp")
    folder = _child(root, "canvasapps", want_dir=True)
    on_disk = sum(1 for p in folder.iterdir() if p.suffix.lower() == ".msapp") if folder else 0
    return max(in_xml, on_disk)


def _bot_count(root: Path) -> int:
    folder = _child(root, "bots", want_dir=True)
    return sum(1 for p in folder.iterdir() if p.is_dir()) if folder else 0


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None
