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
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cleanup.report.rows import fold_key, part, records
from cleanup.snapshot.model import Snapshot

SETTINGS_DIR = "deployment-settings"
INDEX_FILE = "index.json"
MAX_FILE_NAME = 80
HASH_CHARS = 10
SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,80}$")

RefKey = tuple[str, str]


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
        # A plan may hold a million actions: what varies by type is worked out once per type.
        mappings: dict[type, bool] = {}
        deletes: dict[Any, bool] = {}
        out: set[RefKey] = set()
        for action in part(plan, "actions") or []:
            cls = type(action)
            mapping = mappings.get(cls)
            if mapping is None:
                mapping = mappings[cls] = isinstance(action, Mapping)
            kind = action.get("kind") if mapping else getattr(action, "kind", None)
            if kind is None:
                kind = _kind(action, mapping)
            delete = deletes.get(kind)
            if delete is None:
                delete = deletes[kind] = "delete" in str(kind).lower()
            if delete and (key := _reference_key(action, mapping)):
                out.add(key)
        return out
    rows = records(part(proposals, "leftovers"), ["environment_id", "reference_id", "deletable"])
    return {(r["environment_id"], r["reference_id"]) for r in rows if r["deletable"] is True}


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
) -> dict[str, dict[str, list[dict[str, str]]]]:
    """Return, per complete environment id, its pac deployment settings after the plan."""
    deleted = deleted_references(proposals, plan)
    complete = snapshot.complete_environments()
    out: dict[str, dict[str, list[dict[str, str]]]] = {
        env_id: {"EnvironmentVariables": [], "ConnectionReferences": []} for env_id in complete
    }
    refs = snapshot.references
    refs = refs[refs["environment_id"].isin(list(complete))]
    if refs.empty:
        return out
    refs = refs.iloc[np.argsort(fold_key(refs["logical_name"]), kind="stable")]
    columns = [
        _texts(refs, name)
        for name in ("environment_id", "reference_id", "logical_name", "connection_id")
    ]
    columns.append(_texts(refs, "connector_id"))
    for env_id, ref_id, logical, connection, connector in zip(*columns, strict=True):
        if (env_id, ref_id) in deleted:
            continue
        out[env_id]["ConnectionReferences"].append(
            {
                "LogicalName": logical,
                # pac writes an empty ConnectionId for a reference that is not bound yet.
                "ConnectionId": connection,
                "ConnectorId": connector,
            }
        )
    return out


def _texts(frame: pd.DataFrame, name: str) -> list[Any]:
    """Return a column as Python values, missing ones (and a missing column) as ""."""
    if name not in frame.columns:
        return [""] * len(frame)
    values = frame[name].astype(object)
    return values.where(values.notna(), "").tolist()


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
    index, written = [], []
    for env_id, settings in sorted(deployment_settings(snapshot, proposals, plan).items()):
        file_name = settings_file_name(names.get(env_id), env_id)
        written.append(_write_json(folder / file_name, settings, settings_text(settings)))
        index.append(
            {"file": file_name, "environment_id": env_id, "display_name": names.get(env_id)}
        )
    _write_json(folder / INDEX_FILE, index)
    return written


def _write_json(path: Path, data: Any, text: str | None = None) -> Path:
    # Atomic: a crash never leaves half a settings file for a pipeline to import.
    tmp = path.with_name(f".{path.name}.tmp")
    body = json.dumps(data, indent=2) if text is None else text
    tmp.write_text(body + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def settings_text(settings: dict[str, list[dict[str, str]]]) -> str:
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
            f'    {{\n      "LogicalName": {quote(r["LogicalName"])},\n'
            f'      "ConnectionId": {quote(r["ConnectionId"])},\n'
            f'      "ConnectorId": {quote(r["ConnectorId"])}\n    }}'
            for r in refs
        )
    except TypeError:  # a value that is not text: json knows what to do
        return json.dumps(settings, indent=2)
    return f'{{\n  "EnvironmentVariables": [],\n  "ConnectionReferences": [\n{items}\n  ]\n}}'
