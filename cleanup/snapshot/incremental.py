"""Incremental nightly snapshots: fetch ``clientdata`` only for the flows that changed.

A night lists every cloud flow's id, ``modifiedon`` and ETag (a small ``$select``, no
clientdata), compares them with the flows stored by the environment's last snapshot, fetches
the changed and new flows (``modifiedon gt <the stored watermark>``, then by id for the rare
flow the watermark cannot catch), drops the deleted ones and reuses the stored ``flows`` and
``usages`` rows of everything else. The other tables are small and are read in full each night.

Correctness comes first, so an environment is read in full when its last snapshot is missing
or incomplete, was written by another tool version (the parser may have changed), on demand
(``--full``), and every ``full_refresh_every`` nights.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from cleanup import schemas
from cleanup.clients.dataverse import CLOUD_FLOW_FILTER, FLOW_COLUMNS, DataverseClient
from cleanup.clients.http import PageDecoder
from cleanup.errors import SnapshotError
from cleanup.frames import isin
from cleanup.snapshot.flowpages import FlowPage
from cleanup.snapshot.settings import SnapshotSettings
from cleanup.snapshot.store import METADATA_FILE, SNAPSHOT_DIR

LISTING_COLUMNS = "workflowid,modifiedon"
IDS_PER_REQUEST = 50  # ~3 KB of $filter: far below URL limits, few requests for a few flows
MAX_RUNS_SCANNED = 31  # runs that read a wanted environment: older ones are not looked at
MAX_FOLDERS_OPENED = 2000  # metadata files read at most, whatever the layout
ODATA_TIME = "%Y-%m-%dT%H:%M:%SZ"

# (environment id, a page body) -> that page's rows: a FlowPageParser, or parse_flow_page.
PageParser = Callable[[str, bytes], FlowPage]


@dataclass
class FlowBase:
    """What an environment's last complete snapshot stored about its flows."""

    run_id: str
    nights_since_full: int
    flows: pd.DataFrame
    usages: pd.DataFrame

    @property
    def watermark(self) -> str | None:
        """The newest stored ``modifiedon`` (server time, so no clock skew), OData-formatted."""
        latest = self.flows["modified_on"].max()
        return None if pd.isna(latest) else latest.strftime(ODATA_TIME)


@dataclass
class FlowRead:
    """One environment's flows and usages: parsed rows plus reused stored rows."""

    flows: list[dict[str, Any]] = field(default_factory=list)
    usages: list[dict[str, Any]] = field(default_factory=list)
    reused_flows: pd.DataFrame | None = None
    reused_usages: pd.DataFrame | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def add(self, page: FlowPage) -> list[str]:
        """Add a page's rows; return the ids of its flows."""
        self.flows.extend(page.flows)
        self.usages.extend(page.usages)
        return [flow["flow_id"] for flow in page.flows]

    @property
    def flow_count(self) -> int:
        """Flows in the result, parsed and reused."""
        reused = 0 if self.reused_flows is None else len(self.reused_flows)
        return len(self.flows) + reused


def find_bases(
    runs_dir: str | Path,
    environment_ids: Iterable[str],
    *,
    run_id: str,
    settings: SnapshotSettings,
    tool_version: str,
    full: bool = False,
) -> dict[str, FlowBase | str]:
    """For each environment, the stored flows to build on, or why it must be read in full.

    The base of an environment is the newest run folder (other than ``run_id``) that tried to
    read it; if that attempt was incomplete, the environment is read in full.
    """
    wanted = list(dict.fromkeys(environment_ids))
    if full:
        return dict.fromkeys(wanted, "full read requested")
    if not settings.incremental:
        return dict.fromkeys(wanted, "incremental snapshots are off")
    decided: dict[str, FlowBase | str] = {}
    by_folder: dict[Path, list[tuple[str, int]]] = {}
    useful = 0
    for folder, meta in _recent_snapshots(Path(runs_dir), run_id):
        envs = meta.get("environments") or {}
        before = len(decided)
        for env_id in wanted:
            info = envs.get(env_id)
            if env_id in decided or not info or info.get("status") == "skipped":
                continue
            decided[env_id] = _why_full(info, meta, tool_version, settings)
            if not decided[env_id]:
                by_folder.setdefault(folder, []).append(
                    (env_id, int(info.get("nights_since_full") or 0))
                )
        # Shards share a runs folder: only runs that read one of ours count toward the limit.
        useful += len(decided) > before
        if len(decided) == len(wanted) or useful >= MAX_RUNS_SCANNED:
            break
    for folder, envs in by_folder.items():
        decided.update(_load_bases(folder, envs))
    return {
        env_id: decided.get(env_id) or "first snapshot of this environment" for env_id in wanted
    }


