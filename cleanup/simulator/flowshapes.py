"""Build cloud-flow ``clientdata`` JSON strings in the shapes seen in real solution exports.

A flow is described by its *uses*: one ``Use`` per ``properties.connectionReferences`` entry,
saying which key the actions name, which connection reference (logical name) the key maps to,
the connector, the runtime source and how many actions (or the trigger) name the key. The
builder turns that into a realistic definition: OpenApiConnection actions naming the key in
``inputs.host.connectionName``, the older ``ApiConnection`` form that hides the key in a
``@parameters('$connections')[...]`` expression, webhook and polling triggers, child-flow
``Workflow`` actions, and non-connector filler (Compose, variables, ParseJson...) nested in
Scope / If / Switch / Foreach / Until blocks. Everything is drawn from the ``random.Random``
passed in, so the same generator state gives the same string. Shapes follow
``/work/shared/corpus/SUMMARY.md`` §3.
"""

from __future__ import annotations

import bisect
import functools
import json
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

SCHEMA_URL = (
    "https://schema.management.azure.com/providers/Microsoft.Logic/schemas/2016-06-01/"
    "workflowdefinition.json#"
)
API_PREFIX = "/providers/Microsoft.PowerApps/apis/"
AI_BUILDER_API_ID = "providers/Microsoft.ProcessSimple/operationGroups/aibuilder"
APIM_TOKEN_AUTH = {
    "type": "Raw",
    "value": "@json(decodeBase64(triggerOutputs().headers['X-MS-APIM-Tokens']))['$ConnectionKey']",
}
PLAIN_AUTH = "@parameters('$authentication')"

# Minified UTF-8 sizes (bytes) of the 441 corpus flow files, as quantiles: clientdata in
# Dataverse is compact JSON, so these (not the indented file sizes) are what a client reads.
CORPUS_SIZE_QUANTILES: tuple[tuple[float, int], ...] = (
    (0.0, 669),
    (0.10, 1877),
    (0.25, 3554),
    (0.50, 7135),
    (0.75, 13242),
    (0.90, 24302),
    (0.99, 71558),
    (1.0, 144108),
)

ENTRY_SHAPES = ("modern", "impersonation", "legacy")
HOST_FORMS = ("openapi", "apiconnection")


@dataclass(frozen=True)
class Operation:
    """One connector operation: its id, the designer's default action name and action type."""

    operation_id: str
    action_name: str
    type: str = "OpenApiConnection"


@dataclass(frozen=True)
class Connector:
    """A connector as flows and references see it."""

    api: str  # shared_xxx
    display_name: str  # what the maker portal shows, used in generated reference names
    short_name: str  # the {connector} word of curated names ("Dataverse")
    operations: tuple[Operation, ...]
    trigger: Operation | None = None
    weight: int = 1  # how common it is in the corpus, for weighted draws
    api_logical_name: str | None = None  # custom connectors only: the connector's schema name
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def connector_id(self) -> str:
        """Return the connectorid column value."""
        return API_PREFIX + self.api

    @property
    def is_custom(self) -> bool:
        """Return whether this is a custom connector."""
        return self.api_logical_name is not None


def _ops(spec: str) -> tuple[Operation, ...]:
    """Parse ``"OperationId=Action_name ..."`` into plain OpenApiConnection operations."""
    return tuple(Operation(*pair.split("=")) for pair in spec.split())


_SITE = "https://contoso.sharepoint.com/sites/Operations"

