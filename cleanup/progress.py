"""Progress lines on a terminal; silence otherwise (cron mail stays clean)."""

from __future__ import annotations

import sys
import threading
from typing import TextIO


class Progress:
    """Print short progress lines to stderr when it is a terminal."""

    def __init__(self, enabled: bool | None = None, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._lock = threading.Lock()

    def say(self, message: str) -> None:
        """Print one progress line."""
        if self.enabled:
            with self._lock:
                print(message, file=self.stream, flush=True)


QUIET = Progress(enabled=False)