def _recent_snapshots(runs_dir: Path, run_id: str) -> Iterable[tuple[Path, dict[str, Any]]]:
    if not runs_dir.is_dir():
        return
    folders = sorted(
        (p for p in runs_dir.iterdir() if p.is_dir() and p.name != run_id), reverse=True
    )
    for folder in folders[:MAX_FOLDERS_OPENED]:
        meta_path = folder / SNAPSHOT_DIR / METADATA_FILE
        if not meta_path.is_file():
            continue
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a damaged run teaches nothing; an older one may
        yield folder, meta


def _why_full(
    info: dict[str, Any], meta: dict[str, Any], tool_version: str, settings: SnapshotSettings
) -> str:
    if info.get("status") != "complete":
        return "its last snapshot was incomplete"
    if meta.get("tool_version") != tool_version:
        return f"its last snapshot was taken by version {meta.get('tool_version')}"
    if int(info.get("nights_since_full") or 0) + 1 >= settings.full_refresh_every:
        return f"full refresh (every {settings.full_refresh_every} nights)"
    return ""


def _load_bases(folder: Path, envs: list[tuple[str, int]]) -> dict[str, FlowBase | str]:
    ids = [env_id for env_id, _ in envs]
    try:
        flows = _read_table(folder, "flows", ids)
        usages = _read_table(folder, "usages", ids)
    except (OSError, ValueError, SnapshotError) as exc:
        reason = f"its stored flows in {folder.name} are unreadable ({type(exc).__name__})"
        return dict.fromkeys(ids, reason)
    flows_by_env = dict(iter(flows.groupby("environment_id", sort=False, observed=True)))
    usages_by_env = dict(iter(usages.groupby("environment_id", sort=False, observed=True)))
    empty_flows = schemas.empty_frame(schemas.FLOWS)
    empty_usages = schemas.empty_frame(schemas.USAGES)
    return {
        env_id: FlowBase(
            run_id=folder.name,
            nights_since_full=nights,
            flows=flows_by_env.get(env_id, empty_flows),
            usages=usages_by_env.get(env_id, empty_usages),
        )
        for env_id, nights in envs
    }


def _read_table(folder: Path, name: str, environment_ids: list[str]) -> pd.DataFrame:
    path = folder / SNAPSHOT_DIR / f"{name}.parquet"
    frame = pd.read_parquet(path, filters=[("environment_id", "in", environment_ids)])
    return schemas.conform(frame, schemas.SNAPSHOT_TABLES[name], name=f"{folder.name}/{name}")


def read_flows_full(dv: DataverseClient, parse: PageParser) -> FlowRead:
    """Read every cloud flow with its clientdata, parsing each page as it arrives."""
    read = FlowRead(info={"flows_fetched": 0})
    for page in dv.cloud_flow_pages(decode=_decoder(dv, parse)):
        read.add(page)
    read.info["flows_fetched"] = len(read.flows)
    return read