CONNECTORS: dict[str, Connector] = {
    c.api: c
    for c in (
        Connector(
            "shared_commondataserviceforapps",
            "Microsoft Dataverse",
            "Dataverse",
            _ops(
                "ListRecords=List_rows CreateRecord=Add_a_new_row UpdateRecord=Update_a_row "
                "GetItem=Get_a_row_by_ID"
            ),
            Operation(
                "SubscribeWebhookTrigger",
                "When_a_row_is_added,_modified_or_deleted",
                "OpenApiConnectionWebhook",
            ),
            weight=30,
            parameters={"entityName": "accounts", "$select": "name,accountid", "$top": 50},
        ),
        Connector(
            "shared_office365",
            "Office 365 Outlook",
            "Office 365 Outlook",
            _ops(
                "SendEmailV2=Send_an_email_(V2) GetEmailsV3=Get_emails_(V3) "
                "SharedMailboxSendEmailV2=Send_an_email_from_a_shared_mailbox_(V2) "
                "ReplyToV3=Reply_to_email_(V3)"
            ),
            Operation(
                "OnNewEmailV3", "When_a_new_email_arrives_(V3)", "OpenApiConnectionNotification"
            ),
            weight=14,
            parameters={
                "emailMessage/To": "@{triggerOutputs()?['body/Author/Email']}",
                "emailMessage/Subject": "Request @{triggerOutputs()?['body/ID']} submitted",
                "emailMessage/Body": "<p>Hello,<br>your request was submitted.</p>",
            },
        ),
        Connector(
            "shared_sharepointonline",
            "SharePoint",
            "SharePoint",
            _ops(
                "GetItems=Get_items GetFileContent=Get_file_content PatchItem=Update_item "
                "PostItem=Create_item"
            ),
            Operation("GetOnNewItems", "When_an_item_is_created"),
            weight=8,
            parameters={"dataset": _SITE, "table": "a27f05fc-84e5-4784-b7ee-ef6e1d145284"},
        ),
        Connector(
            "shared_office365users",
            "Office 365 Users",
            "Office 365 Users",
            _ops("UserProfile_V2=Get_user_profile_(V2) MyProfile_V2=Get_my_profile_(V2)"),
            weight=7,
            parameters={"id": "@triggerOutputs()?['headers/x-ms-user-email']"},
        ),
        Connector(
            "shared_teams",
            "Microsoft Teams",
            "Teams",
            _ops(
                "PostMessageToConversation=Post_message_in_a_chat_or_channel "
                "GetMessageDetails=Get_message_details"
            ),
            Operation("OnNewChannelMessage", "When_a_new_channel_message_is_added"),
            weight=4,
            parameters={"poster": "Flow bot", "location": "Channel", "body/messageBody": "Done"},
        ),
        Connector(
            "shared_approvals",
            "Approvals",
            "Approvals",
            (
                Operation(
                    "StartAndWaitForAnApproval",
                    "Start_and_wait_for_an_approval",
                    "OpenApiConnectionWebhook",
                ),
                Operation("CreateAnApproval", "Create_an_approval"),
            ),
            weight=3,
            parameters={"approvalType": "Basic", "WebhookApprovalCreationInput/title": "Approve"},
        ),
        Connector(
            "shared_flowmanagement",
            "Power Automate Management",
            "Power Automate Management",
            _ops("AdminGetFlow=Get_Flow_as_Admin ListFlowsInEnvironment=List_Flows"),
            weight=3,
            parameters={"environmentName": "@parameters('Environment (new_Environment)')"},
        ),
        Connector(
            "shared_powerplatformforadmins",
            "Power Platform for Admins",
            "Power Platform for Admins",
            _ops(
                "GetSingleEnvironment=Get_Environment_as_Admin "
                "Get-AdminEnvironment=List_Environments_as_Admin"
            ),
            weight=3,
            parameters={"api-version": "2018-10-01"},
        ),
        Connector(
            "shared_webcontents",
            "HTTP with Microsoft Entra ID (preauthorized)",
            "HTTP with Entra ID",
            _ops("InvokeHttp=Invoke_an_HTTP_request"),
            weight=2,
            parameters={
                "request/method": "GET",
                "request/url": "https://graph.microsoft.com/v1.0/me",
            },
        ),
        Connector(
            "shared_sql",
            "SQL Server",
            "SQL Server",
            _ops("ExecuteProcedure_V2=Execute_stored_procedure_(V2) GetItems_V2=Get_rows_(V2)"),
            weight=1,
            parameters={"server": "default", "database": "default", "procedure": "[dbo].[Sync]"},
        ),
        Connector(
            "shared_excelonlinebusiness",
            "Excel Online (Business)",
            "Excel Online",
            _ops("AddRowV2=Add_a_row_into_a_table GetItems=List_rows_present_in_a_table"),
            weight=1,
            parameters={"source": "me", "drive": "b!x", "table": "{00000000-0000-0000-0000}"},
        ),
        Connector(
            "shared_commondataservice",
            "Microsoft Dataverse (legacy)",
            "Dataverse (legacy)",
            _ops("GetItems_V2=List_records PatchItem_V2=Update_a_record"),
            weight=2,
            parameters={"dataset": "default.cds", "table": "contacts"},
        ),
    )
}


