"""The offline checks: pure functions from a read solution (and settings files) to findings.

Logical names are compared case-insensitively, as Dataverse does; a spelling that differs only
in case is matched and mentioned in an info note.

Usage is only as complete as the flows we could read. When a flow file is unreadable or missing,
"declared but unused" is not reported at all (one info note says so instead), because that flow
might use any reference: the same rule the online ``unused`` rule follows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cleanup.lint.solution import (
    FLOW_DESKTOP,
    FLOW_OK,
    FLOW_UNREADABLE,
    Declaration,
    SettingsFile,
    Solution,
)
from cleanup.rules.naming import (
    SERVICE_PRINCIPAL,
    UNBOUND,
    USER,
    check_name,
    connector_display_name,
)
from cleanup.rules.settings import NamingSettings

__all__ = ["CHECKS", "SEVERITIES", "LintFinding", "LintResult", "run_checks"]

HIGH, MEDIUM, LOW, INFO = "high", "medium", "low", "info"
SEVERITIES = (HIGH, MEDIUM, LOW, INFO)
# Check name -> title, in the order a person should read them.
CHECKS: dict[str, str] = {
    "undeclared": "Used by a flow but not declared in the solution",
    "flow-connector-mismatch": "A flow uses a reference with a different connector",
    "settings-missing": "Deployment settings miss a declared reference",
    "settings-connector-mismatch": "Deployment settings give a different connector",
    "settings-invalid": "Deployment settings entry is invalid or repeated",
    "unreadable-flow": "Flow file cannot be read",
    "missing-flow-file": "Flow listed in the solution metadata but its file is missing",
    "invalid-declaration": "Connection reference declaration is invalid",
    "dangling-key": "A flow action names a connection key the flow does not declare",
    "duplicate": "Several references for the same connector",
    "unused": "Declared but not used by any flow in the solution",
    "settings-extra": "Deployment settings list a reference the solution does not declare",
    "bad-name": "Display name does not follow the naming convention",
    "usage-unknown": "Unused references not reported: flow usage is incomplete",
    "direct-connection": "Flow uses connections directly, not connection references",
    "desktop-flow": "Desktop flow not inspected",
    "case-mismatch": "Logical name spelled with different case",
}
_CHECK_ORDER = tuple(CHECKS)


@dataclass(frozen=True)
class LintFinding:
    """One thing the linter found, with where it is and how to fix it."""

    check: str
    severity: str
    logical_name: str | None
    file: str
    detail: str
    suggested_fix: str
    related_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class LintResult:
    """All findings for one solution folder, with what was read."""

    solution: str
    solution_name: str | None
    customizations_file: str
    declared: int
    flows_read: int
    settings_files: tuple[str, ...]
    findings: tuple[LintFinding, ...] = field(default=())

    @property
    def problems(self) -> tuple[LintFinding, ...]:
        """Findings that are not info notes."""
        return tuple(f for f in self.findings if f.severity != INFO)

    @property
    def exit_code(self) -> int:
        """0 when nothing but info notes was found, 1 otherwise."""
        return self.exit_code_at(LOW)

    def exit_code_at(self, fail_on: str) -> int:
        """1 when a finding is at least as severe as ``fail_on`` (high, medium or low), else 0."""
        worst_allowed = SEVERITIES.index(fail_on)
        return int(any(SEVERITIES.index(f.severity) <= worst_allowed for f in self.problems))

    def counts(self) -> dict:
        """Totals by severity and by check (every key always present, for pipelines)."""
        by_severity = dict.fromkeys(SEVERITIES, 0)
        by_check = dict.fromkeys(CHECKS, 0)
        for finding in self.findings:
            by_severity[finding.severity] += 1
            by_check[finding.check] += 1
        return {
            "total": len(self.findings),
            "problems": len(self.problems),
            "by_severity": by_severity,
            "by_check": by_check,
        }


@dataclass
class _Use:
    """How the solution's flows use one logical name (folded)."""

    spellings: set[str] = field(default_factory=set)
    files: list[str] = field(default_factory=list)
    connectors: set[str] = field(default_factory=set)


