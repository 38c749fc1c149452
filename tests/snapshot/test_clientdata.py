"""Hand-written cases for each clientdata shape and oddity, named after the corpus flows."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cleanup.snapshot.clientdata import (
    ParsedFlow,
    ReferenceUse,
    decode_flow_file,
    parse_clientdata,
)

STATUSES = {"ok", "empty", "invalid-json", "not-a-cloud-flow"}


def ref(api: str, logical: str | None = None, runtime: str = "embedded", **extra: Any) -> dict:
    """A solution-shape connectionReferences entry."""
    connection = {"connectionReferenceLogicalName": logical} if logical else {}
    return {"api": {"name": api}, "connection": connection, "runtimeSource": runtime, **extra}


def op(key: str, api: str | None = None, **extra: Any) -> dict:
    """An OpenApiConnection action naming ``key`` in host.connectionName."""
    host = {"apiId": f"/providers/Microsoft.PowerApps/apis/{api or key}", "connectionName": key}
    return {"type": "OpenApiConnection", "inputs": {"host": host, "operationId": "X"}, **extra}


def api_conn(name: str) -> dict:
    """An older ApiConnection action whose host.connection.name is ``name``."""
    host = {"connection": {"name": name}, "api": {"runtimeUrl": "https://x/apim/y"}}
    return {"type": "ApiConnection", "inputs": {"host": host, "method": "get", "path": "/"}}


def compose() -> dict:
    return {"type": "Compose", "inputs": "@utcNow()", "runAfter": {}}


MANUAL = {"manual": {"type": "Request", "kind": "Button", "inputs": {"schema": {}}}}


def flow(actions: Any, refs: Any = None, triggers: Any = None) -> str:
    """Solution-shape clientdata text."""
    definition = {
        "$schema": "https://schema.management.azure.com/.../workflowdefinition.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {"$connections": {"defaultValue": {}, "type": "Object"}},
        "triggers": MANUAL if triggers is None else triggers,
        "actions": actions,
    }
    props = {"connectionReferences": {} if refs is None else refs, "definition": definition}
    return json.dumps({"properties": props, "schemaVersion": "1.0.0.0"})


def by_key(parsed: ParsedFlow) -> dict[str, ReferenceUse]:
    return {r.key: r for r in parsed.references}


# --- decode_flow_file ------------------------------------------------------------------------

TEXT = '{"name": "Wenn_ein_Element_geändert_wird"}'


@pytest.mark.parametrize(
    "raw",
    [
        TEXT.encode("utf-8"),
        b"\xef\xbb\xbf"
        + TEXT.encode("utf-8"),  # 108 corpus files, e.g. romikaAIS ChildAdminSyncLogs
        b"\xff\xfe" + TEXT.encode("utf-16-le"),  # 27 powerapps-tools CenterofExcellence* files
        b"\xfe\xff" + TEXT.encode("utf-16-be"),
        TEXT.encode("utf-16-le"),  # no BOM: recognised from the NUL pattern of ASCII '{"'
        b"\xff\xfe\x00\x00" + TEXT.encode("utf-32-le"),
    ],
    ids=["utf8", "utf8-bom", "utf16le-bom", "utf16be-bom", "utf16le-no-bom", "utf32le-bom"],
)
def test_decode_encodings(raw: bytes) -> None:
    assert decode_flow_file(raw) == TEXT


def test_decode_keeps_crlf_and_empty() -> None:
    assert (
        decode_flow_file(b'{\r\n"a": 1}\r\n') == '{\r\n"a": 1}\r\n'
    )  # U2UTrainer NewCourseCreated
    assert decode_flow_file(b"") == ""
    assert decode_flow_file(b"\xef\xbb\xbf") == ""
    assert parse_clientdata(decode_flow_file(b"")).status == "empty"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"a": "\xff"}', "not valid UTF-8 at byte 7"),
        (b"\xff\xfe{\x00\x22", "not valid UTF-16-LE at byte 4"),  # odd length
        (b"\xfe\xff\xd8\x00\x00\x41", "not valid UTF-16-BE"),  # lone surrogate
    ],
)
def test_decode_errors_name_the_problem(raw: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_flow_file(raw)


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(ValueError, match="expected bytes, got str"):
        decode_flow_file("{}")  # type: ignore[arg-type]


# --- statuses --------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [None, "", "   \r\n\t", "\ufeff "])
def test_empty(text: str | None) -> None:
    parsed = parse_clientdata(text)
    assert parsed == ParsedFlow("empty", parsed.error, (), 0, (), 0, 0)
    assert parsed.error


def test_invalid_json_says_where() -> None:
    parsed = parse_clientdata('{"properties": }')
    assert parsed.status == "invalid-json"
    assert parsed.error == "invalid JSON at line 1 column 16: Expecting value"
    assert parsed.references == ()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"a": ' + "9" * 5000 + "}", "invalid JSON"),  # beyond int_max_str_digits
        ("<ImportExportXml/>", "line 1 column 1"),  # a customizations.xml handed in by mistake
    ],
)
def test_invalid_json_edge_cases(text: str, fragment: str) -> None:
    parsed = parse_clientdata(text)
    assert parsed.status == "invalid-json"
    assert fragment in (parsed.error or "")


def test_non_text_input_is_reported_not_raised() -> None:
    parsed = parse_clientdata(b"{}")  # type: ignore[arg-type]
    assert (parsed.status, parsed.error) == ("invalid-json", "clientdata is bytes, not text")


def test_leading_bom_character_is_tolerated() -> None:
    assert parse_clientdata("\ufeff" + flow({})).status == "ok"


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ([], "top level is an array, not an object"),
        ("flow", "top level is a string"),
        ({}, "'properties' is missing or null"),
        ({"properties": []}, "'properties' is an array"),
        ({"properties": {"definition": "x"}}, "'properties.definition' is a string"),
        ({"properties": {"definition": {}}}, "neither 'triggers' nor 'actions'"),
        # Pavan-kumar-k desktop flows: properties.definition.package, top-level "targets".
        (
            {"properties": {"definition": {"package": "UEsDB", "name": "x"}}, "targets": {}},
            "desktop flow",
        ),
        (
            {"properties": {"definition": {"actions": {}}, "connectionReferences": []}},
            "'properties.connectionReferences' is an array",
        ),
    ],
)
def test_not_a_cloud_flow(doc: Any, fragment: str) -> None:
    parsed = parse_clientdata(json.dumps(doc))
    assert parsed.status == "not-a-cloud-flow"
    assert fragment in (parsed.error or "")
    assert parsed.references == ()


# --- connectionReferences entry shapes (SUMMARY §3.2) ------------------------------------------


def test_documented_example_getaadgroups() -> None:
    """coe-starter-kit GetAADGroups (power-platform-api.md §2.4): one invoker ref, one action."""
    refs = {
        "shared_webcontents": ref("shared_webcontents", "cat_sharedwebcontents_74512", "invoker")
    }
    actions = {"Invoke_an_HTTP_request": op("shared_webcontents"), "Response": compose()}
    parsed = parse_clientdata(flow(actions, refs))
    assert parsed == ParsedFlow(
        status="ok",
        error=None,
        references=(
            ReferenceUse(
                key="shared_webcontents",
                logical_name="cat_sharedwebcontents_74512",
                connector="shared_webcontents",
                runtime_source="invoker",
                connection_name=None,
                action_count=1,
            ),
        ),
        action_count=1,
        dangling_keys=(),
        total_actions=3,
        max_depth=1,
    )


def test_connection_without_logical_name() -> None:
    """powerapps-tools CoE 2019-2020 and fordosa90: ``connection: {}``."""
    parsed = parse_clientdata(flow({"a": op("shared_office365")}, {"shared_office365": ref("x")}))
    assert by_key(parsed)["shared_office365"].logical_name is None


def test_impersonation_does_not_change_runtime_source() -> None:
    """Business Approvals Kit BACoreRuntime-StartNode: impersonation invoker, runtime embedded."""
    entry = ref("shared_commondataserviceforapps", "cat_BusinessApprovalKitDataverse")
    entry["impersonation"] = {"source": "invoker"}
    parsed = parse_clientdata(flow({}, {"shared_commondataserviceforapps_1": entry}))
    assert parsed.references[0].runtime_source == "embedded"


def test_runtime_source_wins_over_legacy_source() -> None:
    """romikaAIS DeleteProjectCleanUp carries both runtimeSource and source."""
    entry = ref("shared_commondataserviceforapps", "admin_x", "invoker", source="Embedded")
    parsed = parse_clientdata(flow({}, {"k": entry}))
    assert parsed.references[0].runtime_source == "invoker"


def test_sdk_sample_connection_name() -> None:
    """manage-flows-with-code SDK sample: ``connection`` holds ``name`` and the logical name."""
    entry = {
        "impersonation": {},
        "runtimeSource": "embedded",
        "connection": {
            "name": "shared-commondataser-114efb88",
            "connectionReferenceLogicalName": "crdcb_sharedcommondataserviceforapps_109ea",
        },
        "api": {"name": "shared_commondataserviceforapps"},
    }
    parsed = parse_clientdata(flow({}, {"shared_commondataserviceforapps": entry}))
    assert parsed.references[0].connection_name == "shared-commondataser-114efb88"


def legacy_package(refs: dict, actions: dict, triggers: dict | None = None) -> str:
    """A legacy export-package definition.json."""
    definition = {"triggers": triggers or {}, "actions": actions, "parameters": {}}
    props = {
        "apiId": "/providers/Microsoft.PowerApps/apis/shared_logicflows",
        "displayName": "x",
        "definition": definition,
        "connectionReferences": refs,
        "flowFailureAlertSubscribed": False,
    }
    return json.dumps({"name": "g", "id": "/providers/Microsoft.Flow/flows/g", "properties": props})


def test_legacy_package_entry() -> None:
    """10togoTeam HungerWarriors: connectionName/source/id/tier, source capitalised."""
    entry = {
        "connectionName": "c104dc882946445f9a1301cb12d068fa",
        "source": "Invoker",
        "id": "/providers/Microsoft.PowerApps/apis/shared_sql",
        "tier": "NotSpecified",
    }
    parsed = parse_clientdata(legacy_package({"shared_sql": entry}, {"a": op("shared_sql")}))
    assert parsed.status == "ok"
    assert parsed.references == (
        ReferenceUse("shared_sql", None, "shared_sql", "invoker", entry["connectionName"], 1),
    )


def test_legacy_api_name_is_normalised() -> None:
    """Kavisha022: legacy ``apiName`` is "office365"; the API name is shared_office365."""
    with_id = {"id": "/providers/Microsoft.PowerApps/apis/shared_office365", "apiName": "office365"}
    only_api_name = {"apiName": "teams", "source": "Embedded"}
    parsed = parse_clientdata(legacy_package({"a": with_id, "b": only_api_name}, {}))
    assert [r.connector for r in parsed.references] == ["shared_office365", "shared_teams"]


def test_custom_connector_key_and_api_differ() -> None:
    """BACoreChildGetUserMailboxSettings: key hash differs from api.name; api.logicalName set."""
    key = "shared_cat-5fmicrosoft-20graph-20mailboxsetting-5f983b8802de813283_1"
    api = {
        "name": "shared_cat-5fmicrosoft-20graph-20mailboxsetting-5f21dec655d73f3a8c",
        "logicalName": "cat_5Fmicrosoft-20graph-20mailboxsetting",
    }
    entry = {"api": api, "connection": {"connectionReferenceLogicalName": "cat_x"}}
    action = op(key)
    action["inputs"]["host"]["apiId"] = ""  # apiId "" on every custom-connector action
    parsed = parse_clientdata(flow({"Get": action}, {key: entry}))
    assert by_key(parsed)[key].connector == api["name"]
    assert by_key(parsed)[key].action_count == 1
    assert by_key(parsed)[key].runtime_source is None


def test_suffixed_keys_and_gaps() -> None:
    """philguth FrameworkwithBatching: shared_sql-2 and shared_sql-3 with no -1; Draft2 _N keys."""
    refs = {
        "shared_sql-2": ref("shared_sql", "envvar_SourceDatabaseConnection"),
        "shared_sql-3": ref("shared_sql", "envvar_TargetDatabaseConnection_SQL83"),
        "shared_office365_1": ref("shared_office365", "coi_sharedoffice365_a"),
    }
    actions = {"a": op("shared_sql-3"), "b": op("shared_sql-3"), "c": op("shared_office365_1")}
    parsed = parse_clientdata(flow(actions, refs))
    counts = {r.key: r.action_count for r in parsed.references}
    assert counts == {"shared_sql-2": 0, "shared_sql-3": 2, "shared_office365_1": 1}
    assert list(counts) == list(refs)  # file order


def test_null_and_wrong_type_entries_still_declare_their_key() -> None:
    refs = {"shared_a": None, "shared_b": [], "shared_c": {"api": "x", "connection": "y"}}
    parsed = parse_clientdata(flow({"a": op("shared_a")}, refs))
    assert parsed.status == "ok"
    assert parsed.references[0] == ReferenceUse("shared_a", None, None, None, None, 1)
    assert parsed.dangling_keys == ()


# --- host forms (SUMMARY §3.4) -----------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "@parameters('$connections')['shared_office365']['connectionId']",  # hmcts, CoE v2
        '@parameters("$connections")["shared_office365"]["connectionId"]',
        "@parameters( '$connections' ) [ 'shared_office365' ] ['connectionId']",
        # thatapiguy / Devon-Energy legacy invoker expression
        "@json(decodeBase64(triggerOutputs().headers['X-MS-APIM-Tokens']))"
        "['$connections']['shared_office365']['connectionId']",
    ],
)
def test_connection_name_expressions(name: str) -> None:
    refs = {"shared_office365": ref("shared_office365")}
    parsed = parse_clientdata(flow({"Send": api_conn(name)}, refs))
    assert parsed.references[0].action_count == 1
    assert parsed.dangling_keys == ()


def test_unreadable_connection_expression_names_no_key() -> None:
    parsed = parse_clientdata(flow({"a": api_conn("@variables('conn')")}, {}))
    assert (parsed.action_count, parsed.dangling_keys, parsed.total_actions) == (0, (), 2)


def test_mixed_host_forms_and_connector_trigger() -> None:
    """MattCollins-Jones Quiz-CountScoresandsendtoteacher: connectionName and connection.name."""
    refs = {
        "shared_commondataservice": ref("shared_commondataservice"),
        "shared_office365": ref("shared_office365", runtime="invoker"),
    }
    expr = "@parameters('$connections')['shared_commondataservice']['connectionId']"
    trigger = {"When": op("shared_commondataservice", type="OpenApiConnectionWebhook")}
    actions = {"List": api_conn(expr), "Mail": op("shared_office365")}
    parsed = parse_clientdata(flow(actions, refs, triggers=trigger))
    assert [r.action_count for r in parsed.references] == [2, 1]
    assert (parsed.action_count, parsed.total_actions) == (3, 3)


def test_string_host_connection_is_dangling() -> None:
    """Joeslinky OpenAI_ChatGPT_Teams: Http action with host.connection "shared_office365"."""
    http = {
        "type": "Http",
        "inputs": {
            "uri": "https://api.openai.com/v1/chat/completions",
            "host": {
                "apiId": "/x/shared_office365",
                "operationId": "HttpRequest",
                "connection": "shared_office365",
            },
        },
    }
    refs = {
        "shared_teams": {
            "connectionName": "shared-teams-6c6a",
            "source": "Embedded",
            "id": "/providers/Microsoft.PowerApps/apis/shared_teams",
        }
    }
    parsed = parse_clientdata(legacy_package(refs, {"HTTP": http, "Get": op("shared_teams")}))
    assert parsed.dangling_keys == ("shared_office365",)
    assert parsed.references[0].action_count == 1
    assert parsed.action_count == 2


def test_ai_builder_action_counts_for_dataverse_key() -> None:
    """Copilot Studio Kit AgentReviewerFlow: apiId without leading slash, Dataverse key."""
    action = op("shared_commondataserviceforapps")
    action["inputs"]["host"]["apiId"] = (
        "providers/Microsoft.ProcessSimple/operationGroups/aibuilder"
    )
    refs = {"shared_commondataserviceforapps": ref("shared_commondataserviceforapps", "cat_x")}
    assert parse_clientdata(flow({"Predict": action}, refs)).action_count == 1


def test_child_flow_calls_have_no_connection() -> None:
    """BACoreRuntime-StartNode: ``Workflow`` actions with host.workflowReferenceName."""
    child = {"type": "Workflow", "inputs": {"host": {"workflowReferenceName": "d0ccbebf-d08c"}}}
    parsed = parse_clientdata(flow({"Run_child": child}))
    assert (parsed.action_count, parsed.total_actions, parsed.references) == (0, 2, ())


def test_key_case_fallback_for_custom_connectors() -> None:
    """powerapps-tools ChildAdminSyncLogs: -5f vs -5F spellings of one custom connector key."""
    declared = "shared_admin-5foffice-20365-20management-20api-5f1bdc0283b66cd8a9"
    used = declared.replace("-5f", "-5F")
    parsed = parse_clientdata(flow({"a": op(used), "b": op(declared)}, {declared: ref("x")}))
    assert (parsed.references[0].action_count, parsed.dangling_keys) == (2, ())


def test_ambiguous_case_fallback_is_dangling() -> None:
    refs = {"shared_X-5f1": ref("x"), "shared_x-5F1": ref("x")}
    parsed = parse_clientdata(flow({"a": op("SHARED_X-5F1")}, refs))
    assert parsed.dangling_keys == ("SHARED_X-5F1",)
    assert [r.action_count for r in parsed.references] == [0, 0]
    assert parsed.action_count == 1


# --- nesting (SUMMARY §3.5) --------------------------------------------------------------------


def test_nested_containers_and_depth() -> None:
    """Switch in If in Foreach, plus Scope and Until (hmcts CreateandstartLiveEvent)."""
    k = "shared_commondataserviceforapps"
    switch = {
        "type": "Switch",
        "cases": {"Case": {"case": "a", "actions": {"c1": op(k)}}, "Case_2": {"actions": {}}},
        "default": {"actions": {"d1": op(k), "d2": compose()}},
    }
    condition = {
        "type": "If",
        "actions": {"Switch": switch},
        "else": {"actions": {"e1": op(k)}},
    }
    actions = {
        "Apply_to_each": {"type": "Foreach", "actions": {"Condition": condition}},
        "Scope": {"type": "Scope", "actions": {"s1": op(k)}},
        "Do_until": {"type": "Until", "actions": {"u1": op(k), "u2": compose()}},
    }
    parsed = parse_clientdata(flow(actions, {k: ref(k)}))
    # 1 trigger + Foreach, If, Switch, c1, d1, d2, e1, Scope, s1, Until, u1, u2
    assert (parsed.total_actions, parsed.max_depth, parsed.action_count) == (13, 4, 5)


@pytest.mark.parametrize(
    "actions",
    [
        None,
        [],
        "x",
        {"a": None, "b": [op("k")], "c": 3},
        {"If": {"type": "If", "actions": [], "else": "no", "cases": [1], "default": None}},
        {"a": {"inputs": "@x"}, "b": {"inputs": {"host": []}}, "c": {"inputs": {"host": None}}},
        {"a": {"inputs": {"host": {"connectionName": 5, "connection": {"name": ["x"]}}}}},
        {"a": {"inputs": {"host": {"connectionName": "", "connection": ""}}}},
    ],
)
def test_wrong_types_are_skipped(actions: Any) -> None:
    parsed = parse_clientdata(flow(actions, {"k": ref("x")}, triggers=None))
    assert parsed.status == "ok"
    assert parsed.action_count == 0


def test_missing_connection_references_makes_every_key_dangling() -> None:
    doc = {"properties": {"definition": {"actions": {"a": op("k"), "b": op("j")}}}}
    parsed = parse_clientdata(json.dumps(doc))
    assert (parsed.status, parsed.references, parsed.dangling_keys) == ("ok", (), ("j", "k"))


def test_deep_nesting() -> None:
    # json itself stops near 1000 levels; the walk is iterative so it adds no limit of its own.
    actions: dict = {"leaf": op("k")}
    for i in range(300):
        actions = {f"s{i}": {"type": "Scope", "actions": actions}}
    parsed = parse_clientdata(flow(actions, {"k": ref("x")}, triggers={}))
    assert (parsed.status, parsed.max_depth, parsed.action_count) == ("ok", 301, 1)


# --- never raises ------------------------------------------------------------------------------

# Real flow: thatapiguy/Publish-All-PowerApps-using-Flow definition.json (trimmed metadata).
REAL_LEGACY = json.loads(
    '{"name":"9e53d695","id":"/providers/Microsoft.Flow/flows/9e53d695","type":"Microsoft.Flow/'
    'flows","properties":{"apiId":"/providers/Microsoft.PowerApps/apis/shared_logicflows",'
    '"displayName":"Re-Publish all my PowerApps once a month","definition":{"$schema":"x",'
    '"contentVersion":"1.0.0.0","parameters":{"$connections":{"defaultValue":{},"type":"Object"}},'
    '"triggers":{"Recurrence":{"recurrence":{"frequency":"Month","interval":1},"type":'
    '"Recurrence"}},"actions":{"Get_Apps":{"runAfter":{"Get_my_profile_(V2)":["Succeeded"]},'
    '"type":"ApiConnection","inputs":{"host":{"connection":{"name":"@parameters(\'$connections\')'
    '[\'shared_powerappsforappmakers\'][\'connectionId\']"},"api":{"runtimeUrl":"https://x/apim/'
    'powerappsforappmakers"}},"method":"get","path":"/providers/Microsoft.PowerApps/apps"}},'
    '"Apply_to_each_2":{"foreach":"@body(\'Get_Apps\')?[\'value\']","actions":{"Condition":'
    '{"actions":{"Publish_App_2":{"runAfter":{},"type":"ApiConnection","inputs":{"host":'
    '{"connection":{"name":"@parameters(\'$connections\')[\'shared_powerappsforappmakers\']'
    '[\'connectionId\']"}},"method":"post","path":"/publish"}}},"runAfter":{},"expression":'
    "{\"equals\":[\"@items('Apply_to_each_2')?['properties']\",\"@body('Get_my_profile_(V2)')\"]},"
    '"type":"If"}},"runAfter":{"Get_Apps":["Succeeded"]},"type":"Foreach"},"Get_my_profile_(V2)":'
    '{"runAfter":{},"type":"ApiConnection","inputs":{"host":{"connection":{"name":"@parameters('
    '\'$connections\')[\'shared_office365users\'][\'connectionId\']"}},"method":"get","path":'
    '"/codeless/v1.0/me"}}}},"connectionReferences":{"shared_powerappsforappmakers":'
    '{"connectionName":"475cf42af41a46f6a2d9d0826527887e","source":"Embedded","id":"/providers/'
    'Microsoft.PowerApps/apis/shared_powerappsforappmakers","tier":"NotSpecified"},'
    '"shared_office365users":{"connectionName":"a2e574cd38f8f8748b0fc6be8adf9145","source":'
    '"Embedded","id":"/providers/Microsoft.PowerApps/apis/shared_office365users","tier":'
    '"NotSpecified"}},"flowFailureAlertSubscribed":false}}'
)


def test_real_legacy_flow() -> None:
    parsed = parse_clientdata(json.dumps(REAL_LEGACY))
    assert [(r.key, r.action_count) for r in parsed.references] == [
        ("shared_powerappsforappmakers", 2),
        ("shared_office365users", 1),
    ]
    assert (parsed.total_actions, parsed.max_depth) == (6, 3)  # manifest: actions=5 maxdepth=3


SEEDS = [
    REAL_LEGACY,
    json.loads(
        flow({"a": op("k"), "If": {"type": "If", "actions": {}}}, {"k": ref("shared_k", "x_k")})
    ),
]

VOCABULARY = st.sampled_from(
    [
        "properties",
        "definition",
        "connectionReferences",
        "actions",
        "triggers",
        "inputs",
        "host",
        "connectionName",
        "connection",
        "name",
        "else",
        "cases",
        "default",
        "api",
        "runtimeSource",
        "source",
        "id",
        "apiName",
        "connectionReferenceLogicalName",
        "package",
        "k",
    ]
)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
JSON_VALUES = st.recursive(
    SCALARS | VOCABULARY,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(VOCABULARY | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=40,
)


def check_invariants(parsed: ParsedFlow) -> None:
    assert parsed.status in STATUSES
    # The catch-all in parse_clientdata is a safety net; the code must not need it.
    assert not (parsed.error or "").startswith("unexpected ")
    assert (parsed.error is None) == (parsed.status == "ok")
    assert all(isinstance(r, ReferenceUse) for r in parsed.references)
    assert 0 <= parsed.action_count <= parsed.total_actions
    assert sum(r.action_count for r in parsed.references) <= parsed.action_count
    assert bool(parsed.dangling_keys) <= (parsed.action_count > 0)


@given(JSON_VALUES)
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
def test_never_raises_on_arbitrary_json(value: Any) -> None:
    check_invariants(parse_clientdata(json.dumps(value)))


@given(st.text() | st.none())
@settings(max_examples=300)
def test_never_raises_on_arbitrary_text(text: str | None) -> None:
    check_invariants(parse_clientdata(text))


def _paths(node: Any, path: tuple = ()) -> list[tuple]:
    found = [path]
    if isinstance(node, dict):
        for key, child in node.items():
            found += _paths(child, (*path, key))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            found += _paths(child, (*path, i))
    return found


def _mutate(doc: Any, path: tuple, value: Any, delete: bool) -> Any:
    if not path:
        return value
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


@given(
    st.sampled_from(SEEDS),
    st.lists(
        st.tuples(st.integers(min_value=0), JSON_VALUES, st.booleans()), min_size=1, max_size=5
    ),
)
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
def test_never_raises_on_mutated_real_flows(seed: Any, mutations: list) -> None:
    doc = copy.deepcopy(seed)
    for index, value, delete in mutations:
        paths = _paths(doc)
        doc = _mutate(doc, paths[index % len(paths)], value, delete)
    check_invariants(parse_clientdata(json.dumps(doc)))
