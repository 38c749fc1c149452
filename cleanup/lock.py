"""One run at a time: an OS file lock shared by the nightly schedule, manual runs and apply.

``fcntl.flock`` locks belong to the open file and die with the process, so a lock file left
behind by a killed run never blocks the next one; the file's content (pid and start time) is
only there to tell a person who holds it.

The lock is re-entrant within one thread: the nightly job holds it and may call apply, which
takes it too. A second ``flock`` on a new descriptor would conflict with our own lock.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from cleanup.errors import CleanupError

_held: dict[tuple[Path, int], int] = {}  # (lock path, thread id) -> nesting depth
_held_guard = threading.Lock()


class LockHeld(CleanupError):
    """Another connref-cleanup run holds the run lock."""

    def __init__(self, path: Path, holder: str) -> None:
        self.path = path
        self.holder = holder
        who = f" ({holder})" if holder else ""
        super().__init__(
            f"Another connref-cleanup run holds the lock {path}{who}. Wait for it to finish; "
            "runs never overlap."
        )


@contextmanager
def run_lock(path: str | Path) -> Iterator[Path]:
    """Hold the exclusive run lock at ``path`` for the block; raise ``LockHeld`` if taken."""
    path = Path(path).resolve()
    key = (path, threading.get_ident())
    with _held_guard:
        nested = key in _held
        if nested:
            _held[key] += 1
    if nested:
        try:
            yield path
        finally:
            with _held_guard:
                _held[key] -= 1
        return
    with _flock(path):
        with _held_guard:
            _held[key] = 1
        try:
            yield path
        finally:
            with _held_guard:
                del _held[key]


@contextmanager
def _flock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_CREAT without O_TRUNC: the holder's note must survive until we own the lock.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(path, _read_holder(fd)) from None
        _write_holder(fd)
        try:
            yield
        finally:
            # The file stays: unlinking it would let a third process lock a fresh inode
            # while a second one still holds the old one.
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _write_holder(fd: int) -> None:
    note = f"pid {os.getpid()} since {datetime.now(UTC).isoformat(timespec='seconds')}\n"
    os.ftruncate(fd, 0)
    os.pwrite(fd, note.encode(), 0)


def _read_holder(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""
