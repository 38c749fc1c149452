"""Interpreter settings: set inside their block, as they were after it (even after an error)."""

from __future__ import annotations

import gc
import sys

import pytest

from cleanup.clients.platform import build_clients
from cleanup.interpreter import SNAPSHOT_SWITCH_INTERVAL, gc_paused, switch_interval
from cleanup.simulator.demo import demo_tenant
from cleanup.snapshot import tables
from cleanup.snapshot.collect import take_snapshot
from tests.conftest import settings_for


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


def test_switch_interval_is_restored_even_after_an_error() -> None:
    before = sys.getswitchinterval()
    with pytest.raises(RuntimeError), switch_interval(0.02):
        assert sys.getswitchinterval() == pytest.approx(0.02)
        raise RuntimeError("boom")
    assert sys.getswitchinterval() == before


def test_flows_are_parsed_with_the_snapshot_interval(
    start_simulator, secret_env, tmp_path, monkeypatch
) -> None:
    sim = start_simulator(demo_tenant())
    seen: list[float] = []
    parse = tables.flow_rows

    def recording(*args, **kwargs):
        seen.append(sys.getswitchinterval())
        return parse(*args, **kwargs)

    monkeypatch.setattr(tables, "flow_rows", recording)
    before = sys.getswitchinterval()
    take_snapshot(build_clients(settings_for(sim, tmp_path)), run_id="gil")
    assert seen and all(value == pytest.approx(SNAPSHOT_SWITCH_INTERVAL) for value in seen)
    assert sys.getswitchinterval() == before