_GENERIC_OPERATIONS = _ops("GetRecords=Get_records CreateRecord=Create_record")


def custom_connector(prefix: str, name: str, rng: random.Random) -> Connector:
    """Return a custom connector named like the corpus's ``shared_<prefix>-5f<name>-5f<hash>``."""
    encoded = name.lower().replace(" ", "-20")
    api = f"shared_{prefix}-5f{encoded}-5f{rng.getrandbits(56):014x}"
    return Connector(
        api,
        name,
        name,
        _GENERIC_OPERATIONS,
        weight=1,
        api_logical_name=f"{prefix}_5F{name.replace(' ', '-20')}",
        parameters={"Accept": "application/json"},
    )


def connector_for(api: str) -> Connector:
    """Return the catalogue entry for an API name, or a generic stand-in for an unknown one."""
    found = CONNECTORS.get(api)
    if found is not None:
        return found
    name = api.removeprefix("shared_")
    return Connector(api, name, name, _GENERIC_OPERATIONS)


@dataclass(frozen=True)
class Use:
    """One ``connectionReferences`` entry of a flow and how many actions name its key."""

    key: str
    logical_name: str | None  # None: ``connection: {}`` (or a legacy entry)
    connector: str  # API name, shared_xxx
    runtime_source: str = "embedded"  # embedded | invoker
    action_count: int = 1  # actions (and the trigger) naming the key; 0 = declared, never used
    entry: str = "modern"  # modern | impersonation | legacy ({connectionName, source, id, tier})
    api_logical_name: str | None = None  # custom connectors: api.logicalName; apiId "" in actions
    host: str = "openapi"  # openapi (host.connectionName) | apiconnection (host.connection.name)


def next_key(api: str, taken: set[str], style: str = "_") -> str:
    """Return the designer's next free key for a connector: ``shared_x``, ``shared_x_1``, ``-1``."""
    if api not in taken:
        taken.add(api)
        return api
    n = 1
    while f"{api}{style}{n}" in taken:
        n += 1
    key = f"{api}{style}{n}"
    taken.add(key)
    return key


def draw_clientdata_size(rng: random.Random) -> int:
    """Draw a clientdata size in bytes from the corpus distribution (piecewise-linear quantiles)."""
    u = rng.random()
    qs = [q for q, _ in CORPUS_SIZE_QUANTILES]
    i = min(max(bisect.bisect_right(qs, u), 1), len(qs) - 1)
    (q0, s0), (q1, s1) = CORPUS_SIZE_QUANTILES[i - 1], CORPUS_SIZE_QUANTILES[i]
    return int(s0 + (s1 - s0) * (u - q0) / (q1 - q0))


def build_clientdata(
    uses: Sequence[Use],
    rng: random.Random,
    *,
    size: int = 0,
    max_depth: int = 6,
    deep: bool = False,
    child_flows: Sequence[str] = (),
) -> str:
    """Return a minified clientdata string for a flow with these uses.

    ``size`` is a target in bytes (0: no padding, a few filler actions only); ``deep`` puts the
    first connector action at least ``max_depth`` levels down; ``child_flows`` are workflow ids that
    child-flow actions may call.
    """
    return json.dumps(
        build_clientdata_dict(
            uses, rng, size=size, max_depth=max_depth, deep=deep, child_flows=child_flows
        ),
        ensure_ascii=False,
        separators=(",", ":"),
    )


def build_clientdata_dict(
    uses: Sequence[Use],
    rng: random.Random,
    *,
    size: int = 0,
    max_depth: int = 6,
    deep: bool = False,
    child_flows: Sequence[str] = (),
) -> dict[str, Any]:
    """Return the clientdata document as a dict (see ``build_clientdata``)."""
    return _Builder(rng, max_depth, child_flows).document(uses, size, deep)


# --- the builder -------------------------------------------------------------------------------

