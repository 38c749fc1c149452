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
from pathlib import Path
from typing import Any

from cleanup.report.rows import fold, part, records
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
        return {key for action in part(plan, "actions") or [] if (key := _deleted_by(action))}
    rows = records(part(proposals, "leftovers"), ["environment_id", "reference_id", "deletable"])
    return {(r["environment_id"], r["reference_id"]) for r in rows if r["deletable"] is True}


def _deleted_by(action: Any) -> RefKey | None:
    kind = next(
        (part(action, n) for n in ("kind", "action", "type") if part(action, n) is not None),
        type(action).__name__,
    )
    if "delete" not in str(kind).lower():
        return None
    env_id = part(action, "environment_id")
    ref_id = part(action, "reference_id") or part(action, "object_id")
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
    fields = ["environment_id", "reference_id", "logical_name", "connection_id", "connector_id"]
    rows = sorted(records(snapshot.references, fields), key=lambda r: fold(r["logical_name"]))
    for row in rows:
        env_id = row["environment_id"]
        if env_id not in out or (env_id, row["reference_id"]) in deleted:
            continue
        out[env_id]["ConnectionReferences"].append(
            {
                "LogicalName": row["logical_name"] or "",
                # pac writes an empty ConnectionId for a reference that is not bound yet.
                "ConnectionId": row["connection_id"] or "",
                "ConnectorId": row["connector_id"] or "",
            }
        )
    return out


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
        written.append(_write_json(folder / file_name, settings))
        index.append(
            {"file": file_name, "environment_id": env_id, "display_name": names.get(env_id)}
        )
    _write_json(folder / INDEX_FILE, index)
    return written


def _write_json(path: Path, data: Any) -> Path:
    # Atomic: a crash never leaves half a settings file for a pipeline to import.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
