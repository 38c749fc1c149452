"""pac-style deployment settings per environment: the references that remain after the plan.

The files bind connection references at import (``pac solution import --settings-file``). Their
names are built from a slug of the environment's display name plus a hash of its id and never
taken raw from remote data, so a name like ``../../etc/passwd`` cannot leave the folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cleanup.interpreter import gc_paused
from cleanup.plan import ACTION_TYPES
from cleanup.report.rows import fold_key, part, records
from cleanup.snapshot.model import Snapshot

SETTINGS_DIR = "deployment-settings"
INDEX_FILE = "index.json"
MAX_FILE_NAME = 80
HASH_CHARS = 10
SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,80}$")

RefKey = tuple[str, str]
Settings = dict[str, list[dict[str, str]]]  # one environment's deployment settings

ENV = "environment_id"
FIELDS = {  # settings file key: references column
    "LogicalName": "logical_name",
    "ConnectionId": "connection_id",
    "ConnectorId": "connector_id",
}
# json.dumps(settings, indent=2) of the one shape the files have, and of one reference in it.
FILE_TEXT = '{\n  "EnvironmentVariables": [],\n  "ConnectionReferences": [\n%s\n  ]\n}'
ITEM_TEXT = (
    '    {\n      "LogicalName": %s,\n      "ConnectionId": %s,\n      "ConnectorId": %s\n    }'
)


def settings_file_name(display_name: str | None, environment_id: str) -> str:
    """Return a safe, stable file name: ``<slug of display name>-<hash of id>.json``."""
    digest = hashlib.sha256(environment_id.encode("utf-8")).hexdigest()[:HASH_CHARS]
    room = MAX_FILE_NAME - len(digest) - len("-.json")
    slug = _slug(display_name or "")[:room].strip("-") or "environment"
    return f"{slug}-{digest}.json"


def _slug(text: str) -> str:
    # Fold accents to ASCII, then keep letters and digits only: no dots, so no "..".
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^A-Za-z0-9]+", "-", ascii_text).strip("-")


def deleted_references(proposals: Any = None, plan: Any = None) -> set[RefKey]:
    """Return (environment_id, reference_id) of the references the plan deletes.

    Without a plan, the deletable leftovers of the proposals stand in for it.
    """
    if plan is not None:
        return _planned_deletes(part(plan, "actions") or [])
    rows = records(part(proposals, "leftovers"), ["environment_id", "reference_id", "deletable"])
    return {(r["environment_id"], r["reference_id"]) for r in rows if r["deletable"] is True}


def _planned_deletes(actions: Iterable[Any]) -> set[RefKey]:
    """Return the references of the actions whose kind says they delete."""
    out: set[RefKey] = set()
    for action in actions:
        # The plan's own actions carry their kind on the class: a million of them are sorted
        # by a lookup. Anything else (a mapping from JSON, another object) is read as it is.
        delete = PLAN_DELETES.get(type(action))
        mapping = False
        if delete is None:
            mapping = isinstance(action, Mapping)
            delete = _is_delete(_kind(action, mapping))
        if delete and (key := _reference_key(action, mapping)):
            out.add(key)
    return out


def _is_delete(kind: Any) -> bool:
    return "delete" in str(kind).lower()


PLAN_DELETES = {cls: _is_delete(kind) for kind, cls in ACTION_TYPES.items()}


def _kind(action: Any, mapping: bool) -> Any:
    # The first of kind, action and type that is set; else the class name.
    for name in ("kind", "action", "type"):
        value = action.get(name) if mapping else getattr(action, name, None)
        if value is not None:
            return value
    return type(action).__name__


def _reference_key(action: Any, mapping: bool) -> RefKey | None:
    if mapping:
        env_id = action.get("environment_id")
        ref_id = action.get("reference_id") or action.get("object_id")
    else:
        env_id = getattr(action, "environment_id", None)
        ref_id = getattr(action, "reference_id", None) or getattr(action, "object_id", None)
    return (str(env_id), str(ref_id)) if env_id and ref_id else None


def deployment_settings(
    snapshot: Snapshot, proposals: Any = None, plan: Any = None
) -> dict[str, Settings]:
    """Return, per complete environment id, its pac deployment settings after the plan."""
    complete = snapshot.complete_environments()
    refs = _remaining_references(snapshot, complete, deleted_references(proposals, plan))
    return _settings_dicts(refs, complete)


def _remaining_references(
    snapshot: Snapshot, complete: set[str], deleted: set[RefKey]
) -> pd.DataFrame:
    """Return the references of complete environments the plan keeps, by logical name."""
    refs = snapshot.references
    # Only the columns the files need: filtering many text columns of a large table is slow.
    refs = refs[[col for col in (ENV, "reference_id", *FIELDS.values()) if col in refs.columns]]
    refs = refs[refs[ENV].isin(list(complete))]
    keys = zip(refs[ENV].tolist(), _texts(refs, "reference_id"), strict=True)
    refs = refs[np.array([key not in deleted for key in keys], dtype=bool)]
    return refs.iloc[np.argsort(fold_key(refs["logical_name"]), kind="stable")]


def _settings_dicts(refs: pd.DataFrame, complete: set[str]) -> dict[str, Settings]:
    """Return the settings of each complete environment from its remaining references."""
    out: dict[str, Settings] = {env_id: _empty_settings() for env_id in complete}
    columns = [_texts(refs, name) for name in (ENV, *FIELDS.values())]
    for env_id, logical, connection, connector in zip(*columns, strict=True):
        out[env_id]["ConnectionReferences"].append(
            {
                "LogicalName": logical,
                # pac writes an empty ConnectionId for a reference that is not bound yet.
                "ConnectionId": connection,
                "ConnectorId": connector,
            }
        )
    return out


def _empty_settings() -> Settings:
    return {"EnvironmentVariables": [], "ConnectionReferences": []}


def _texts(frame: pd.DataFrame, name: str) -> list[Any]:
    """Return a column as Python values, missing ones (and a missing column) as ""."""
    if name not in frame.columns:
        return [""] * len(frame)
    values = frame[name].astype(object)
    return values.where(values.notna(), "").tolist()


@gc_paused()  # no cycles among its rows; a collection would walk every live object
def write_deployment_settings(
    snapshot: Snapshot, run_folder: str | Path, proposals: Any = None, plan: Any = None
) -> list[Path]:
    """Write one settings file per complete environment plus an index; return the files."""
    folder = Path(run_folder) / SETTINGS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    names = {
        r["environment_id"]: r["display_name"]
        for r in records(snapshot.environments, ["environment_id", "display_name"])
    }
    complete = snapshot.complete_environments()
    refs = _remaining_references(snapshot, complete, deleted_references(proposals, plan))
    index, written = [], []
    for env_id, text in sorted(_settings_texts(refs, complete).items()):
        file_name = settings_file_name(names.get(env_id), env_id)
        written.append(_write_text(folder / file_name, text))
        index.append(
            {"file": file_name, "environment_id": env_id, "display_name": names.get(env_id)}
        )
    _write_text(folder / INDEX_FILE, json.dumps(index, indent=2))
    return written


def _write_text(path: Path, text: str) -> Path:
    # Atomic: a crash never leaves half a settings file for a pipeline to import.
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as out:
        out.write(text.encode("utf-8") + b"\n")
    os.replace(tmp, path)
    return path


def _settings_texts(refs: pd.DataFrame, complete: set[str]) -> dict[str, str]:
    """Return each complete environment's settings file text, as ``settings_text`` lays out."""
    if not all(name not in refs or _is_text(refs[name]) for name in FIELDS.values()):
        # A value that is not text: the layout of settings_text (or json) knows what to do.
        return {env: settings_text(s) for env, s in _settings_dicts(refs, complete).items()}
    out = dict.fromkeys(complete, settings_text(_empty_settings()))
    # The references by environment, in logical-name order within each (a stable sort).
    codes, env_ids = pd.factorize(refs[ENV])
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(env_ids) + 1))
    columns = [_json_texts(refs, name)[order] for name in FIELDS.values()]
    items = [ITEM_TEXT % cells for cells in zip(*columns, strict=True)]
    for env_id, start, stop in zip(env_ids, bounds[:-1], bounds[1:], strict=True):
        out[env_id] = FILE_TEXT % ",\n".join(items[start:stop])
    return out


