"""The clientdata parser against every real flow in shared/corpus, checked against MANIFEST.tsv.

MANIFEST.tsv's notes were computed by a separate script. What each note counts, as established by
reading the notes next to the files:

* ``actions=N``: every action at any depth (through actions / else / cases / default), of any
  type (Compose and child-flow calls included), **not** counting triggers.
  So ``N == total_actions - len(definition.triggers)``.
* ``maxdepth=N``: depth of the deepest action, top-level actions being 1. Triggers sit at depth 1.
* ``host-forms=host.connectionName:A,host.connection.name:B,host.workflow(child):C``: A and B count
  actions **and triggers** naming a connection key in that form; C counts child-flow calls, which
  name no connection. So ``A + B == action_count``. A string ``host.connection`` is not counted.
* ``connectors=``: distinct connector API names (``api.name``, or the legacy ``id``), ``none``
  if there are no references.
* ``suffixed-keys=``, ``custom-connector-keys=``, ``refs-without-connectionReferenceLogicalName=``,
  ``declared-but-unused-refs=``, ``same-logicalname-under-multiple-keys=``: sets of keys (or of
  logical names) with that property. ``runtimeSource/source=``: the set of values, original case.
* The notes carry no per-file reference count and no dangling keys. The per-file reference count is
  checked as a lower bound from the key sets above, and exactly in aggregate against SUMMARY.md
  §3.2/§3.3, whose totals were computed by the same independent script.

Every disagreement must be listed in ``KNOWN_DIFFERENCES`` with the reason; an unexplained one
fails, and so does an entry that no longer disagrees (stale).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cleanup.snapshot.clientdata import ParsedFlow, decode_flow_file, parse_clientdata

# (local file name under flows/, check) -> why our parser and MANIFEST.tsv disagree.
KNOWN_DIFFERENCES: dict[tuple[str, str], str] = {
    (
        "Joeslinky__OpenAI_ChatGPT_Teams__8185f5b8-540a-4853-a203-4d12f66f7ae8__definition.json",
        "host-forms",
    ): "the Http action's host.connection is the string 'shared_office365'; we count it "
    "(11), the manifest only counts host.connectionName / host.connection.name (10)",
    (
        "Joeslinky__OpenAI_ChatGPT_Teams__8185f5b8-540a-4853-a203-4d12f66f7ae8__definition.json",
        "dangling-keys",
    ): "that string host.connection names 'shared_office365', which connectionReferences does "
    "not declare (SUMMARY.md §7.8); the manifest notes never list dangling keys",
}

_SUFFIXED = re.compile(r"[_-]\d+$")
_CUSTOM = "-5f"  # custom-connector keys: shared_<prefix>-5f<name>-5f<hash>
_ACTIONS_NOTE = re.compile(r"\bactions=(\d+) maxdepth=(\d+)")


@dataclass(frozen=True)
class FlowCase:
    """One flows/ row of MANIFEST.tsv with its file read and parsed."""

    name: str
    kind: str
    notes: str = field(repr=False)
    fields: dict[str, str] = field(repr=False)
    raw: bytes = field(repr=False)
    parsed: ParsedFlow = field(repr=False)
    triggers: int = field(repr=False)

    def listed(self, field: str) -> set[str]:
        """A comma-separated note as a set ('none' meaning empty)."""
        return set(filter(None, self.fields.get(field, "").split(","))) - {"none"}


def _manifest_rows(corpus: Path) -> list[list[str]]:
    lines = (corpus / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()
    return [line.split("\t") for line in lines[1:] if line.strip()]


def _note_fields(notes: str) -> dict[str, str]:
    fields = {}
    for part in notes.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep:
            fields[key] = value
    return fields


def _trigger_count(text: str) -> int:
    # Read independently of the parser: the manifest's actions= leaves triggers out.
    triggers = json.loads(text.lstrip("\ufeff"))["properties"]["definition"].get("triggers")
    return len(triggers) if isinstance(triggers, dict) else 0


@pytest.fixture(scope="module")
def flows(corpus_dir: Path) -> list[FlowCase]:
    """Every flows/ row, decoded and parsed once for all the checks below."""
    cases = []
    for local_file, _repo, _path, _commit, kind, notes in _manifest_rows(corpus_dir):
        if not local_file.startswith("flows/"):
            continue
        raw = (corpus_dir / local_file).read_bytes()
        text = decode_flow_file(raw)
        name = local_file.removeprefix("flows/")
        parsed = parse_clientdata(text)
        fields = _note_fields(notes)
        cases.append(FlowCase(name, kind, notes, fields, raw, parsed, _trigger_count(text)))
    return cases


def test_manifest_covers_every_flow_file(corpus_dir: Path, flows: list[FlowCase]) -> None:
    on_disk = {p.name for p in (corpus_dir / "flows").iterdir()}
    assert on_disk == {c.name for c in flows}
    assert len(flows) == 441
    assert Counter(c.kind for c in flows) == {
        "flow": 430,
        "flow-legacy-package(definition.json)": 11,
    }


def test_every_flow_parses_ok(flows: list[FlowCase]) -> None:
    failures = {c.name: (c.parsed.status, c.parsed.error) for c in flows if c.parsed.status != "ok"}
    assert failures == {}


def test_encodings_match_manifest(flows: list[FlowCase]) -> None:
    utf16 = {c.name for c in flows if c.raw.startswith(b"\xff\xfe")}
    utf8_bom = {c.name for c in flows if c.raw.startswith(b"\xef\xbb\xbf")}
    assert utf16 == {c.name for c in flows if "ENCODING UTF-16LE with BOM" in c.notes}
    assert utf8_bom == {c.name for c in flows if "UTF-8 BOM" in c.notes}
    assert (len(utf16), len(utf8_bom)) == (27, 108)


def _host_forms(case: FlowCase) -> int:
    forms = dict(part.rsplit(":", 1) for part in case.listed("host-forms"))
    return int(forms.get("host.connectionName", 0)) + int(forms.get("host.connection.name", 0))


def _comparisons(case: FlowCase) -> dict[str, tuple[Any, Any]]:
    """check -> (ours, manifest's) for one flow."""
    p = case.parsed
    refs = p.references
    keys = {r.key for r in refs}
    note = _ACTIONS_NOTE.search(case.notes)
    assert note, f"{case.name}: no actions=/maxdepth= note"
    logical = Counter(r.logical_name for r in refs if r.logical_name)
    legacy = case.kind.startswith("flow-legacy")
    lower_bound = case.listed("suffixed-keys") | case.listed("custom-connector-keys")
    lower_bound |= case.listed("refs-without-connectionReferenceLogicalName")
    return {
        "actions": (p.total_actions - case.triggers, int(note[1])),
        "maxdepth": (p.max_depth, int(note[2])),
        "host-forms": (p.action_count, _host_forms(case)),
        "connectors": ({r.connector for r in refs}, case.listed("connectors")),
        "suffixed-keys": ({k for k in keys if _SUFFIXED.search(k)}, case.listed("suffixed-keys")),
        "custom-connector-keys": (
            {k for k in keys if _CUSTOM in k.lower()},
            case.listed("custom-connector-keys"),
        ),
        "refs-without-logical-name": (
            {r.key for r in refs if r.logical_name is None},
            keys if legacy else case.listed("refs-without-connectionReferenceLogicalName"),
        ),
        "runtime-sources": (
            {r.runtime_source for r in refs} - {None},
            {v.lower() for v in case.listed("runtimeSource/source")},
        ),
        "declared-but-unused": (
            {r.key for r in refs if r.action_count == 0},
            case.listed("declared-but-unused-refs"),
        ),
        "same-logical-name-under-multiple-keys": (
            {name for name, n in logical.items() if n > 1},
            case.listed("same-logicalname-under-multiple-keys"),
        ),
        "dangling-keys": (p.dangling_keys, ()),
        "reference-count-lower-bound": (
            len(refs) >= max(len(lower_bound), len(case.listed("connectors")))
            and lower_bound <= keys,
            True,
        ),
    }


def test_counts_match_manifest_or_are_explained(flows: list[FlowCase]) -> None:
    disagreements = {
        (case.name, check): f"ours={ours!r} manifest={theirs!r}"
        for case in flows
        for check, (ours, theirs) in _comparisons(case).items()
        if ours != theirs
    }
    unexplained = {k: v for k, v in disagreements.items() if k not in KNOWN_DIFFERENCES}
    stale = sorted(k for k in KNOWN_DIFFERENCES if k not in disagreements)
    assert unexplained == {}, "unexplained disagreements with MANIFEST.tsv"
    assert stale == [], "KNOWN_DIFFERENCES entries that no longer disagree"


def test_aggregates_match_summary(flows: list[FlowCase]) -> None:
    """The totals of SUMMARY.md §3.2 and §3.3 (the same independent count as MANIFEST.tsv)."""
    solution = [r for c in flows if c.kind == "flow" for r in c.parsed.references]
    legacy = [r for c in flows if c.kind != "flow" for r in c.parsed.references]
    assert (len(solution), len(legacy)) == (838, 17)
    assert sum(r.logical_name is None for r in solution) == 186
    assert Counter(r.runtime_source for r in solution) == {"embedded": 766, "invoker": 72}
    assert Counter(r.runtime_source for r in legacy) == {"embedded": 12, "invoker": 5}
    assert all(r.logical_name is None and r.connection_name for r in legacy)
    assert sum(1 for c in flows if not c.parsed.references) == 49  # legacy packages included
    patterns = Counter(_key_pattern(r.key) for r in solution + legacy)
    assert patterns == {"plain": 555, "_N": 271, "-N": 22, "custom": 7}


def _key_pattern(key: str) -> str:
    if _CUSTOM in key.lower():
        return "custom"
    match = _SUFFIXED.search(key)
    return "plain" if not match else ("_N" if match[0][0] == "_" else "-N")


def test_other_files_are_not_cloud_flows(corpus_dir: Path) -> None:
    statuses = {}
    for local_file, *_rest, kind, _notes in _manifest_rows(corpus_dir):
        if local_file.startswith("other/"):
            parsed = parse_clientdata(decode_flow_file((corpus_dir / local_file).read_bytes()))
            statuses[local_file] = (kind, parsed.status)
    desktop = {f: s for f, (k, s) in statuses.items() if k == "desktopflow-json"}
    assert len(desktop) == 2
    assert set(desktop.values()) == {"not-a-cloud-flow"}
    # The rest (settings, canvas Connections.json, XML) must not pass for flows either.
    assert all(s != "ok" for _k, s in statuses.values())
