"""gc_paused: the collector is off inside the block and as it was after it."""

from __future__ import annotations

import gc

import pytest

from cleanup.gc_pause import gc_paused


def test_gc_paused_restores_the_collector_state() -> None:
    """The rules and the plan pause the collector and leave it as they found it."""
    was = gc.isenabled()
    try:
        for start in (True, False):
            (gc.enable if start else gc.disable)()
            with gc_paused():
                assert not gc.isenabled()
            assert gc.isenabled() is start
    finally:
        (gc.enable if was else gc.disable)()


def test_gc_paused_restores_the_collector_after_an_error() -> None:
    assert gc.isenabled()
    with pytest.raises(ValueError), gc_paused():
        raise ValueError("boom")
    assert gc.isenabled()
