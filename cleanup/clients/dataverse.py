"""Dataverse Web API v9.2 for one environment: the tables and functions the job reads.

``$select`` names only the columns the snapshot uses; collections are paged at the configured
page size and ``@odata.nextLink`` is followed unchanged.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import requests

from cleanup import json_text
from cleanup.clients.http import HttpClient, PageDecoder
from cleanup.errors import ApiError

REFERENCE_COLUMNS = (
    "connectionreferenceid,connectionreferencelogicalname,connectionreferencedisplayname,"
    "connectorid,connectionid,description,ismanaged,iscustomizable,_ownerid_value,createdon,"
    "modifiedon,solutionid,_customconnectorid_value"
)
FLOW_COLUMNS = (
    "workflowid,workflowidunique,name,statecode,statuscode,ismanaged,_ownerid_value,createdon,"
    "modifiedon,solutionid,clientdata"
)
SOLUTION_COLUMNS = "solutionid,uniquename,friendlyname,ismanaged,version,_publisherid_value"
PUBLISHER_COLUMNS = "publisherid,uniquename,friendlyname,customizationprefix"
USER_COLUMNS = (
    "systemuserid,fullname,internalemailaddress,domainname,azureactivedirectoryobjectid,"
    "applicationid,isdisabled,accessmode"
)
TEAM_COLUMNS = "teamid,name,emailaddress,azureactivedirectoryobjectid,teamtype"
CLOUD_FLOW_FILTER = "category eq 5 and type eq 1"
WORKFLOW_COMPONENT_TYPE = 29
DEPENDENCY_TABLE = "RetrieveDependenciesForDelete"  # the table its requests are counted under
RECORD_NOT_FOUND = "0x80040217"
ODATA_HEADERS = {"Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0"}


class DataverseClient:
    """Read (and, under apply, write) one environment's Dataverse tables."""

    def __init__(self, http: HttpClient, instance_url: str, environment_id: str) -> None:
        self.http = http
        self.environment_id = environment_id
        base = instance_url.rstrip("/")
        self.api = f"{base}/api/data/v9.2/"
        self.scope = f"{base}/.default"

    def pages(
        self,
        entity_set: str,
        select: str,
        filter_: str = "",
        *,
        decode: PageDecoder = json_text.odata_page,
    ) -> Iterator[Any]:
        """Yield the pages of an entity set with ``$select`` (and ``$filter``), decoded."""
        params = {"$select": select}
        if filter_:
            params["$filter"] = filter_
        return self.http.odata_pages(
            self.api + entity_set,
            scope=self.scope,
            params=params,
            tag=self.environment_id,
            table=entity_set,
            decode=decode,
        )

    def rows(self, entity_set: str, select: str, filter_: str = "") -> list[dict[str, Any]]:
        """Return every row of an entity set."""
        return [row for page in self.pages(entity_set, select, filter_) for row in page]

    def connection_references(self) -> list[dict[str, Any]]:
        """Return every connection reference (no state filter: they have no real on/off)."""
        return self.rows("connectionreferences", REFERENCE_COLUMNS)

    def cloud_flow_pages(
        self, modified_after: str = "", *, decode: PageDecoder = json_text.odata_page
    ) -> Iterator[Any]:
        """Yield pages of cloud flows (category 5, type 1) with their clientdata, decoded."""
        filter_ = CLOUD_FLOW_FILTER
        if modified_after:
            filter_ += f" and modifiedon gt {modified_after}"
        return self.pages("workflows", FLOW_COLUMNS, filter_, decode=decode)

    def solutions(self) -> list[dict[str, Any]]:
        """Return every solution."""
        return self.rows("solutions", SOLUTION_COLUMNS)

    def publishers(self) -> list[dict[str, Any]]:
        """Return every publisher (for customization prefixes)."""
        return self.rows("publishers", PUBLISHER_COLUMNS)

    def reference_component_type(self) -> int | None:
        """Return this environment's solution component type for connection references."""
        rows = self.rows(
            "solutioncomponentdefinitions",
            "solutioncomponenttype,name,primaryentityname",
            "primaryentityname eq 'connectionreference'",
        )
        for row in rows:
            value = row.get("solutioncomponenttype")
            if isinstance(value, int):
                return value
        return None

    def solution_components(self, component_types: list[int]) -> list[dict[str, Any]]:
        """Return solution membership rows for the given component types."""
        filter_ = " or ".join(f"componenttype eq {int(t)}" for t in component_types)
        return self.rows("solutioncomponents", "_solutionid_value,objectid,componenttype", filter_)

    def system_users(self) -> list[dict[str, Any]]:
        """Return every system user with the columns needed to reach its owner."""
        return self.rows("systemusers", USER_COLUMNS)

    def teams(self) -> list[dict[str, Any]]:
        """Return every team."""
        return self.rows("teams", TEAM_COLUMNS)

    def dependencies_for_delete(self, object_id: str, component_type: int) -> list[dict[str, Any]]:
        """Return what would block deleting a component (RetrieveDependenciesForDelete)."""
        # Parameter aliases written literally: some servers do not decode a percent-encoded '@'.
        url = (
            f"{self.api}RetrieveDependenciesForDelete(ObjectId=@p1,ComponentType=@p2)"
            f"?@p1={object_id}&@p2={int(component_type)}"
        )
        body = self.http.get_json(
            url, scope=self.scope, tag=self.environment_id, table=DEPENDENCY_TABLE
        )
        value = body.get("value") if isinstance(body, dict) else None
        if not isinstance(value, list):
            raise ApiError("RetrieveDependenciesForDelete answered without a 'value' list", url=url)
        return value

    # -- reads and writes by key (apply) --------------------------------------------------------

    def row_url(self, entity_set: str, row_id: str) -> str:
        """Return the URL of one row; the id must be a GUID (nothing else reaches the URL)."""
        try:
            key = str(uuid.UUID(row_id))
        except (ValueError, TypeError, AttributeError):
            raise ApiError(f"Refusing a row key that is not a GUID: {row_id!r}") from None
        return f"{self.api}{entity_set}({key})"

    def get_row(
        self, entity_set: str, row_id: str, select: str
    ) -> tuple[dict[str, Any] | None, str | None]:
        """Read one row by key; return ``(row, etag)``, or ``(None, None)`` if it does not exist."""
        url = self.row_url(entity_set, row_id)
        headers = {**ODATA_HEADERS, "Prefer": 'odata.include-annotations="*"'}
        try:
            body = self.http.get_json(
                url,
                scope=self.scope,
                tag=self.environment_id,
                table=entity_set,
                params={"$select": select},
                headers=headers,
            )
        except ApiError as exc:
            if is_missing(exc):
                return None, None
            raise
        if not isinstance(body, dict):
            raise ApiError("The service answered with a row that is not an object", url=url)
        return body, body.get("@odata.etag")

    def patch(
        self,
        entity_set: str,
        row_id: str,
        body: dict[str, Any],
        if_match: str,
        *,
        select: str = "",
    ) -> dict[str, Any] | None:
        """Update one row only if it still has ``if_match``; return the row written if selected."""
        headers = _write_headers(if_match)
        params = None
        if select:
            headers["Prefer"] = "return=representation"
            params = {"$select": select}
        response = self.http.send(
            "PATCH",
            self.row_url(entity_set, row_id),
            scope=self.scope,
            tag=self.environment_id,
            table=entity_set,
            params=params,
            headers=headers,
            json_body=body,
        )
        return _optional_json(response)

    def delete(self, entity_set: str, row_id: str, if_match: str) -> None:
        """Delete one row only if it still has ``if_match``."""
        self.http.send(
            "DELETE",
            self.row_url(entity_set, row_id),
            scope=self.scope,
            tag=self.environment_id,
            table=entity_set,
            headers=_write_headers(if_match),
        )

    def create(
        self,
        entity_set: str,
        body: dict[str, Any],
        solution_unique_name: str | None = None,
        *,
        select: str = "",
    ) -> dict[str, Any] | None:
        """Create a row (inside a solution when named); return the row created if selected."""
        headers = dict(ODATA_HEADERS)
        if solution_unique_name:
            headers["MSCRM.SolutionUniqueName"] = solution_unique_name
        params = None
        if select:
            headers["Prefer"] = "return=representation"
            params = {"$select": select}
        response = self.http.send(
            "POST",
            self.api + entity_set,
            scope=self.scope,
            tag=self.environment_id,
            table=entity_set,
            params=params,
            headers=headers,
            json_body=body,
        )
        return _optional_json(response)


def is_missing(exc: ApiError) -> bool:
    """Tell whether an error says the row does not exist (not: the URL or org is wrong)."""
    if exc.status != 404:
        return False
    return exc.code == RECORD_NOT_FOUND or "does not exist" in exc.message.lower()


def _write_headers(if_match: str) -> dict[str, str]:
    if not if_match or if_match.strip() == "*":
        # "*" is no concurrency control at all: every write names the version it read.
        raise ApiError("Refusing a write without the ETag of the version it was planned on")
    return {**ODATA_HEADERS, "If-Match": if_match}


def _optional_json(response: requests.Response) -> dict[str, Any] | None:
    if response.status_code == 204 or not response.content:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