# Latin-1 only: one wider character (ł, emoji) makes CPython store the whole clientdata string
# at 2-4 bytes per character, which doubles a large tenant's memory.
_VOCABULARY = (
    "request approval manager invoice status report weekly record owner contact account "
    "employee absence leave expense order ticket site list item folder file document customer "
    "reminder escalation deadline summary details region team project budget payroll onboarding "
    "welcome survey response feedback audit policy review archive backup sync export import "
    "Prüfung Genehmigung Übersicht Größe été résumé"
)
_WORDS = tuple(_VOCABULARY.split())
_VARIABLES = ("varStatus", "varCount", "strBody", "arrResults", "objConfig", "intRetries", "done")
_ODD_NAMES = (
    "Set_variable:_objResults['list_name']",
    "Wenn_ein_Element_oder_eine_Datei_geändert_wird",
    "Kurs_określonej_waluty",
    "Compose_-_Body_(HTML)",
    "When_an_action_is_performed:_Quarantine",
)
_FILLER_NAMES = {
    "Compose": "Compose",
    "InitializeVariable": "Initialize_variable",
    "SetVariable": "Set_variable",
    "ParseJson": "Parse_JSON",
    "Select": "Select",
}
_LINK_OVERHEAD = 90  # bytes per action for its name, runAfter link and share of containers
_FOLD_CHANCE = 0.15  # per action position; gives the corpus's depth mix (half the flows <= 2)
_CONTAINER_KINDS = ("Scope", "If", "Foreach", "Switch", "Until")
_CONTAINER_NAMES = {
    "Scope": "Scope",
    "If": "Condition",
    "Foreach": "Apply_to_each",
    "Switch": "Switch",
    "Until": "Do_until",
}

Named = tuple[str, dict[str, Any]]