def run_checks(
    solution: Solution,
    settings: Sequence[SettingsFile] = (),
    naming: NamingSettings | None = None,
) -> tuple[LintFinding, ...]:
    """Run every check and return the findings, most severe first."""
    naming = naming or NamingSettings()
    uses = _uses(solution)
    findings = [
        *check_flow_files(solution),
        *check_undeclared(solution, uses),
        *check_flow_connectors(solution, uses),
        *check_unused(solution, uses),
        *check_duplicates(solution),
        *check_names(solution, naming),
        *check_direct_connections(solution),
        *check_dangling_keys(solution),
    ]
    for settings_file in settings:
        findings += check_settings(solution, settings_file, uses)
    return tuple(sorted(findings, key=_order))


def _order(finding: LintFinding) -> tuple:
    return (
        SEVERITIES.index(finding.severity),
        _CHECK_ORDER.index(finding.check),
        (finding.logical_name or "").casefold(),
        finding.file,
    )


def _uses(solution: Solution) -> dict[str, _Use]:
    uses: dict[str, _Use] = defaultdict(_Use)
    for flow in solution.flows:
        if flow.kind != FLOW_OK or flow.parsed is None:
            continue
        for ref in flow.parsed.references:
            if not ref.logical_name:
                continue
            use = uses[ref.logical_name.casefold()]
            use.spellings.add(ref.logical_name)
            if flow.file not in use.files:
                use.files.append(flow.file)
            if ref.connector:
                use.connectors.add(ref.connector)
    return dict(uses)


def _declared(solution: Solution) -> dict[str, Declaration]:
    """Declarations by folded logical name (the first one where a name is declared twice)."""
    out: dict[str, Declaration] = {}
    for declaration in solution.declarations:
        out.setdefault(declaration.logical_name.casefold(), declaration)
    return out


def _connector_label(api_name: str | None) -> str:
    return connector_display_name(api_name) if api_name else "unknown connector"


