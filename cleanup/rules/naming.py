"""``bad-name``: display names against the naming convention, with a proposed compliant name.

The value-level core, ``check_name``, is shared with the offline solution linter and the
consolidation's "compliant name" criterion; the rule only resolves each reference's area and
connection identity and calls it. The default convention is ``{area} – {connector} – {type}``
with an en dash or a hyphen between parts, e.g. ``Absence – Dataverse – Service Principal``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from cleanup.consolidate import sort_codes, unique_first
from cleanup.rules.base import (
    FINDING_FACTS,
    Rule,
    RuleContext,
    pair_codes,
    register,
    shared_codes,
    to_json_objects,
)
from cleanup.rules.settings import NamingSettings

# API name -> (display name, other spellings people use for it in names).
CONNECTORS: dict[str, tuple[str, ...]] = {
    "shared_commondataserviceforapps": (
        "Dataverse",
        "Microsoft Dataverse",
        "Common Data Service",
        "Common Data Service (current environment)",
        "CDS",
    ),
    "shared_commondataservice": (
        "Dataverse (legacy)",
        "Microsoft Dataverse (legacy)",
        "Dataverse Legacy",
        "Common Data Service",
        "CDS",
    ),
    "shared_sharepointonline": ("SharePoint", "SharePoint Online", "SPO"),
    "shared_office365": ("Office 365 Outlook", "Outlook", "O365 Outlook", "Outlook 365"),
    "shared_office365users": ("Office 365 Users", "O365 Users"),
    "shared_office365groups": ("Office 365 Groups", "O365 Groups"),
    "shared_teams": ("Microsoft Teams", "Teams"),
    "shared_approvals": ("Approvals", "Standard approvals"),
    "shared_onedriveforbusiness": ("OneDrive for Business", "OneDrive"),
    "shared_excelonlinebusiness": ("Excel Online (Business)", "Excel Online", "Excel"),
    "shared_webcontents": (
        "HTTP with Microsoft Entra ID",
        "HTTP with Microsoft Entra ID (preauthorized)",
        "HTTP with Azure AD",
        "HTTP with AAD",
        "HTTP",
    ),
    "shared_sql": ("SQL Server", "SQL", "Azure SQL"),
    "shared_powerplatformforadmins": ("Power Platform for Admins", "PP for Admins"),
    "shared_powerappsforadmins": ("Power Apps for Admins", "PowerApps for Admins"),
    "shared_powerappsforappmakers": ("Power Apps for Makers", "PowerApps for Makers"),
    "shared_flowmanagement": ("Power Automate Management", "Flow Management"),
    "shared_visualstudioteamservices": ("Azure DevOps", "DevOps", "VSTS"),
    "shared_azuread": ("Microsoft Entra ID", "Entra ID", "Azure AD", "AAD"),
    "shared_planner": ("Planner", "Microsoft Planner"),
    "shared_microsoftforms": ("Microsoft Forms", "Forms"),
    "shared_powerbi": ("Power BI",),
    "shared_wordonlinebusiness": ("Word Online (Business)", "Word Online"),
    "shared_outlook": ("Outlook.com",),
    "shared_onedrive": ("OneDrive (personal)",),
    "shared_uiflow": ("Desktop flows", "UI flows"),
    "shared_keyvault": ("Azure Key Vault", "Key Vault"),
    "shared_azureblob": ("Azure Blob Storage", "Blob Storage"),
    "shared_servicebus": ("Service Bus", "Azure Service Bus"),
    "shared_dynamicscrmonline": ("Dynamics 365",),
    "shared_microsoftcopilotstudio": ("Microsoft Copilot Studio", "Copilot Studio"),
    "shared_conversionservice": ("Content Conversion",),
    "shared_rss": ("RSS",),
    "shared_sendmail": ("Mail",),
    "shared_github": ("GitHub",),
}
SERVICE_PRINCIPAL = "Service Principal"
USER = "User"
UNBOUND = "Unbound"
# Type words accepted in the {type} slot, folded, and the identity each one claims.
TYPE_WORDS = {"service principal": "service-principal", "spn": "service-principal", "user": "user"}
_SP_CLAIM = re.compile(r"\b(service[ -]?principal|spn)\b", re.IGNORECASE)
_USER_CLAIM = re.compile(r"\buser\b", re.IGNORECASE)
_SUFFIX5 = re.compile(r"[-_ ]([0-9a-f]{5})$", re.IGNORECASE)
_SUFFIX32 = re.compile(r"[-_ ]?([0-9a-f]{32})$", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PLACEHOLDER = re.compile(r"\{(area|connector|type)\}")


@dataclass(frozen=True)
class NameVerdict:
    """Whether a display name follows the convention, why not, and a compliant proposal."""

    compliant: bool
    problems: tuple[str, ...]
    proposed: str
    auto_generated: bool = False
    type_lies: bool = False


def connector_display_name(api_name: str | None, overrides: Mapping[str, str] | None = None) -> str:
    """Return the connector's display name for an API name (the API name when unknown)."""
    if not api_name:
        return "Unknown connector"
    return _display_names(_items(overrides)).get(api_name.lower(), api_name)


