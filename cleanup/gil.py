"""How long a thread may hold the GIL while dozens of threads parse API responses."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

# Measured on the large benchmark tenant (2 vCPUs; snapshot and dependency checks, wall and
# job CPU): the default 5 ms 28.6 and 28.7 s (26.8 s CPU); 20 ms 26.4, 25.7, 25.4 s; 50 ms 25.4
# and 24.4 s (23.8 and 22.8 s CPU); 100 ms 26.0 s.
SNAPSHOT_SWITCH_INTERVAL = 0.05


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