def _names(items: Iterable[str], limit: int = 5) -> str:
    items = list(items)
    shown = ", ".join(f"'{i}'" for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def check_flow_files(solution: Solution) -> list[LintFinding]:
    """Report flow files that cannot be read, missing ones, desktop flows and bad declarations."""
    out: list[LintFinding] = []
    for flow in solution.flows:
        if flow.kind == FLOW_UNREADABLE:
            out.append(_unreadable(flow.file, flow.problem or "unknown problem"))
        elif flow.kind == FLOW_DESKTOP:
            out.append(_desktop(flow.file))
    for name in solution.missing_flow_files:
        out.append(
            LintFinding(
                "missing-flow-file",
                MEDIUM,
                None,
                f"Workflows/{name}",
                "The solution metadata lists this flow, but Workflows/ has no such file, so "
                "what it uses is unknown.",
                "Unpack or check out the solution again; the folder looks incomplete.",
            )
        )
    for problem in solution.invalid_declarations:
        out.append(
            LintFinding(
                "invalid-declaration",
                MEDIUM,
                None,
                solution.customizations_file,
                f"{problem}; it is ignored.",
                "Export and unpack the solution again; do not edit Customizations.xml by hand.",
            )
        )
    return out


def _unreadable(file: str, problem: str) -> LintFinding:
    return LintFinding(
        "unreadable-flow",
        MEDIUM,
        None,
        file,
        f"This flow file cannot be read ({problem}), so which references it uses is unknown.",
        "Export and unpack the solution again, or fix the file; an importer would reject it.",
    )


def _desktop(file: str) -> LintFinding:
    return LintFinding(
        "desktop-flow",
        INFO,
        None,
        file,
        "A desktop flow (its definition is a packaged script), not a cloud flow; skipped. "
        "Connector actions inside it are not counted as usage.",
        "Nothing to do.",
    )


def check_undeclared(solution: Solution, uses: dict[str, _Use]) -> list[LintFinding]:
    """Report logical names flows use that the solution does not declare."""
    declared = _declared(solution)
    out: list[LintFinding] = []
    for folded, use in uses.items():
        declaration = declared.get(folded)
        if declaration is not None:
            out += _case_notes(declaration, use)
            continue
        name = sorted(use.spellings)[0]
        connectors = ", ".join(sorted(_connector_label(c) for c in use.connectors)) or "unknown"
        out.append(
            LintFinding(
                "undeclared",
                HIGH,
                name,
                use.files[0],
                f"{len(use.files)} flow(s) use connection reference '{name}' ({connectors}), "
                "but the solution does not declare it. Import fails where the target "
                "environment has no reference with this logical name, and where it has one "
                "(from another solution) the flow silently binds to that one.",
                "Add the existing connection reference to this solution in the source "
                "environment (Add existing > Connection reference) and export again, or change "
                "the flow to use a reference the solution declares.",
                related_files=tuple(use.files),
            )
        )
    return out


def _case_notes(declaration: Declaration, use: _Use) -> list[LintFinding]:
    other = sorted(s for s in use.spellings if s != declaration.logical_name)
    if not other:
        return []
    return [
        LintFinding(
            "case-mismatch",
            INFO,
            declaration.logical_name,
            use.files[0],
            f"Flows spell it {_names(other)}; Dataverse matches logical names without regard "
            "to case, so this works.",
            "Nothing to do; re-export to make the spellings agree if it bothers you.",
            related_files=tuple(use.files),
        )
    ]


def check_flow_connectors(solution: Solution, uses: dict[str, _Use]) -> list[LintFinding]:
    """Report flows whose entry for a declared reference names another connector."""
    out: list[LintFinding] = []
    for folded, declaration in _declared(solution).items():
        use = uses.get(folded)
        if use is None or not declaration.connector:
            continue
        wrong = sorted(
            c for c in use.connectors if c.casefold() != declaration.connector.casefold()
        )
        if not wrong:
            continue
        out.append(
            LintFinding(
                "flow-connector-mismatch",
                HIGH,
                declaration.logical_name,
                use.files[0],
                f"Flows use '{declaration.logical_name}' for {_names(wrong)}, but the solution "
                f"declares it for {declaration.connector}. The flow cannot run on that "
                "connection.",
                "Point the flow's connection at a reference for the right connector and export "
                "again.",
                related_files=tuple(use.files),
            )
        )
    return out


def _usage_gaps(solution: Solution) -> list[str]:
    gaps = [f.file for f in solution.flows if f.kind == FLOW_UNREADABLE]
    return gaps + [f"Workflows/{n}" for n in solution.missing_flow_files]


def check_unused(solution: Solution, uses: dict[str, _Use]) -> list[LintFinding]:
    """Report declared references no cloud flow uses, unless usage is incomplete."""
    candidates = [d for k, d in _declared(solution).items() if k not in uses]
    if not candidates:
        return []
    gaps = _usage_gaps(solution)
    if gaps:
        return [_usage_unknown(solution, candidates, gaps)]
    caveat = _unused_caveat(solution)
    return [
        LintFinding(
            "unused",
            LOW,
            d.logical_name,
            solution.customizations_file,
            f"Declared ({_connector_label(d.connector)}), but no cloud flow in this solution "
            f"uses it. {caveat}",
            "If no canvas app or bot uses it either, remove it from the solution in the source "
            "environment and export again; if something outside the flows needs it, keep it.",
        )
        for d in candidates
    ]


def _unused_caveat(solution: Solution) -> str:
    seen = []
    if solution.canvas_apps:
        seen.append(f"{solution.canvas_apps} canvas app(s)")
    if solution.bots:
        seen.append(f"{solution.bots} bot(s)")
    desktop = sum(1 for f in solution.flows if f.kind == FLOW_DESKTOP)
    if desktop:
        seen.append(f"{desktop} desktop flow(s)")
    text = (
        "Canvas apps and Copilot Studio bots can use connection references too, and this "
        "offline check cannot see that"
    )
    if seen:
        return f"{text}; this solution contains {' and '.join(seen)}."
    return f"{text}."


def _usage_unknown(
    solution: Solution, candidates: list[Declaration], gaps: list[str]
) -> LintFinding:
    names = [d.logical_name for d in candidates]
    return LintFinding(
        "usage-unknown",
        INFO,
        None,
        solution.customizations_file,
        f"{len(names)} declared reference(s) ({_names(names)}) look unused, but {_names(gaps, 3)} "
        "could not be read and might use any of them, so none is reported as unused.",
        "Fix the unreadable flow file(s) and lint again.",
        related_files=tuple(gaps),
    )


def check_duplicates(solution: Solution) -> list[LintFinding]:
    """Report references declared twice, and several references for one connector."""
    out: list[LintFinding] = []
    by_name: dict[str, list[Declaration]] = defaultdict(list)
    for declaration in solution.declarations:
        by_name[declaration.logical_name.casefold()].append(declaration)
    for group in by_name.values():
        if len(group) > 1:
            out.append(_declared_twice(solution, group))
    by_connector: dict[str, list[Declaration]] = defaultdict(list)
    for declaration in _declared(solution).values():
        if declaration.connector:
            by_connector[declaration.connector.casefold()].append(declaration)
    for group in by_connector.values():
        if len(group) > 1:
            out += [_same_connector(solution, d, group) for d in group]
    return out


def _declared_twice(solution: Solution, group: list[Declaration]) -> LintFinding:
    return LintFinding(
        "duplicate",
        MEDIUM,
        group[0].logical_name,
        solution.customizations_file,
        f"Declared {len(group)} times in the same file; only the first is used by this check.",
        "Export and unpack the solution again; do not merge Customizations.xml by hand.",
    )


def _same_connector(
    solution: Solution, declaration: Declaration, group: list[Declaration]
) -> LintFinding:
    others = [d.logical_name for d in group if d is not declaration]
    label = _connector_label(declaration.connector)
    return LintFinding(
        "duplicate",
        MEDIUM,
        declaration.logical_name,
        solution.customizations_file,
        f"Same connector ({label}) as {_names(others)} in this solution; offline we cannot "
        "know connections, so check whether they are bound to the same connection.",
        "If they are bound to the same connection (or should be), keep one, move the flows to "
        "it and remove the others from the solution; if they deliberately use different "
        "connections (e.g. a service account and a user), name them so that is clear.",
    )


def check_names(solution: Solution, naming: NamingSettings) -> list[LintFinding]:
    """Report display names that do not follow the naming convention."""
    out: list[LintFinding] = []
    for declaration in _declared(solution).values():
        area = _area(declaration.logical_name, solution, naming)
        verdict = check_name(
            declaration.display_name,
            declaration.logical_name,
            declaration.connector,
            None,  # offline there is no connection, so no identity to check the type word against
            area,
            naming,
        )
        if verdict.compliant:
            continue
        out.append(
            LintFinding(
                "bad-name",
                MEDIUM if verdict.type_lies else LOW,
                declaration.logical_name,
                solution.customizations_file,
                f"'{declaration.display_name or ''}': {' '.join(verdict.problems)}",
                _rename_fix(verdict.proposed),
            )
        )
    return out


def _rename_fix(proposed: str) -> str:
    fix = f"Rename the display name to '{proposed}' in the source environment"
    fix += " (the logical name stays)."
    if UNBOUND.casefold() not in proposed.casefold():
        return fix
    # Offline there is no connection, so the proposal cannot know the type; say what to put.
    return (
        f"{fix} Replace '{UNBOUND}' with '{SERVICE_PRINCIPAL}' or '{USER}', after the identity of "
        "the connection it is bound to in each environment."
    )


def _area(logical_name: str, solution: Solution, naming: NamingSettings) -> str | None:
    """The area for a proposed name: area_map by solution or prefix, else the solution name."""
    lookup = {str(k).casefold(): v for k, v in naming.area_map.items()}
    prefix = logical_name.split("_", 1)[0]
    for key in (solution.unique_name, prefix):
        if key and key.casefold() in lookup:
            return lookup[key.casefold()]
    return solution.friendly_name or solution.unique_name


def check_direct_connections(solution: Solution) -> list[LintFinding]:
    """Note flows whose connectionReferences entries carry no logical name."""
    out: list[LintFinding] = []
    for flow in solution.flows:
        if flow.kind != FLOW_OK or flow.parsed is None:
            continue
        direct = [r for r in flow.parsed.references if not r.logical_name]
        if not direct:
            continue
        keys = ", ".join(f"'{r.key}' ({_connector_label(r.connector)})" for r in direct)
        out.append(
            LintFinding(
                "direct-connection",
                INFO,
                None,
                flow.file,
                f"Uses connections directly, not a connection reference: {keys}. Import asks "
                "for a connection for each, and the flow cannot be rebound by deployment "
                "settings.",
                "In the solution, run the flow checker's 'Remove connections so connection "
                "references can be added', save, and export again.",
            )
        )
    return out


def check_dangling_keys(solution: Solution) -> list[LintFinding]:
    """Report actions that name a connection key missing from the flow's connectionReferences."""
    out: list[LintFinding] = []
    for flow in solution.flows:
        if flow.kind != FLOW_OK or flow.parsed is None or not flow.parsed.dangling_keys:
            continue
        out.append(
            LintFinding(
                "dangling-key",
                MEDIUM,
                None,
                flow.file,
                f"Actions use connection key(s) {_names(flow.parsed.dangling_keys)}, which the "
                "flow's connectionReferences do not list; those actions fail at run time.",
                "Open the flow, re-select the connection on those actions, save and export again.",
            )
        )
    return out


def check_settings(
    solution: Solution, settings: SettingsFile, uses: dict[str, _Use]
) -> list[LintFinding]:
    """Compare a deployment settings file with the solution's declarations."""
    declared = _declared(solution)
    listed: dict[str, list] = defaultdict(list)
    out: list[LintFinding] = []
    for entry in settings.entries:
        if entry.logical_name is None:
            out.append(
                _settings_invalid(
                    settings, None, f"Entry #{entry.position + 1} has no LogicalName."
                )
            )
            continue
        listed[entry.logical_name.casefold()].append(entry)
    for folded, entries in listed.items():
        name = entries[0].logical_name
        if len(entries) > 1:
            out.append(
                _settings_invalid(settings, name, f"'{name}' is listed {len(entries)} times.")
            )
        declaration = declared.get(folded)
        if declaration is None:
            out.append(_settings_extra(settings, name))
        else:
            out += _settings_connector(settings, declaration, entries[0].connector_id)
    for folded, declaration in declared.items():
        if folded not in listed:
            out.append(_settings_missing(settings, declaration, uses.get(folded)))
    return out


def _settings_invalid(settings: SettingsFile, name: str | None, problem: str) -> LintFinding:
    return LintFinding(
        "settings-invalid",
        MEDIUM,
        name,
        settings.file,
        f"{problem} pac uses one entry per logical name; which one wins is not defined.",
        "Keep exactly one entry per connection reference with its LogicalName, ConnectionId "
        "and ConnectorId.",
    )


def _settings_extra(settings: SettingsFile, name: str | None) -> LintFinding:
    return LintFinding(
        "settings-extra",
        LOW,
        name,
        settings.file,
        "Listed in the deployment settings, but the solution does not declare it: a stale "
        "entry, or one copied from another solution's settings.",
        "Remove the entry, or regenerate the file with 'pac solution create-settings'.",
    )


def _settings_connector(
    settings: SettingsFile, declaration: Declaration, connector_id: str | None
) -> list[LintFinding]:
    if not declaration.connector_id or _same_connector_id(connector_id, declaration.connector_id):
        return []
    return [
        LintFinding(
            "settings-connector-mismatch",
            HIGH,
            declaration.logical_name,
            settings.file,
            f"ConnectorId is '{connector_id or ''}', but the solution declares "
            f"'{declaration.connector_id}'. The import binds a connection of the wrong "
            "connector, or fails.",
            f"Set ConnectorId to '{declaration.connector_id}' and a ConnectionId of that "
            "connector.",
        )
    ]


def _same_connector_id(left: str | None, right: str | None) -> bool:
    def norm(value: str | None) -> str:
        return "/" + (value or "").strip().strip("/").casefold()

    return norm(left) == norm(right)


def _settings_missing(
    settings: SettingsFile, declaration: Declaration, use: _Use | None
) -> LintFinding:
    used = f" {len(use.files)} flow(s) use it and stay off." if use else ""
    entry = (
        f'{{"LogicalName": "{declaration.logical_name}", "ConnectionId": "", '
        f'"ConnectorId": "{declaration.connector_id or ""}"}}'
    )
    return LintFinding(
        "settings-missing",
        HIGH,
        declaration.logical_name,
        settings.file,
        "Declared in the solution but missing from these deployment settings, so the import "
        f"leaves it without a connection.{used}",
        f"Add {entry} to ConnectionReferences (with the target connection's id), or "
        "regenerate the file with 'pac solution create-settings'.",
    )