class _Builder:
    """Builds one clientdata document; holds the per-flow state (action names in use)."""

    def __init__(self, rng: random.Random, max_depth: int, child_flows: Sequence[str]) -> None:
        self.rng = rng
        self.max_depth = max_depth
        self.child_flows = child_flows
        self.names: set[str] = set()

    # -- top level ---------------------------------------------------------------------------

    def document(self, uses: Sequence[Use], size: int, deep: bool) -> dict[str, Any]:
        rng = self.rng
        trigger_use = self._pick_trigger_use(uses)
        connector_actions = self._connector_actions(uses, trigger_use)
        trigger = self._trigger(trigger_use)
        fillers = self._fillers(size, connector_actions, uses)
        head = None
        if deep and connector_actions:
            head = self._deep_chain(connector_actions.pop(0), self.max_depth - 1)
        leaves = connector_actions + fillers
        rng.shuffle(leaves)
        actions = self._arrange(leaves, 1)
        if head is not None:
            # appended at the top so random folding cannot push it deeper than max_depth
            head[1]["runAfter"] = {list(actions)[-1]: ["Succeeded"]} if actions else {}
            actions[head[0]] = head[1]
        definition: dict[str, Any] = {
            "$schema": SCHEMA_URL,
            "contentVersion": "1.0.0.0",
            "parameters": self._parameters(uses),
            "triggers": {trigger[0]: trigger[1]},
            "actions": actions,
        }
        if rng.random() < 0.45:
            definition["outputs"] = {}
        properties: dict[str, Any] = {
            "connectionReferences": {u.key: self._entry(u) for u in uses},
            "definition": definition,
        }
        self._template_name(properties)
        return {"properties": properties, "schemaVersion": "1.0.0.0"}

    def _template_name(self, properties: dict[str, Any]) -> None:
        # absent 189, null 129, "" 104, a hex id 8 in the corpus
        u = self.rng.random()
        if u < 0.43:
            return
        if u < 0.72:
            properties["templateName"] = None
        elif u < 0.98:
            properties["templateName"] = ""
        else:
            properties["templateName"] = f"{self.rng.getrandbits(128):032x}"

    def _parameters(self, uses: Sequence[Use]) -> dict[str, Any]:
        params: dict[str, Any] = {}
        needs_connections = any(u.host == "apiconnection" for u in uses)
        if needs_connections or self.rng.random() < 0.92:
            params["$connections"] = {"defaultValue": {}, "type": "Object"}
        params["$authentication"] = {"defaultValue": {}, "type": "SecureObject"}
        if self.rng.random() < 0.3:
            schema = f"new_{self.rng.choice(_WORDS).capitalize()}Url"
            params[f"{schema.removeprefix('new_')} ({schema})"] = {
                "defaultValue": _SITE,
                "type": "String",
                "metadata": {"schemaName": schema, "description": "Environment variable"},
            }
        return params

    # -- connectionReferences entries -------------------------------------------------------

    def _entry(self, use: Use) -> dict[str, Any]:
        if use.entry == "legacy":
            return self._legacy_entry(use)
        api: dict[str, Any] = {"name": use.connector}
        if use.api_logical_name is not None:
            api["logicalName"] = use.api_logical_name
        connection = (
            {} if use.logical_name is None else {"connectionReferenceLogicalName": use.logical_name}
        )
        if self.rng.random() < 0.5:
            entry = {"runtimeSource": use.runtime_source, "connection": connection, "api": api}
        else:
            entry = {"api": api, "connection": connection, "runtimeSource": use.runtime_source}
        if use.entry == "impersonation":
            # Business Approvals Kit: runtimeSource stays as it is, impersonation says invoker
            entry["impersonation"] = self.rng.choice(({}, {"source": "invoker"}))
        return entry

    def _legacy_entry(self, use: Use) -> dict[str, Any]:
        stem = ("shared-" + use.connector.removeprefix("shared_"))[:20]
        name = (
            f"{stem}-{self._guid()}"
            if self.rng.random() < 0.7
            else f"{self.rng.getrandbits(128):032x}"
        )
        return {
            "connectionName": name,
            "source": use.runtime_source.capitalize(),
            "id": API_PREFIX + use.connector,
            "tier": "NotSpecified",
        }

    # -- connector actions and trigger ------------------------------------------------------

    def _pick_trigger_use(self, uses: Sequence[Use]) -> Use | None:
        candidates = [u for u in uses if u.action_count > 0 and connector_for(u.connector).trigger]
        if candidates and self.rng.random() < 0.4:
            return self.rng.choice(candidates)
        return None

    def _connector_actions(self, uses: Sequence[Use], trigger_use: Use | None) -> list[Named]:
        out: list[Named] = []
        for use in uses:
            count = use.action_count - (1 if use is trigger_use else 0)
            out.extend(self._connector_action(use) for _ in range(count))
        return out

    def _connector_action(self, use: Use) -> Named:
        connector = connector_for(use.connector)
        op = self.rng.choice(connector.operations)
        name = self._name(op.action_name)
        auth: Any = PLAIN_AUTH
        if use.runtime_source == "invoker" and self.rng.random() < 0.5:
            auth = APIM_TOKEN_AUTH
        if use.host == "apiconnection":
            inputs = self._apiconnection_inputs(use, op, connector, auth)
            kind = "ApiConnectionWebhook" if op.type.endswith("Webhook") else "ApiConnection"
        else:
            inputs = self._openapi_inputs(use, op, connector, auth)
            kind = op.type
        action = {
            "runAfter": {},
            "metadata": {"operationMetadataId": self._guid()},
            "type": kind,
            "inputs": inputs,
        }
        return name, action

    def _openapi_inputs(
        self, use: Use, op: Operation, connector: Connector, auth: Any
    ) -> dict[str, Any]:
        api_id, op_id = _api_id(use), op.operation_id
        if use.connector == "shared_commondataserviceforapps" and self.rng.random() < 0.03:
            api_id, op_id = AI_BUILDER_API_ID, "aibuilderpredict_gptpromptengineering"
        return {
            "host": {"apiId": api_id, "connectionName": use.key, "operationId": op_id},
            "parameters": dict(connector.parameters),
            "authentication": auth,
        }

    def _apiconnection_inputs(
        self, use: Use, op: Operation, connector: Connector, auth: Any
    ) -> dict[str, Any]:
        return {
            "host": _expression_host(use.key),
            "method": self.rng.choice(("get", "post", "patch")),
            "path": f"/v2/{op.operation_id}",
            "queries": dict(connector.parameters),
            "authentication": auth,
        }

    def _trigger(self, use: Use | None) -> Named:
        if use is None:
            return self._plain_trigger()
        connector = connector_for(use.connector)
        op = connector.trigger
        assert op is not None  # _pick_trigger_use only picks connectors with one
        name = self._name(op.action_name)
        if use.host == "apiconnection":
            host = _expression_host(use.key)
            kind = "ApiConnectionWebhook"
        else:
            host = {
                "apiId": _api_id(use),
                "connectionName": use.key,
                "operationId": op.operation_id,
            }
            kind = op.type
        trigger: dict[str, Any] = {
            "metadata": {"operationMetadataId": self._guid()},
            "type": kind,
            "inputs": {"host": host, "parameters": dict(connector.parameters)},
        }
        if kind == "OpenApiConnection":
            trigger["recurrence"] = {"frequency": "Minute", "interval": 5}
        trigger["inputs"]["authentication"] = PLAIN_AUTH
        return name, trigger

    def _plain_trigger(self) -> Named:
        kind = self.rng.choice(("Recurrence", "Button", "PowerAppV2", "Http"))
        if kind == "Recurrence":
            return self._name("Recurrence"), {
                "recurrence": {
                    "frequency": "Day",
                    "interval": 1,
                    "startTime": "2024-01-01T06:00:00Z",
                },
                "type": "Recurrence",
            }
        schema = {
            "type": "object",
            "properties": {
                "text": {"title": "Input", "type": "string", "x-ms-dynamically-added": True}
            },
            "required": ["text"],
        }
        return self._name("manual"), {
            "metadata": {"operationMetadataId": self._guid()},
            "type": "Request",
            "kind": kind,
            "inputs": {"schema": schema},
        }

    # -- filler ------------------------------------------------------------------------------

    def _fillers(
        self, size: int, connector_actions: list[Named], uses: Sequence[Use]
    ) -> list[Named]:
        rng = self.rng
        out: list[Named] = [self._filler()[0] for _ in range(rng.randint(1, 3))]
        if self.child_flows and rng.random() < 0.15:
            out.append(self._child_flow_call())
        if size <= 0:
            return out
        # overhead: envelope, entries, runAfter links and containers, measured on the corpus shape
        budget = size - 900 - 160 * len(uses)
        budget -= sum(_approx_size(a) + _LINK_OVERHEAD for _, a in connector_actions + out)
        while budget > 0:
            filler, filler_size = self._filler()
            budget -= filler_size + _LINK_OVERHEAD
            out.append(filler)
        return out

    def _filler(self) -> tuple[Named, int]:
        """Return a non-connector action (inputs shared from a fixed pool) and its JSON size."""
        kind, inputs, size = self.rng.choice(_filler_pool())
        base = self.rng.choice(_ODD_NAMES) if self.rng.random() < 0.02 else _FILLER_NAMES[kind]
        return (self._name(base), {"runAfter": {}, "type": kind, "inputs": inputs}), size

    def _child_flow_call(self) -> Named:
        return self._name("Run_a_Child_Flow"), {
            "runAfter": {},
            "type": "Workflow",
            "inputs": {
                "host": {"workflowReferenceName": self.rng.choice(self.child_flows)},
                "body": {"text": "@triggerBody()?['text']"},
            },
        }

    # -- nesting -----------------------------------------------------------------------------

    def _arrange(self, leaves: list[Named], level: int) -> dict[str, Any]:
        """Chain leaves with runAfter at nesting ``level`` (1 = top), folding runs into blocks."""
        rng = self.rng
        block: dict[str, Any] = {}
        prev: str | None = None
        i = 0
        while i < len(leaves):
            remaining = len(leaves) - i
            if level < self.max_depth and remaining >= 2 and rng.random() < _FOLD_CHANCE:
                take = rng.randint(1, remaining)
                name, action = self._container(leaves[i : i + take], level + 1)
                i += take
            else:
                name, action = leaves[i]
                i += 1
            action["runAfter"] = {prev: ["Succeeded"]} if prev else {}
            block[name] = action
            prev = name
        return block

    def _deep_chain(self, leaf: Named, levels: int) -> Named:
        """Wrap one action in ``levels`` nested containers, cycling through every kind."""
        named = leaf
        for level in range(levels, 0, -1):
            kind = _CONTAINER_KINDS[level % len(_CONTAINER_KINDS)]
            named = self._container([named], self.max_depth, kind)
        return named

    def _container(self, leaves: list[Named], level: int, kind: str | None = None) -> Named:
        """Return a container whose own actions sit at nesting ``level``."""
        rng = self.rng
        kind = kind or rng.choices(_CONTAINER_KINDS, weights=(5, 10, 6, 1, 1))[0]
        name = self._name(_CONTAINER_NAMES[kind])
        if kind == "If":
            cut = rng.randint(0, len(leaves))
            return name, {
                "actions": self._arrange(leaves[:cut], level),
                "runAfter": {},
                "else": {"actions": self._arrange(leaves[cut:], level)},
                "expression": {
                    "and": [{"equals": [f"@variables('{rng.choice(_VARIABLES)}')", True]}]
                },
                "type": "If",
            }
        if kind == "Switch":
            return name, self._switch(leaves, level)
        body = self._arrange(leaves, level)
        if kind == "Foreach":
            action = {"foreach": "@outputs('List_rows')?['body/value']", "actions": body}
            if rng.random() < 0.3:
                action["runtimeConfiguration"] = {"concurrency": {"repetitions": 1}}
        elif kind == "Until":
            action = {
                "actions": body,
                "expression": "@equals(variables('done'), true)",
                "limit": {"count": 60, "timeout": "PT1H"},
            }
        else:
            action = {"actions": body}
        action.update(runAfter={}, type=kind)
        return name, action

    def _switch(self, leaves: list[Named], level: int) -> dict[str, Any]:
        rng = self.rng
        cuts = sorted(rng.randint(0, len(leaves)) for _ in range(rng.randint(1, 3)))
        bounds = [0, *cuts, len(leaves)]
        cases = {
            (f"Case_{n}" if n > 1 else "Case"): {
                "case": f"Option{n}",
                "actions": self._arrange(leaves[bounds[n - 1] : bounds[n]], level),
            }
            for n in range(1, len(bounds) - 1)
        }
        return {
            "runAfter": {},
            "cases": cases,
            "default": {"actions": self._arrange(leaves[bounds[-2] :], level)},
            "expression": "@triggerBody()?['text']",
            "type": "Switch",
        }

    # -- small helpers -----------------------------------------------------------------------

    def _name(self, base: str) -> str:
        """Return a flow-unique action name the way the designer numbers them (``_2``, ``_3``)."""
        name, n = base, 1
        while name in self.names:
            n += 1
            name = f"{base}_{n}"
        self.names.add(name)
        return name

    def _guid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))


