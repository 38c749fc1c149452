"""The write-ahead journal and the backups: what an apply knows survives any crash.

``journal.jsonl`` holds one JSON record per line, each with a sequence number, a UTC time
and a CRC-32 of its content. A record is appended and ``fsync``-ed before the step it
announces: a backup record before the first write to an object, an ``intent`` before every
request that changes something, ``done`` or ``write-failed`` after the answer, an
``outcome`` per action. A torn last line (the process died while writing it) is ignored on
reading; a damaged line anywhere else stops the reader, because guessing would not be safe.

Backups are the exact rows as read before the first change, one file per object under
``backups/<environment>/``, written atomically with mode 0600 (clientdata may hold
sensitive parameters) and never overwritten: the first image is the true "before".

Test hook (test-only, documented here on purpose): ``CONNREF_APPLY_CRASH_AT=<point>[#n]``
makes the process call ``os._exit(137)`` the n-th time it passes ``<point>``, as a SIGKILL
would. Points are ``<event>:<step>`` after a journal record (``backup:flow``,
``intent:turn-off``, ``done:patch-clientdata``, ``phase:deletes``...) and ``sent:<step>``
right after a write was answered but before its ``done`` record. ``set_crash_point`` does the
same in-process, raising ``SimulatedCrash`` (a ``BaseException`` nothing in apply catches).
"""

from __future__ import annotations

import json
import os
import re
import threading
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cleanup.errors import CleanupError

JOURNAL_FILE = "journal.jsonl"
BACKUPS_DIR = "backups"
CRASH_ENV = "CONNREF_APPLY_CRASH_AT"
CRASH_EXIT_CODE = 137
_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,79}$")


class JournalError(CleanupError):
    """A journal or backup cannot be read or written safely."""


class SimulatedCrash(BaseException):  # noqa: N818 - it is not an error, it is a kill
    """Raised by an in-process crash point (tests only); nothing in apply catches it."""


# ---------------------------------------------------------------------------------------------
# Crash points (tests only)

_crash_lock = threading.Lock()
_crash_spec: str | None = None
_crash_raises = False
_crash_hits: dict[str, int] = {}


def set_crash_point(spec: str | None) -> None:
    """Arm (or, with None, disarm) an in-process crash point that raises ``SimulatedCrash``."""
    global _crash_spec, _crash_raises
    with _crash_lock:
        _crash_spec, _crash_raises = spec, spec is not None
        _crash_hits.clear()


def crash_point(name: str) -> None:
    """Die here if a test asked for it (``CONNREF_APPLY_CRASH_AT`` or ``set_crash_point``)."""
    with _crash_lock:
        spec = _crash_spec if _crash_raises else os.environ.get(CRASH_ENV)
        if not spec:
            return
        point, _, nth = spec.partition("#")
        if point != name:
            return
        _crash_hits[name] = _crash_hits.get(name, 0) + 1
        if _crash_hits[name] < (int(nth) if nth else 1):
            return
        raises = _crash_raises
    if raises:
        raise SimulatedCrash(name)
    os._exit(CRASH_EXIT_CODE)


# ---------------------------------------------------------------------------------------------
# The journal


def _crc(record: dict[str, Any]) -> int:
    body = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return zlib.crc32(body.encode("utf-8"))


