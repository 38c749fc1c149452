"""Interpreter settings for the heavy stages, each set inside a block and restored after it.

The snapshot's reading threads parse large JSON bodies; the rules and the plan make millions of
small objects. The defaults of CPython's GIL slice and cyclic collector suit neither.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager

# Measured on the large benchmark tenant (2 vCPUs; snapshot and dependency checks, wall and
# job CPU): the default 5 ms 28.6 and 28.7 s (26.8 s CPU); 20 ms 26.4, 25.7, 25.4 s; 50 ms 25.4
# and 24.4 s (23.8 and 22.8 s CPU); 100 ms 26.0 s.
SNAPSHOT_SWITCH_INTERVAL = 0.05


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


@contextmanager
def switch_interval(seconds: float) -> Iterator[None]:
    """Let a thread run ``seconds`` before it is asked to hand the GIL over (as it was, after).

    The snapshot's reading threads each parse large JSON bodies and clientdata documents; with
    the default 5 ms slices they pass the GIL back and forth far more often than it helps, and
    every hand-over costs CPU. Waiting for the network is unaffected: a thread blocked on a
    socket holds no GIL.
    """
    before = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(before)