def read_flows_incremental(dv: DataverseClient, base: FlowBase, parse: PageParser) -> FlowRead:
    """Read only the flows that changed since ``base``; reuse the stored rows of the rest."""
    listing = _listing(dv)
    stored = base.flows.set_index("flow_id", drop=False)
    previous = stored[["etag", "modified_on"]].rename(columns=lambda c: f"{c}_stored")
    joined = listing.join(previous, how="left")
    same = joined["etag"].eq(joined["etag_stored"]).fillna(False) & joined["modified_on"].eq(
        joined["modified_on_stored"]
    ).fillna(False)
    needed = joined.index[~same.to_numpy(dtype=bool)]
    watermark = base.watermark
    read = FlowRead()
    fetched: set[str] = set()
    if len(needed):
        newer = (
            joined.loc[needed, "modified_on"] > pd.Timestamp(watermark)
            if watermark
            else pd.Series(True, index=needed)
        )
        recent, old = needed[newer.to_numpy(dtype=bool)], needed[~newer.to_numpy(dtype=bool)]
        if _full_read_is_cheaper(len(listing), len(recent), len(old), dv.http.settings.page_size):
            return _as_full(read_flows_full(dv, parse), base, len(listing))
        decode = _decoder(dv, parse)
        if len(recent):
            for page in dv.cloud_flow_pages(modified_after=watermark or "", decode=decode):
                fetched.update(read.add(page))
        missing = [flow_id for flow_id in needed if flow_id not in fetched]
        for start in range(0, len(missing), IDS_PER_REQUEST):
            for page in _flows_by_id(dv, missing[start : start + IDS_PER_REQUEST], decode):
                fetched.update(read.add(page))
    # Unchanged, listed and not fetched again: the stored rows are still the truth. A flow
    # that is not listed was deleted; a needed flow that no fetch returned was deleted since.
    keep = listing.index[same.to_numpy(dtype=bool)].difference(pd.Index(list(fetched)))
    read.reused_flows = stored.loc[keep].reset_index(drop=True)
    usages = base.usages
    read.reused_usages = usages.loc[isin(usages["flow_id"], keep)].reset_index(drop=True)
    read.info = {
        "flows_fetched": len(read.flows),
        "flows_reused": len(keep),
        "flows_deleted": int((~isin(stored.index, listing.index)).sum()),
        "flows_watermark": watermark,
    }
    return read


def _listing(dv: DataverseClient) -> pd.DataFrame:
    ids: list[str] = []
    etags: list[Any] = []
    modified: list[Any] = []
    for page in dv.pages("workflows", LISTING_COLUMNS, CLOUD_FLOW_FILTER):
        for row in page:
            flow_id = row.get("workflowid") if isinstance(row, dict) else None
            if not isinstance(flow_id, str) or not flow_id:
                raise SnapshotError("A cloud flow in the id listing has no 'workflowid'")
            ids.append(flow_id)
            etags.append(row.get("@odata.etag"))
            modified.append(row.get("modifiedon"))
    frame = pd.DataFrame(
        {
            "etag": pd.array(etags, dtype=schemas.STR),
            "modified_on": pd.to_datetime(
                pd.Series(modified, dtype=object), utc=True, errors="coerce"
            )
            .astype(schemas.TIME)
            .array,
        },
        index=pd.Index(ids, name="flow_id", dtype=schemas.STR),
    )
    return frame


def _full_read_is_cheaper(total: int, recent: int, old: int, page_size: int) -> bool:
    full = max(1, math.ceil(total / page_size))
    delta = math.ceil(recent / page_size) + math.ceil(old / IDS_PER_REQUEST)
    return full < delta


def _as_full(read: FlowRead, base: FlowBase, listed: int) -> FlowRead:
    read.info.update(
        flows_reused=0,
        flows_deleted=max(0, len(base.flows) - listed),
        flows_watermark=base.watermark,
    )
    return read


def _flows_by_id(
    dv: DataverseClient, flow_ids: list[str], decode: PageDecoder
) -> Iterable[FlowPage]:
    ids = " or ".join(f"workflowid eq {flow_id}" for flow_id in flow_ids)
    return dv.pages("workflows", FLOW_COLUMNS, f"{CLOUD_FLOW_FILTER} and ({ids})", decode=decode)


def _decoder(dv: DataverseClient, parse: PageParser) -> PageDecoder:
    """Decode a page body of ``dv``'s flows straight into rows (clientdata never kept)."""

    def decode(body: bytes) -> tuple[FlowPage, str | None]:
        page = parse(dv.environment_id, body)
        return page, page.next_link

    return decode