class Journal:
    """An append-only JSONL file; every record is on disk before ``append`` returns."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.exists():
            _end_torn_line(self.path)
        existing = read_journal(self.path) if self.path.exists() else []
        self._seq = max((r.get("seq", 0) for r in existing), default=0)
        new = not self.path.exists()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if new:
            fsync_directory(self.path.parent)
        self._lock = threading.Lock()

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Write one record and fsync it; return the record."""
        with self._lock:
            self._seq += 1
            record = {"seq": self._seq, "ts": utc_now(), "event": event, **fields}
            line = json.dumps({**record, "crc": _crc(record)}, ensure_ascii=False)
            data = (line + "\n").encode("utf-8")
            written = os.write(self._fd, data)
            if written != len(data):
                raise JournalError(f"Short write to {self.path}: the disk may be full.")
            os.fsync(self._fd)
        step = fields.get("step")
        crash_point(f"{event}:{step}" if step else event)
        return record

    def close(self) -> None:
        """Close the file (records are already durable)."""
        os.close(self._fd)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _end_torn_line(path: Path) -> None:
    """Before appending: finish a last line the previous process did not (or drop it if torn)."""
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return
    start = data.rfind(b"\n") + 1
    with path.open("r+b") as handle:
        if _parse_line(data[start:]) is None:
            handle.truncate(start)  # never acted on: its append had not returned
        else:
            handle.seek(0, os.SEEK_END)
            handle.write(b"\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_journal(path: str | Path) -> list[dict[str, Any]]:
    """Read every record; ignore a torn last line, refuse damage anywhere else."""
    path = Path(path)
    try:
        lines = path.read_bytes().split(b"\n")
    except OSError as exc:
        raise JournalError(f"Cannot read the journal {path}: {exc}.") from None
    if lines and lines[-1] == b"":
        lines.pop()
    records = []
    for number, raw in enumerate(lines, 1):
        record = _parse_line(raw)
        if record is None:
            if number == len(lines):
                break  # the process died while writing this line; the step never started
            raise JournalError(
                f"{path} line {number} is damaged; the journal cannot be trusted. Do not "
                "resume or restore from it; check the objects it names by hand."
            )
        records.append(record)
    return records


def _parse_line(raw: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(record, dict) or "crc" not in record:
        return None
    crc = record.pop("crc")
    return record if crc == _crc(record) else None


def utc_now() -> str:
    """Return the current UTC time, ISO 8601 with microseconds."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def fsync_directory(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# What the journal says about each object


@dataclass
class ObjectTrail:
    """Everything the journal recorded about one object."""

    key: str
    backup: dict[str, Any] | None = None
    etags: list[str] = field(default_factory=list)  # etags we read at backup or wrote
    pending: dict[str, Any] | None = None  # the last intent with no answer recorded
    steps: list[dict[str, Any]] = field(default_factory=list)  # done records, in order
    failures: list[dict[str, Any]] = field(default_factory=list)
    turn_on_failed: bool = False

    @property
    def changed(self) -> bool:
        """True once any write to the object was sent (answered or not)."""
        return bool(self.steps) or self.pending is not None or bool(self.failures)

    @property
    def last_etag(self) -> str | None:
        """The etag after our last confirmed write (or the one read for the backup)."""
        return self.etags[-1] if self.etags else None

    def did(self, step: str) -> bool:
        """True if a write of this step was confirmed."""
        return any(s.get("step") == step for s in self.steps)


@dataclass
class JournalState:
    """The journal folded into per-object trails and per-action outcomes."""

    header: dict[str, Any] | None = None
    objects: dict[str, ObjectTrail] = field(default_factory=dict)
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)
    finished: bool = False

    def trail(self, key: str) -> ObjectTrail:
        """Return (creating if needed) the trail of one object."""
        if key not in self.objects:
            self.objects[key] = ObjectTrail(key)
        return self.objects[key]


def fold(records: Iterable[dict[str, Any]]) -> JournalState:
    """Fold journal records, in order, into what is known about each object and action."""
    state = JournalState()
    for record in records:
        _fold_one(state, record)
    return state


def _fold_one(state: JournalState, record: dict[str, Any]) -> None:
    event = record.get("event")
    if event == "started" and state.header is None:
        state.header = record
    elif event == "finished":
        state.finished = True
    elif event in ("started", "resumed"):
        state.finished = False
    elif event == "outcome":
        for action_id in record.get("action_ids", []):
            state.outcomes[action_id] = record
    elif "object" in record:
        fold_object(state.trail(record["object"]), event, record)


def fold_object(trail: ObjectTrail, event: str | None, record: dict[str, Any]) -> None:
    """Apply one journal record about an object to its trail."""
    if event == "backup":
        trail.backup = trail.backup or record
        _add_etag(trail, record.get("etag"))
    elif event == "intent":
        trail.pending = record
    elif event == "done":
        trail.pending = None
        trail.steps.append(record)
        _add_etag(trail, record.get("etag"))
    elif event == "write-failed":
        trail.pending = None
        trail.failures.append(record)
    elif event == "turn-on-failed":
        trail.turn_on_failed = True
    elif event == "trusted":
        _add_etag(trail, record.get("etag"))


def _add_etag(trail: ObjectTrail, etag: Any) -> None:
    if isinstance(etag, str) and etag and etag not in trail.etags:
        trail.etags.append(etag)


# ---------------------------------------------------------------------------------------------
# Backups


def backup_path(folder: Path, kind: str, environment_id: str, object_id: str) -> Path:
    """Return where the backup of one object lives; ids only, never display names."""
    for part in (environment_id, object_id):
        if not _SAFE_SEGMENT.match(part):
            raise JournalError(f"Refusing an unsafe file name part {part!r} for a backup.")
    base = (folder / BACKUPS_DIR).resolve()
    path = (base / environment_id / f"{kind}-{object_id.lower()}.json").resolve()
    if not path.is_relative_to(base):
        raise JournalError(f"Refusing a backup path outside {base}: {path}.")
    return path


def write_backup(path: Path, data: dict[str, Any]) -> bool:
    """Write a before-image atomically (0600); keep an existing one. Return True if written."""
    if path.exists():
        return False  # the first image is the real "before": a resume must not replace it
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(json.dumps(data, ensure_ascii=False, indent=1).encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_directory(path.parent)
    return True


def read_backup(path: Path) -> dict[str, Any]:
    """Read a before-image written by ``write_backup``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise JournalError(f"Cannot read the backup {path}: {exc}.") from None
    if not isinstance(data, dict):
        raise JournalError(f"The backup {path} is not a JSON object.")
    return data