def _items(table: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple(table.items()) if table else ()


@lru_cache(maxsize=64)
def _display_names(overrides: tuple[tuple[str, str], ...]) -> dict[str, str]:
    # Folded API name -> display name; the first match wins, overrides before built-ins.
    table: dict[str, str] = {}
    for key, value in (*overrides, *((k, v[0]) for k, v in CONNECTORS.items())):
        table.setdefault(key.lower(), value)
    return table


def connector_display_names(api_names: pd.Series, settings: NamingSettings) -> pd.Series:
    """Return ``connector_display_name`` for a column of API names."""
    unique = api_names.dropna().unique()
    names = {api: connector_display_name(api, settings.connector_names) for api in unique}
    return api_names.map(names).astype("string").fillna("Unknown connector")


def _aliases(api_name: str | None, settings: NamingSettings) -> frozenset[str]:
    if not api_name:
        return frozenset()
    return _aliases_of(api_name, _items(settings.connector_names))


@lru_cache(maxsize=4096)
def _aliases_of(api_name: str, overrides: tuple[tuple[str, str], ...]) -> frozenset[str]:
    names = {_display_names(overrides).get(api_name.lower(), api_name).lower()}
    names.update(a.lower() for a in CONNECTORS.get(api_name.lower(), ()))
    return frozenset(names)


def check_name(
    display_name: str | None,
    logical_name: str,
    connector: str | None,
    identity: str | None,
    area: str | None,
    settings: NamingSettings,
) -> NameVerdict:
    """Check a display name against the convention and propose a compliant one."""
    name, parts, problems, suffix, lie = _examine(
        display_name, logical_name, connector, identity, settings
    )
    proposed = (
        name if not problems else propose_name(parts, name, area, connector, identity, settings)
    )
    return NameVerdict(
        compliant=not problems,
        problems=tuple(problems),
        proposed=proposed,
        auto_generated=suffix is not None,
        type_lies=lie is not None,
    )


def name_is_compliant(
    display_name: str | None,
    logical_name: str,
    connector: str | None,
    identity: str | None,
    settings: NamingSettings,
) -> bool:
    """Say whether ``check_name`` finds the name compliant (without proposing a new one)."""
    return not _examine(display_name, logical_name, connector, identity, settings)[2]


def _examine(
    display_name: str | None,
    logical_name: str,
    connector: str | None,
    identity: str | None,
    settings: NamingSettings,
) -> tuple[str, dict[str, str] | None, list[str], str | None, str | None]:
    """Return the cleaned name, its parts, its problems, the generated suffix and type lie."""
    raw = display_name if isinstance(display_name, str) else ""
    name = " ".join(_CONTROL.sub(" ", raw).split())
    aliases = _aliases(connector, settings)
    parts = parse_name(name, settings)
    suffix = _generated_suffix(name, logical_name or "", aliases)
    lie = _type_lie(name, parts, identity)
    problems = _shape_problems(name, raw, logical_name or "", parts, suffix, settings)
    problems += _part_problems(parts, connector, aliases, identity, settings)
    if lie:
        problems.append(lie)
    return name, parts, problems, suffix, lie


def parse_name(name: str, settings: NamingSettings) -> dict[str, str] | None:
    """Split a display name into the convention's parts, or return None if it does not fit."""
    match = _convention_regex(settings.convention, settings.separators).fullmatch(name)
    if not match:
        return None
    return {key: value.strip() for key, value in match.groupdict().items()}


@lru_cache(maxsize=64)
def _convention_regex(convention: str, separators: tuple[str, ...]) -> re.Pattern[str]:
    seps = "|".join(re.escape(s) for s in sorted(separators, key=len, reverse=True))
    pieces, first = [], True
    for literal_or_field in _PLACEHOLDER.split(convention):
        if literal_or_field in ("area", "connector", "type"):
            # The first part is greedy so its own separators stay in it ("HR - Payroll").
            pieces.append(f"(?P<{literal_or_field}>.+{'' if first else '?'})")
            first = False
        elif literal_or_field:
            pieces.append(_literal(literal_or_field, separators, seps))
    return re.compile("".join(pieces), re.IGNORECASE)


def _literal(text: str, separators: tuple[str, ...], seps: str) -> str:
    if text in separators:
        return f"(?:{seps})"
    return re.escape(text)


def _generated_suffix(name: str, logical_name: str, aliases: frozenset[str]) -> str | None:
    # The maker portal names a new reference "<connector> <solution>-<5 hex>" and its logical
    # name "<prefix>_shared<api>_<same 5 hex>"; older ones end in 32 hex digits.
    folded = name.lower()
    starts_with_connector = any(folded.startswith(a) for a in aliases)
    for pattern in (_SUFFIX5, _SUFFIX32):
        match = pattern.search(name)
        if not match:
            continue
        suffix = match.group(1).lower()
        # Without the logical name's echo, a suffix of letters only may be a word ("Added").
        if logical_name.lower().endswith(suffix) or (
            starts_with_connector and any(c.isdigit() for c in suffix)
        ):
            return suffix
    return None


def _shape_problems(
    name: str,
    raw: str,
    logical_name: str,
    parts: dict[str, str] | None,
    suffix: str | None,
    settings: NamingSettings,
) -> list[str]:
    if not name:
        return ["It has no display name."]
    problems = []
    if suffix is not None:
        problems.append(f"It is auto-generated (connector name and random suffix '{suffix}').")
    elif name.lower() == logical_name.lower():
        problems.append("It repeats the logical name.")
    elif parts is None:
        problems.append(f"It does not follow the convention '{settings.convention}'.")
    if name != raw:
        problems.append("It has stray spaces or control characters.")
    if len(name) > settings.max_length:
        problems.append(f"It is longer than {settings.max_length} characters.")
    return problems


def _part_problems(
    parts: dict[str, str] | None,
    connector: str | None,
    aliases: frozenset[str],
    identity: str | None,
    settings: NamingSettings,
) -> list[str]:
    if parts is None:
        return []
    problems = []
    said = parts.get("connector")
    if said is not None and aliases and said.lower() not in aliases:
        expected = connector_display_name(connector, settings.connector_names)
        problems.append(f"It names the connector '{said}', but the connector is {expected}.")
    word = parts.get("type")
    if word is not None and word.lower() not in _valid_types(identity):
        problems.append(f"Its type '{word}' is not '{SERVICE_PRINCIPAL}' or '{USER}'.")
    return problems


def _valid_types(identity: str | None) -> set[str]:
    valid = set(TYPE_WORDS)
    if identity not in ("user", "service-principal"):
        valid.add(UNBOUND.lower())
    return valid


def _type_lie(name: str, parts: dict[str, str] | None, identity: str | None) -> str | None:
    if identity not in ("user", "service-principal"):
        return None
    if parts is not None and "type" in parts:
        claim = TYPE_WORDS.get(parts["type"].lower())
    elif _SP_CLAIM.search(name):
        claim = "service-principal"
    elif _USER_CLAIM.search(name):
        claim = "user"
    else:
        claim = None
    if claim is None or claim == identity:
        return None
    said = SERVICE_PRINCIPAL if claim == "service-principal" else USER
    actual = "a service principal's" if identity == "service-principal" else "a user's"
    return f"It says '{said}' but is bound to {actual} connection."


def propose_name(
    parts: dict[str, str] | None,
    name: str,
    area: str | None,
    connector: str | None,
    identity: str | None,
    settings: NamingSettings,
) -> str:
    """Render a compliant name, keeping the area a person already wrote where there is one."""
    chosen_type = _proposed_type(parts, identity)
    connector_label = connector_display_name(connector, settings.connector_names)
    kept = (parts or {}).get("area") or _area_in(name, connector, settings)
    area_text = _clean_area(kept or area or "General", settings)
    values = {"area": area_text, "connector": connector_label, "type": chosen_type}
    proposed = settings.convention.format(**values)
    excess = len(proposed) - settings.max_length
    if excess > 0:
        values["area"] = area_text[: max(1, len(area_text) - excess)].rstrip()
        proposed = settings.convention.format(**values)
    return proposed


def _proposed_type(parts: dict[str, str] | None, identity: str | None) -> str:
    if identity == "service-principal":
        return SERVICE_PRINCIPAL
    if identity == "user":
        return USER
    claimed = TYPE_WORDS.get(((parts or {}).get("type") or "").lower())
    if claimed == "service-principal":
        return SERVICE_PRINCIPAL
    return USER if claimed == "user" else UNBOUND


def _area_in(name: str, connector: str | None, settings: NamingSettings) -> str | None:
    # "DLP Impact Analysis - Dataverse": the parts that are neither connector nor type words
    # are the area a person meant; a name without separators says nothing reliable.
    seps = "|".join(re.escape(s) for s in settings.separators)
    pieces = [p.strip() for p in re.split(seps, name) if p.strip()]
    if len(pieces) < 2 or _generated_suffix(name, "", _aliases(connector, settings)):
        return None
    ignore = _aliases(connector, settings) | set(TYPE_WORDS) | {UNBOUND.lower()}
    rest = [p for p in pieces if p.lower() not in ignore]
    if len(rest) == len(pieces):
        return None  # no connector or type word: we cannot tell which part is the area
    return settings.separators[0].join(rest) or None


def _clean_area(area: str, settings: NamingSettings) -> str:
    text = " ".join(_CONTROL.sub(" ", area).split())
    return text.strip("".join(settings.separators) + " –-") or "General"


@register("bad-name")
class BadName(Rule):
    """The display name does not follow the naming convention."""

    severity = "low"

    def evaluate(self, ctx: RuleContext) -> pd.DataFrame:
        """Report references whose display name is not compliant, with a proposed name."""
        refs = ctx.references
        identity = refs["conn_identity"].where(refs["connection_id"].notna())
        frame = pd.DataFrame(
            {
                "display_name": refs["display_name"],
                "logical_name": refs["logical_name"],
                "connector": refs["connector"],
                "identity": identity,
                "area": reference_areas(ctx),
            },
            index=refs.index,
        )
        codes, table = _verdicts(frame, ctx.naming)
        bad = ~table["compliant"].to_numpy(dtype=bool)[codes]
        if not bad.any():
            return self.nothing()
        # Everything but the managed flag depends on the distinct row alone (the area is part
        # of it): build texts and JSON once per distinct row and gather them by code.
        rows = refs.loc[bad, [*FINDING_FACTS, "is_managed"]]
        code = codes[bad]
        lies = table["type_lies"].to_numpy(dtype=bool)[code]
        severity = pd.Series("low", index=rows.index).mask(lies, "medium")
        detail = _gather(table["detail"].astype("string"), code, rows.index)
        managed = rows["is_managed"].fillna(False).to_numpy(dtype=bool)
        fix = _gather(_fixes(table["proposed"]), code + managed * len(table), rows.index)
        extra = table[["proposed", "problems", "area", "auto_generated", "type_lies"]]
        extra = to_json_objects(extra.rename(columns={"proposed": "proposed_name"}))
        extra = _gather(extra, code, rows.index)
        return self.findings(rows, detail=detail, suggested_fix=fix, extra=extra, severity=severity)


def _verdicts(frame: pd.DataFrame, settings: NamingSettings) -> tuple[np.ndarray, pd.DataFrame]:
    """Return each row's code and, per code, the verdict on its distinct row (and its area)."""
    # One call per distinct combination (names repeat across environments); one
    # implementation is shared with the linter, so it is not re-written in vector form.
    cols = ["display_name", "logical_name", "connector", "identity", "area"]
    codes, distinct = _distinct_rows(frame[cols])
    plain = distinct.astype(object).where(distinct.notna(), None)
    checked = [check_name(*key, settings) for key in plain.itertuples(index=False, name=None)]
    table = pd.DataFrame(
        [
            (v.compliant, list(v.problems), v.proposed, v.auto_generated, v.type_lies)
            for v in checked
        ],
        columns=["compliant", "problems", "proposed", "auto_generated", "type_lies"],
    )
    table["detail"] = [" ".join(v.problems) for v in checked]
    table["area"] = distinct["area"]
    return codes, table


def _distinct_rows(frame: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """Return each row's position among the distinct rows (missing values equal), and those."""
    if frame.empty:
        return np.zeros(0, dtype=np.intp), frame.reset_index(drop=True)
    codes = frame.groupby(list(frame.columns), sort=False, dropna=False).ngroup().to_numpy()
    return codes, frame.iloc[unique_first(codes)[1]].reset_index(drop=True)


def _fixes(proposed: pd.Series) -> pd.Series:
    """Return the fix for each proposal, unmanaged then (offset by its length) managed."""
    rename = "Rename the display name to '" + proposed.astype("string") + "'"
    managed = rename + " in the solution's source environment; it is managed here."
    return pd.concat([rename + " (the logical name stays).", managed], ignore_index=True)


def _gather(values: pd.Series, codes: np.ndarray, index: pd.Index) -> pd.Series:
    """Return ``values`` at positions ``codes``, on ``index``."""
    return pd.Series(values.array.take(codes), index=index)


def reference_areas(ctx: RuleContext) -> pd.Series:
    """Return each reference's area (index of ``ctx.references``), as the convention uses it."""
    refs = ctx.references
    lookup = {str(k).lower(): v for k, v in ctx.naming.area_map.items()}
    sol = _area_solutions(refs, ctx.reference_memberships)
    by_solution = sol["unique_name"].str.lower().map(lookup)
    by_solution = by_solution.fillna(sol["publisher_prefix"].str.lower().map(lookup))
    # Logical names repeat across environments: find each distinct one's prefix once.
    names = refs["logical_name"].dropna().drop_duplicates()
    prefix = names.str.split("_", n=1).str[0].str.lower()
    by_prefix = pd.Series(prefix.map(lookup).to_numpy(), index=names.to_numpy())
    area = pd.Series(pd.NA, index=range(len(refs)), dtype="string")
    for candidate in (
        by_solution,
        pd.Series(refs["logical_name"].map(by_prefix).to_numpy()),
        sol["friendly_name"],
        sol["publisher_name"],
    ):
        area = area.fillna(candidate.reindex(area.index).astype("string"))
    return pd.Series(area.fillna("General").to_numpy(), index=refs.index, dtype="string")


def _area_solutions(refs: pd.DataFrame, mem: pd.DataFrame) -> pd.DataFrame:
    """Return, by position in ``refs``, the solution names the area comes from (one each)."""
    wanted = ["unique_name", "friendly_name", "publisher_prefix", "publisher_name"]
    env = shared_codes(refs["environment_id"], mem["environment_id"])
    obj = shared_codes(refs["reference_id"].str.lower(), mem["object_key"])
    key = pair_codes(env, obj)
    # Join on integer codes (string merges and sorts are slow on Arrow text).
    hits = pd.DataFrame({"key": key[0], "position": np.arange(len(refs))}).merge(
        pd.DataFrame({"key": key[1], "row": np.arange(len(mem))}), on="key"
    )
    position, row = hits["position"].to_numpy(), hits["row"].to_numpy()
    solution = shared_codes(refs["solution_id"], mem["solution_id"])
    known = refs["solution_id"].notna().to_numpy(bool)[position]
    known &= mem["solution_id"].notna().to_numpy(bool)[row]
    owning = known & (solution[0][position] == solution[1][row])
    # The owning solution first, then the others by unique name: a stable, explainable choice.
    name = sort_codes(mem["unique_name"])[row]
    order = np.lexsort((name, ~owning, position))
    first = order[~pd.Series(position[order]).duplicated().to_numpy()]
    chosen = mem[wanted].iloc[row[first]]
    return chosen.set_axis(pd.Index(position[first], name="position"))