def _api_id(use: Use) -> str:
    # custom connectors' actions carry an empty apiId in every corpus flow
    return "" if use.api_logical_name is not None else API_PREFIX + use.connector


def _expression_host(key: str) -> dict[str, Any]:
    """The older ApiConnection host: the key hides in a ``$connections`` expression."""
    return {"connection": {"name": f"@parameters('$connections')['{key}']['connectionId']"}}


@functools.cache
def _filler_pool() -> tuple[tuple[str, Any, int], ...]:
    """Filler inputs drawn once from a fixed seed: flows share them, which saves time and memory.

    Nothing mutates inputs after building, so sharing one object between flows is safe.
    """
    rng = random.Random("connref-cleanup/filler-pool")
    pool = []
    for _ in range(512):
        kind = rng.choice(tuple(_FILLER_NAMES))
        inputs = _filler_inputs(rng, kind, long=rng.random() < 0.3)
        action = {"runAfter": {}, "type": kind, "inputs": inputs}
        pool.append((kind, inputs, _approx_size(action)))
    return tuple(pool)


def _filler_inputs(rng: random.Random, kind: str, long: bool) -> Any:
    if kind == "Compose":
        words = rng.choices(_WORDS, k=rng.randint(40, 160) if long else rng.randint(3, 25))
        return "<p>" + " ".join(words) + "</p>"
    if kind == "InitializeVariable":
        variable = {"name": rng.choice(_VARIABLES), "type": "string", "value": rng.choice(_WORDS)}
        return {"variables": [variable]}
    if kind == "SetVariable":
        return {"name": rng.choice(_VARIABLES), "value": "@{triggerBody()?['text']}"}
    if kind == "ParseJson":
        props = {w: {"type": "string"} for w in rng.sample(_WORDS, 30 if long else 4)}
        return {
            "content": "@body('Get_items')",
            "schema": {"type": "object", "properties": props, "required": list(props)[:2]},
        }
    fields = rng.sample(_WORDS, 12 if long else 3)
    return {
        "from": "@body('List_rows')?['value']",
        "select": {w: f"@item()?['{w}']" for w in fields},
    }


def _approx_size(action: dict[str, Any]) -> int:
    return len(json.dumps(action, ensure_ascii=False, separators=(",", ":")))