def _is_text(column: pd.Series) -> bool:
    return isinstance(column.dtype, pd.StringDtype)


def _json_texts(refs: pd.DataFrame, name: str) -> np.ndarray:
    """Return ``json.dumps`` of each value of a text column, a missing one as ``""``."""
    if name not in refs.columns:
        return np.full(len(refs), '""', dtype=object)
    codes, uniques = pd.factorize(refs[name])
    # Each distinct value is encoded once; factorize's -1 (missing) picks the trailing "".
    return np.array([*map(encode_basestring_ascii, uniques), '""'], dtype=object)[codes]


def settings_text(settings: Settings) -> str:
    """Return ``json.dumps(settings, indent=2)`` of one environment's deployment settings.

    With ``indent`` the json module encodes in pure Python, and a tenant's settings hold
    hundreds of thousands of references, so the shape ``deployment_settings`` makes is laid out
    here, byte for byte (a test holds the two together); anything else goes to json.
    """
    refs = settings["ConnectionReferences"]
    if list(settings) != ["EnvironmentVariables", "ConnectionReferences"]:
        return json.dumps(settings, indent=2)
    if settings["EnvironmentVariables"] or not refs:
        return json.dumps(settings, indent=2)
    quote = encode_basestring_ascii  # what json.dumps uses for a str (ensure_ascii)
    try:
        items = ",\n".join(
            ITEM_TEXT % (quote(r["LogicalName"]), quote(r["ConnectionId"]), quote(r["ConnectorId"]))
            for r in refs
        )
    except TypeError:  # a value that is not text: json knows what to do
        return json.dumps(settings, indent=2)
    return FILE_TEXT % items
