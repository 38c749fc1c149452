"""Pause Python's cyclic garbage collector while a stage builds many small objects."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector inside the block (as it was, afterwards).

    The rules and the plan make millions of small lists, strings and actions that form no
    cycles; each automatic collection walks every live object (a million-row snapshot's worth),
    which made a large run slower than linear. Reference counting still frees memory meanwhile.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
